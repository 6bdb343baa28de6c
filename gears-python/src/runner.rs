//! Running one execution: [`PyRunner`], the gears-core [`PlanRunner`] of
//! Python plans.

use crate::command::with_context;
use crate::errors::{ForceStoppedError, EXECUTION_ABORTED, EXECUTION_PANICKED};
use gears_core::execution::Execution;
use gears_core::pipeline::Pipeline;
use gears_core::plan::Plan;
use gears_core::{CommandCtx, PlanRunner};
use gears_core::{Reader, Record, Reply};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

extern "C" {
    fn PyThread_get_thread_ident() -> std::os::raw::c_ulong;
}

/// Runs `f` holding the GIL, with `in_python` raised so that an abort may
/// interrupt it; a pending interruption that did not fire is cleared before
/// the GIL is released, so it never leaks into unrelated code.
fn in_gil<R>(
    in_python: &AtomicBool,
    ident: std::os::raw::c_ulong,
    f: impl FnOnce(Python<'_>) -> R,
) -> R {
    Python::with_gil(|py| {
        in_python.store(true, Ordering::SeqCst);
        let r = f(py);
        in_python.store(false, Ordering::SeqCst);
        // SAFETY: we hold the GIL; a NULL exception clears any pending
        // asynchronous exception of that thread (our own).
        unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, std::ptr::null_mut()) };
        r
    })
}

/// Runs plans whose callbacks are Python functions.
pub struct PyRunner;

impl PlanRunner for PyRunner {
    fn run(
        &self,
        exec: &Arc<Execution>,
        plan: &Plan,
        reader: Box<dyn Reader>,
        command: Option<Arc<CommandCtx>>,
    ) {
        run(exec, plan, reader, command)
    }
}

/// Runs `exec` to its end on this thread, with `command` as the command
/// context its steps see (`override_reply`, `call_next`).
pub(crate) fn run(
    exec: &Arc<Execution>,
    plan: &Plan,
    reader: Box<dyn Reader>,
    command: Option<Arc<CommandCtx>>,
) {
    let started = Instant::now();
    // An execution nested in another one's `atomic()` block (a sync
    // registration its write triggered) leaves that block alone.
    let nested_in_atomic = crate::command::in_atomic();
    let outcome = with_context(command, exec.identity.clone(), || {
        crate::watchdog::watched(|| catch_unwind(AssertUnwindSafe(|| drive(exec, plan, reader))))
    });
    // Whatever happened inside (an abort while entering `atomic()`, a
    // generator left suspended in one), the Redis lock goes with the
    // execution.
    if !nested_in_atomic {
        crate::command::leave_atomic();
    }
    let (results, mut errors, read) = match outcome {
        Ok(Some(r)) => r,
        // Aborted before it started: nothing to record.
        Ok(None) => (Vec::new(), Vec::new(), Duration::ZERO),
        Err(_) => (Vec::new(), vec![EXECUTION_PANICKED.into()], Duration::ZERO),
    };
    if exec.abort_flag().load(Ordering::SeqCst) && errors.is_empty() {
        errors.push(EXECUTION_ABORTED.into());
    }
    exec.finish(
        results,
        errors,
        started.elapsed().as_millis() as u64,
        read.as_millis() as u64,
    );
    crate::runtime::engine().executions.evict();
}

type Outcome = (Vec<Reply>, Vec<String>, Duration);
type Batch = Result<Option<Vec<Record>>, String>;

fn drive(exec: &Arc<Execution>, plan: &Plan, mut reader: Box<dyn Reader>) -> Option<Outcome> {
    if !exec.start() {
        Python::with_gil(|_py| drop(reader));
        return None;
    }
    // SAFETY: a plain query of the calling thread's id.
    let ident = unsafe { PyThread_get_thread_ident() };
    let in_python = Arc::new(AtomicBool::new(false));
    let flag = in_python.clone();
    exec.set_interrupter(Some(Box::new(move || {
        Python::with_gil(|py| {
            if flag.load(Ordering::SeqCst) {
                let exc = py.get_type::<ForceStoppedError>();
                // SAFETY: we hold the GIL and `ident` is a live Python thread
                // (it is inside `in_gil`, as `flag` says under this GIL).
                unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, exc.as_ptr()) };
            }
        })
    })));
    let mut pipe = Pipeline::new(plan, exec.abort_flag());
    if reader.in_memory() {
        // Records at hand (triggers, events): one GIL hold for the whole
        // execution, so a sync run on the main thread waits for the GIL once.
        let out = in_gil(&in_python, ident, |_py| {
            while !pipe.input_closed() {
                match reader.next_batch() {
                    Ok(Some(b)) => pipe.push_batch(b),
                    Ok(None) => break,
                    Err(e) => {
                        pipe.errors.push(e);
                        break;
                    }
                }
            }
            finish(exec, pipe, reader)
        });
        return Some((out.0, out.1, Duration::ZERO));
    }
    let mut consume = |next: &mut dyn FnMut() -> Batch| {
        while !pipe.input_closed() {
            match next() {
                Ok(Some(b)) => in_gil(&in_python, ident, |_| pipe.push_batch(b)),
                Ok(None) => break,
                Err(e) => {
                    pipe.errors.push(e);
                    break;
                }
            }
        }
    };
    let mut read = Duration::ZERO;
    if reader.prefetch() {
        // Read ahead on a helper thread (Redis lock) while this one runs the
        // steps (GIL). The bounded channel keeps at most two batches waiting;
        // dropping the receiver stops the helper.
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(2);
        let reader_ref = &mut reader;
        std::thread::scope(|s| {
            let helper = s.spawn(move || {
                let mut spent = Duration::ZERO;
                loop {
                    let t = Instant::now();
                    let batch = reader_ref.next_batch();
                    spent += t.elapsed();
                    let last = !matches!(batch, Ok(Some(_)));
                    if tx.send(batch).is_err() || last {
                        return spent;
                    }
                }
            });
            consume(&mut || rx.recv().unwrap_or(Ok(None)));
            drop(rx);
            read = helper.join().unwrap_or_default();
        });
    } else {
        consume(&mut || {
            let t = Instant::now();
            let batch = reader.next_batch();
            read += t.elapsed();
            batch
        });
    }
    let (results, errors) = in_gil(&in_python, ident, |_py| finish(exec, pipe, reader));
    Some((results, errors, read))
}

/// Flushes the stateful steps and converts the results; GIL held.
fn finish(
    exec: &Execution,
    mut pipe: Pipeline,
    reader: Box<dyn Reader>,
) -> (Vec<Reply>, Vec<String>) {
    drop(reader);
    if !exec.abort_flag().load(Ordering::SeqCst) {
        pipe.finish();
    }
    let mut errors = std::mem::take(&mut pipe.errors);
    let mut results = Vec::with_capacity(pipe.results.len());
    // A result without a reply (too deep, cyclic) becomes an error record.
    for r in std::mem::take(&mut pipe.results) {
        match r.try_reply() {
            Ok(reply) => results.push(reply),
            Err(e) => errors.push(e),
        }
    }
    (results, errors)
}
