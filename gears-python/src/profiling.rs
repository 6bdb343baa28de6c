//! ProfileExecutions: every Python callback runs under its session's
//! `cProfile` profiler (the prelude keeps one per session); RG.PYPROFILE
//! reads and resets them. Off, a callback pays one atomic load.

use crate::errors::Error;
use crate::runtime::{engine, runtime};
use crate::traceback::error_text;
use pyo3::prelude::*;
use std::sync::atomic::Ordering;

/// Runs `call` (which calls `func`) under the profiler of `func`'s session
/// when profiling is on.
pub(crate) fn around<'py, R>(
    py: Python<'py>,
    func: &Bound<'py, PyAny>,
    call: impl FnOnce() -> R,
) -> R {
    if !engine().profile.load(Ordering::Relaxed) {
        return call();
    }
    let profiler = runtime()
        .prelude
        .bind(py)
        .get_item("_profiler_of")
        .ok()
        .flatten()
        .and_then(|f| f.call1((func,)).ok())
        .filter(|p| !p.is_none());
    let Some(profiler) = profiler else {
        return call();
    };
    let _ = profiler.call_method0("enable");
    let out = call();
    let _ = profiler.call_method0("disable");
    out
}

fn prelude_call(session: &str, name: &str) -> Result<Py<PyAny>, Error> {
    Python::with_gil(|py| {
        runtime()
            .prelude
            .bind(py)
            .get_item(name)
            .map_err(|e| Error::Python(error_text(py, &e)))?
            .ok_or_else(|| Error::Start(format!("{name} is missing from the prelude")))?
            .call1((session,))
            .map(Bound::unbind)
            .map_err(|e| Error::Python(error_text(py, &e)))
    })
}

/// RG.PYPROFILE STATS: the session's profile as pstats prints it.
pub fn stats(session: &str) -> Result<String, Error> {
    let text = prelude_call(session, "_profile_stats")?;
    Python::with_gil(|py| {
        text.bind(py)
            .extract::<String>()
            .map_err(|e| Error::Python(error_text(py, &e)))
    })
}

/// RG.PYPROFILE RESET: the session starts a new profile.
pub fn reset(session: &str) -> Result<(), Error> {
    prelude_call(session, "_profile_reset").map(drop)
}
