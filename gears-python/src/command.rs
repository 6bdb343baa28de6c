//! The command an execution is linked to: hooks (`call_next`) and
//! KeysReader registrations with `commands=[...]` (`override_reply`).

use gears_core::Reply;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// Calls the next hook of a chain, or the hooked command itself.
/// Implemented by the host; called without the GIL.
pub trait CallNext: Send + Sync {
    fn call_next(&self, args: Vec<Vec<u8>>) -> Reply;
}

/// What the steps of a linked execution can do to the client's command.
pub struct CommandCtx {
    reply: Mutex<Option<Reply>>,
    next: Option<Box<dyn CallNext>>,
}

impl CommandCtx {
    pub fn new(next: Option<Box<dyn CallNext>>) -> CommandCtx {
        CommandCtx {
            reply: Mutex::new(None),
            next,
        }
    }

    /// Sets the reply the client gets instead of the command's own; only
    /// the first call wins.
    pub fn override_reply(&self, r: Reply) -> Result<(), &'static str> {
        let mut g = self.reply.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_some() {
            return Err("Can only override reply once");
        }
        *g = Some(r);
        Ok(())
    }

    pub fn take_override(&self) -> Option<Reply> {
        self.reply.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(crate) fn next(&self) -> Option<&dyn CallNext> {
        self.next.as_deref()
    }
}

thread_local! {
    /// The command context of the execution running on this thread.
    pub(crate) static CURRENT_COMMAND: RefCell<Option<Arc<CommandCtx>>> =
        const { RefCell::new(None) };
}

pub(crate) fn current() -> Option<Arc<CommandCtx>> {
    CURRENT_COMMAND.with(|c| c.borrow().clone())
}
