//! Running one execution: [`PyRunner`], the gears-core [`PlanRunner`] of
//! Python plans.

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

/// The thread that drives an execution now and whether it is in Python:
/// what an abort needs to interrupt it. A waiting execution changes threads.
#[derive(Default)]
struct Driver {
    ident: AtomicU64,
    in_python: AtomicBool,
    /// An interruption was posted and may not have fired yet.
    posted: AtomicBool,
}

impl Driver {
    /// This thread drives the execution from now on.
    fn here(&self) {
        let ident = crate::watchdog::ident();
        self.ident.store(ident, Ordering::SeqCst);
    }

    /// Runs `f` holding the GIL, with `in_python` raised so that an abort
    /// may interrupt it; a pending interruption that did not fire is
    /// cleared before the GIL is released, so it never leaks into unrelated
    /// code.
    fn in_gil<R>(&self, f: impl FnOnce(Python<'_>) -> R) -> R {
        /// Leaves Python, also when `f` panics, while the GIL is still held.
        struct Leave<'a>(&'a Driver);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.in_python.store(false, Ordering::SeqCst);
                // Posting and clearing both happen under the GIL: no race.
                if self.0.posted.swap(false, Ordering::SeqCst) {
                    let ident = self.0.ident.load(Ordering::SeqCst);
                    // SAFETY: we hold the GIL; a NULL exception clears any
                    // pending asynchronous exception of that thread (our
                    // own).
                    unsafe {
                        pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, std::ptr::null_mut())
                    };
                }
            }
        }
        Python::with_gil(|py| {
            self.in_python.store(true, Ordering::SeqCst);
            let _leave = Leave(self);
            f(py)
        })
    }

    /// Interrupts the Python code the execution runs, if it runs some now.
    fn interrupt(&self) {
        Python::with_gil(|py| {
            if self.in_python.load(Ordering::SeqCst) {
                let exc = py.get_type::<ForceStoppedError>();
                let ident = self.ident.load(Ordering::SeqCst);
                // SAFETY: we hold the GIL and `ident` is a live Python
                // thread (it is inside `in_gil`, as `in_python` says under
                // this GIL).
                unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, exc.as_ptr()) };
                self.posted.store(true, Ordering::SeqCst);
            }
        })
    }
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

/// Starts a run that spans the shards on the worker pool: each segment of
/// its plan runs here, and `crossing` moves the records at each boundary.
pub fn submit_spanning(pending: PendingRun, crossing: Box<dyn Crossing>) -> Result<(), String> {
    enqueue(pending, move |execution, plan, reader| {
        let (first, segments) = segments(&plan);
        run_with(
            &execution,
            &first,
            reader,
            None,
            // Coroutine steps before the first boundary may wait; the
            // later segments run over records at hand.
            true,
            Some(Span { segments, crossing }),
        );
        Python::with_gil(|_py| {
            drop(first);
            drop(plan)
        });
    })
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

/// Leaves `run` to be finished by a worker once one of its waiting records
/// is answered (or it is aborted); the thread goes back to other work.
fn park(run: Run) {
    run.exec.set_waiting(true);
    let inbox = run.pipe.inbox().clone();
    let slot = Arc::new(Mutex::new(Some(run)));
    let parked = slot.clone();
    let resume: Box<dyn FnOnce() + Send> = Box::new(move || {
        crate::runtime::engine()
            .pool
            .submit(move || resume(&parked));
    });
    if let Err(resume) = inbox.park(resume) {
        // Answers came in meanwhile: go on (on a worker, not in this
        // thread's stack).
        resume();
    }
}

fn resume(slot: &Mutex<Option<Run>>) {
    let Some(mut run) = slot.lock_unpoisoned().take() else {
        return;
    };
    keep_thread_state();
    run.driver.here();
    run.exec.set_waiting(false);
    let outcome = run_as(run.acting.clone(), || {
        catch_unwind(AssertUnwindSafe(|| settle(&mut run)))
    });
    match outcome {
        Ok(true) => complete(run, None),
        Ok(false) => park(run),
        Err(_) => complete(run, Some(EXECUTION_PANICKED)),
    }
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
            Err(e) => next.errors.push(e),
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

type Batch = Result<Option<Vec<Record>>, String>;

/// Pushes one batch, then waits (without the GIL) while the pipeline holds
/// input back for too many waiting records.
fn feed(driver: &Driver, pipe: &mut Pipeline, batch: Vec<Record>) {
    driver.in_gil(|py| {
        pipe.push_batch(batch);
        pipe.absorb();
        while pipe.blocked() {
            let inbox = pipe.inbox().clone();
            py.allow_threads(|| inbox.wait());
            pipe.absorb();
        }
    })
}

/// Reads the whole input through the pipeline. `None` if the execution was
/// aborted before it started.
fn drive(
    exec: &Arc<Execution>,
    plan: &Plan,
    mut reader: Box<dyn Reader>,
    may_wait: bool,
) -> Option<(Pipeline, Arc<Driver>, Duration)> {
    if !exec.start() {
        Python::with_gil(|_py| drop(reader));
        return None;
    }
    let driver = Arc::new(Driver::default());
    driver.here();
    let mut pipe = Pipeline::new(plan, exec.abort_flag());
    if crate::runtime::engine().profile.load(Ordering::Relaxed) {
        pipe = pipe.timed();
    }
    pipe.allow_waiting(may_wait);
    let (d, inbox) = (driver.clone(), pipe.inbox().clone());
    exec.set_interrupter(Some(Box::new(move || {
        d.interrupt();
        inbox.abort();
    })));
    if reader.in_memory() {
        // Records at hand (triggers, events): one GIL hold for the whole
        // input, so a sync run on the main thread waits for the GIL once.
        // Nothing blocks here (this may be the Redis main thread, which the
        // waiting records may need): input held back for too many waiting
        // records is let in as they are answered, wherever that happens.
        driver.in_gil(|_py| {
            while !pipe.input_closed() {
                match reader.next_batch() {
                    Ok(Some(b)) => {
                        pipe.push_batch(b);
                        pipe.absorb();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        pipe.errors.push(e);
                        break;
                    }
                }
            }
            drop(reader);
        });
        return Some((pipe, driver, Duration::ZERO));
    }
    let mut consume = |next: &mut dyn FnMut() -> Batch| {
        while !pipe.input_closed() {
            match next() {
                Ok(Some(b)) => feed(&driver, &mut pipe, b),
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
    Python::with_gil(|_py| drop(reader));
    Some((pipe, driver, read))
}

/// Registers a prepared execution and starts it on the worker pool; an
/// error when `MaxQueuedExecutions` executions already wait.
pub fn submit(pending: PendingRun) -> Result<(), String> {
    enqueue(pending, |execution, plan, reader| {
        run(&execution, &plan, reader, None, true);
        Python::with_gil(|_py| drop(plan));
    })
}

/// Registers a prepared execution and hands it to `job` on the worker
/// pool; an error when `MaxQueuedExecutions` executions already wait.
fn enqueue(
    pending: PendingRun,
    job: impl FnOnce(Arc<Execution>, Plan, Box<dyn Reader>) + Send + 'static,
) -> Result<(), String> {
    let engine = &crate::runtime::runtime().engine;
    let slot = match engine.reserve_queue_slot() {
        Ok(slot) => slot,
        Err(full) => {
            Python::with_gil(|_py| drop(pending));
            return Err(full.to_string());
        }
    };
    engine.executions.add(pending.execution.clone());
    engine.pool.submit(move || {
        drop(slot);
        let PendingRun {
            execution,
            plan,
            reader,
            ..
        } = pending;
        job(execution, plan, reader);
    });
    Ok(())
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
