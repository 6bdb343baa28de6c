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
    /// How many that clients wait for wait now.
    queued: AtomicUsize,
    /// How many of events wait now.
    queued_events: AtomicUsize,
    /// `DropEventsWhenQueueFull`: an event finding `max_queued` executions
    /// waiting is dropped (a failure of its registration) instead of being
    /// queued anyway.
    pub drop_when_full: AtomicBool,
    /// Told (with the queue's length) whenever an event is queued beyond
    /// `max_queued`; set once at start-up (the module logs it).
    pub over_limit: std::sync::OnceLock<Box<dyn Fn(usize) + Send + Sync>>,
    /// `ProfileExecutions`: time every step, profile every Python callback.
    pub profile: AtomicBool,
    /// This node's cluster id once known (`set_node_id`); forty zeros
    /// until then and off-cluster.
    node_id: std::sync::OnceLock<String>,
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
            queued_events: AtomicUsize::new(0),
            drop_when_full: AtomicBool::new(false),
            over_limit: std::sync::OnceLock::new(),
            node_id: std::sync::OnceLock::new(),
            runner,
        })
    }

    /// Counts one more execution waiting for a worker, unless
    /// `max_queued` already wait. The slot is given back when dropped: by
    /// the job when it starts (or if it never runs). Executions that clients
    /// wait for and those of events each have `max_queued` places, so a
    /// backlog of events never refuses a client's run.
    pub fn reserve_queue_slot(self: &Arc<Self>) -> Result<QueueSlot, QueueFull> {
        self.reserve(false).map_err(QueueFull::Clients)
    }

    /// The count of waiting executions of events, or of clients.
    fn waiting(&self, event: bool) -> &AtomicUsize {
        if event {
            &self.queued_events
        } else {
            &self.queued
        }
    }

    /// A place among the executions of events (or of clients) that wait,
    /// unless `max_queued` (returned) are there already.
    fn reserve(self: &Arc<Self>, event: bool) -> Result<QueueSlot, usize> {
        let max = self.max_queued.load(Ordering::Relaxed);
        let counter = self.waiting(event);
        if counter.fetch_add(1, Ordering::SeqCst) >= max {
            counter.fetch_sub(1, Ordering::SeqCst);
            return Err(max);
        }
        Ok(QueueSlot {
            engine: self.clone(),
            event,
        })
    }

    /// A place for an event's execution. Beyond `max_queued` the event is
    /// kept anyway (and `over_limit` told), unless dropping is asked for.
    pub(crate) fn reserve_event_slot(self: &Arc<Self>) -> Result<QueueSlot, QueueFull> {
        match self.reserve(true) {
            Ok(slot) => Ok(slot),
            Err(max) if self.drop_when_full.load(Ordering::Relaxed) => Err(QueueFull::Events(max)),
            Err(_) => {
                let queued = self.queued_events.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(tell) = self.over_limit.get() {
                    tell(queued);
                }
                Ok(QueueSlot {
                    engine: self.clone(),
                    event: true,
                })
            }
        }
    }

    /// How many executions wait for a worker.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst) + self.queued_events.load(Ordering::SeqCst)
    }

    /// The prefix of the ids this node gives (1.2: `<CLUSTER MYID>-N`).
    pub fn node_id(&self) -> &str {
        self.node_id
            .get()
            .map_or(crate::id::LOCAL_NODE_ID, String::as_str)
    }

    /// Names this node in a cluster: ids given from now on carry `id`. A
    /// node's cluster id never changes, so only the first call counts.
    pub fn set_node_id(&self, id: &str) {
        let _ = self.node_id.set(id.to_owned());
    }

    pub fn next_execution_id(&self) -> String {
        self.execution_ids.next(self.node_id())
    }

    pub fn next_registration_id(&self) -> String {
        self.registration_ids.next(self.node_id())
    }
}

/// An execution waiting for a worker, counted against `MaxQueuedExecutions`.
pub struct QueueSlot {
    engine: Arc<Engine>,
    event: bool,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.engine
            .waiting(self.event)
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// `MaxQueuedExecutions` executions (of clients, or of events) already
/// wait for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    Clients(usize),
    Events(usize),
}

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueFull::Clients(max) => write!(
                f,
                "too many executions are waiting to run (MaxQueuedExecutions is {max})"
            ),
            QueueFull::Events(max) => write!(
                f,
                "too many executions of events are waiting to run (MaxQueuedExecutions is {max}), and DropEventsWhenQueueFull is 1"
            ),
        }
    }
}
