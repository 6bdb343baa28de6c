//! The runtime's one piece of process-wide state: the host, the engine and
//! the prelude globals, set once at module load.
//!
//! It is a static because the functions Python calls back (`execute()`,
//! `log()`...) receive no Rust context; everything else receives what it
//! needs as arguments.

use crate::host::RedisHost;
use gears_core::Engine;
use once_cell::sync::OnceCell;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;

pub(crate) struct Runtime {
    pub(crate) host: Arc<dyn RedisHost>,
    pub(crate) engine: Arc<Engine>,
    /// The globals every script body starts from (a copy of them).
    pub(crate) prelude: Py<PyDict>,
    /// The event loop of coroutines.
    pub(crate) aio: crate::aio::Loop,
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
