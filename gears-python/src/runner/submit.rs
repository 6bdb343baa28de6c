//! Handing executions to the worker pool: a client's run, a run that
//! spans the shards, both counted against `MaxQueuedExecutions`.

use super::*;
use crate::errors::Error;

/// Starts a run that spans the shards on the worker pool: each segment of
/// its plan runs here, and `crossing` moves the records at each boundary.
pub fn submit_spanning(pending: PendingRun, crossing: Box<dyn Crossing>) -> Result<(), Error> {
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

/// Registers a prepared execution and starts it on the worker pool; an
/// error when `MaxQueuedExecutions` executions already wait.
pub fn submit(pending: PendingRun) -> Result<(), Error> {
    enqueue(pending, |execution, plan, reader| {
        run(&execution, &plan, reader, None, true);
        Python::with_gil(|_py| drop(plan));
    })
}

/// Registers a prepared execution and hands it to `job` on the worker
/// pool; an error when `MaxQueuedExecutions` executions already wait.
pub(super) fn enqueue(
    pending: PendingRun,
    job: impl FnOnce(Arc<Execution>, Plan, Box<dyn Reader>) + Send + 'static,
) -> Result<(), Error> {
    let engine = &crate::runtime::runtime().engine;
    let slot = match engine.reserve_queue_slot() {
        Ok(slot) => slot,
        Err(full) => {
            Python::with_gil(|_py| drop(pending));
            return Err(Error::Submit(full.to_string()));
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
