//! PythonReader: records from a user generator.

use crate::convert::host;
use crate::traceback::host_error;
use gears_core::{Reader, Record};
use pyo3::prelude::*;

/// How many items one batch pulls from the generator (the GIL is released
/// between batches).
const BATCH: usize = 256;

pub struct PyGenReader {
    func: Option<Py<PyAny>>,
    iter: Option<Py<PyAny>>,
    /// An error raised after some items of a batch: reported on the next call
    /// so that the items before it are processed first.
    failed: Option<gears_core::Error>,
}

impl PyGenReader {
    pub fn new(func: Py<PyAny>) -> PyGenReader {
        PyGenReader {
            func: Some(func),
            iter: None,
            failed: None,
        }
    }
}

impl Reader for PyGenReader {
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, gears_core::Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        Python::with_gil(|py| {
            if let Some(f) = self.func.take() {
                let produced = f.bind(py).call0().map_err(|e| host_error(py, &e))?;
                match produced.try_iter() {
                    Ok(it) => self.iter = Some(it.into_any().unbind()),
                    // A plain value is a single record.
                    Err(_) => return Ok(Some(vec![host(produced)])),
                }
            }
            let Some(it) = &self.iter else {
                return Ok(None);
            };
            let it = it.bind(py).clone();
            let mut out = Vec::new();
            while out.len() < BATCH {
                match it.call_method0("__next__") {
                    Ok(v) => out.push(host(v)),
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                        self.iter = None;
                        break;
                    }
                    Err(e) => {
                        self.iter = None;
                        let text = host_error(py, &e);
                        if out.is_empty() {
                            return Err(text);
                        }
                        self.failed = Some(text);
                        break;
                    }
                }
            }
            Ok(if out.is_empty() { None } else { Some(out) })
        })
    }
}
