//! What shards say to each other: the receivers a message may name (1.2's
//! names) and sending to every other shard. The transport is [`crate::net`].

use crate::distributed;
use crate::redis as rd;
use crate::state::Gears;

/// What a received message does (main thread, Redis lock held): the
/// sender's node id and the payload.
pub type Handler = fn(&'static Gears, &str, &[u8]);

/// RG.NETWORKTEST's message: the receiver logs who sent it.
pub const NETWORK_TEST: &str = "RG_NetworkTest";

/// The receivers messages may name.
pub fn handler(name: &str) -> Option<Handler> {
    match name {
        NETWORK_TEST => Some(network_test),
        distributed::RUN => Some(distributed::received_run),
        distributed::COLLECTED | distributed::REPARTITIONED => Some(distributed::received_records),
        distributed::FAILED => Some(distributed::received_failure),
        distributed::ABORT => Some(distributed::received_abort),
        distributed::DROP => Some(distributed::received_drop),
        distributed::REQUIREMENT => Some(distributed::received_requirement),
        distributed::GET_EXECUTION => Some(distributed::received_get_execution),
        distributed::PAUSE => Some(distributed::received_pause),
        distributed::EXECUTION_ENTRY => Some(distributed::received_execution_entry),
        distributed::REGISTER => Some(distributed::received_registration),
        distributed::PREPARE => Some(distributed::received_prepare),
        distributed::COMMIT => Some(distributed::received_commit),
        distributed::CANCEL => Some(distributed::received_cancel),
        distributed::REGISTERED => Some(distributed::received_registered),
        distributed::COMMITTED => Some(distributed::received_committed),
        distributed::UNREGISTER => Some(distributed::received_unregister),
        _ => None,
    }
}

fn network_test(_: &'static Gears, sender: &str, _: &[u8]) {
    rd::log("notice", &format!("network test message from {sender}"));
}
