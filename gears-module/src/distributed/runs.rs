//! `run()` across the shards (RUN, COLLECTED, REPARTITIONED, FAILED): the
//! initiator ships the pickled builder; every shard runs each segment of
//! the plan and hands its records to [`Spanning`] (a gears-core
//! `Crossing`) at each boundary, which sends them on and waits, off the main
//! thread, for what this shard is owed.

use super::*;
use crate::errors::Error;

/// How a run crosses shards: this shard's part of it.
pub(super) struct Spanning {
    g: &'static Gears,
    id: String,
    /// The shard that started the run.
    initiator: String,
    me: String,
    /// Every shard of the run, this one included.
    shards: Vec<String>,
    idle: Duration,
    /// A `collect` was crossed: the rest runs on the initiator alone.
    collected: bool,
}

impl Spanning {
    fn new(g: &'static Gears, id: &str, initiator: &str, shards: Vec<String>) -> Spanning {
        let me = g.topology().my_id.clone().unwrap_or_default();
        let idle = Duration::from_millis(g.config().settings().executionmaxidletime.max(1) as u64);
        Spanning {
            g,
            id: id.to_owned(),
            initiator: initiator.to_owned(),
            me,
            shards,
            idle,
            collected: false,
        }
    }

    fn send(&self, to: &str, index: usize, kind: &str, outcome: Result<Vec<u8>, Error>) {
        let Some(net) = self.g.net() else { return };
        let mut m = Encoder::default();
        m.bytes(self.id.as_bytes());
        m.bytes(index.to_string().as_bytes());
        match outcome {
            Ok(bytes) => {
                m.bytes(b"ok");
                m.bytes(&bytes);
            }
            Err(e) => {
                m.bytes(b"error");
                m.bytes(e.to_string().as_bytes());
            }
        }
        net.send(to, kind, m.0);
    }

    /// Waits until every shard of `from` sent its records for boundary
    /// `index`; their errors become error records.
    fn gather(&self, index: usize, from: &[String]) -> Result<Vec<gears_core::Record>, Error> {
        let mut got = self.g.mailbox().wait(&self.id, index, from, self.idle)?;
        let mut records = Vec::new();
        for (shard, outcome) in got.drain(..) {
            match outcome
                .and_then(|b| gears_python::convert::decode_records(&b).map_err(Error::from))
            {
                Ok(more) => records.extend(more),
                Err(e) => records.push(gears_core::Record::Error(format!("shard {shard}: {e}"))),
            }
        }
        Ok(records)
    }

    /// The shard that owns `key`'s slot (this one when unknown).
    fn owner(&self, key: &[u8]) -> String {
        let slot = gears_cluster::key_slot(key);
        let t = self.g.topology();
        t.shards
            .iter()
            .find(|s| s.ranges.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|s| s.id.clone())
            .unwrap_or_else(|| self.me.clone())
    }
}

impl Drop for Spanning {
    /// The run is over here: what the mailbox still holds for it goes.
    fn drop(&mut self) {
        self.g.mailbox().forget(&self.id);
    }
}

impl Crossing for Spanning {
    fn cross(
        &mut self,
        index: usize,
        kind: StepKind,
        records: Vec<gears_core::Record>,
    ) -> Result<Option<Vec<gears_core::Record>>, gears_core::Error> {
        if self.collected {
            // Only this shard (the initiator) goes on after a collect.
            return Ok(Some(records));
        }
        let others: Vec<String> = self
            .shards
            .iter()
            .filter(|s| **s != self.me)
            .cloned()
            .collect();
        match kind {
            StepKind::Repartition => {
                let mut mine = Vec::new();
                let mut theirs: std::collections::HashMap<String, Vec<gears_core::Record>> =
                    others.iter().map(|s| (s.clone(), Vec::new())).collect();
                for r in records {
                    let to = match &r {
                        gears_core::Record::Keyed(k, _) => self.owner(k.as_bytes()),
                        _ => self.me.clone(),
                    };
                    match theirs.get_mut(&to) {
                        Some(list) => list.push(r),
                        None => mine.push(r),
                    }
                }
                for (to, list) in theirs {
                    self.send(
                        &to,
                        index,
                        REPARTITIONED,
                        gears_python::convert::encode_records(&list).map_err(Error::from),
                    );
                }
                mine.extend(self.gather(index, &others)?);
                Ok(Some(mine))
            }
            _ if self.me == self.initiator => {
                self.collected = true;
                let mut all = records;
                all.extend(self.gather(index, &others)?);
                Ok(Some(all))
            }
            _ => {
                let initiator = self.initiator.clone();
                self.send(
                    &initiator,
                    index,
                    COLLECTED,
                    gears_python::convert::encode_records(&records).map_err(Error::from),
                );
                Ok(None)
            }
        }
    }
}

/// Starts `run` here and on every other shard (it has a shipped builder).
pub fn start(g: &'static Gears, run: PendingRun) -> Result<(), Error> {
    let net = g
        .net()
        .ok_or_else(|| Error::Shard("no connection to the other shards".into()))?;
    let shipped = run
        .shipped()
        .ok_or_else(|| Error::Shard("the run was not prepared for the cluster".into()))?;
    let exec = run.execution.clone();
    let me = g.topology().my_id.clone().unwrap_or_default();
    let mut shards = others(g);
    let mut message = Encoder::default();
    message.bytes(exec.id.as_bytes());
    message.bytes(exec.identity.user.as_deref().unwrap_or("").as_bytes());
    message.bytes(&[exec.identity.user.is_some() as u8]);
    message.bytes(exec.identity.db.to_string().as_bytes());
    let mut list = Encoder::default();
    for s in &shards {
        list.bytes(s.as_bytes());
    }
    list.bytes(me.as_bytes());
    message.bytes(&list.0);
    message.bytes(shipped);
    for s in &shards {
        net.send(s, RUN, message.0.clone());
    }
    shards.push(me.clone());
    let spanning = Spanning::new(g, &exec.id, &me, shards);
    gears_python::submit_spanning(run, Box::new(spanning)).map_err(Error::from)
}

/// Another shard started a run: run its part here (main thread, from
/// RG.INNERMSGCOMMAND).
pub fn received_run(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, Identity, Vec<String>, Vec<u8>), Error> {
        let id = text(&mut payload)?;
        let user = text(&mut payload)?;
        let has_user = take(&mut payload)? == [1];
        let db: i64 = text(&mut payload)?.parse().map_err(|_| Error::BadMessage)?;
        let mut list = take(&mut payload)?;
        let mut shards = Vec::new();
        while !list.is_empty() {
            shards.push(text(&mut list)?);
        }
        let shipped = take(&mut payload)?.to_vec();
        let identity = Identity::new(has_user.then_some(user), db);
        Ok((id, identity, shards, shipped))
    })();
    let (id, identity, shards, shipped) = match parsed {
        Ok(p) => p,
        Err(e) => {
            redis::log(
                "warning",
                &format!("a run from shard {sender} was refused: {e}"),
            );
            return;
        }
    };
    g.engine.execution_ids.observe(&id);
    let spanning = Spanning::new(g, &id, sender, shards);
    let failed = match gears_python::remote_run(&shipped, &id, identity) {
        Ok(run) => match gears_python::submit_spanning(run, Box::new(spanning)) {
            Ok(()) => return,
            Err(e) => e,
        },
        Err(e) => e,
    };
    // The others must not wait for this shard: each is told why it has
    // nothing.
    let me = g.topology().my_id.clone().unwrap_or_default();
    let mut m = Encoder::default();
    m.bytes(id.as_bytes());
    m.bytes(format!("shard {me}: {failed}").as_bytes());
    to_others(g, FAILED, &m.0);
}

/// A shard can not take part in a run.
pub fn received_failure(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    match text(&mut payload).and_then(|id| Ok((id, text(&mut payload)?))) {
        Ok((id, error)) => g.mailbox().fail(&id, sender, error),
        Err(e) => redis::log("warning", &format!("a failure from shard {sender}: {e}")),
    }
}

/// A shard sent records of a run to this one.
pub fn received_records(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, usize, crate::mailbox::Outcome), Error> {
        let id = text(&mut payload)?;
        let index: usize = text(&mut payload)?.parse().map_err(|_| Error::BadMessage)?;
        let kind = text(&mut payload)?;
        let body = take(&mut payload)?;
        let outcome = if kind == "ok" {
            Ok(body.to_vec())
        } else {
            Err(Error::Shard(String::from_utf8_lossy(body).into_owned()))
        };
        Ok((id, index, outcome))
    })();
    match parsed {
        Ok((id, index, outcome)) => g.mailbox().deliver(&id, index, sender, outcome),
        Err(e) => redis::log("warning", &format!("records from shard {sender}: {e}")),
    }
}
