//! User callbacks as gears-core [`Callable`]s.

use crate::convert::{host, host_to_py, record_to_py};
use crate::traceback::error_text;
use gears_core::plan::{Callable, StepResult};
use gears_core::Record;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

/// How a Python callback's result is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Plain call; the result is the new record.
    Plain,
    /// A list result becomes a native list record, which the following
    /// `flatmap` step expands.
    FlatMapper,
}

/// A Python function used as a step callback.
pub struct PyStep {
    pub func: Py<PyAny>,
    pub shape: Shape,
}

/// A borrowed record as a callback argument.
fn arg(py: Python<'_>, r: &Record) -> PyResult<Py<PyAny>> {
    match r {
        Record::Host(h) => Ok(host_to_py(py, h)?.unbind()),
        // Callbacks normally see converted records; convert on the fly otherwise.
        other => owned_arg(py, clone_native(other)),
    }
}

fn clone_native(r: &Record) -> Record {
    match r {
        Record::Null => Record::Null,
        Record::Str(s) => Record::Str(s.clone()),
        Record::Long(i) => Record::Long(*i),
        Record::Double(d) => Record::Double(*d),
        Record::List(l) => Record::List(l.iter().map(clone_native).collect()),
        Record::Keyed(k, v) => Record::Keyed(k.clone(), Box::new(clone_native(v))),
        Record::Dict(d) => Record::Dict(
            d.iter()
                .map(|(k, v)| (k.clone(), clone_native(v)))
                .collect(),
        ),
        Record::Error(e) => Record::Error(e.clone()),
        Record::Key(_) | Record::Host(_) => Record::Null,
    }
}

/// An owned record as a callback argument.
fn owned_arg(py: Python<'_>, r: Record) -> PyResult<Py<PyAny>> {
    Ok(record_to_py(py, r)?.unbind())
}

fn opt_arg(py: Python<'_>, r: Option<Record>) -> PyResult<Py<PyAny>> {
    match r {
        Some(r) => owned_arg(py, r),
        None => Ok(py.None()),
    }
}

impl PyStep {
    fn call<'py>(
        &self,
        py: Python<'py>,
        args: impl IntoPyObject<'py, Target = pyo3::types::PyTuple>,
    ) -> StepResult<Bound<'py, PyAny>> {
        self.func
            .bind(py)
            .call1(args)
            .map_err(|e| error_text(py, &e))
    }
}

impl Callable for PyStep {
    fn describe(&self) -> String {
        Python::with_gil(|py| {
            self.func
                .bind(py)
                .str()
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
    }

    fn map(&self, r: Record) -> StepResult<Record> {
        Python::with_gil(|py| {
            let a = owned_arg(py, r).map_err(|e| error_text(py, &e))?;
            let out = self.call(py, (a,))?;
            if self.shape == Shape::FlatMapper {
                if let Ok(l) = out.downcast::<PyList>() {
                    return Ok(Record::List(l.iter().map(host).collect()));
                }
            }
            Ok(host(out))
        })
    }

    fn filter(&self, r: &Record) -> StepResult<bool> {
        Python::with_gil(|py| {
            let a = arg(py, r).map_err(|e| error_text(py, &e))?;
            let out = self.call(py, (a,))?;
            out.is_truthy().map_err(|e| error_text(py, &e))
        })
    }

    fn foreach(&self, r: &Record) -> StepResult<()> {
        Python::with_gil(|py| {
            let a = arg(py, r).map_err(|e| error_text(py, &e))?;
            self.call(py, (a,)).map(|_| ())
        })
    }

    fn extract_key(&self, r: &Record) -> StepResult<String> {
        Python::with_gil(|py| {
            let a = arg(py, r).map_err(|e| error_text(py, &e))?;
            let out = self.call(py, (a,))?;
            let s = match out.downcast::<PyString>() {
                Ok(s) => s.clone(),
                Err(_) => out.repr().map_err(|e| error_text(py, &e))?,
            };
            Ok(s.to_string_lossy().into_owned())
        })
    }

    fn accumulate(&self, acc: Option<Record>, r: Record) -> StepResult<Record> {
        Python::with_gil(|py| {
            let a = opt_arg(py, acc).map_err(|e| error_text(py, &e))?;
            let x = owned_arg(py, r).map_err(|e| error_text(py, &e))?;
            self.call(py, (a, x)).map(host)
        })
    }

    fn accumulate_by_key(&self, key: &str, acc: Option<Record>, r: Record) -> StepResult<Record> {
        Python::with_gil(|py| {
            let a = opt_arg(py, acc).map_err(|e| error_text(py, &e))?;
            let x = owned_arg(py, r).map_err(|e| error_text(py, &e))?;
            self.call(py, (key, a, x)).map(host)
        })
    }

    fn reduce(&self, key: &str, records: Vec<Record>) -> StepResult<Record> {
        Python::with_gil(|py| {
            let list = PyList::empty(py);
            for r in records {
                let x = owned_arg(py, r).map_err(|e| error_text(py, &e))?;
                list.append(x).map_err(|e| error_text(py, &e))?;
            }
            self.call(py, (key, list)).map(host)
        })
    }
}

/// The first step of every Python plan: native records become Python objects.
pub struct ToPython;

impl Callable for ToPython {
    fn map(&self, r: Record) -> StepResult<Record> {
        if matches!(r, Record::Host(_)) {
            return Ok(r);
        }
        Python::with_gil(|py| {
            record_to_py(py, r)
                .map(host)
                .map_err(|e| error_text(py, &e))
        })
    }
}
