//! Starting the interpreter inside the Redis process, running script
//! bodies, and starting the executions they prepare.

use crate::acting::{run_as, Acting};
use crate::alloc::Allocator;
use crate::api;
use crate::errors::Error;
use crate::host::{RedisHost, ScriptScope};
use crate::runtime::{self, runtime, EventLoop, Runtime};
use crate::script::{with_script, ScriptOutcome};
use crate::traceback::error_text;
use crate::watchdog;
use gears_core::sync::LockExt;
use gears_core::Engine;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::ffi::CString;
use std::sync::Arc;

/// Re-opens libpython with `RTLD_GLOBAL`, so that the C extension modules of
/// the standard library (which expect the interpreter's symbols to be global)
/// can be imported even though Redis loaded us with `RTLD_LOCAL`.
fn make_libpython_global() -> Result<(), Error> {
    // SAFETY: dladdr only reads the loader's tables for the address of a
    // function we link against; `info` is a plain C struct it fills in.
    let path = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let addr = pyo3::ffi::Py_IsInitialized as *const libc::c_void;
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return Err(Error::Start("could not locate libpython".into()));
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
        return Err(Error::Start(format!(
            "could not re-open {path:?} with RTLD_GLOBAL"
        )));
    }
    Ok(())
}

/// Starts the interpreter (once per process) without Python's signal
/// handlers, isolated from the environment of the process that started
/// Redis: the home, executable and so `sys.path` are those of the Python
/// this crate was built against (its virtualenv included), never taken from
/// `PATH`, `VIRTUAL_ENV`, `PYTHONHOME`, `PYTHONPATH`, the user's site
/// directory or the working directory.
fn start_interpreter(count_allocations: Option<Allocator>) -> Result<(), Error> {
    // SAFETY: called once, from the thread that loads the module, before any
    // other Python API; the PyConfig is initialized, filled and cleared
    // following the CPython embedding protocol.
    unsafe {
        if pyo3::ffi::Py_IsInitialized() != 0 {
            return Ok(());
        }
        if let Some(a) = count_allocations {
            crate::alloc::install(a);
        }
        let mut config: pyo3::ffi::PyConfig = std::mem::zeroed();
        // Isolated: no environment variables, no user site, no current
        // directory on sys.path, no command line.
        pyo3::ffi::PyConfig_InitIsolatedConfig(&mut config);
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let cfg: *mut pyo3::ffi::PyConfig = &mut config;
        let set = move |field: *mut *mut libc::wchar_t, value: &str| -> Result<(), Error> {
            let c = CString::new(value)
                .map_err(|_| Error::Start(format!("a NUL byte in {value:?}")))?;
            let status = pyo3::ffi::PyConfig_SetBytesString(cfg, field, c.as_ptr());
            if pyo3::ffi::PyStatus_Exception(status) != 0 {
                return Err(Error::Start(format!(
                    "could not set the Python configuration to {value:?}"
                )));
            }
            Ok(())
        };
        let filled = set(&raw mut (*cfg).home, PYTHON_HOME)
            .and_then(|()| set(&raw mut (*cfg).program_name, PYTHON_EXE))
            .and_then(|()| set(&raw mut (*cfg).executable, PYTHON_EXE));
        if let Err(e) = filled {
            pyo3::ffi::PyConfig_Clear(&mut config);
            return Err(e);
        }
        let status = pyo3::ffi::Py_InitializeFromConfig(&config);
        pyo3::ffi::PyConfig_Clear(&mut config);
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            return Err(Error::Start(
                "the Python interpreter failed to start".into(),
            ));
        }
        // Hand the GIL back: from now on every thread takes it when needed.
        pyo3::ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// The Python this crate was built against: its prefix and executable.
pub const PYTHON_HOME: &str = env!("GEARS_PYTHON_HOME");
pub const PYTHON_EXE: &str = env!("GEARS_PYTHON_EXE");

/// Python packages the runtime itself imports, with the pip requirement
/// that provides them.
pub const RUNTIME_PACKAGES: &[(&str, &str)] = &[("cloudpickle", "cloudpickle>=2,<4")];

/// Fails when one of `packages` (module, pip requirement) is missing from
/// the interpreter, naming it and how to install it. `initialize` checks
/// [`RUNTIME_PACKAGES`], so a missing one fails the load instead of every
/// `register()` later.
pub fn check_packages(packages: &[(&str, &str)]) -> Result<(), Error> {
    Python::with_gil(|py| {
        for (module, requirement) in packages {
            if py.import(*module).is_err() {
                return Err(Error::Start(format!(
                    "the Python package '{module}' is missing from the module's Python ({PYTHON_HOME}); \
                     install it with: {PYTHON_EXE} -m pip install '{requirement}' (cargo xtask setup does)"
                )));
            }
        }
        Ok(())
    })
}

/// How long a thread may keep the GIL while another one waits for it.
const GIL_SWITCH_INTERVAL_S: f64 = 0.000_05;

/// Starts Python and installs the runtime. Call once, at module load.
/// With `count_allocations` (OverridePythonAllocators), Python allocates
/// through that allocator (the host's: Redis's, so `used_memory` sees it)
/// and RG.PYSTATS counts.
pub fn initialize(
    host: Arc<dyn RedisHost>,
    engine: Arc<Engine>,
    count_allocations: Option<Allocator>,
) -> Result<(), Error> {
    make_libpython_global()?;
    start_interpreter(count_allocations)?;
    check_packages(RUNTIME_PACKAGES)?;
    let (prelude, aio) = Python::with_gil(|py| -> PyResult<(Py<PyDict>, EventLoop)> {
        let sys = py.import("sys")?;
        sys.setattr("argv", vec!["redis-server"])?;
        // A thread waiting for the GIL (a sync registration on the Redis main
        // thread) gets it after this long at most; CPython's default is 5 ms.
        // Only matters when threads compete for the GIL.
        sys.call_method1("setswitchinterval", (GIL_SWITCH_INTERVAL_S,))?;
        api::install(py)?;
        let globals = PyDict::new(py);
        globals.set_item("__builtins__", py.import("builtins")?)?;
        globals.set_item("__name__", "__gears__")?;
        let code = CString::new(include_str!("prelude.py")).expect("no NUL in the prelude");
        py.run(&code, Some(&globals), None)?;
        let aio = EventLoop::new(py, &globals)?;
        Ok((globals.unbind(), aio))
    })
    .map_err(|e| {
        Python::with_gil(|py| Error::Start(format!("the gears prelude failed: {}", e.value(py))))
    })?;
    runtime::install(Runtime {
        host,
        engine,
        prelude,
        aio,
        scripts: Default::default(),
    })?;
    Python::with_gil(|py| {
        let rt = runtime();
        rt.aio.spawn(py, rt.prelude.bind(py))
    })
    .map_err(|e| {
        Python::with_gil(|py| {
            Error::Start(format!("the event loop failed to start: {}", e.value(py)))
        })
    })?;
    watchdog::start()
}

/// How many compiled script bodies are kept, and up to which size: clients
/// send the same scripts again and again (as they do with Lua), and parsing
/// costs more than running a short one.
const SCRIPT_CACHE_ENTRIES: usize = 256;
const SCRIPT_CACHE_MAX_LEN: usize = 64 * 1024;

/// The code object of `code`, compiled once while it stays in the cache.
fn compiled<'py>(py: Python<'py>, code: &str) -> PyResult<Bound<'py, PyAny>> {
    let cache = &runtime().scripts;
    if let Some(hit) = cache.lock_unpoisoned().get(code) {
        return Ok(hit.bind(py).clone());
    }
    let compiled = py
        .import("builtins")?
        .getattr("compile")?
        .call1((code, "<string>", "exec"))?;
    if code.len() <= SCRIPT_CACHE_MAX_LEN {
        let mut cache = cache.lock_unpoisoned();
        if cache.len() >= SCRIPT_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(code.to_owned(), compiled.clone().unbind());
    }
    Ok(compiled)
}

/// Runs an RG.PYEXECUTE script body of a session (`scope`) in fresh
/// globals. The caller holds the Redis lock (it is the Redis main thread).
pub fn exec_script(code: &str, scope: impl Into<ScriptScope>) -> Result<ScriptOutcome, Error> {
    if code.contains('\0') {
        return Err(Error::Python("the script contains a NUL byte".to_string()));
    }
    let scope: ScriptScope = scope.into();
    let session_name = scope.session.clone();
    let acting = Acting::of(scope.identity.clone());
    let (result, ctx) = with_script(scope, || {
        run_as(acting, || {
            watchdog::watched(|| {
                Python::with_gil(|py| -> Result<(), Error> {
                    let compiled =
                        compiled(py, code).map_err(|e| Error::Python(error_text(py, &e)))?;
                    let globals = runtime()
                        .prelude
                        .bind(py)
                        .copy()
                        .map_err(|e| Error::Python(error_text(py, &e)))?;
                    globals
                        .set_item("__name__", "__main__")
                        .map_err(|e| Error::Python(error_text(py, &e)))?;
                    // Names the session's profiler (ProfileExecutions).
                    globals
                        .set_item("__gears_session__", &session_name)
                        .map_err(|e| Error::Python(error_text(py, &e)))?;
                    py.import("builtins")
                        .and_then(|b| b.getattr("exec"))
                        .and_then(|exec| exec.call1((compiled, globals)))
                        .map(|_| ())
                        .map_err(|e| Error::Python(error_text(py, &e)))
                })
            })
        })
    });
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

/// Frees what a session that just ended leaves in reference cycles (its
/// functions and their globals point to each other): memory Redis counts
/// goes back at once, not at the collector's next pass.
pub fn collect_garbage() {
    Python::with_gil(|py| {
        if let Ok(gc) = py.import("gc") {
            let _ = gc.call_method0("collect");
        }
    });
}
