//! The `redisgears` Python module: the native half of the runtime API.

use crate::args::{bytes_of, flag, text_of};
use crate::callbacks::{PyStep, Shape, ToPython};
use crate::convert::{py_to_reply, reply_to_py};
use crate::readers::PyGenReader;
use crate::{host, KeysReaderSpec, LogLevel, PendingRun, SCRIPT};
use gears_core::execution::Execution;
use gears_core::plan::{Callable, Plan, Step, StepKind, ValueOfKeyed};
use gears_core::{Reader, Reply};
use pyo3::create_exception;
use pyo3::exceptions::{PyBaseException, PyException};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use std::sync::Arc;

create_exception!(redisgears, GearsError, PyException);
create_exception!(redisgears, GearsFlatError, PyException);
create_exception!(
    redisgears,
    ForceStoppedError,
    PyBaseException,
    "Raised inside a step when RG.ABORTEXECUTION stops its execution."
);

/// A command's arguments as `execute` passes them: bytes as they are,
/// anything else through `str()`.
fn argv_of(args: &Bound<'_, PyTuple>, first: Option<&str>) -> PyResult<Vec<Vec<u8>>> {
    let mut argv: Vec<Vec<u8>> = Vec::with_capacity(args.len() + 1);
    if let Some(f) = first {
        argv.push(f.as_bytes().to_vec());
    }
    for a in args.iter() {
        if let Ok(b) = a.downcast::<PyBytes>() {
            argv.push(b.as_bytes().to_vec());
        } else if let Ok(b) = a.downcast::<PyByteArray>() {
            argv.push(b.to_vec());
        } else {
            argv.push(a.str()?.to_string_lossy().as_bytes().to_vec());
        }
    }
    Ok(argv)
}

/// A command reply as Python sees it; a top-level error raises.
fn reply_or_raise(py: Python<'_>, reply: Reply) -> PyResult<Bound<'_, PyAny>> {
    match reply {
        Reply::Error(e) => Err(GearsError::new_err(e)),
        r => reply_to_py(py, r),
    }
}

/// `execute(command, *args)`: runs a Redis command and returns its reply.
#[pyfunction]
#[pyo3(signature = (command, *args))]
fn execute<'py>(
    py: Python<'py>,
    command: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let Ok(cmd) = command.downcast::<PyString>() else {
        return Err(GearsError::new_err("the given command must be a string"));
    };
    let argv = argv_of(args, Some(cmd.to_str()?))?;
    let h = host();
    // Never wait for the Redis lock while holding the GIL.
    let reply = py.allow_threads(move || h.call(&argv));
    reply_or_raise(py, reply)
}

/// `call_next(*args)`: inside a command hook, runs the next hook or the
/// hooked command itself with `args`.
#[pyfunction]
#[pyo3(signature = (*args))]
fn call_next<'py>(py: Python<'py>, args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
    let ctx = crate::command::current();
    let Some(next) = ctx.as_deref().and_then(|c| c.next()) else {
        return Err(GearsError::new_err("Can not get CommandHook ctx"));
    };
    let argv = argv_of(args, None)?;
    let reply = py.allow_threads(move || next.call_next(argv));
    reply_or_raise(py, reply)
}

/// `override_reply(value)`: the reply the client of the linked command gets.
#[pyfunction]
fn override_reply(value: &Bound<'_, PyAny>) -> PyResult<()> {
    let Some(ctx) = crate::command::current() else {
        return Err(GearsError::new_err("Can not get command ctx"));
    };
    ctx.override_reply(py_to_reply(value))
        .map_err(GearsError::new_err)
}

#[pyfunction]
fn log(message: &str, level: &str) -> PyResult<()> {
    let level = match level {
        "debug" => LogLevel::Debug,
        "verbose" => LogLevel::Verbose,
        "notice" => LogLevel::Notice,
        "warning" => LogLevel::Warning,
        other => return Err(GearsError::new_err(format!("unknown log level '{other}'"))),
    };
    host().log(level, message);
    Ok(())
}

thread_local! {
    /// Whether this thread is inside `with atomic():`.
    static IN_ATOMIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Enters `with atomic():`: takes the Redis lock (releasing the GIL while
/// waiting for it, to keep the lock order) until the block ends.
#[pyfunction]
fn atomic_enter(py: Python<'_>) -> PyResult<()> {
    if IN_ATOMIC.with(|a| a.get()) {
        return Err(GearsError::new_err("Already inside an atomic block"));
    }
    let h = host();
    py.allow_threads(move || h.lock());
    IN_ATOMIC.with(|a| a.set(true));
    Ok(())
}

#[pyfunction]
fn atomic_exit() {
    if IN_ATOMIC.with(|a| a.replace(false)) {
        host().unlock();
    }
}

#[pyfunction]
#[pyo3(name = "isInAtomicBlock")]
fn is_in_atomic_block() -> bool {
    IN_ATOMIC.with(|a| a.get())
}

#[pyfunction]
fn hashtag() -> String {
    host().hashtag()
}

#[pyfunction]
#[pyo3(name = "configGet")]
fn config_get(py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
    Ok(match host().config_get(key) {
        Some(gears_config::Value::Int(i)) => i.into_py_any(py)?,
        Some(gears_config::Value::Text(t)) => t.into_py_any(py)?,
        None => py.None(),
    })
}

fn make_reader(
    reader: &str,
    arg: &Bound<'_, PyAny>,
    kwargs: &Bound<'_, PyDict>,
) -> PyResult<Box<dyn Reader>> {
    match reader {
        "KeysReader" => {
            let pattern = bytes_of(arg, "pattern argument must be a string")?;
            let no_scan = flag(
                kwargs.get_item("noScan")?,
                false,
                "exactMatch value is not boolean",
            )?;
            let read_value = flag(
                kwargs.get_item("readValue")?,
                true,
                "readValue value is not boolean",
            )?;
            Ok(host().keys_reader(KeysReaderSpec {
                pattern,
                no_scan,
                read_value,
            }))
        }
        "PythonReader" => {
            if !arg.is_callable() {
                return Err(GearsError::new_err("pyreader argument must be a function"));
            }
            Ok(Box::new(PyGenReader::new(arg.clone().unbind())))
        }
        "StreamReader" => {
            let key = text_of(arg, "stream name argument must be a string")?;
            let from = match kwargs.get_item("fromId")? {
                None => "0-0".to_owned(),
                Some(v) => text_of(&v, "fromId argument must be a string")?,
            };
            Ok(host().stream_reader(key.into_bytes(), from.into_bytes()))
        }
        "CommandReader" => Err(GearsError::new_err("reader do not support run")),
        _ => Err(GearsError::new_err(
            "Given reader do not support run or not exists",
        )),
    }
}

/// One step as the prelude describes it: `(kind, callback name, function,
/// (offset, length) for limit)`.
type StepTuple = (String, String, Option<Py<PyAny>>, Option<(usize, usize)>);

pub(crate) fn make_steps(steps: &Bound<'_, PyList>) -> PyResult<Vec<Step>> {
    let mut out = Vec::with_capacity(steps.len());
    for item in steps.iter() {
        let (kind, name, func, extra): StepTuple = item.extract()?;
        let step_kind = match kind.as_str() {
            "map" => StepKind::Map,
            "filter" => StepKind::Filter,
            "foreach" => StepKind::Foreach,
            "flatmap" => StepKind::FlatMap,
            "extractkey" => StepKind::ExtractKey,
            "repartition" => StepKind::Repartition,
            "group" => StepKind::Group,
            "reduce" => StepKind::Reduce,
            "collect" => StepKind::Collect,
            "accumulate" => StepKind::Accumulate,
            "accumulatebykey" => StepKind::AccumulateByKey,
            "limit" => {
                let (offset, len) =
                    extra.ok_or_else(|| GearsError::new_err("limit needs bounds"))?;
                StepKind::Limit { offset, len }
            }
            other => return Err(GearsError::new_err(format!("unknown step kind {other}"))),
        };
        let callback: Option<Arc<dyn Callable>> = match (name.as_str(), func) {
            ("RedisGearsPy_ToPyRecordMapper", _) => Some(Arc::new(ToPython)),
            ("GetValueMapper", _) => Some(Arc::new(ValueOfKeyed)),
            (_, Some(f)) => Some(Arc::new(PyStep {
                func: f,
                shape: if name == "RedisGearsPy_PyCallbackFlatMapper" {
                    Shape::FlatMapper
                } else {
                    Shape::Plain
                },
            })),
            (_, None) => None,
        };
        out.push(Step::new(step_kind, name, callback));
    }
    Ok(out)
}

/// `run()` of a GearsBuilder: prepares the execution; the runtime starts it
/// once the script body has finished without error.
#[pyfunction]
#[pyo3(signature = (reader, arg, steps, desc, kwargs))]
fn run(
    reader: &str,
    arg: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyList>,
    desc: Option<String>,
    kwargs: &Bound<'_, PyDict>,
) -> PyResult<()> {
    let in_script = SCRIPT.with(|s| s.borrow().as_ref().map(|ctx| ctx.run.is_some()));
    match in_script {
        None => {
            return Err(GearsError::new_err(
                "run() is only supported at the top level of an RG.PYEXECUTE script",
            ))
        }
        Some(true) => {
            return Err(GearsError::new_err(
                "Can not run more then 1 executions in a single script",
            ))
        }
        Some(false) => {}
    }
    if let Some(mode) = kwargs.get_item("mode")? {
        let mode: String = mode
            .extract()
            .map_err(|_| GearsError::new_err("mode argument must be a string"))?;
        if mode != "async" && mode != "async_local" {
            return Err(GearsError::new_err(format!(
                "unknown or unsupported execution mode '{mode}' for run (use async or async_local)"
            )));
        }
    }
    let source = make_reader(reader, arg, kwargs)?;
    let plan = Plan {
        reader: reader.to_owned(),
        steps: make_steps(steps)?,
        desc,
    };
    plan.validate().map_err(GearsError::new_err)?;
    let engine = crate::engine();
    let execution = Arc::new(Execution::new(engine.next_execution_id(), &plan, false));
    SCRIPT.with(|s| {
        if let Some(ctx) = s.borrow_mut().as_mut() {
            ctx.run = Some(PendingRun {
                execution,
                plan,
                reader: source,
            });
        }
    });
    Ok(())
}

/// Builds the `redisgears` module and registers it in `sys.modules`.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let m = PyModule::new(py, "redisgears")?;
    m.add("GearsError", py.get_type::<GearsError>())?;
    m.add("GearsFlatError", py.get_type::<GearsFlatError>())?;
    m.add("ForceStoppedError", py.get_type::<ForceStoppedError>())?;
    m.add_function(wrap_pyfunction!(execute, &m)?)?;
    m.add_function(wrap_pyfunction!(log, &m)?)?;
    m.add_function(wrap_pyfunction!(hashtag, &m)?)?;
    m.add_function(wrap_pyfunction!(atomic_enter, &m)?)?;
    m.add_function(wrap_pyfunction!(atomic_exit, &m)?)?;
    m.add_function(wrap_pyfunction!(is_in_atomic_block, &m)?)?;
    m.add_function(wrap_pyfunction!(config_get, &m)?)?;
    m.add_function(wrap_pyfunction!(run, &m)?)?;
    m.add_function(wrap_pyfunction!(crate::register::register, &m)?)?;
    m.add_function(wrap_pyfunction!(call_next, &m)?)?;
    m.add_function(wrap_pyfunction!(override_reply, &m)?)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("redisgears", m)?;
    Ok(())
}
