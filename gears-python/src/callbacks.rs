//! User callbacks as gears-core [`Callable`]s.

use crate::aio::{self, Wants};
use crate::convert::{host, host_to_py, record_to_py, LazyStr};
use crate::errors::{COROUTINE_ON_EXTRACTOR, COROUTINE_ON_REDUCE};
use crate::traceback::host_error;
use gears_core::pending::{Answer, Later};
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
        let func = self.func.bind(py);
        aio::without_async(|| crate::profiling::around(py, func, || func.call1(args)))
            .map_err(|e| host_error(py, &e))
    }

    /// Calls a callback whose record may wait (see [`crate::aio`]).
    fn call_later<'py, A>(
        &self,
        py: Python<'py>,
        args: A,
        later: &Later,
        wants: Wants,
    ) -> StepResult<Answer<Bound<'py, PyAny>>>
    where
        A: IntoPyObject<
            'py,
            Target = pyo3::types::PyTuple,
            Output = Bound<'py, pyo3::types::PyTuple>,
        >,
    {
        let args = args
            .into_pyobject(py)
            .map_err(|e| host_error(py, &e.into()))?;
        let func = self.func.bind(py);
        crate::profiling::around(py, func, || aio::call_step(func, args, later, wants))
    }

    fn record_wants(&self) -> Wants {
        match self.shape {
            Shape::FlatMapper => Wants::List,
            Shape::Plain => Wants::Record,
        }
    }
}

/// `Answer::Now(f(v))` or `Answer::Later`.
fn now<T, U>(a: Answer<T>, f: impl FnOnce(T) -> StepResult<U>) -> StepResult<Answer<U>> {
    match a {
        Answer::Now(v) => f(v).map(Answer::Now),
        Answer::Later => Ok(Answer::Later),
    }
}

/// `str(func)`, the argument RG.GETEXECUTION shows for a step.
fn describe(func: &Py<PyAny>) -> String {
    Python::with_gil(|py| {
        func.bind(py)
            .str()
            .map(|s| s.to_string())
            .unwrap_or_default()
    })
}

impl Callable for PyStep {
    fn describe(&self) -> String {
        describe(&self.func)
    }

    fn map(&self, r: Record, later: &Later) -> StepResult<Answer<Record>> {
        Python::with_gil(|py| {
            let a = owned_arg(py, r).map_err(|e| host_error(py, &e))?;
            let wants = self.record_wants();
            let out = self.call_later(py, (a,), later, wants)?;
            now(out, |out| {
                if wants == Wants::List {
                    if let Ok(l) = out.downcast::<PyList>() {
                        return Ok(Record::List(l.iter().map(host).collect()));
                    }
                }
                Ok(host(out))
            })
        })
    }

    fn filter(&self, r: &Record, later: &Later) -> StepResult<Answer<bool>> {
        Python::with_gil(|py| {
            let a = arg(py, r).map_err(|e| host_error(py, &e))?;
            let out = self.call_later(py, (a,), later, Wants::Truth)?;
            now(out, |out| out.is_truthy().map_err(|e| host_error(py, &e)))
        })
    }

    fn foreach(&self, r: &Record, later: &Later) -> StepResult<Answer<()>> {
        Python::with_gil(|py| {
            let a = arg(py, r).map_err(|e| host_error(py, &e))?;
            let out = self.call_later(py, (a,), later, Wants::Nothing)?;
            now(out, |_| Ok(()))
        })
    }

    fn extract_key(&self, r: &Record) -> StepResult<String> {
        Python::with_gil(|py| {
            let a = arg(py, r).map_err(|e| host_error(py, &e))?;
            let out = self.call(py, (a,))?;
            if let Some(err) = aio::refuse_coroutine(&out, COROUTINE_ON_EXTRACTOR) {
                return Err(err.into());
            }
            let s = match out.downcast::<PyString>() {
                Ok(s) => s.clone(),
                Err(_) => out.repr().map_err(|e| host_error(py, &e))?,
            };
            Ok(s.to_string_lossy().into_owned())
        })
    }

    fn accumulate(
        &self,
        acc: Option<Record>,
        r: Record,
        later: &Later,
    ) -> StepResult<Answer<Record>> {
        Python::with_gil(|py| {
            let a = opt_arg(py, acc).map_err(|e| host_error(py, &e))?;
            let x = owned_arg(py, r).map_err(|e| host_error(py, &e))?;
            let out = self.call_later(py, (a, x), later, Wants::Accumulator)?;
            now(out, |v| Ok(host(v)))
        })
    }

    fn accumulate_by_key(
        &self,
        key: &str,
        acc: Option<Record>,
        r: Record,
        later: &Later,
    ) -> StepResult<Answer<Record>> {
        Python::with_gil(|py| {
            let a = opt_arg(py, acc).map_err(|e| host_error(py, &e))?;
            let x = owned_arg(py, r).map_err(|e| host_error(py, &e))?;
            let out = self.call_later(py, (key, a, x), later, Wants::Accumulator)?;
            now(out, |v| Ok(host(v)))
        })
    }

    fn reduce(&self, key: &str, records: Vec<Record>) -> StepResult<Record> {
        Python::with_gil(|py| {
            let list = PyList::empty(py);
            for r in records {
                let x = owned_arg(py, r).map_err(|e| host_error(py, &e))?;
                list.append(x).map_err(|e| host_error(py, &e))?;
            }
            let out = self.call(py, (key, list))?;
            match aio::refuse_coroutine(&out, COROUTINE_ON_REDUCE) {
                Some(err) => Err(err.into()),
                None => Ok(host(out)),
            }
        })
    }
}

/// The `str()` map that `run()` and `register()` append (convertToStr).
///
/// A record that nothing else references and that holds only builtin
/// values is rendered when it is read (a reply, RG.GETEXECUTION), which
/// gives the same text as rendering it now: a registration keeps the
/// results of its last executions, which nobody may ever read, and
/// rendering them was the largest single cost of a sync trigger.
pub struct ToStr {
    /// The prelude's `lambda x: str(x)`, which RG.GETEXECUTION shows.
    pub func: Py<PyAny>,
}

impl Callable for ToStr {
    fn describe(&self) -> String {
        describe(&self.func)
    }

    fn map(&self, r: Record, _later: &Later) -> StepResult<Answer<Record>> {
        Python::with_gil(|py| {
            let obj = match r {
                Record::Host(h) => host_to_py(py, &h),
                other => record_to_py(py, other),
            }
            .map_err(|e| host_error(py, &e))?;
            match LazyStr::of(obj) {
                Ok(lazy) => Ok(Answer::Now(Record::Host(Box::new(lazy)))),
                Err(obj) => obj
                    .str()
                    .map(|s| Answer::Now(host(s.into_any())))
                    .map_err(|e| host_error(py, &e)),
            }
        })
    }
}

/// The first step of every Python plan: native records become Python objects.
pub struct ToPython;

impl Callable for ToPython {
    fn map(&self, r: Record, _later: &Later) -> StepResult<Answer<Record>> {
        if matches!(r, Record::Host(_)) {
            return Ok(Answer::Now(r));
        }
        Python::with_gil(|py| {
            record_to_py(py, r)
                .map(|v| Answer::Now(host(v)))
                .map_err(|e| host_error(py, &e))
        })
    }
}
