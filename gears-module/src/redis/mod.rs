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
pub fn init(ctx: &Context, callbacks: Callbacks) {
    // SAFETY: called on the main thread during module load with a valid ctx.
    let detached = unsafe { raw::RedisModule_GetDetachedThreadSafeContext.unwrap()(ctx.ctx) };
    let _ = LAYER.set(Layer {
        main_thread: std::thread::current().id(),
        main_ctx: SendPtr(detached),
        callbacks,
    });
}

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
