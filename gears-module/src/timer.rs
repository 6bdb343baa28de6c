//! One thread that runs delayed jobs (stream duration flushes and retries).

use crate::redis;
use crossbeam_channel::{RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

pub struct Timer {
    tx: Sender<(Instant, Job)>,
}

impl Timer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<Timer> {
        let (tx, rx) = crossbeam_channel::unbounded::<(Instant, Job)>();
        std::thread::Builder::new()
            .name("gears-timer".into())
            .spawn(move || {
                let mut due: Vec<(Instant, Job)> = Vec::new();
                loop {
                    let next = due.iter().map(|(t, _)| *t).min();
                    let msg = match next {
                        Some(t) => rx.recv_deadline(t),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match msg {
                        Ok(job) => due.push(job),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let now = Instant::now();
                    let (ready, later): (Vec<_>, Vec<_>) =
                        due.into_iter().partition(|(t, _)| *t <= now);
                    due = later;
                    for (_, job) in ready {
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            redis::log("warning", "a timer job panicked");
                        }
                    }
                }
            })?;
        Ok(Timer { tx })
    }

    /// Runs `job` on the timer thread after `delay`.
    pub fn after(&self, delay: Duration, job: impl FnOnce() + Send + 'static) {
        let _ = self.tx.send((Instant::now() + delay, Box::new(job)));
    }
}
