//! The engine: the pieces every command and every language binding shares.

use crate::execution::Executions;
use crate::id::IdGen;
use crate::pool::WorkerPool;
pub use crate::reader::{Reader, VecReader};
use crate::registration::Registrations;
use crate::runner::PlanRunner;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Engine {
    pub executions: Executions,
    pub execution_ids: IdGen,
    pub pool: WorkerPool,
    pub registrations: Registrations,
    /// Registration ids have their own counter (1.2 keeps them apart).
    pub registration_ids: IdGen,
    /// `MaxExecutionsPerRegistration`, kept here for the event paths.
    pub max_per_registration: AtomicUsize,
    /// `MaxQueuedExecutions`: how many executions may wait for a worker.
    pub max_queued: AtomicUsize,
    /// How many wait now.
    queued: AtomicUsize,
    /// `DropEventsWhenQueueFull`: an event finding `max_queued` executions
    /// waiting is dropped (a failure of its registration) instead of
    /// slowing the writers down.
    pub drop_when_full: AtomicBool,
    /// How the host slows its writers down for a moment (the module pauses
    /// write commands), set once at start-up. Without it events are dropped.
    pub slow_writers: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// `ProfileExecutions`: time every step, profile every Python callback.
    pub profile: AtomicBool,
    /// This node's id: forty zeros off-cluster.
    pub node_id: String,
    /// The host language that runs the plans' callbacks.
    pub(crate) runner: Arc<dyn PlanRunner>,
}

impl Engine {
    /// An engine with `threads` workers that keeps at most `max_executions`
    /// executions (and `max_per_registration` of each registration) and runs
    /// plans through `runner`. The limits come from the configuration; the
    /// engine has no defaults of its own.
    pub fn new(
        threads: usize,
        max_executions: usize,
        max_per_registration: usize,
        runner: Arc<dyn PlanRunner>,
        on_panic: fn(&str),
    ) -> std::io::Result<Engine> {
        Ok(Engine {
            executions: Executions::new(max_executions),
            execution_ids: IdGen::new(),
            pool: WorkerPool::new("gears-worker", threads, on_panic)?,
            registrations: Registrations::default(),
            registration_ids: IdGen::new(),
            max_per_registration: AtomicUsize::new(max_per_registration),
            max_queued: AtomicUsize::new(usize::MAX),
            profile: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            drop_when_full: AtomicBool::new(false),
            slow_writers: std::sync::OnceLock::new(),
            node_id: crate::id::LOCAL_NODE_ID.to_owned(),
            runner,
        })
    }

    /// Counts one more execution waiting for a worker, unless
    /// `max_queued` already wait. The slot is given back when dropped: by
    /// the job when it starts (or if it never runs).
    pub fn reserve_queue_slot(self: &Arc<Self>) -> Result<QueueSlot, QueueFull> {
        let max = self.max_queued.load(Ordering::Relaxed);
        if self.queued.fetch_add(1, Ordering::SeqCst) >= max {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(QueueFull(max));
        }
        Ok(QueueSlot(self.clone()))
    }

    /// Counts one more execution waiting for a worker even over
    /// `max_queued`: an event whose writers were slowed down instead.
    pub(crate) fn force_queue_slot(self: &Arc<Self>) -> QueueSlot {
        self.queued.fetch_add(1, Ordering::SeqCst);
        QueueSlot(self.clone())
    }

    /// Over `max_queued`, for an event: slows the writers down and says
    /// the event is queued anyway, unless dropping is asked for.
    pub(crate) fn slowed_down(&self) -> bool {
        if self.drop_when_full.load(Ordering::Relaxed) {
            return false;
        }
        match self.slow_writers.get() {
            Some(slow) => {
                slow();
                true
            }
            None => false,
        }
    }

    /// How many executions wait for a worker.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    pub fn next_execution_id(&self) -> String {
        self.execution_ids.next(&self.node_id)
    }

    pub fn next_registration_id(&self) -> String {
        self.registration_ids.next(&self.node_id)
    }
}

/// An execution waiting for a worker, counted against `MaxQueuedExecutions`.
pub struct QueueSlot(Arc<Engine>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `MaxQueuedExecutions` executions already wait for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull(pub usize);

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many executions are waiting to run (MaxQueuedExecutions is {})",
            self.0
        )
    }
}
