//! Running one execution: [`PyRunner`], the gears-core [`PlanRunner`] of
//! Python plans. This file runs an execution from start to end (acting as
//! its user, settling its pipeline, recording its outcome, crossing shards
//! between segments); `driver` (who interrupts what), `input` (reading),
//! `parking` (waiting without a thread) and `submit` (the worker pool) are
//! the parts.

use crate::acting::{run_as, Acting};
use crate::convert::LazyStr;
use crate::errors::{ForceStoppedError, EXECUTION_ABORTED, EXECUTION_PANICKED};
use crate::script::PendingRun;
use gears_core::execution::{Execution, Kept};
use gears_core::pipeline::Pipeline;
use gears_core::plan::Plan;
use gears_core::span::{segments, Crossing, Segment};
use gears_core::sync::LockExt;
use gears_core::{CommandCtx, PlanRunner};
use gears_core::{Reader, Record};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod driver;
mod input;
mod parking;
mod submit;

use driver::*;
use input::*;
use parking::*;
pub use submit::{submit, submit_spanning};

/// Runs plans whose callbacks are Python functions.
pub struct PyRunner;

impl PlanRunner for PyRunner {
    fn run(
        &self,
        exec: &Arc<Execution>,
        plan: &Plan,
        reader: Box<dyn Reader>,
        command: Option<Arc<CommandCtx>>,
        may_wait: bool,
    ) {
        run(exec, plan, reader, command, may_wait)
    }
}

/// An execution whose input is read: what finishing it needs, on whatever
/// thread its last waiting record is answered.
struct Run {
    exec: Arc<Execution>,
    pipe: Pipeline,
    acting: Acting,
    driver: Arc<Driver>,
    started: Instant,
    read: Duration,
    /// A run that spans the shards: the plan's later segments and what
    /// happens at their boundaries.
    span: Option<Span>,
}

/// The rest of a run that spans the shards.
struct Span {
    /// The steps from each boundary to the next one (each starting with its
    /// `collect` or `repartition` step).
    segments: Vec<Segment>,
    crossing: Box<dyn Crossing>,
}

/// Gives this thread a Python thread state for good. Without one, every
/// `with_gil` of a worker creates a thread state and deletes it again
/// (CPython's PyGILState keeps one only while it is in use), which costs
/// more than a short execution itself.
fn keep_thread_state() {
    thread_local! {
        /// Per thread by nature: Python thread states are.
        static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    KEPT.with(|kept| {
        if !kept.get() {
            // SAFETY: the interpreter is running (executions only run after
            // initialization) and this thread does not hold the GIL here
            // (runners are entered without it, `execute()` releases it).
            // Ensure creates this thread's state and takes the GIL; SaveThread
            // gives the GIL back but leaves the state's use count at one, so
            // later Ensure/Release pairs reuse it instead of deleting it.
            unsafe {
                let _ = pyo3::ffi::PyGILState_Ensure();
                pyo3::ffi::PyEval_SaveThread();
            }
            kept.set(true);
        }
    });
}

/// Runs `exec` on this thread, with `command` as the command context its
/// steps see (`override_reply`, `call_next`). Its records may wait when
/// `may_wait`; the execution then finishes on a worker once they are
/// answered.
pub(crate) fn run(
    exec: &Arc<Execution>,
    plan: &Plan,
    reader: Box<dyn Reader>,
    command: Option<Arc<CommandCtx>>,
    may_wait: bool,
) {
    run_with(exec, plan, reader, command, may_wait, None)
}

fn run_with(
    exec: &Arc<Execution>,
    plan: &Plan,
    reader: Box<dyn Reader>,
    command: Option<Arc<CommandCtx>>,
    may_wait: bool,
    span: Option<Span>,
) {
    let started = Instant::now();
    keep_thread_state();
    let acting = Acting {
        command,
        identity: exec.identity.clone(),
        may_wait,
        running: gears_core::dispatch::Running::here(),
    };
    // Whatever happens inside (an abort while entering `atomic()`, a
    // generator left suspended in one), the Redis lock goes with the
    // execution; an execution nested in another one's `atomic()` block (a
    // sync registration its write triggered) leaves that block alone.
    let outcome = run_as(acting.clone(), || {
        crate::watchdog::watched(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let (pipe, driver, read) = drive(exec, plan, reader, may_wait)?;
                let mut run = Run {
                    exec: exec.clone(),
                    pipe,
                    acting,
                    driver,
                    started,
                    read,
                    span,
                };
                let done = settle(&mut run);
                Some((run, done))
            }))
        })
    });
    match outcome {
        Ok(Some((run, true))) => complete(run, None),
        Ok(Some((run, false))) => park(run),
        // Aborted before it started: nothing to record.
        Ok(None) => end(exec, Vec::new(), Vec::new(), started, Duration::ZERO),
        Err(_) => end(
            exec,
            Vec::new(),
            vec![EXECUTION_PANICKED.into()],
            started,
            Duration::ZERO,
        ),
    }
}

/// Flushes what the pipeline can; true once the run is over.
fn settle(run: &mut Run) -> bool {
    let pipe = &mut run.pipe;
    run.driver.in_gil(|_py| pipe.finish())
}

/// Records the outcome of a finished run.
fn complete(run: Run, failure: Option<&str>) {
    let Run {
        exec,
        pipe,
        driver,
        started,
        read,
        span,
        acting,
    } = run;
    let pipe = match (span, failure) {
        // The later segments run as the execution's user, as the first one.
        (Some(span), None) => match run_as(acting, || across_shards(&exec, pipe, &driver, span)) {
            Some(pipe) => pipe,
            None => return end(&exec, Vec::new(), Vec::new(), started, read),
        },
        (span, _) => {
            Python::with_gil(|_py| drop(span.map(|s| s.segments)));
            pipe
        }
    };
    let step_ms = pipe.step_ms();
    if !step_ms.is_empty() {
        exec.set_step_ms(step_ms);
    }
    let (results, errors) = match failure {
        None => driver.in_gil(|_py| collect(pipe)),
        Some(f) => {
            Python::with_gil(|_py| drop(pipe));
            (Vec::new(), vec![f.to_string()])
        }
    };
    end(&exec, results, errors, started, read);
}

/// The boundaries of a run that spans the shards: at each one the records
/// cross shards, then the next segment runs here over what this shard got.
/// `None` when nothing more runs here.
fn across_shards(
    exec: &Execution,
    mut pipe: Pipeline,
    driver: &Driver,
    span: Span,
) -> Option<Pipeline> {
    let Span {
        segments,
        mut crossing,
    } = span;
    for Segment { index, kind, plan } in &segments {
        let mut records = std::mem::take(&mut pipe.results);
        records.extend(
            std::mem::take(&mut pipe.errors)
                .into_iter()
                .map(Record::Error),
        );
        driver.in_gil(|_py| drop(pipe));
        let mut next = Pipeline::new(plan, exec.abort_flag());
        // Waits without the GIL.
        match crossing.cross(*index, *kind, records) {
            Ok(Some(records)) => driver.in_gil(|_py| {
                next.push_batch(records);
                if !next.finish() {
                    next.errors
                        .push("records waited after an exchange between shards".into());
                }
            }),
            Ok(None) => {
                Python::with_gil(|_py| drop((next, segments)));
                return None;
            }
            Err(e) => next.errors.push(e.to_string()),
        }
        pipe = next;
    }
    Python::with_gil(|_py| drop(segments));
    Some(pipe)
}

fn end(
    exec: &Execution,
    results: Vec<Kept>,
    mut errors: Vec<String>,
    started: Instant,
    read: Duration,
) {
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

/// Converts the results of a finished pipeline; GIL held.
fn collect(mut pipe: Pipeline) -> (Vec<Kept>, Vec<String>) {
    let mut errors = std::mem::take(&mut pipe.errors);
    let mut results = Vec::with_capacity(pipe.results.len());
    for r in std::mem::take(&mut pipe.results) {
        match r {
            // convertToStr's text, made when (if ever) someone reads it.
            Record::Host(h) if h.as_any().is::<LazyStr>() => {
                results.push(Kept::Deferred(Arc::from(h)));
            }
            // A result without a reply (too deep, cyclic) becomes an error
            // record.
            r => match r.try_reply() {
                Ok(reply) => results.push(reply.into()),
                Err(e) => errors.push(e.to_string()),
            },
        }
    }
    (results, errors)
}
