//! The engine: the pieces every command and every language binding shares.

use crate::execution::Executions;
use crate::id::IdGen;
use crate::pool::WorkerPool;
use crate::registration::Registrations;
use crate::Record;
use std::sync::atomic::AtomicUsize;

/// The source of an execution's records. `next_batch` is called on a worker
/// thread with no lock held; a reader takes the locks it needs itself.
pub trait Reader: Send {
    /// The next records, or `None` at the end of the input.
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, String>;

    /// Whether reading is worth overlapping with processing: the runner then
    /// reads the next batches on a helper thread while the current one is
    /// processed. Readers that need the host language's lock say no.
    fn prefetch(&self) -> bool {
        false
    }

    /// Whether reading needs no lock at all (records already in memory): the
    /// runner may then read under the host language's lock and run the
    /// whole execution in one go.
    fn in_memory(&self) -> bool {
        false
    }
}

/// A reader over records known in advance (tests, triggers).
pub struct VecReader(pub Option<Vec<Record>>);

impl Reader for VecReader {
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, String> {
        Ok(self.0.take())
    }

    fn in_memory(&self) -> bool {
        true
    }
}

pub struct Engine {
    pub executions: Executions,
    pub execution_ids: IdGen,
    pub pool: WorkerPool,
    pub registrations: Registrations,
    /// Registration ids have their own counter (1.2 keeps them apart).
    pub registration_ids: IdGen,
    /// `MaxExecutionsPerRegistration`, kept here for the event paths.
    pub max_per_registration: AtomicUsize,
    /// This node's id: forty zeros off-cluster.
    pub node_id: String,
}

impl Engine {
    pub fn new(
        threads: usize,
        max_executions: usize,
        on_panic: fn(&str),
    ) -> std::io::Result<Engine> {
        Ok(Engine {
            executions: Executions::new(max_executions),
            execution_ids: IdGen::new(),
            pool: WorkerPool::new("gears-worker", threads, on_panic)?,
            registrations: Registrations::default(),
            registration_ids: IdGen::new(),
            max_per_registration: AtomicUsize::new(1000),
            node_id: crate::id::LOCAL_NODE_ID.to_owned(),
        })
    }

    pub fn next_execution_id(&self) -> String {
        self.execution_ids.next(&self.node_id)
    }

    pub fn next_registration_id(&self) -> String {
        self.registration_ids.next(&self.node_id)
    }
}
