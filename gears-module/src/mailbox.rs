//! Records other shards sent for the runs of this one, by execution and
//! boundary, until the run's worker takes them. They may come before the
//! run even started here (messages of different shards are not ordered).

use crate::errors::Error;
use gears_core::sync::{wait_timeout_unpoisoned, LockExt};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One shard's records for a boundary, encoded, or why it has none.
pub type Outcome = Result<Vec<u8>, Error>;

/// How long what nobody takes is kept (a run that ended without waiting).
const KEEP: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Boxes {
    /// (execution, boundary) → (shard, records).
    got: HashMap<(String, usize), Vec<(String, Outcome)>>,
    /// execution → (shard, error): shards that can not take part at all.
    failed: HashMap<String, Vec<(String, String)>>,
    /// When each execution's first delivery came.
    born: HashMap<String, Instant>,
}

#[derive(Default)]
pub struct Mailbox {
    boxes: Mutex<Boxes>,
    arrived: Condvar,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Boxes> {
        self.boxes.lock_unpoisoned()
    }

    fn note(b: &mut Boxes, id: &str) {
        let now = Instant::now();
        b.born.entry(id.to_owned()).or_insert(now);
        let stale: Vec<String> = b
            .born
            .iter()
            .filter(|(_, t)| now.duration_since(**t) > KEEP)
            .map(|(k, _)| k.clone())
            .collect();
        for id in stale {
            b.born.remove(&id);
            b.failed.remove(&id);
            b.got.retain(|(e, _), _| *e != id);
        }
    }

    /// `from` sent its records for boundary `index` of run `id`.
    pub fn deliver(&self, id: &str, index: usize, from: &str, outcome: Outcome) {
        let mut b = self.lock();
        Self::note(&mut b, id);
        b.got
            .entry((id.to_owned(), index))
            .or_default()
            .push((from.to_owned(), outcome));
        drop(b);
        self.arrived.notify_all();
    }

    /// `from` can not take part in run `id` at all.
    pub fn fail(&self, id: &str, from: &str, error: String) {
        let mut b = self.lock();
        Self::note(&mut b, id);
        b.failed
            .entry(id.to_owned())
            .or_default()
            .push((from.to_owned(), error));
        drop(b);
        self.arrived.notify_all();
    }

    /// Waits until every shard of `from` sent its records for boundary
    /// `index` of run `id` (or failed); gives up when nothing new came for
    /// `idle`.
    pub fn wait(
        &self,
        id: &str,
        index: usize,
        from: &[String],
        idle: Duration,
    ) -> Result<Vec<(String, Outcome)>, Error> {
        let key = (id.to_owned(), index);
        let mut deadline = Instant::now() + idle;
        let mut seen = 0;
        let mut b = self.lock();
        loop {
            let got = b.got.get(&key).map(Vec::len).unwrap_or(0)
                + b.failed.get(id).map(Vec::len).unwrap_or(0);
            if got != seen {
                // Idle time counts from the last answer.
                seen = got;
                deadline = Instant::now() + idle;
            }
            let missing: Vec<&String> = from
                .iter()
                .filter(|s| {
                    !b.got
                        .get(&key)
                        .is_some_and(|l| l.iter().any(|(f, _)| f == *s))
                        && !b
                            .failed
                            .get(id)
                            .is_some_and(|l| l.iter().any(|(f, _)| f == *s))
                })
                .collect();
            if missing.is_empty() {
                let mut out = b.got.remove(&key).unwrap_or_default();
                if let Some(failed) = b.failed.get(id) {
                    out.extend(
                        failed
                            .iter()
                            .map(|(f, e)| (f.clone(), Err(Error::Shard(e.clone())))),
                    );
                }
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                b.got.remove(&key);
                return Err(Error::Shard(format!(
                    "shards did not answer within ExecutionMaxIdleTime ({} ms): {}",
                    idle.as_millis(),
                    names.join(", ")
                )));
            }
            b = wait_timeout_unpoisoned(&self.arrived, b, deadline - now);
        }
    }

    /// Forgets run `id` (it ended).
    pub fn forget(&self, id: &str) {
        let mut b = self.lock();
        b.born.remove(id);
        b.failed.remove(id);
        b.got.retain(|(e, _), _| e != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_every_shard_and_times_out_naming_the_silent_ones() {
        let m = std::sync::Arc::new(Mailbox::default());
        m.deliver("e", 3, "a", Ok(vec![1]));
        let from = vec!["a".to_string(), "b".to_string()];
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            m2.fail("e", "b", "broken".into());
        });
        let got = m.wait("e", 3, &from, Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().any(|(f, o)| f == "b" && o.is_err()));
        let e = m
            .wait("x", 1, &from, Duration::from_millis(30))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a, b"), "{e}");
    }
}
