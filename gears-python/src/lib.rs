//! The embedded CPython runtime of gears.
//!
//! This crate owns everything Python: starting the interpreter inside the
//! Redis process, the `redisgears` native module and the GearsBuilder
//! prelude, running RG.PYEXECUTE script bodies, and running executions whose
//! steps are Python callbacks. It reaches Redis only through the
//! [`RedisHost`] trait, which `gears-module` implements (and tests fake).
//!
//! Lock order: a thread that holds the GIL never waits for the Redis lock.
//! `execute()` releases the GIL before calling into the host, and the runner
//! reads input batches before taking the GIL.

mod args;
mod callbacks;
mod command;
pub mod convert;
mod errors;
mod native;
mod readers;
mod register;
mod runner;

use gears_core::execution::{Execution, Status};
use gears_core::plan::Plan;
use gears_core::registration::{Outcome, ReaderArgs, Registration};
use gears_core::{Engine, Reader, Reply};
use once_cell::sync::OnceCell;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::RefCell;
use std::ffi::CString;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub use command::{CallNext, CommandCtx};
pub use errors::error_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

/// What `GB('KeysReader').run(...)` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysReaderSpec {
    pub pattern: Vec<u8>,
    pub no_scan: bool,
    pub read_value: bool,
}

/// Everything the Python runtime needs from Redis.
pub trait RedisHost: Send + Sync + 'static {
    /// Runs a command (replicated when it writes). Called without the GIL,
    /// from any thread; a top-level error comes back as [`Reply::Error`].
    fn call(&self, argv: &[Vec<u8>]) -> Reply;
    fn log(&self, level: LogLevel, message: &str);
    /// A configuration value (built-in option or extra key).
    fn config_get(&self, key: &str) -> Option<gears_config::Value>;
    fn hashtag(&self) -> String;
    /// A reader over the keyspace.
    fn keys_reader(&self, spec: KeysReaderSpec) -> Box<dyn Reader>;
    /// A reader over the messages of stream `key` after id `from`.
    fn stream_reader(&self, key: Vec<u8>, from: Vec<u8>) -> Box<dyn Reader>;
    /// Takes the Redis lock for the calling thread (reentrant; `atomic()`).
    /// Called without the GIL.
    fn lock(&self);
    /// Releases one [`RedisHost::lock`].
    fn unlock(&self);
    /// Checks a registration against the registrations already applied
    /// (hooked command exists, trigger name free...). `session` is the
    /// registering session; called from the script body, lock held.
    fn check_registration(&self, args: &ReaderArgs, session: &str) -> Result<(), String>;
}

struct Runtime {
    host: Arc<dyn RedisHost>,
    engine: Arc<Engine>,
    prelude: Py<PyDict>,
}

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

fn runtime() -> &'static Runtime {
    RUNTIME
        .get()
        .expect("the Python runtime is initialized at module load")
}

pub(crate) fn host() -> &'static dyn RedisHost {
    &*runtime().host
}

pub(crate) fn engine() -> &'static Engine {
    &runtime().engine
}

pub(crate) fn attempt_traceback() -> bool {
    match RUNTIME
        .get()
        .and_then(|r| r.host.config_get("PythonAttemptTraceback"))
    {
        Some(gears_config::Value::Int(v)) => v != 0,
        _ => true,
    }
}

/// An execution prepared by `run()` in a script body, started once the
/// script has finished without error.
pub struct PendingRun {
    pub execution: Arc<Execution>,
    plan: Plan,
    reader: Box<dyn Reader>,
}

/// A registration made by a script body, applied by the host once the
/// script has succeeded.
pub struct PendingRegistration {
    pub reg: Arc<Registration>,
    on_registered: Option<Py<PyAny>>,
}

impl PendingRegistration {
    /// Runs the `onRegistered` callback, if any; its errors are logged.
    pub fn on_registered(&self) {
        let Some(f) = &self.on_registered else { return };
        Python::with_gil(|py| {
            if let Err(e) = f.bind(py).call0() {
                host().log(
                    LogLevel::Warning,
                    &format!(
                        "onRegistered of registration {} failed: {}",
                        self.reg.id,
                        error_text(py, &e)
                    ),
                );
            }
        });
    }
}

/// State of the script body being run on this thread.
#[derive(Default)]
pub(crate) struct ScriptCtx {
    pub(crate) run: Option<PendingRun>,
    pub(crate) registrations: Vec<PendingRegistration>,
    pub(crate) session: String,
}

thread_local! {
    pub(crate) static SCRIPT: RefCell<Option<ScriptCtx>> = const { RefCell::new(None) };
}

/// What a script body did.
pub struct ScriptOutcome {
    pub run: Option<PendingRun>,
    pub registrations: Vec<PendingRegistration>,
}

/// Re-opens libpython with `RTLD_GLOBAL`, so that the C extension modules of
/// the standard library (which expect the interpreter's symbols to be global)
/// can be imported even though Redis loaded us with `RTLD_LOCAL`.
fn make_libpython_global() -> Result<(), String> {
    // SAFETY: dladdr only reads the loader's tables for the address of a
    // function we link against; `info` is a plain C struct it fills in.
    let path = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let addr = pyo3::ffi::Py_IsInitialized as *const libc::c_void;
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return Err("could not locate libpython".into());
        }
        std::ffi::CStr::from_ptr(info.dli_fname).to_owned()
    };
    // SAFETY: `path` names the library that is already loaded (RTLD_NOLOAD);
    // this only promotes its symbols to global scope and leaks one reference
    // on purpose, as the interpreter lives as long as the process.
    let handle = unsafe {
        libc::dlopen(
            path.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
        )
    };
    if handle.is_null() {
        return Err(format!("could not re-open {path:?} with RTLD_GLOBAL"));
    }
    Ok(())
}

/// Starts the interpreter (once per process) without Python's signal
/// handlers, with the prefix of the Python this crate was built against.
fn start_interpreter() -> Result<(), String> {
    // SAFETY: called once, from the thread that loads the module, before any
    // other Python API; the PyConfig is initialized, filled and cleared
    // following the CPython embedding protocol.
    unsafe {
        if pyo3::ffi::Py_IsInitialized() != 0 {
            return Ok(());
        }
        let mut config: pyo3::ffi::PyConfig = std::mem::zeroed();
        pyo3::ffi::PyConfig_InitPythonConfig(&mut config);
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let home = CString::new(env!("GEARS_PYTHON_HOME")).expect("no NUL in a path");
        let status =
            pyo3::ffi::PyConfig_SetBytesString(&mut config, &mut config.home, home.as_ptr());
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            pyo3::ffi::PyConfig_Clear(&mut config);
            return Err("could not set the Python home".into());
        }
        let status = pyo3::ffi::Py_InitializeFromConfig(&config);
        pyo3::ffi::PyConfig_Clear(&mut config);
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            return Err("the Python interpreter failed to start".into());
        }
        // Hand the GIL back: from now on every thread takes it when needed.
        pyo3::ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// How long a thread may keep the GIL while another one waits for it.
const GIL_SWITCH_INTERVAL_S: f64 = 0.000_05;

/// Starts Python and installs the runtime. Call once, at module load.
pub fn initialize(host: Arc<dyn RedisHost>, engine: Arc<Engine>) -> Result<(), String> {
    make_libpython_global()?;
    start_interpreter()?;
    let prelude = Python::with_gil(|py| -> PyResult<Py<PyDict>> {
        let sys = py.import("sys")?;
        sys.setattr("argv", vec!["redis-server"])?;
        // A thread waiting for the GIL (a sync registration on the Redis main
        // thread) gets it after this long at most; CPython's default is 5 ms.
        // Only matters when threads compete for the GIL.
        sys.call_method1("setswitchinterval", (GIL_SWITCH_INTERVAL_S,))?;
        native::install(py)?;
        let globals = PyDict::new(py);
        globals.set_item("__builtins__", py.import("builtins")?)?;
        globals.set_item("__name__", "__gears__")?;
        let code = CString::new(include_str!("prelude.py")).expect("no NUL in the prelude");
        py.run(&code, Some(&globals), None)?;
        Ok(globals.unbind())
    })
    .map_err(|e| Python::with_gil(|py| format!("the gears prelude failed: {}", e.value(py))))?;
    RUNTIME
        .set(Runtime {
            host,
            engine,
            prelude,
        })
        .map_err(|_| "the Python runtime is already initialized".to_string())
}

/// Runs an RG.PYEXECUTE script body of session `session` in fresh globals.
/// The caller holds the Redis lock (it is the Redis main thread).
pub fn exec_script(code: &str, session: &str) -> Result<ScriptOutcome, String> {
    let code = CString::new(code).map_err(|_| "the script contains a NUL byte".to_string())?;
    SCRIPT.with(|s| {
        *s.borrow_mut() = Some(ScriptCtx {
            session: session.to_owned(),
            ..ScriptCtx::default()
        })
    });
    let result = Python::with_gil(|py| -> Result<(), String> {
        let globals = runtime()
            .prelude
            .bind(py)
            .copy()
            .map_err(|e| error_text(py, &e))?;
        globals
            .set_item("__name__", "__main__")
            .map_err(|e| error_text(py, &e))?;
        py.run(&code, Some(&globals), None)
            .map_err(|e| error_text(py, &e))
    });
    let ctx = SCRIPT.with(|s| s.borrow_mut().take()).unwrap_or_default();
    match result {
        Ok(()) => Ok(ScriptOutcome {
            run: ctx.run,
            registrations: ctx.registrations,
        }),
        Err(e) => {
            // Python objects of a failed script go with the GIL held.
            Python::with_gil(|_py| drop(ctx));
            Err(e)
        }
    }
}

/// Registers a prepared execution and starts it on the worker pool.
pub fn submit(pending: PendingRun) {
    let engine = engine();
    engine.executions.add(pending.execution.clone());
    engine.pool.submit(move || {
        let PendingRun {
            execution,
            plan,
            reader,
        } = pending;
        runner::run(&execution, &plan, reader, None);
        Python::with_gil(|_py| drop(plan));
    });
}

/// A new execution of `reg`, counted as triggered, kept for
/// `RG.DUMPEXECUTIONS` and counted in the statistics when it ends.
fn new_registered_execution(reg: &Arc<Registration>) -> Arc<Execution> {
    let engine = engine();
    let exec = Arc::new(Execution::with_steps(
        engine.next_execution_id(),
        reg.steps.clone(),
        true,
    ));
    reg.on_trigger();
    let r = reg.clone();
    // First waiter: the statistics are up to date before anyone else hears
    // that the execution ended.
    exec.on_finish(Box::new(move |e| {
        let outcome = if e.status() == Status::Aborted {
            Outcome::Aborted
        } else {
            match e.first_error() {
                Some(err) => Outcome::Failure(err),
                None => Outcome::Success,
            }
        };
        r.on_done(&outcome, e.total_ms());
        let engine = crate::engine();
        for old in r.prune(engine.max_per_registration.load(Relaxed)) {
            engine.executions.forget(&old);
        }
    }));
    engine.executions.add(exec.clone());
    for old in reg.track(exec.clone(), engine.max_per_registration.load(Relaxed)) {
        engine.executions.forget(&old);
    }
    exec
}

thread_local! {
    /// Registrations whose executions run on this thread right now.
    static RUNNING: RefCell<Vec<*const Registration>> = const { RefCell::new(Vec::new()) };
}

/// Whether an execution of `reg` is running on this thread: an event it
/// raises itself (its own `execute('expire', key)`) must not trigger it
/// again, or it would never end.
pub fn is_running_here(reg: &Registration) -> bool {
    RUNNING.with(|r| r.borrow().contains(&(reg as *const Registration)))
}

fn run_marked(
    exec: &Arc<Execution>,
    reg: &Arc<Registration>,
    reader: Box<dyn Reader>,
    command: Option<Arc<CommandCtx>>,
) {
    RUNNING.with(|r| r.borrow_mut().push(Arc::as_ptr(reg)));
    runner::run(exec, &reg.plan, reader, command);
    RUNNING.with(|r| r.borrow_mut().pop());
}

/// Runs an execution of `reg` over `reader` on this thread, now (`sync`
/// registrations). The caller holds the Redis lock and not the GIL.
pub fn run_inline(
    reg: &Arc<Registration>,
    reader: Box<dyn Reader>,
    command: Option<Arc<CommandCtx>>,
) -> Arc<Execution> {
    let exec = new_registered_execution(reg);
    run_marked(&exec, reg, reader, command);
    exec
}

/// Queues an execution of `reg` over `reader` on the worker pool (in
/// trigger order when the registration is ordered).
pub fn run_queued(
    reg: &Arc<Registration>,
    reader: Box<dyn Reader>,
    command: Option<Arc<CommandCtx>>,
) -> Arc<Execution> {
    let exec = new_registered_execution(reg);
    let (e, r) = (exec.clone(), reg.clone());
    reg.submit(&engine().pool, move || run_marked(&e, &r, reader, command));
    exec
}
