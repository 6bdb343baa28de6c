//! An execution whose input is read but whose records still wait leaves
//! its thread (parks); the first answer resumes it on a worker.

use super::*;

/// Leaves `run` to be finished by a worker once one of its waiting records
/// is answered (or it is aborted); the thread goes back to other work.
pub(super) fn park(run: Run) {
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

pub(super) fn resume(slot: &Mutex<Option<Run>>) {
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
