//! Time events (`registerTimeEvent`): a callback that runs every period on
//! the worker pool, for as long as its key exists, on a master only.

use crate::errors::Error;
use crate::redis::{self, TimeEvent};
use crate::state::Gears;
use gears_core::Identity;
use gears_python::TimeCallback;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Job {
    /// A run is queued or running: the next tick skips rather than pile up.
    busy: AtomicBool,
    period: Duration,
    owner: Option<String>,
    callback: TimeCallback,
    cancelled: Arc<AtomicBool>,
}

/// What the timer of `ev` needs (its callback restored), sharing its
/// cancellation with the key's value.
fn job_of(ev: &TimeEvent) -> Result<Arc<Job>, Error> {
    Ok(Arc::new(Job {
        busy: AtomicBool::new(false),
        period: Duration::from_millis(ev.period_ms),
        owner: ev.owner.clone(),
        callback: TimeCallback::restore(&ev.payload)?,
        cancelled: ev.cancelled.clone(),
    }))
}

fn schedule(g: &'static Gears, job: Arc<Job>) {
    let period = job.period;
    g.timer.after(period, move || tick(g, job));
}

fn tick(g: &'static Gears, job: Arc<Job>) {
    if job.cancelled.load(Ordering::SeqCst) {
        return;
    }
    if redis::is_master() && !job.busy.swap(true, Ordering::SeqCst) {
        let j = job.clone();
        g.engine.pool.submit(move || {
            if !j.cancelled.load(Ordering::SeqCst) {
                if let Err(e) = j.callback.call(Identity::new(j.owner.clone(), 0)) {
                    redis::log("warning", &format!("a time event failed: {e}"));
                }
            }
            j.busy.store(false, Ordering::SeqCst);
        });
    }
    schedule(g, job);
}

/// Creates a time event under `key` in `who`'s database, propagated to the
/// AOF and the replicas.
pub fn create(
    g: &'static Gears,
    who: &Identity,
    key: &[u8],
    period_ms: u64,
    payload: Vec<u8>,
    propagate: bool,
) -> Result<(), Error> {
    let ev = TimeEvent::new(period_ms, who.user.clone(), payload.clone());
    // The timer holds what it needs; the key holds the value.
    let job = job_of(&ev)?;
    redis::with_lock(|ctx| {
        ctx.select_db(who.db);
        if propagate && !redis::is_master() {
            return Err(Error::TimeEvent(
                "time events can only be created on a master".to_string(),
            ));
        }
        if !redis::write_filter(ctx, who)(key) {
            return Err(Error::TimeEvent(format!(
                "NOPERM this user can not write the key '{}'",
                String::from_utf8_lossy(key)
            )));
        }
        redis::set_time_event(ctx, key, ev).map_err(Error::TimeEvent)?;
        if propagate {
            let period = period_ms.to_string();
            let owner = who.user.clone().unwrap_or_default();
            redis::replicate(
                c"RG.INNERTIMEEVENT",
                &[key, period.as_bytes(), owner.as_bytes(), &payload],
            );
        }
        schedule(g, job);
        Ok(())
    })
}

/// A loaded time event (RDB): its timer starts.
pub fn loaded(ev: &TimeEvent) {
    let Some(g) = crate::state::get() else { return };
    match job_of(ev) {
        Ok(job) => schedule(g, job),
        Err(e) => redis::log("warning", &format!("a loaded time event can not run: {e}")),
    }
}
