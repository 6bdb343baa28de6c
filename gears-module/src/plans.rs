//! How an execution is shown: one shard's entry of RG.GETEXECUTION (this
//! shard's, or another one's through a message).

use crate::state::Gears;
use gears_core::execution::Execution;
use gears_core::Reply;

/// `["shard_id", id, "execution_plan", [...]]` for `e` on this shard.
pub fn execution_entry(g: &Gears, e: &Execution) -> Reply {
    let snap = e.snapshot();
    let step_ms = e.step_ms();
    let steps = e
        .steps
        .iter()
        .zip(step_ms)
        .rev()
        .map(|(s, ms)| {
            Reply::map([
                ("type", Reply::bulk(s.kind)),
                ("duration", Reply::Int(ms as i64)),
                ("name", Reply::bulk(s.name.as_bytes())),
                ("arg", Reply::bulk(s.arg.as_bytes())),
            ])
        })
        .collect();
    let results = if snap.status.finished() {
        snap.results as i64
    } else {
        -1
    };
    let errors = snap.errors.iter().map(|x| Reply::bulk(x.as_bytes()));
    let plan = Reply::map([
        ("status", Reply::bulk(snap.status.name())),
        ("shards_received", Reply::Int(0)),
        ("shards_completed", Reply::Int(0)),
        ("results", Reply::Int(results)),
        ("errors", Reply::Array(errors.collect())),
        ("total_duration", Reply::Int(snap.total_ms as i64)),
        ("read_duration", Reply::Int(snap.read_ms as i64)),
        ("steps", Reply::Array(steps)),
    ]);
    let shard = g
        .topology()
        .my_id
        .clone()
        .unwrap_or_else(|| g.engine.node_id().to_owned());
    Reply::map([
        ("shard_id", Reply::bulk(shard.as_bytes())),
        ("execution_plan", plan),
    ])
}
