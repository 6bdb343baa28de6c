//! Executions of a run across shards, seen from any shard (ABORT, DROP,
//! GET_EXECUTION / EXECUTION_ENTRY): RG.ABORTEXECUTION, RG.DROPEXECUTION and
//! RG.GETEXECUTION ... CLUSTER.

use super::*;

/// How long RG.GETEXECUTION ... CLUSTER waits for the other shards.
pub(super) const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// RG.ABORTEXECUTION / RG.DROPEXECUTION of `id` for every other shard.
pub fn share_abort(g: &Gears, id: &str) {
    to_others(g, ABORT, id.as_bytes());
}

pub fn share_drop(g: &Gears, id: &str) {
    to_others(g, DROP, id.as_bytes());
}

/// Another shard aborted a run that spans this one too.
pub fn received_abort(g: &'static Gears, _: &str, id: &[u8]) {
    if let Some(e) = g.engine.executions.get(&String::from_utf8_lossy(id)) {
        e.abort();
    }
}

/// Another shard dropped a run that spans this one too.
pub fn received_drop(g: &'static Gears, _: &str, id: &[u8]) {
    let _ = g
        .engine
        .executions
        .drop_execution(&String::from_utf8_lossy(id));
}

/// Asks every other shard for its part of execution `id`; `None` off
/// cluster. The answer (call it off the main thread: it waits) is the
/// entries of the shards that have it, and an error entry for those that
/// did not answer.
pub fn ask_execution(
    g: &'static Gears,
    id: &str,
) -> Option<impl FnOnce() -> Vec<gears_core::Reply>> {
    let net = g.cluster_net()?;
    static ASKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let token = format!(
        "getexecution-{}",
        ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let shards = others(g);
    let mut m = Encoder::default();
    m.bytes(token.as_bytes());
    m.bytes(id.as_bytes());
    for s in &shards {
        net.send(s, GET_EXECUTION, m.0.clone());
    }
    Some(move || {
        let answers = match g.mailbox().wait(&token, 0, &shards, ASK_TIMEOUT) {
            Ok(a) => a,
            Err(e) => return vec![gears_core::Reply::Error(e.to_string())],
        };
        g.mailbox().forget(&token);
        answers
            .into_iter()
            .filter_map(|(_, a)| match a {
                Ok(bytes) if bytes.is_empty() => None,
                Ok(bytes) => Some(
                    gears_core::Reply::decode(&mut bytes.as_slice())
                        .unwrap_or_else(|e| gears_core::Reply::Error(e.to_string())),
                ),
                Err(e) => Some(gears_core::Reply::Error(e.to_string())),
            })
            .collect()
    })
}

/// Another shard asks for this shard's part of an execution.
pub fn received_get_execution(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let Ok((token, id)) = text(&mut payload).and_then(|t| Ok((t, text(&mut payload)?))) else {
        return;
    };
    let mut answer = Vec::new();
    if let Some(e) = g.engine.executions.get(&id) {
        crate::plans::execution_entry(g, &e).encode(&mut answer);
    }
    let Some(net) = g.net() else { return };
    let mut m = Encoder::default();
    m.bytes(token.as_bytes());
    m.bytes(&answer);
    net.send(sender, EXECUTION_ENTRY, m.0);
}

/// A shard's part of an execution this one asked for.
pub fn received_execution_entry(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    if let Ok((token, entry)) =
        text(&mut payload).and_then(|t| Ok((t, take(&mut payload)?.to_vec())))
    {
        g.mailbox().deliver(&token, 0, sender, Ok(entry));
    }
}
