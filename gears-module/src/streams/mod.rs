//! StreamReader: `run()` over one stream and registrations that consume
//! streams through a consumer group.
//!
//! Each (registration, database, stream) has one consumer state. At most
//! one execution per stream is in flight. A batch is read with XREADGROUP
//! as the registration's owner (the consumer's pending entries first after
//! a (re)start, a retry or an abort; new ones after), and only once its
//! execution succeeded (or failed under `continue`) are its messages
//! acknowledged and trimmed, never past an entry still pending. A failed
//! batch stays pending in the group, so nothing is lost: `retry` reads it
//! again, a restart reads it again.
//!
//! Draining is a loop, not a recursion: after a batch, the consumer reads
//! on while a backlog is likely (a full batch, a batch of pending entries),
//! so messages already in the stream are processed without waiting for the
//! next XADD.

use crate::redis::{self, bulk_list};
use crate::state::{Consumer, Gears};
use gears_core::execution::{Execution, Status};
use gears_core::prefix::PrefixIndex;
use gears_core::record::KeyType;
use gears_core::registration::{BatchOutcome, OnFailed, ReaderArgs, Registration, StreamStatus};
use gears_core::sync::LockExt;
use gears_core::{Caller, Fired, Identity, Reader, Record, Reply};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod consumer;
mod discovery;
mod reader;

pub use consumer::*;
pub use discovery::*;
pub use reader::*;

pub const GROUP: &str = "__gears_consumer_group__";

pub const CONSUMER: &str = "__gears_client__";

fn call(who: &Identity, args: &[&[u8]]) -> Reply {
    redis::call_as(who, &args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
}

/// Stream entries of an XREAD/XREADGROUP reply as records; also returns
/// their ids.
fn entries(reply: Reply, key: &[u8]) -> (Vec<Record>, Vec<Vec<u8>>) {
    let mut records = Vec::new();
    let mut ids = Vec::new();
    let Reply::Array(streams) = reply else {
        return (records, ids);
    };
    for s in streams {
        let Reply::Array(mut pair) = s else { continue };
        let Some(Reply::Array(items)) = pair.pop() else {
            continue;
        };
        for item in items {
            let Reply::Array(mut e) = item else { continue };
            let fields = match e.pop() {
                Some(Reply::Array(f)) => f,
                _ => Vec::new(),
            };
            let Some(Reply::Bulk(id)) = e.pop() else {
                continue;
            };
            let mut value = Vec::with_capacity(fields.len() / 2);
            let mut it = fields.into_iter();
            while let (Some(Reply::Bulk(f)), Some(Reply::Bulk(v))) = (it.next(), it.next()) {
                value.push((f, Record::Str(v)));
            }
            ids.push(id.clone());
            records.push(Record::Dict(vec![
                (b"id".to_vec(), Record::Str(id)),
                (b"key".to_vec(), Record::Str(key.to_vec())),
                (b"value".to_vec(), Record::Dict(value)),
            ]));
        }
    }
    (records, ids)
}
