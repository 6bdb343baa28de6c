//! The runtime's one piece of process-wide state: the host, the engine and
//! the prelude globals, set once at module load.
//!
//! It is a static because the functions Python calls back (`execute()`,
//! `log()`...) receive no Rust context; everything else receives what it
//! needs as arguments.

use crate::errors::GearsError;
use crate::host::RedisHost;
use gears_core::Engine;
use once_cell::sync::OnceCell;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::Arc;

pub(crate) struct Runtime {
    pub(crate) host: Arc<dyn RedisHost>,
    pub(crate) engine: Arc<Engine>,
    /// The globals every script body starts from (a copy of them).
    pub(crate) prelude: Py<PyDict>,
    /// The event loop of coroutines (see `aio`).
    pub(crate) aio: EventLoop,
    /// Compiled script bodies by their text (see `interpreter`).
    pub(crate) scripts: std::sync::Mutex<std::collections::HashMap<String, Py<PyAny>>>,
}

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

pub(crate) fn install(rt: Runtime) -> Result<(), String> {
    RUNTIME
        .set(rt)
        .map_err(|_| "the Python runtime is already initialized".to_string())
}

pub(crate) fn runtime() -> &'static Runtime {
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

/// `PythonAttemptTraceback`: error texts carry the traceback.
pub(crate) fn attempt_traceback() -> bool {
    match RUNTIME
        .get()
        .and_then(|r| r.host.config_get("PythonAttemptTraceback"))
    {
        Some(gears_config::Value::Int(v)) => v != 0,
        _ => true,
    }
}

/// The event loop and the prelude helpers that work with it.
pub(crate) struct EventLoop {
    pub(crate) event_loop: Py<PyAny>,
    pub(crate) call_soon_threadsafe: Py<PyAny>,
    pub(crate) set_running: Py<PyAny>,
    pub(crate) get_running: Py<PyAny>,
    pub(crate) continue_on_loop: Py<PyAny>,
    pub(crate) run_coroutine: Py<PyAny>,
    pub(crate) settle_future: Py<PyAny>,
    /// The `contextvars.ContextVar` holding the session of the coroutine
    /// (or task, or callback) running on the loop.
    pub(crate) session_var: Py<PyAny>,
}

impl EventLoop {
    /// Starts the loop thread (the prelude's `_start_loop`).
    pub(crate) fn start(py: Python<'_>, prelude: &Bound<'_, PyDict>) -> PyResult<EventLoop> {
        let get = |name: &str| -> PyResult<Py<PyAny>> {
            prelude
                .get_item(name)?
                .map(Bound::unbind)
                .ok_or_else(|| GearsError::new_err(format!("the prelude lacks {name}")))
        };
        let event_loop = get("_start_loop")?.bind(py).call0()?;
        let events = py.import("asyncio")?.getattr("events")?;
        Ok(EventLoop {
            call_soon_threadsafe: event_loop.getattr("call_soon_threadsafe")?.unbind(),
            event_loop: event_loop.unbind(),
            set_running: events.getattr("_set_running_loop")?.unbind(),
            get_running: events.getattr("_get_running_loop")?.unbind(),
            continue_on_loop: get("_continue_on_loop")?,
            run_coroutine: get("_run_coroutine")?,
            settle_future: get("_settle_future")?,
            session_var: get("_SESSION")?,
        })
    }

    /// Runs `f(args...)` on the loop thread, soon.
    pub(crate) fn soon(
        &self,
        py: Python<'_>,
        f: &Py<PyAny>,
        args: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut all = vec![f.bind(py).clone()];
        all.extend(args);
        self.call_soon_threadsafe
            .bind(py)
            .call1(PyTuple::new(py, all)?)?;
        Ok(())
    }
}
