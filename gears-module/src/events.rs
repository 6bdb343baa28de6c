//! Keyspace events: which KeysReader and StreamReader registrations an
//! event triggers, and how their executions start.
//!
//! Redis calls these on whatever thread made the change, with the Redis
//! lock held: the main thread for a client's command, a worker inside
//! `execute()`. `sync` registrations run right there, before the change's
//! command returns; the others are queued on the worker pool.

use crate::keys::{key_record, KeysReader};
use crate::linked::{self, Linked};
use crate::redis::{self, Notification};
use crate::state::{self, Gears};
use crate::streams;
use gears_core::dispatch::is_running_here;
use gears_core::engine::VecReader;
use gears_core::registration::{ReaderArgs, Registration};
use gears_core::{Caller, Fired, Identity, Placement, Reader};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Every keyspace event and key miss (KeysReader registrations).
///
/// Redis does not call a subscriber again while it is inside one of its
/// callbacks: writes made by a `sync` registration raise no KeysReader
/// events (so `expire` in a function on every key does not loop).
pub fn on_keyspace(n: &Notification<'_>) {
    let Some(g) = state::get() else { return };
    if g.any_streams.load(Ordering::Relaxed) && is_removal(n.event) {
        // A stream that goes takes its consumers' state with it.
        for reg in g.tables().streams_for(n) {
            streams::forget_stream(g, &reg, n.db, n.key);
        }
    }
    if g.any_keys.load(Ordering::Relaxed) {
        dispatch_keys(g, n);
    }
}

/// The events after which a key is gone.
fn is_removal(event: &str) -> bool {
    matches!(event, "del" | "expired" | "evicted" | "rename_from")
}

/// Stream events (StreamReader registrations). A separate subscriber, so
/// that a message added by a `sync` KeysReader function still reaches the
/// stream consumers.
pub fn on_stream(n: &Notification<'_>) {
    let Some(g) = state::get() else { return };
    if n.event != "xadd" || !g.any_streams.load(Ordering::Relaxed) {
        return;
    }
    let regs = g.tables().streams_for(n);
    for reg in &regs {
        if !is_running_here(reg) {
            streams::on_message(g, reg, n.db, n.key);
        }
    }
}

fn dispatch_keys(g: &'static Gears, n: &Notification<'_>) {
    // Only the registrations whose prefix matches: a few hash lookups,
    // whatever the number of registrations.
    let regs = g.tables().keys_for(n.key);
    for reg in &regs {
        let ReaderArgs::Keys {
            event_types,
            key_types,
            read_value,
            commands,
            ..
        } = &reg.args
        else {
            continue;
        };
        if is_running_here(reg) {
            continue;
        }
        if let Some(ev) = event_types {
            if !ev.iter().any(|e| e.eq_ignore_ascii_case(n.event)) {
                continue;
            }
        }
        let linked = match commands {
            Some(cmds) => match linked::current() {
                Some(l) if cmds.contains(&l.command) => Some(l),
                _ => continue,
            },
            None => None,
        };
        // The registration's owner only hears of keys it may read.
        let who = Identity::new(reg.owner.clone(), n.db);
        let visible = redis::with_lock(|ctx| {
            redis::without_key_miss_events(|| {
                ctx.select_db(n.db);
                if !redis::read_filter(ctx, &who, false)(n.key) {
                    return false;
                }
                let Some(kt) = key_types else { return true };
                let ty = redis::key_type(ctx, n.key);
                kt.iter().any(|t| t == ty.name())
            })
        });
        if visible {
            fire_keys(g, reg, n, who, *read_value, linked);
        }
    }
}

fn fire_keys(
    g: &Gears,
    reg: &Arc<Registration>,
    n: &Notification<'_>,
    who: Identity,
    read_value: bool,
    linked: Option<Arc<Linked>>,
) {
    let command = linked.as_ref().and_then(|l| l.ctx.clone());
    let placement = match g.engine.placement(reg, Caller::Event) {
        // Inside MULTI or Lua nothing may go on after the command: a record
        // that would wait is an error instead (as 1.2).
        Ok(Placement::Inline { .. }) if !n.may_wait => Placement::Inline { may_wait: false },
        Ok(placement) => placement,
        Err(_) => return,
    };
    // Inline: read the key now, under the lock this thread holds. Queued:
    // read it when the execution starts.
    let reader: Box<dyn Reader> = match placement {
        Placement::Inline { .. } => {
            let record = redis::with_lock(|c| {
                c.select_db(n.db);
                key_record(c, n.key, n.event, read_value)
            });
            Box::new(VecReader(Some(vec![record])))
        }
        Placement::Queued => Box::new(KeysReader::for_event(
            n.key.to_vec(),
            n.event.to_owned(),
            read_value,
            who.clone(),
        )),
    };
    // Queued, or gone on in the background (a record that waits): the
    // linked command waits for it.
    match g
        .engine
        .start(reg, placement, Caller::Event, who, reader, command)
    {
        Fired::Queued(e) => {
            if let Some(l) = linked {
                l.hold(e);
            }
        }
        Fired::Refused(e) => dropped(reg, &e),
        Fired::Finished(_) => {}
    }
}

/// An event dropped at `MaxQueuedExecutions` (`DropEventsWhenQueueFull 1`):
/// a failure in the registration's statistics, and a log line (at most one
/// a second).
fn dropped(reg: &Registration, e: &gears_core::execution::Execution) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    redis::log_at_most_every(&LAST, 1, "warning", || {
        format!(
            "an event of registration {} was dropped: {}",
            reg.id,
            e.first_error().unwrap_or_default()
        )
    });
}
