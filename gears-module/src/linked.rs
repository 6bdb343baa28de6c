//! A client command linked to the executions its keyspace events start
//! (KeysReader registrations with `commands=[...]`): their steps may
//! `override_reply`, and the client waits for the queued ones.

use gears_core::execution::Execution;
use gears_core::scope::with_local;
use gears_core::sync::LockExt;
use gears_core::{CommandCtx, Reply};
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

pub struct Linked {
    /// Lower-cased command name.
    pub command: String,
    /// `None` inside MULTI or Lua: executions run, but nothing waits.
    pub ctx: Option<Arc<CommandCtx>>,
    /// Queued executions the client waits for.
    held: Mutex<Vec<Arc<Execution>>>,
}

impl Linked {
    pub fn new(command: String, attached: bool) -> Arc<Linked> {
        Arc::new(Linked {
            command,
            ctx: attached.then(|| Arc::new(CommandCtx::new(None))),
            held: Mutex::new(Vec::new()),
        })
    }

    /// Makes the client wait for `exec` too (only when attached).
    pub fn hold(&self, exec: Arc<Execution>) {
        if self.ctx.is_some() {
            self.held.lock_unpoisoned().push(exec);
        }
    }

    /// The executions the client waits for.
    pub fn held(&self) -> Vec<Arc<Execution>> {
        std::mem::take(&mut *self.held.lock_unpoisoned())
    }

    /// The reply the client gets: an override if a step set one, else the
    /// command's own.
    pub fn final_reply(&self, real: Reply) -> Reply {
        self.ctx
            .as_ref()
            .and_then(|c| c.take_override())
            .unwrap_or(real)
    }
}

thread_local! {
    /// The linked command being run on this thread, if any. Per thread by
    /// nature: Redis raises a command's keyspace events on the thread that
    /// runs it, inside the call.
    static LINKED: RefCell<Option<Arc<Linked>>> = const { RefCell::new(None) };
}

/// Runs `f` with `linked` as the command events see on this thread.
pub fn with_linked<R>(linked: &Arc<Linked>, f: impl FnOnce() -> R) -> R {
    with_local(&LINKED, Some(linked.clone()), f)
}

/// The linked command running on this thread.
pub fn current() -> Option<Arc<Linked>> {
    LINKED.with(|l| l.borrow().clone())
}
