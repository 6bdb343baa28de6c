//! The client command an execution is linked to: a command hook's
//! `call_next` and the `override_reply` of KeysReader registrations with
//! `commands=[...]`.

use crate::sync::LockExt;
use crate::Reply;
use std::sync::Mutex;

/// Calls the next hook of a chain, or the hooked command itself.
/// Implemented by the host; called without any language lock held.
pub trait CallNext: Send + Sync {
    fn call_next(&self, args: Vec<Vec<u8>>) -> Reply;
}

/// What the steps of a linked execution can do to the client's command.
pub struct CommandCtx {
    reply: Mutex<Option<Reply>>,
    next: Option<Box<dyn CallNext>>,
}

/// `override_reply` was called a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyOverridden;

impl CommandCtx {
    pub fn new(next: Option<Box<dyn CallNext>>) -> CommandCtx {
        CommandCtx {
            reply: Mutex::new(None),
            next,
        }
    }

    /// Sets the reply the client gets instead of the command's own; only
    /// the first call wins.
    pub fn override_reply(&self, r: Reply) -> Result<(), AlreadyOverridden> {
        let mut g = self.reply.lock_unpoisoned();
        if g.is_some() {
            return Err(AlreadyOverridden);
        }
        *g = Some(r);
        Ok(())
    }

    pub fn take_override(&self) -> Option<Reply> {
        self.reply.lock_unpoisoned().take()
    }

    /// The rest of a hook chain (`None` outside command hooks).
    pub fn next(&self) -> Option<&dyn CallNext> {
        self.next.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_override_counts() {
        let c = CommandCtx::new(None);
        assert!(c.next().is_none());
        c.override_reply(Reply::Int(1)).unwrap();
        assert_eq!(c.override_reply(Reply::Int(2)), Err(AlreadyOverridden));
        assert_eq!(c.take_override(), Some(Reply::Int(1)));
        assert_eq!(c.take_override(), None);
    }
}
