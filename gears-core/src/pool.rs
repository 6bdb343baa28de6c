//! The worker pool that runs executions off the Redis main thread.

use crossbeam_channel::{unbounded, Sender};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

pub struct WorkerPool {
    tx: Sender<Job>,
    _threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `size` named threads. A panicking job is caught and reported to
    /// `on_panic`; the worker keeps serving.
    pub fn new(name: &str, size: usize, on_panic: fn(&str)) -> std::io::Result<WorkerPool> {
        let (tx, rx) = unbounded::<Job>();
        let mut threads = Vec::with_capacity(size);
        for i in 0..size.max(1) {
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        for job in rx.iter() {
                            if let Err(p) = catch_unwind(AssertUnwindSafe(job)) {
                                let msg = p
                                    .downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| p.downcast_ref::<String>().cloned())
                                    .unwrap_or_else(|| "unknown panic".into());
                                on_panic(&msg);
                            }
                        }
                    })?,
            );
        }
        Ok(WorkerPool {
            tx,
            _threads: threads,
        })
    }

    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        // The receivers live as long as the pool, so sending cannot fail.
        let _ = self.tx.send(Box::new(job));
    }

    /// A handle that submits to this pool and can be moved into jobs.
    pub fn handle(&self) -> PoolHandle {
        PoolHandle {
            tx: self.tx.clone(),
        }
    }
}

/// A clonable way to submit jobs to a [`WorkerPool`].
#[derive(Clone)]
pub struct PoolHandle {
    tx: Sender<Job>,
}

impl PoolHandle {
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        // If the pool is gone the job is dropped: nothing could run it.
        let _ = self.tx.send(Box::new(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    static PANICS: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn jobs_run_and_panics_do_not_kill_workers() {
        let pool = WorkerPool::new("t", 1, |_| {
            PANICS.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let count = Arc::new(AtomicUsize::new(0));
        pool.submit(|| panic!("boom"));
        pool.submit(|| panic!("boom"));
        for _ in 0..10 {
            let c = count.clone();
            let tx = tx.clone();
            pool.submit(move || {
                c.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..10 {
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        }
        assert_eq!(count.load(Ordering::SeqCst), 10);
        assert_eq!(PANICS.load(Ordering::SeqCst), 2);
    }
}
