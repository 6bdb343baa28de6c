//! Checks of the Python arguments that `run()` and `register()` receive,
//! each failing with the GearsError text 1.2 uses for that argument.

use crate::errors::GearsError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyString};

pub(crate) fn err<T>(msg: impl Into<String>) -> PyResult<T> {
    Err(GearsError::new_err(msg.into()))
}

/// A `str` argument.
pub(crate) fn text_of(v: &Bound<'_, PyAny>, msg: &str) -> PyResult<String> {
    match v.downcast::<PyString>() {
        Ok(s) => Ok(s.to_str()?.to_owned()),
        Err(_) => err(msg),
    }
}

/// A `str` or `bytes` argument, as bytes.
pub(crate) fn bytes_of(v: &Bound<'_, PyAny>, msg: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.downcast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    text_of(v, msg).map(String::into_bytes)
}

/// A `bool` argument; `default` when it was not given.
pub(crate) fn flag(v: Option<Bound<'_, PyAny>>, default: bool, msg: &str) -> PyResult<bool> {
    match v {
        None => Ok(default),
        Some(v) if v.is_instance_of::<PyBool>() => v.extract(),
        Some(_) => err(msg),
    }
}
