//! The Redis layer: the only module that touches the raw Redis module API
//! (`redis_module::raw`) or uses `unsafe` in gears-module (`cargo xtask
//! lint` checks it). Everything else uses the safe functions here. One file
//! per job: `context` (threads and the lock), `calls`, `acl`, `replies`,
//! `keys`, `types` (data types and aux data), `events` (server events,
//! notifications, the command filter), `server` (INFO, config, log). Module
//! logic does not belong here: callbacks forward to [`Callbacks`].
//!
//! The Redis lock is tracked per thread: the main thread always holds it;
//! worker threads take it through [`with_lock`], which is reentrant.

// The module API is a table of optional function pointers that Redis fills
// at load; `init` refuses to load unless every one this layer calls is
// there (`api_used!` below, kept complete by a unit test), so the
// unwraps of those function pointers here can not fail.
#![allow(clippy::unwrap_used)]

use gears_core::record::{too_deep, KeyType, MAX_REPLY_DEPTH};
use gears_core::scope::{on_drop, with_local, with_local_cell};
use gears_core::{Identity, Reply};
use once_cell::sync::OnceCell;
use redis_module::{raw, Context};
use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

mod acl;
mod calls;
mod context;
mod events;
mod keys;
mod replies;
mod server;
mod strings;
mod types;

pub use acl::*;
pub use calls::*;
pub use context::*;
pub use events::*;
pub use keys::*;
pub use replies::*;
pub use server::*;
use strings::LockedString;
pub use types::*;

/// A raw pointer that may cross threads: Redis objects that the module API
/// allows to use from other threads (thread-safe contexts, blocked clients).
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: only used for Redis objects documented as usable from any thread
// (with the Redis lock held where the API requires it).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

/// What the layer keeps from module load: the main thread, the detached
/// context used for calls made on it, and the functions events go to. One
/// value, set once; the extern callbacks Redis calls have no other way to
/// reach it.
struct Layer {
    main_thread: std::thread::ThreadId,
    main_ctx: SendPtr<raw::RedisModuleCtx>,
    callbacks: Callbacks,
}

static LAYER: OnceCell<Layer> = OnceCell::new();

/// Records the main thread, creates the detached context used for calls
/// made on it, and keeps the callbacks for [`subscribe`]. Called once from
/// `RedisModule_OnLoad`, before anything else.
pub fn init(ctx: &Context, callbacks: Callbacks) -> Result<(), String> {
    let missing = missing_api();
    if !missing.is_empty() {
        return Err(format!(
            "this server lacks module API functions the module needs: {}",
            missing.join(", ")
        ));
    }
    // SAFETY: called on the main thread during module load with a valid ctx.
    let detached = unsafe { raw::RedisModule_GetDetachedThreadSafeContext.unwrap()(ctx.ctx) };
    let _ = LAYER.set(Layer {
        main_thread: std::thread::current().id(),
        main_ctx: SendPtr(detached),
        callbacks,
    });
    Ok(())
}

/// Declares the module API functions this layer calls: [`API_USED`], and
/// [`missing_api`], the ones the running server does not provide.
macro_rules! api_used {
    ($($name:ident),* $(,)?) => {
        /// Every module API function this layer calls.
        #[cfg_attr(not(test), allow(dead_code))]
        const API_USED: &[&str] = &[$(stringify!($name)),*];

        /// The functions of [`API_USED`] the running server lacks.
        fn missing_api() -> Vec<&'static str> {
            let mut out = Vec::new();
            $(
                // SAFETY: a copy of a pointer of the API table, which Redis
                // filled before loading the module and does not change.
                if unsafe { raw::$name }.is_none() {
                    out.push(stringify!($name));
                }
            )*
            out
        }
    };
}

api_used!(
    RedisModule_ACLCheckCommandPermissions,
    RedisModule_ACLCheckKeyPermissions,
    RedisModule_Alloc,
    RedisModule_BlockClient,
    RedisModule_BlockedClientMeasureTimeEnd,
    RedisModule_BlockedClientMeasureTimeStart,
    RedisModule_Call,
    RedisModule_CallReplyArrayElement,
    RedisModule_CallReplyInteger,
    RedisModule_CallReplyLength,
    RedisModule_CallReplyStringPtr,
    RedisModule_CallReplyType,
    RedisModule_Calloc,
    RedisModule_CloseKey,
    RedisModule_CommandFilterArgGet,
    RedisModule_CommandFilterArgInsert,
    RedisModule_CommandFilterArgsCount,
    RedisModule_CreateString,
    RedisModule_EmitAOF,
    RedisModule_Free,
    RedisModule_FreeCallReply,
    RedisModule_FreeModuleUser,
    RedisModule_FreeString,
    RedisModule_FreeThreadSafeContext,
    RedisModule_GetClientId,
    RedisModule_GetContextFlags,
    RedisModule_GetDetachedThreadSafeContext,
    RedisModule_GetModuleUserFromUserName,
    RedisModule_GetSelectedDb,
    RedisModule_GetThreadSafeContext,
    RedisModule_InfoAddFieldCString,
    RedisModule_InfoAddFieldLongLong,
    RedisModule_InfoAddSection,
    RedisModule_InfoBeginDictField,
    RedisModule_InfoEndDictField,
    RedisModule_IsKeysPositionRequest,
    RedisModule_KeyAtPos,
    RedisModule_KeyType,
    RedisModule_Log,
    RedisModule_ModuleTypeSetValue,
    RedisModule_OpenKey,
    RedisModule_Realloc,
    RedisModule_RegisterCommandFilter,
    RedisModule_RegisterInfoFunc,
    RedisModule_Replicate,
    RedisModule_ReplicateVerbatim,
    RedisModule_ReplyWithArray,
    RedisModule_ReplyWithError,
    RedisModule_ReplyWithLongLong,
    RedisModule_ReplyWithNull,
    RedisModule_ReplyWithSimpleString,
    RedisModule_ReplyWithStringBuffer,
    RedisModule_Scan,
    RedisModule_ScanCursorCreate,
    RedisModule_ScanCursorDestroy,
    RedisModule_SelectDb,
    RedisModule_StringDMA,
    RedisModule_StringPtrLen,
    RedisModule_SubscribeToKeyspaceEvents,
    RedisModule_SubscribeToServerEvent,
    RedisModule_ThreadSafeContextLock,
    RedisModule_ThreadSafeContextUnlock,
    RedisModule_UnblockClient,
    RedisModule_Yield,
);

/// Subscribes to keyspace events and installs the command filter: the last
/// step of a load that succeeded (Redis does not remove them when a load
/// fails).
pub fn subscribe(ctx: &Context) {
    read_role();
    // SAFETY: module load, main thread, valid context; the callbacks are
    // plain functions that live as long as the module.
    unsafe {
        // Replaces the handler redis_module! registered (ours comes later).
        raw::RedisModule_RegisterInfoFunc.unwrap()(ctx.ctx, Some(on_info));
        let events = raw::REDISMODULE_NOTIFY_ALL | raw::REDISMODULE_NOTIFY_KEY_MISS;
        raw::RedisModule_SubscribeToKeyspaceEvents.unwrap()(ctx.ctx, events, Some(on_keyspace));
        raw::RedisModule_SubscribeToKeyspaceEvents.unwrap()(
            ctx.ctx,
            raw::REDISMODULE_NOTIFY_STREAM,
            Some(on_stream),
        );
        raw::RedisModule_RegisterCommandFilter.unwrap()(
            ctx.ctx,
            Some(on_command),
            raw::REDISMODULE_CMDFILTER_NOSELF as i32,
        );
        for id in [
            raw::REDISMODULE_EVENT_LOADING,
            raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
            raw::REDISMODULE_EVENT_FORK_CHILD,
        ] {
            raw::RedisModule_SubscribeToServerEvent.unwrap()(
                ctx.ctx,
                raw::RedisModuleEvent { id, dataver: 1 },
                Some(on_server_event),
            );
        }
    }
}

fn guard(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log("warning", &format!("a {what} callback panicked"));
    }
}

#[cfg(test)]
mod tests {
    use super::API_USED;

    /// Every API function pointer this layer unwraps is checked at load.
    #[test]
    fn every_api_function_called_is_checked_at_load() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("acl.rs"),
            include_str!("calls.rs"),
            include_str!("context.rs"),
            include_str!("events.rs"),
            include_str!("keys.rs"),
            include_str!("replies.rs"),
            include_str!("server.rs"),
            include_str!("strings.rs"),
            include_str!("types.rs"),
        ];
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/redis"))
            .unwrap()
            .count();
        assert_eq!(
            files,
            sources.len(),
            "a file of the redis layer is not scanned here"
        );
        let mut missing = Vec::new();
        for text in sources {
            for (at, _) in text.match_indices(".unwrap()") {
                let start = text[..at]
                    .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map_or(0, |i| i + 1);
                let name = &text[start..at];
                if name.starts_with("RedisModule_") && !API_USED.contains(&name) {
                    missing.push(name.to_owned());
                }
            }
        }
        assert_eq!(missing, Vec::<String>::new());
    }
}
