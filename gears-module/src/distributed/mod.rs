//! Work across the shards of a cluster, one protocol per file over one
//! message codec: `runs`, `executions`, `requirements`, `registrations`.
//! The message names below are 1.2's receiver names (`peers` maps them to
//! the receivers).
//!
//! `run()` across the shards of a cluster (1.2's default `mode='async'`):
//! the shard that got the script sends the pickled builder to every other
//! shard and each runs it over its own keys. Records cross shards at the
//! plan's boundaries: at a `repartition` each goes to the shard owning its
//! key (every shard waits for every other one's), at a `collect` all go to
//! the shard that started the run, which runs the rest over the union; so
//! `count`, `aggregate`, `sort`, `groupby`... answer as they would on one
//! shard. A shard silent for `ExecutionMaxIdleTime` ends the run with an
//! error.

use crate::prepared::AwaitingDecision;
use crate::redis;
use crate::state::Gears;
use gears_core::codec::{Decoder, Encoder};
use gears_core::plan::StepKind;
use gears_core::span::Crossing;
use gears_core::Identity;
use gears_python::PendingRun;
use std::time::Duration;

mod codec;
mod executions;
mod registrations;
mod requirements;
mod runs;

use codec::*;
pub use executions::*;
pub use registrations::*;
pub use requirements::*;
pub use runs::*;

/// The message that starts a run on another shard, and the one that brings
/// its records back (1.2's receiver names).
pub const RUN: &str = "ExecutionPlan_OnReceived";
pub const COLLECTED: &str = "ExecutionPlan_CollectOnRecordReceived";
pub const REPARTITIONED: &str = "ExecutionPlan_OnRepartitionRecordReceived";

/// A shard could not run its part (1.2 terminated the execution).
pub const FAILED: &str = "ExecutionPlan_TeminateExecution";

/// RG.ABORTEXECUTION and RG.DROPEXECUTION on every shard.
pub const ABORT: &str = "ExecutionPlan_AbortExecution";
pub const DROP: &str = "RG_OnDropExecutionMsgReceived";

/// A session's requirement (with its wheels), ahead of its registrations.
pub const REQUIREMENT: &str = "Requirement_Received";

/// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS on every shard.
pub const PAUSE: &str = "RG_PauseRegistration";

/// RG.GETEXECUTION ... CLUSTER: the question, and each shard's answer.
pub const GET_EXECUTION: &str = "ExecutionPlan_GetExecution";
pub const EXECUTION_ENTRY: &str = "ExecutionPlan_ExecutionEntry";

/// Registrations and unregistrations made on one shard, for all of them.
pub const REGISTER: &str = "FlatExecutionPlan_RegisterKeySpaceEvent";
pub const UNREGISTER: &str = "ExecutionPlan_UnregisterExecutionReceived";

/// A script's registrations for every shard: prepare, each shard's answer,
/// then apply or cancel.
pub const PREPARE: &str = "RG_RegistrationCtxUpgrade";
pub const REGISTERED: &str = "RG_RegistrationCtxUpgradeDone";
pub const COMMIT: &str = "RG_RegistrationCtxCommit";
pub const CANCEL: &str = "RG_RegistrationCtxCancel";

/// A shard applied (or could not) the registrations it was told to commit.
pub const COMMITTED: &str = "RG_RegistrationCtxCommitted";

/// The other shards of the topology.
fn others(g: &Gears) -> Vec<String> {
    let t = g.topology();
    t.shards
        .iter()
        .filter(|s| Some(&s.id) != t.my_id.as_ref())
        .map(|s| s.id.clone())
        .collect()
}

/// Sends `payload` to `receiver` on every other shard (in a cluster).
pub fn to_others(g: &Gears, receiver: &str, payload: &[u8]) {
    let Some(net) = g.cluster_net() else { return };
    for shard in others(g) {
        net.send(&shard, receiver, payload.to_vec());
    }
}
