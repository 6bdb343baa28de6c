//! Coroutines and futures: records that wait for something else.
//!
//! One asyncio loop runs on its own thread, started with the module. A step
//! that returns a coroutine drives it right where the step runs, until it
//! first waits: a coroutine that awaits nothing ends there, without a trip
//! to the loop (as Python 3.12's eager tasks do). Only a coroutine that
//! waits is handed to the loop, which resumes it acting as the step
//! (identity, command context) restored around each resumption, so
//! `execute`, `call_next` and `override_reply` act for the right client.
//! While it waits, the coroutine holds no worker thread, no GIL and no Redis
//! lock. `gearsFuture()` lets a step answer later from any thread.
//!
//! The loop accepts calls from other threads than its own (see
//! `_GearsLoop` in the prelude): a coroutine's first steps run on its step's
//! thread with the loop set as the running loop, and `asyncio.sleep` there
//! schedules its timer on the loop thread.
//!
//! This file is the machinery (driving coroutines, futures, answering
//! records); `functions` is what Python calls (`createFuture`,
//! `setFutureResults`, `runCoroutine`, the gate).

use crate::acting::{self, Acting};
use crate::convert::host;
use crate::errors::{self as e, GearsError};
use crate::runtime::{runtime, EventLoop};
use crate::traceback::host_error;
use gears_core::pending::{Answer, Later, Resolver};
use gears_core::plan::StepResult;
use gears_core::scope::{on_drop, with_local};
use gears_core::sync::LockExt;
use gears_core::Record;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::cell::RefCell;
use std::os::raw::c_int;
use std::sync::Mutex;

mod functions;

pub(crate) use functions::{create_future, install, settle_future};

extern "C" {
    // Declared here with its return value (pyo3-ffi 0.23 leaves it out).
    #[link_name = "PyIter_Send"]
    fn iter_send(
        iter: *mut pyo3::ffi::PyObject,
        arg: *mut pyo3::ffi::PyObject,
        result: *mut *mut pyo3::ffi::PyObject,
    ) -> c_int;
}

fn the_loop() -> &'static EventLoop {
    &runtime().aio
}

/// What a coroutine did when it was sent a value.
enum Stepped<'py> {
    Yielded(Bound<'py, PyAny>),
    Returned(Bound<'py, PyAny>),
}

fn send<'py>(coro: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> PyResult<Stepped<'py>> {
    let py = coro.py();
    let mut out = std::ptr::null_mut();
    // SAFETY: we hold the GIL and both objects are alive; PyIter_Send stores
    // a new reference in `out` when it returns PYGEN_RETURN (0) or
    // PYGEN_NEXT (1), and sets a Python exception when it returns -1.
    let status = unsafe { iter_send(coro.as_ptr(), value.as_ptr(), &mut out) };
    match status {
        // SAFETY: `out` is the new reference PyIter_Send handed us.
        0 => Ok(Stepped::Returned(unsafe { Bound::from_owned_ptr(py, out) })),
        // SAFETY: as above.
        1 => Ok(Stepped::Yielded(unsafe { Bound::from_owned_ptr(py, out) })),
        _ => Err(PyErr::fetch(py)),
    }
}

fn throw<'py>(coro: &Bound<'py, PyAny>, exc: &Bound<'py, PyAny>) -> PyResult<Stepped<'py>> {
    let py = coro.py();
    match coro.call_method1("throw", (exc,)) {
        Ok(y) => Ok(Stepped::Yielded(y)),
        Err(err) if err.is_instance_of::<PyStopIteration>(py) => {
            Ok(Stepped::Returned(err.value(py).getattr("value")?))
        }
        Err(err) => Err(err),
    }
}

/// A coroutine that waits inside `atomic()` would keep the Redis lock while
/// it waits: the wait raises 1.2's error instead. `atomic_before` says
/// whether this thread was in a block before the coroutine ran (an
/// enclosing execution's block is not the coroutine's to leave).
fn no_wait_in_atomic<'py>(
    coro: &Bound<'py, PyAny>,
    stepped: Stepped<'py>,
    atomic_before: bool,
) -> PyResult<Stepped<'py>> {
    if !matches!(stepped, Stepped::Yielded(_)) || !acting::in_atomic() {
        return Ok(stepped);
    }
    let py = coro.py();
    let err = GearsError::new_err(e::AWAIT_IN_ATOMIC);
    let again = throw(coro, err.value(py).as_any())?;
    if matches!(again, Stepped::Yielded(_)) && acting::in_atomic() {
        // It swallowed the error and waits again, still in the block.
        let _ = coro.call_method0("close");
        if !atomic_before {
            acting::leave_atomic();
        }
        return Err(GearsError::new_err(e::AWAIT_IN_ATOMIC));
    }
    Ok(again)
}

thread_local! {
    /// This thread's context as a Python object, for the generation of the
    /// context it stands for (see `acting::generation`). Per thread by
    /// nature: the context is.
    static HERE: RefCell<Option<(u64, Py<StepActing>)>> = const { RefCell::new(None) };
}

/// This thread's context as a [`StepActing`] (made once per context).
fn acting_here(py: Python<'_>) -> PyResult<Py<StepActing>> {
    let generation = acting::generation();
    if let Some(s) = HERE.with(|h| {
        h.borrow()
            .as_ref()
            .filter(|(g, _)| *g == generation)
            .map(|(_, s)| s.clone_ref(py))
    }) {
        return Ok(s);
    }
    let s = Py::new(py, StepActing(acting::current()))?;
    HERE.with(|h| *h.borrow_mut() = Some((generation, s.clone_ref(py))));
    Ok(s)
}

/// Runs a fresh coroutine on this thread until it first waits, with the
/// gears loop as the running loop. The tasks and callbacks it schedules
/// act as this thread: from a step's thread, the loop takes who it acts as
/// along when it schedules them (`_GearsLoop._foreign_context`);
/// inside code the gate already admitted (the loop's own callbacks, another
/// coroutine's first steps), it is set in the context here.
fn start_coroutine<'py>(coro: &Bound<'py, PyAny>) -> PyResult<Stepped<'py>> {
    let py = coro.py();
    let lp = the_loop();
    let nested = lp.gate.held_here();
    lp.gate.enter_from_python(py);
    let _leave = on_drop(|| lp.gate.leave());
    let token = if nested {
        Some(lp.acting_set.bind(py).call1((acting_here(py)?,))?)
    } else {
        None
    };
    let previous = lp.get_running.bind(py).call0()?;
    lp.set_running.bind(py).call1((lp.event_loop.bind(py),))?;
    let atomic_before = acting::in_atomic();
    let out = send(coro, &py.None().into_bound(py))
        .and_then(|s| no_wait_in_atomic(coro, s, atomic_before));
    lp.set_running.bind(py).call1((previous,))?;
    if let Some(token) = token {
        lp.acting_reset.bind(py).call1((token,))?;
    }
    out
}

fn is_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a type check of a live object, GIL held.
    unsafe { pyo3::ffi::PyCoro_CheckExact(obj.as_ptr()) != 0 }
}

/// Who a coroutine acts as when it resumes, on the loop thread.
#[pyclass(frozen)]
pub(crate) struct StepActing(Acting);

impl StepActing {
    fn resume<'py>(
        &self,
        coro: &Bound<'py, PyAny>,
        input: Result<Bound<'py, PyAny>, Bound<'py, PyAny>>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let atomic_before = acting::in_atomic();
        acting::run_as(self.0.clone(), || {
            let stepped = match &input {
                Ok(value) => send(coro, value),
                Err(exc) => throw(coro, exc),
            }
            .and_then(|s| no_wait_in_atomic(coro, s, atomic_before));
            Ok(match stepped? {
                Stepped::Yielded(y) => (false, y),
                Stepped::Returned(v) => (true, v),
            })
        })
    }
}

#[pymethods]
impl StepActing {
    /// Runs `callback(*args)` acting as this (a task step or a callback the
    /// loop runs for a coroutine that acts so).
    fn run<'py>(
        &self,
        callback: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        acting::run_as(self.0.clone(), || callback.call1(args))
    }

    fn send<'py>(
        &self,
        coro: &Bound<'py, PyAny>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        self.resume(coro, Ok(value))
    }

    fn throw<'py>(
        &self,
        coro: &Bound<'py, PyAny>,
        exc: Bound<'py, PyAny>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        self.resume(coro, Err(exc))
    }
}

/// What a step makes of the value its waiting record is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wants {
    /// The new record (map).
    Record,
    /// The new record, a list expanded by the following flatmap.
    List,
    /// Its truth (filter).
    Truth,
    /// Nothing: the record goes on (foreach).
    Nothing,
    /// The new accumulator (accumulate, aggregate, aggregateby).
    Accumulator,
}

fn answer_record(value: &Bound<'_, PyAny>, wants: Wants) -> PyResult<Record> {
    Ok(match wants {
        Wants::Record | Wants::Accumulator => host(value.clone()),
        Wants::List => match value.downcast::<PyList>() {
            Ok(l) => Record::List(l.iter().map(host).collect()),
            Err(_) => host(value.clone()),
        },
        Wants::Truth => Record::Long(i64::from(value.is_truthy()?)),
        Wants::Nothing => Record::Null,
    })
}

/// Answers one waiting record from Python (a coroutine's end, a
/// gearsFuture's continue).
#[pyclass(frozen)]
pub(crate) struct Answerer {
    resolver: Mutex<Option<Resolver>>,
    wants: Wants,
}

impl Answerer {
    fn new(resolver: Resolver, wants: Wants) -> Answerer {
        Answerer {
            resolver: Mutex::new(Some(resolver)),
            wants,
        }
    }

    fn resolve(&self, outcome: StepResult<Record>) {
        let taken = self.resolver.lock_unpoisoned().take();
        if let Some(r) = taken {
            r.resolve(outcome);
        }
    }

    fn fail_with(&self, error: gears_core::Error) {
        self.resolve(Err(error));
    }
}

#[pymethods]
impl Answerer {
    fn ok(&self, value: &Bound<'_, PyAny>) {
        let py = value.py();
        self.resolve(answer_record(value, self.wants).map_err(|e| host_error(py, &e)));
    }

    fn fail(&self, exc: &Bound<'_, PyAny>) {
        let py = exc.py();
        self.fail_with(host_error(py, &PyErr::from_value(exc.clone())));
    }

    /// Cancels `task` (on the loop thread) if the execution is aborted.
    fn cancel_with(&self, task: Py<PyAny>) {
        let g = self.resolver.lock_unpoisoned();
        if let Some(r) = g.as_ref() {
            r.on_abort(Box::new(move || {
                Python::with_gil(|py| {
                    if let Ok(cancel) = task.bind(py).getattr("cancel") {
                        let _ = the_loop().call_soon_threadsafe.bind(py).call1((cancel,));
                    }
                })
            }));
        }
    }
}

enum FutureState {
    /// Created in a step (running on this thread) that has not returned yet.
    Created(std::thread::ThreadId),
    /// Continued from another thread (a coroutine on the loop) before its
    /// step returned it: the answer waits for the return.
    Early(Result<Py<PyAny>, gears_core::Error>),
    /// Returned by its step: the record waits for it.
    Waiting(Answerer),
    Continued,
    /// Created but not returned by its step: nothing waits for it.
    Discarded,
}

/// `gearsFuture()`: returned by a step, its record waits until
/// `continueRun(value)` or `continueFailed(error)`, from any thread.
#[pyclass(name = "gearsFuture", frozen)]
pub(crate) struct GearsFuture {
    state: Mutex<FutureState>,
}

impl GearsFuture {
    fn set(&self, state: FutureState) {
        *self.state.lock_unpoisoned() = state;
    }

    /// Continues with `outcome`: answers the waiting record, or keeps the
    /// answer until the step returns when another thread was faster than
    /// the step. Continuing in the step itself, before returning, is 1.2's
    /// error; so is continuing twice.
    fn continue_with(&self, outcome: Result<Py<PyAny>, gears_core::Error>) -> PyResult<()> {
        let mut g = self.state.lock_unpoisoned();
        match std::mem::replace(&mut *g, FutureState::Continued) {
            FutureState::Waiting(a) => {
                drop(g);
                Python::with_gil(|py| match outcome {
                    Ok(v) => a.ok(v.bind(py)),
                    Err(text) => a.fail_with(text),
                });
                Ok(())
            }
            FutureState::Created(t) if t == std::thread::current().id() => {
                *g = FutureState::Created(t);
                Err(GearsError::new_err(e::FUTURE_NOT_RETURNED_YET))
            }
            FutureState::Created(_) => {
                *g = FutureState::Early(outcome);
                Ok(())
            }
            FutureState::Early(first) => {
                *g = FutureState::Early(first);
                Err(GearsError::new_err(e::FUTURE_CONTINUED_TWICE))
            }
            FutureState::Continued => Err(GearsError::new_err(e::FUTURE_CONTINUED_TWICE)),
            FutureState::Discarded => {
                *g = FutureState::Discarded;
                Ok(())
            }
        }
    }

    /// Its step returned it: the record waits for the answer, or gets the
    /// one that came early.
    fn returned(&self, py: Python<'_>, answerer: Answerer) {
        let mut g = self.state.lock_unpoisoned();
        match std::mem::replace(&mut *g, FutureState::Continued) {
            FutureState::Early(outcome) => {
                drop(g);
                match outcome {
                    Ok(v) => answerer.ok(v.bind(py)),
                    Err(text) => answerer.fail_with(text),
                }
            }
            _ => *g = FutureState::Waiting(answerer),
        }
    }
}

#[pymethods]
impl GearsFuture {
    #[pyo3(name = "continueRun")]
    fn continue_run(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.continue_with(Ok(value.clone().unbind()))
    }

    #[pyo3(name = "continueFailed")]
    fn continue_failed(&self, error: &Bound<'_, PyAny>) -> PyResult<()> {
        self.continue_with(Err(error.str()?.to_string().into()))
    }
}

/// The step call in progress on this thread: whether its step can answer
/// later at all, whether its record may wait, and the gearsFuture it
/// created.
struct Frame {
    supports_async: bool,
    may_wait: bool,
    created: Option<Py<GearsFuture>>,
}

thread_local! {
    /// Per thread by nature: `gearsFuture()` is called by the step running
    /// on this thread.
    static FRAME: RefCell<Option<Frame>> = const { RefCell::new(None) };
}

/// Calls `f` as a step that may (or may not) wait; returns what it returned
/// and the future it created.
fn in_frame<R>(may_wait: bool, f: impl FnOnce() -> R) -> (R, Option<Py<GearsFuture>>) {
    let frame = Frame {
        supports_async: true,
        may_wait,
        created: None,
    };
    with_local(&FRAME, Some(frame), || {
        let out = f();
        let mine = FRAME.with(|fr| fr.borrow_mut().take());
        (out, mine.and_then(|m| m.created))
    })
}

/// Calls `f` as a step that can not answer later (extractors, reducers,
/// repartition): a `gearsFuture()` in it is 1.2's "Step does not support
/// async".
pub(crate) fn without_async<R>(f: impl FnOnce() -> R) -> R {
    let frame = Frame {
        supports_async: false,
        may_wait: false,
        created: None,
    };
    with_local(&FRAME, Some(frame), f)
}

/// Calls a step callback that may answer later: it may return a coroutine
/// or the gearsFuture it created. Values it returns now are handed back
/// as they are; what comes later is made into a record as `wants` says.
pub(crate) fn call_step<'py>(
    func: &Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    later: &Later,
    wants: Wants,
) -> StepResult<Answer<Bound<'py, PyAny>>> {
    let py = func.py();
    let (out, created) = in_frame(later.allowed(), || func.call1(args));
    let discard = |f: &Option<Py<GearsFuture>>| {
        if let Some(f) = f {
            f.get().set(FutureState::Discarded);
        }
    };
    let out = match out {
        Ok(out) => out,
        Err(err) => {
            discard(&created);
            return Err(host_error(py, &err));
        }
    };
    if let Some(fut) = &created {
        if out.is(fut.bind(py)) {
            let resolver = later.defer().ok_or(e::ASYNC_NOT_ALLOWED)?;
            fut.get().returned(py, Answerer::new(resolver, wants));
            return Ok(Answer::Later);
        }
        discard(&created);
        if wants == Wants::Accumulator {
            return Ok(Answer::Now(py.None().into_bound(py)));
        }
    }
    if !is_coroutine(&out) {
        return Ok(Answer::Now(out));
    }
    if !later.allowed() {
        let _ = out.call_method0("close");
        return Err(e::ASYNC_NOT_ALLOWED.into());
    }
    match start_coroutine(&out) {
        Ok(Stepped::Returned(v)) => Ok(Answer::Now(v)),
        Err(err) => Err(host_error(py, &err)),
        Ok(Stepped::Yielded(first)) => {
            let resolver = later.defer().ok_or(e::ASYNC_NOT_ALLOWED)?;
            let handed = (|| -> PyResult<()> {
                let answerer = Bound::new(py, Answerer::new(resolver, wants))?;
                let acting = acting_here(py)?.into_bound(py);
                let lp = the_loop();
                lp.soon(
                    py,
                    &lp.continue_on_loop,
                    vec![acting.into_any(), out, first, answerer.into_any()],
                )
            })();
            // On failure the resolver went with the answerer: the record
            // gets an error instead of waiting forever.
            handed.map_err(|err| host_error(py, &err))?;
            Ok(Answer::Later)
        }
    }
}

/// The error of a coroutine returned where none may be (an extractor, a
/// batch reducer); `None` for any other value.
pub(crate) fn refuse_coroutine(out: &Bound<'_, PyAny>, error: &str) -> Option<String> {
    if !is_coroutine(out) {
        return None;
    }
    let _ = out.call_method0("close");
    Some(error.to_string())
}
