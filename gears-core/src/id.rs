//! Execution and registration ids: `<40-char node id>-<counter>`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The node id used off-cluster: forty zeros.
pub const LOCAL_NODE_ID: &str = "0000000000000000000000000000000000000000";

pub struct IdGen {
    counter: AtomicU64,
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen::new()
    }
}

impl IdGen {
    pub const fn new() -> IdGen {
        IdGen {
            counter: AtomicU64::new(0),
        }
    }

    /// The next id for `node` (the first one ends in `-1`).
    pub fn next(&self, node: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{node}-{n}")
    }

    /// The last number handed out (0 before the first).
    pub fn current(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// Later ids count on from at least `n` (a saved counter).
    pub fn raise_to(&self, n: u64) {
        self.counter.fetch_max(n, Ordering::Relaxed);
    }

    /// Makes sure later ids do not collide with `seen` (an id that came from
    /// another shard or from persistence).
    pub fn observe(&self, seen: &str) {
        if let Some(n) = seen
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u64>().ok())
        {
            self.counter.fetch_max(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_and_follow_observed_ids() {
        let g = IdGen::new();
        assert_eq!(g.next(LOCAL_NODE_ID), format!("{LOCAL_NODE_ID}-1"));
        g.observe("abc-41");
        assert_eq!(g.next("n"), "n-42");
        g.observe("garbage");
        assert_eq!(g.next("n"), "n-43");
        assert_eq!(g.current(), 43);
        g.raise_to(10);
        assert_eq!(g.next("n"), "n-44");
        g.raise_to(100);
        assert_eq!(g.next("n"), "n-101");
    }
}
