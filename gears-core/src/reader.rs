//! Readers: where an execution's records come from.

use crate::Record;

/// The source of an execution's records. `next_batch` is called on a worker
/// thread with no lock held; a reader takes the locks it needs itself.
pub trait Reader: Send {
    /// The next records, or `None` at the end of the input.
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, crate::Error>;

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
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, crate::Error> {
        Ok(self.0.take())
    }

    fn in_memory(&self) -> bool {
        true
    }
}
