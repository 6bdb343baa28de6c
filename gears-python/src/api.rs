//! The `redisgears` Python module: the native half of the runtime API.

use crate::acting;
use crate::args::{bytes_of, flag, text_of};
use crate::convert::{py_to_reply, reply_to_py};
use crate::errors::{self as e, ForceStoppedError, GearsError, GearsFlatError};
use crate::host::{KeysReaderSpec, LogLevel};
use crate::readers::PyGenReader;
use crate::runtime::{engine, host, waiting_for_redis};
use crate::script::{in_script, PendingRun};
use crate::steps::make_steps;
use gears_core::execution::Execution;
use gears_core::plan::Plan;
use gears_core::{Reader, Reply};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use std::sync::Arc;

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
        return Err(GearsError::new_err(e::COMMAND_NOT_STRING));
    };
    let argv = argv_of(args, Some(cmd.to_str()?))?;
    let h = host();
    let who = acting::identity();
    // Never wait for the Redis lock while holding the GIL.
    let reply = py.allow_threads(move || waiting_for_redis(|| h.call(&who, &argv)));
    reply_or_raise(py, reply)
}

/// `call_next(*args)`: inside a command hook, runs the next hook or the
/// hooked command itself with `args`.
#[pyfunction]
#[pyo3(signature = (*args))]
fn call_next<'py>(py: Python<'py>, args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
    let ctx = acting::command();
    let Some(next) = ctx.as_deref().and_then(|c| c.next()) else {
        return Err(GearsError::new_err(e::NO_HOOK_CTX));
    };
    let argv = argv_of(args, None)?;
    let reply = py.allow_threads(move || waiting_for_redis(|| next.call_next(argv)));
    reply_or_raise(py, reply)
}

/// `override_reply(value)`: the reply the client of the linked command gets.
#[pyfunction]
fn override_reply(value: &Bound<'_, PyAny>) -> PyResult<()> {
    let Some(ctx) = acting::command() else {
        return Err(GearsError::new_err(e::NO_COMMAND_CTX));
    };
    let reply = py_to_reply(value).map_err(|e| GearsError::new_err(e.to_string()))?;
    ctx.override_reply(reply)
        .map_err(|_| GearsError::new_err(e::OVERRIDE_TWICE))
}

/// `log(message, level='notice')`, as 1.2 client libraries call it.
#[pyfunction]
#[pyo3(signature = (message, level = "notice"))]
fn log(message: &str, level: &str) -> PyResult<()> {
    let Some(level) = LogLevel::parse(level) else {
        return Err(GearsError::new_err(e::unknown_log_level(level)));
    };
    host().log(level, message);
    Ok(())
}

/// Enters `with atomic():`: takes the Redis lock (releasing the GIL while
/// waiting for it, to keep the lock order) until the block ends.
#[pyfunction]
fn atomic_enter(py: Python<'_>) -> PyResult<()> {
    if crate::acting::in_atomic() {
        return Err(GearsError::new_err(e::ALREADY_ATOMIC));
    }
    let h = host();
    py.allow_threads(move || waiting_for_redis(|| h.lock()));
    crate::acting::enter_atomic();
    Ok(())
}

#[pyfunction]
fn atomic_exit() {
    crate::acting::leave_atomic();
}

#[pyfunction]
#[pyo3(name = "isInAtomicBlock")]
fn is_in_atomic_block() -> bool {
    crate::acting::in_atomic()
}

#[pyfunction]
fn hashtag() -> String {
    host().hashtag()
}

/// This shard's id, when known without a command (ShardsIDReader).
#[pyfunction]
fn shard_id() -> Option<String> {
    host().shard_id()
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
            let pattern = bytes_of(arg, e::PATTERN_NOT_STRING)?;
            let no_scan = flag(kwargs.get_item("noScan")?, false, e::NOSCAN_NOT_BOOL)?;
            let read_value = flag(kwargs.get_item("readValue")?, true, e::READVALUE_NOT_BOOL)?;
            let who = acting::identity();
            let spec = KeysReaderSpec {
                pattern,
                no_scan,
                read_value,
            };
            Ok(host().keys_reader(who, spec))
        }
        "PythonReader" => {
            if !arg.is_callable() {
                return Err(GearsError::new_err(e::PYREADER_NOT_FUNCTION));
            }
            Ok(Box::new(PyGenReader::new(arg.clone().unbind())))
        }
        "StreamReader" => {
            let key = text_of(arg, e::STREAM_NAME_NOT_STRING)?;
            let from = match kwargs.get_item("fromId")? {
                None => "0-0".to_owned(),
                Some(v) => text_of(&v, e::FROMID_NOT_STRING)?,
            };
            Ok(host().stream_reader(acting::identity(), key.into_bytes(), from.into_bytes()))
        }
        "CommandReader" => Err(GearsError::new_err(e::READER_CANNOT_RUN)),
        _ => Err(GearsError::new_err(e::UNKNOWN_RUN_READER)),
    }
}

/// `run()` of a GearsBuilder. At the top level of an RG.PYEXECUTE script it
/// prepares the execution, which the runtime starts once the script body
/// has finished without error. Anywhere else (a step, a coroutine) it starts
/// the execution now and returns a future of the gears loop, resolved with
/// `[results, errors]` when the execution ends (which is then dropped).
#[pyfunction]
#[pyo3(signature = (reader, arg, steps, desc, kwargs))]
fn run<'py>(
    py: Python<'py>,
    reader: &str,
    arg: &Bound<'py, PyAny>,
    steps: &Bound<'py, PyList>,
    desc: Option<String>,
    kwargs: &Bound<'py, PyDict>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let in_body = match in_script(|ctx| ctx.run.is_some()) {
        Some(true) => return Err(GearsError::new_err(e::TWO_RUNS)),
        Some(false) => true,
        None => false,
    };
    let mut local = false;
    if let Some(mode) = kwargs.get_item("mode")? {
        let mode: String = mode
            .extract()
            .map_err(|_| GearsError::new_err(e::MODE_NOT_STRING))?;
        if mode != "async" && mode != "async_local" {
            return Err(GearsError::new_err(e::bad_run_mode(&mode)));
        }
        local = mode == "async_local";
    }
    // A script's run() spans the cluster unless it is async_local: every
    // shard gets the builder, pickled now so that a failure is the
    // script's error.
    let shipped = if in_body && !local && host().is_cluster() {
        Some(crate::persist::ship_run(
            py, reader, arg, steps, &desc, kwargs,
        )?)
    } else {
        None
    };
    let source = make_reader(reader, arg, kwargs)?;
    let plan = Plan {
        reader: reader.to_owned(),
        steps: make_steps(steps)?,
        desc,
    };
    plan.validate()
        .map_err(|e| GearsError::new_err(e.to_string()))?;
    let execution = Arc::new(
        Execution::new(engine().next_execution_id(), &plan, false).acting_as(acting::identity()),
    );
    let pending = PendingRun {
        execution,
        plan,
        reader: source,
        shipped,
    };
    if in_body {
        in_script(|ctx| ctx.run = Some(pending));
        return Ok(None);
    }
    let future = crate::aio::create_future(py)?;
    let waiting = future.clone().unbind();
    let execution = pending.execution.clone();
    crate::runner::submit(pending).map_err(|e| GearsError::new_err(e.to_string()))?;
    execution.on_finish(Box::new(move |exec| {
        Python::with_gil(|py| {
            let outcome = (|| -> PyResult<()> {
                let results = PyList::empty(py);
                for r in exec.results() {
                    results.append(reply_to_py(py, r)?)?;
                }
                let errors = PyList::new(py, exec.errors())?;
                let both = PyList::new(py, [results.into_any(), errors.into_any()])?;
                crate::aio::settle_future(py, waiting.bind(py), true, both.into_any())
            })();
            if let Err(err) = outcome {
                let _ = crate::aio::settle_future(
                    py,
                    waiting.bind(py),
                    false,
                    err.value(py).clone().into_any(),
                );
            }
        });
        engine().executions.forget(&exec.id);
    }));
    Ok(Some(future))
}

/// The run another shard shipped (see [`crate::persist::ship_run`]), as
/// this shard runs it: same execution id, acting as the same user.
pub fn remote_run(
    payload: &[u8],
    id: &str,
    identity: gears_core::Identity,
) -> Result<PendingRun, crate::errors::Error> {
    use crate::errors::Error;
    Python::with_gil(|py| {
        let (reader, arg, steps, desc, kwargs) = crate::persist::unship_run(py, payload)
            .map_err(|e| Error::Restore(crate::traceback::error_text(py, &e)))?;
        let steps = steps
            .downcast_bound::<PyList>(py)
            .map_err(|e| Error::Restore(e.to_string()))?;
        let kwargs = kwargs
            .downcast_bound::<PyDict>(py)
            .map_err(|e| Error::Restore(e.to_string()))?;
        let (source, plan) =
            acting::run_as(acting::Acting::of(identity.clone()), || -> PyResult<_> {
                let source = make_reader(&reader, arg.bind(py), kwargs)?;
                let plan = Plan {
                    reader: reader.clone(),
                    steps: make_steps(steps)?,
                    desc,
                };
                Ok((source, plan))
            })
            .map_err(|e| Error::Python(crate::traceback::error_text(py, &e)))?;
        let execution = Arc::new(Execution::new(id.to_owned(), &plan, false).acting_as(identity));
        Ok(PendingRun {
            execution,
            plan,
            reader: source,
            shipped: None,
        })
    })
}

/// `registerTimeEvent(seconds, callback, key)`: runs `callback` every
/// `seconds`, stored in `key` (deleting the key stops it); it survives
/// restarts.
#[pyfunction]
#[pyo3(name = "registerTimeEvent")]
fn register_time_event(
    py: Python<'_>,
    seconds: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let seconds: f64 = seconds
        .extract()
        .map_err(|_| GearsError::new_err(e::TIME_EVENT_PERIOD))?;
    if !(seconds > 0.0 && seconds < 1e9) {
        return Err(GearsError::new_err(e::TIME_EVENT_PERIOD));
    }
    if !callback.is_callable() {
        return Err(GearsError::new_err(e::TIME_EVENT_CALLBACK));
    }
    let key = bytes_of(key, e::TIME_EVENT_KEY)?;
    let payload = crate::persist::save_callable(py, callback)?;
    let (h, who) = (host(), acting::identity());
    let period_ms = ((seconds * 1000.0) as u64).max(1);
    py.allow_threads(move || {
        waiting_for_redis(|| h.create_time_event(&who, &key, period_ms, payload))
    })
    .map_err(PyErr::from)
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
    m.add_function(wrap_pyfunction!(shard_id, &m)?)?;
    m.add_function(wrap_pyfunction!(atomic_enter, &m)?)?;
    m.add_function(wrap_pyfunction!(atomic_exit, &m)?)?;
    m.add_function(wrap_pyfunction!(is_in_atomic_block, &m)?)?;
    m.add_function(wrap_pyfunction!(config_get, &m)?)?;
    m.add_function(wrap_pyfunction!(run, &m)?)?;
    m.add_function(wrap_pyfunction!(crate::register::register, &m)?)?;
    m.add_function(wrap_pyfunction!(call_next, &m)?)?;
    m.add_function(wrap_pyfunction!(override_reply, &m)?)?;
    m.add_function(wrap_pyfunction!(register_time_event, &m)?)?;
    crate::aio::install(&m)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("redisgears", m)?;
    Ok(())
}
