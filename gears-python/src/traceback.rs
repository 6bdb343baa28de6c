//! The text of a Python error as it appears in replies and error records.

use crate::errors::GearsFlatError;
use pyo3::prelude::*;

/// Formats `err` the way 1.2 does: the repr of the list of traceback lines
/// when `PythonAttemptTraceback` is on, a one-line summary otherwise, and the
/// bare message for `flat_error`.
/// A Python exception as a gears-core error: its text as 1.2 shows it
/// ([`error_text`]), carried as the host's own words.
pub fn host_error(py: Python<'_>, err: &PyErr) -> gears_core::Error {
    gears_core::Error::Host(error_text(py, err))
}

pub fn error_text(py: Python<'_>, err: &PyErr) -> String {
    if err.is_instance_of::<GearsFlatError>(py) {
        let value = err.value(py);
        return match value.getattr("args").and_then(|a| a.get_item(0)) {
            Ok(m) => m.str().map(|s| s.to_string()).unwrap_or_default(),
            Err(_) => value.to_string(),
        };
    }
    if crate::runtime::attempt_traceback() {
        let formatted = py.import("traceback").and_then(|tb| {
            tb.getattr("format_exception")?
                .call1((err.get_type(py), err.value(py), err.traceback(py)))?
                .str()
                .map(|s| s.to_string())
        });
        if let Ok(text) = formatted {
            return text;
        }
    }
    let ty = err
        .get_type(py)
        .repr()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "<unknown>".into());
    let value = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    format!("Error type: {ty}, Value: {value}")
}
