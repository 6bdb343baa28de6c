//! Answering clients: [`reply`] now, or later through a [`Blocked`]
//! client, which answers with an error if dropped unanswered.

use super::*;

/// Writes `reply` to the client of a command.
pub fn reply(ctx: &Context, r: &Reply) {
    write_reply(ctx.ctx, r)
}

/// Writes `reply` to the client of `ctx`.
pub(super) fn write_reply(ctx: *mut raw::RedisModuleCtx, r: &Reply) {
    // SAFETY: `ctx` is a command context or a blocked client's thread-safe
    // context; both accept replies.
    unsafe {
        match r {
            Reply::Null => {
                raw::RedisModule_ReplyWithNull.unwrap()(ctx);
            }
            Reply::Int(i) => {
                raw::RedisModule_ReplyWithLongLong.unwrap()(ctx, *i);
            }
            Reply::Bulk(b) => {
                raw::RedisModule_ReplyWithStringBuffer.unwrap()(
                    ctx,
                    b.as_ptr().cast::<c_char>(),
                    b.len(),
                );
            }
            Reply::Status(s) => {
                raw::RedisModule_ReplyWithSimpleString.unwrap()(ctx, clean(s).as_ptr());
            }
            Reply::Error(e) => {
                raw::RedisModule_ReplyWithError.unwrap()(ctx, clean(e).as_ptr());
            }
            Reply::Array(items) => {
                raw::RedisModule_ReplyWithArray.unwrap()(ctx, items.len() as _);
                for i in items {
                    write_reply(ctx, i);
                }
            }
        }
    }
}

/// A client blocked until an execution finishes.
/// A blocked client, answered exactly once: by [`Blocked::reply`], or, if
/// whoever held it is dropped without answering (a panic, a thread that
/// could not start, a callback never called), with an error.
pub struct Blocked(Option<SendPtr<raw::RedisModuleBlockedClient>>);

/// What a client gets when its blocked reply was dropped unanswered.
pub const DROPPED_UNANSWERED: &str =
    "ERR the gears module lost this request before it could answer (see the Redis log)";

impl Drop for Blocked {
    fn drop(&mut self) {
        if let Some(bc) = self.0.take() {
            log("warning", "a blocked client was dropped unanswered");
            answer(bc.0, &Reply::Error(DROPPED_UNANSWERED.into()));
        }
    }
}

/// Sends `r` to the blocked client `bc` and unblocks it. Any thread.
pub(super) fn answer(bc: *mut raw::RedisModuleBlockedClient, r: &Reply) {
    // SAFETY: replies through a blocked client's thread-safe context need
    // no lock; the context is freed before unblocking, as documented;
    // `bc` is unblocked once (its `Blocked` is consumed or dropped).
    unsafe {
        raw::RedisModule_BlockedClientMeasureTimeEnd.unwrap()(bc);
        let ctx = raw::RedisModule_GetThreadSafeContext.unwrap()(bc);
        write_reply(ctx, r);
        raw::RedisModule_FreeThreadSafeContext.unwrap()(ctx);
        raw::RedisModule_UnblockClient.unwrap()(bc, ptr::null_mut());
    }
}

impl Blocked {
    /// Blocks the client of the current command (no timeout). The time
    /// until the reply counts as the command's (SLOWLOG, latency stats).
    pub fn new(ctx: &Context) -> Blocked {
        // SAFETY: called from a command handler on the main thread.
        let bc = unsafe {
            let bc = raw::RedisModule_BlockClient.unwrap()(ctx.ctx, None, None, None, 0);
            raw::RedisModule_BlockedClientMeasureTimeStart.unwrap()(bc);
            bc
        };
        Blocked(Some(SendPtr(bc)))
    }

    /// Sends `r` and unblocks the client. Any thread, no lock needed.
    pub fn reply(mut self, r: &Reply) {
        if let Some(bc) = self.0.take() {
            answer(bc.0, r);
        }
    }
}
