//! `run()` across the shards of a cluster (1.2's default `mode='async'`):
//! the shard that got the script sends the pickled builder to every other
//! shard, each runs it over its own keys up to the plan's exchange point
//! (the first `collect` or `repartition`) and sends what reached it back;
//! the first shard runs the rest of the plan over the union, so `count`,
//! `aggregate`, `sort`, `groupby`... answer as they would on one shard. A
//! shard that does not answer within `ExecutionMaxIdleTime` ends the run
//! with an error.

use crate::redis;
use crate::state::Gears;
use gears_core::Identity;
use gears_python::{Exchange, PendingRun};
use std::time::{Duration, Instant};

/// The message that starts a run on another shard, and the one that brings
/// its records back (1.2's receiver names).
pub const RUN: &str = "ExecutionPlan_OnReceived";
pub const RECORDS: &str = "ExecutionPlan_CollectOnRecordReceived";
/// Registrations and unregistrations made on one shard, for all of them.
pub const REGISTER: &str = "FlatExecutionPlan_RegisterKeySpaceEvent";
pub const UNREGISTER: &str = "ExecutionPlan_UnregisterExecutionReceived";

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let bad = || "bad message".to_string();
    let n = input.get(..8).ok_or_else(bad)?;
    let n =
        usize::try_from(u64::from_le_bytes(n.try_into().map_err(|_| bad())?)).map_err(|_| bad())?;
    let rest = &input[8..];
    let (head, tail) = rest.split_at_checked(n).ok_or_else(bad)?;
    *input = tail;
    Ok(head)
}

fn text(input: &mut &[u8]) -> Result<String, String> {
    String::from_utf8(take(input)?.to_vec()).map_err(|_| "bad message".into())
}

/// The other shards of the topology.
fn others(g: &Gears) -> Vec<String> {
    let t = g.topology();
    t.shards
        .iter()
        .filter(|s| Some(&s.id) != t.my_id.as_ref())
        .map(|s| s.id.clone())
        .collect()
}

/// Starts `run` here and on every other shard (it has a shipped builder).
pub fn start(g: &'static Gears, run: PendingRun) -> Result<(), String> {
    let net = g.net().ok_or("no connection to the other shards")?;
    let shipped = run
        .shipped()
        .ok_or("the run was not prepared for the cluster")?;
    let exec = run.execution.clone();
    let shards = others(g);
    let mut message = Vec::new();
    put(&mut message, exec.id.as_bytes());
    put(
        &mut message,
        exec.identity.user.as_deref().unwrap_or("").as_bytes(),
    );
    put(&mut message, &[exec.identity.user.is_some() as u8]);
    put(&mut message, exec.identity.db.to_string().as_bytes());
    put(&mut message, shipped);
    let (tx, rx) = crossbeam_channel::unbounded();
    g.gathering().insert(exec.id.clone(), tx);
    for s in &shards {
        net.send(s, RUN, message.clone());
    }
    let idle = Duration::from_millis(g.config().settings().executionmaxidletime.max(1) as u64);
    let id = exec.id.clone();
    let gather = move || {
        let mut records = Vec::new();
        let mut waiting: Vec<String> = shards;
        let mut deadline = Instant::now() + idle;
        let outcome = loop {
            if waiting.is_empty() {
                break Ok(records);
            }
            match rx.recv_deadline(deadline) {
                Ok((from, bytes)) => {
                    waiting.retain(|s| *s != from);
                    match bytes.and_then(|b: Vec<u8>| gears_python::convert::decode_records(&b)) {
                        Ok(more) => records.extend(more),
                        Err(e) => break Err(format!("shard {from}: {e}")),
                    }
                    // Idle time counts from the last answer.
                    deadline = Instant::now() + idle;
                }
                Err(_) => {
                    break Err(format!(
                        "shards did not answer within ExecutionMaxIdleTime ({} ms): {}",
                        idle.as_millis(),
                        waiting.join(", ")
                    ))
                }
            }
        };
        if let Some(g) = crate::state::get() {
            g.gathering().remove(&id);
        }
        outcome
    };
    gears_python::submit_spanning(run, Exchange::Gather(Box::new(gather)))
}

/// Another shard started a run: run its part here and send the records
/// back (main thread, from RG.INNERMSGCOMMAND).
pub fn received_run(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, Identity, Vec<u8>), String> {
        let id = text(&mut payload)?;
        let user = text(&mut payload)?;
        let has_user = take(&mut payload)? == [1];
        let db: i64 = text(&mut payload)?.parse().map_err(|_| "bad message")?;
        let shipped = take(&mut payload)?.to_vec();
        let identity = Identity::new(has_user.then_some(user), db);
        Ok((id, identity, shipped))
    })();
    let (id, identity, shipped) = match parsed {
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
    let to = sender.to_owned();
    let reply_id = id.clone();
    let reply = move |outcome: Result<Vec<u8>, String>| {
        let Some(g) = crate::state::get() else { return };
        let Some(net) = g.net() else { return };
        let mut message = Vec::new();
        put(&mut message, reply_id.as_bytes());
        match outcome {
            Ok(bytes) => {
                put(&mut message, b"ok");
                put(&mut message, &bytes);
            }
            Err(e) => {
                put(&mut message, b"error");
                put(&mut message, e.as_bytes());
            }
        }
        net.send(&to, RECORDS, message);
    };
    match gears_python::remote_run(&shipped, &id, identity) {
        Ok(run) => {
            let ship = Box::new(move |records: Vec<gears_core::Record>| {
                reply(gears_python::convert::encode_records(&records));
            });
            if let Err(e) = gears_python::submit_spanning(run, Exchange::Ship(ship)) {
                redis::log("warning", &format!("run {id} from shard {sender}: {e}"));
            }
        }
        Err(e) => reply(Err(e)),
    }
}

/// A shard sent the records of a run started here.
pub fn received_records(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, Result<Vec<u8>, String>), String> {
        let id = text(&mut payload)?;
        let kind = text(&mut payload)?;
        let body = take(&mut payload)?;
        let outcome = if kind == "ok" {
            Ok(body.to_vec())
        } else {
            Err(String::from_utf8_lossy(body).into_owned())
        };
        Ok((id, outcome))
    })();
    match parsed {
        Ok((id, outcome)) => {
            if let Some(tx) = g.gathering().get(&id) {
                let _ = tx.send((sender.to_owned(), outcome));
            }
        }
        Err(e) => redis::log("warning", &format!("records from shard {sender}: {e}")),
    }
}

/// Sends registrations applied here (their saved form) to every other
/// shard, after the session they replace (`replaced`) is gone there too.
pub fn share_registrations(g: &Gears, replaced: Option<&str>, saved: Vec<Vec<u8>>) {
    let Some(net) = g.net() else { return };
    if !g.topology().is_cluster() {
        return;
    }
    for shard in others(g) {
        if let Some(old) = replaced {
            let mut m = Vec::new();
            put(&mut m, b"session");
            put(&mut m, old.as_bytes());
            put(&mut m, b"abort");
            net.send(&shard, UNREGISTER, m);
        }
        for blob in &saved {
            net.send(&shard, REGISTER, blob.clone());
        }
    }
}

/// Sends an RG.UNREGISTER applied here to every other shard.
pub fn share_unregister(g: &Gears, id: &str, abort_pending: bool) {
    let Some(net) = g.net() else { return };
    if !g.topology().is_cluster() {
        return;
    }
    for shard in others(g) {
        let mut m = Vec::new();
        put(&mut m, b"registration");
        put(&mut m, id.as_bytes());
        put(
            &mut m,
            if abort_pending {
                b"abort".as_slice()
            } else {
                b"keep".as_slice()
            },
        );
        net.send(&shard, UNREGISTER, m);
    }
}

/// A registration made on another shard: applied here, saved and sent to
/// this shard's replicas and AOF like any other.
pub fn received_registration(g: &'static Gears, sender: &str, payload: &[u8]) {
    let outcome = gears_core::persist::decode_registration(payload)
        .and_then(|saved| crate::registry::restore(g, saved, true));
    match outcome {
        Ok(()) => redis::replicate(c"RG.INNERREGISTER", &[payload]),
        Err(e) => redis::log(
            "warning",
            &format!("a registration from shard {sender} could not be applied: {e}"),
        ),
    }
}

/// An unregistration (of a registration, or of a whole replaced session)
/// made on another shard.
pub fn received_unregister(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, String, bool), String> {
        Ok((
            text(&mut payload)?,
            text(&mut payload)?,
            text(&mut payload)? == "abort",
        ))
    })();
    let (kind, name, abort) = match parsed {
        Ok(p) => p,
        Err(e) => {
            redis::log(
                "warning",
                &format!("an unregistration from shard {sender}: {e}"),
            );
            return;
        }
    };
    let ids = if kind == "session" {
        g.engine
            .registrations
            .session(&name)
            .map(|s| s.registrations)
            .unwrap_or_default()
    } else {
        vec![name]
    };
    for id in ids {
        crate::registry::unregister(g, &id, abort, true);
    }
}
