//! Thin, safe wrappers over the raw Redis module API that the rest of the
//! module needs: the Redis lock, command calls, replies, blocked clients and
//! the log.
//!
//! The Redis lock is tracked per thread: the main thread always holds it;
//! worker threads take it through [`with_lock`], which is reentrant.

use gears_core::Reply;
use once_cell::sync::OnceCell;
use redis_module::raw;
use std::cell::Cell;
use std::ffi::CString;
use std::os::raw::c_char;
use std::ptr;

/// A raw pointer that may cross threads: Redis objects that the module API
/// allows to use from other threads (thread-safe contexts, blocked clients).
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: only used for Redis objects documented as usable from any thread
// (with the Redis lock held where the API requires it).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

static MAIN_CTX: OnceCell<SendPtr<raw::RedisModuleCtx>> = OnceCell::new();
static MAIN_THREAD: OnceCell<std::thread::ThreadId> = OnceCell::new();

thread_local! {
    /// How many times this (non-main) thread holds the Redis lock.
    static LOCK_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// This thread's own thread-safe context, created on first use.
    static THREAD_CTX: Cell<*mut raw::RedisModuleCtx> = const { Cell::new(ptr::null_mut()) };
}

/// Records the main thread and creates the detached context used for calls
/// made on it. Called from `RedisModule_OnLoad`.
pub fn init(ctx: *mut raw::RedisModuleCtx) {
    let _ = MAIN_THREAD.set(std::thread::current().id());
    // SAFETY: called on the main thread during module load with a valid ctx.
    let detached = unsafe { raw::RedisModule_GetDetachedThreadSafeContext.unwrap()(ctx) };
    let _ = MAIN_CTX.set(SendPtr(detached));
}

pub fn on_main_thread() -> bool {
    MAIN_THREAD.get() == Some(&std::thread::current().id())
}

fn main_ctx() -> *mut raw::RedisModuleCtx {
    MAIN_CTX.get().expect("module initialized").0
}

fn thread_ctx() -> *mut raw::RedisModuleCtx {
    THREAD_CTX.with(|c| {
        if c.get().is_null() {
            // SAFETY: creating a detached thread-safe context is allowed from
            // any thread; it lives as long as the thread (workers never exit).
            c.set(unsafe { raw::RedisModule_GetDetachedThreadSafeContext.unwrap()(main_ctx()) });
        }
        c.get()
    })
}

/// Takes the Redis lock for this thread (reentrant; a no-op on the main
/// thread, which always holds it) and returns a context valid for calls.
/// Every `acquire` is paired with a [`release`].
pub fn acquire() -> *mut raw::RedisModuleCtx {
    if on_main_thread() {
        return main_ctx();
    }
    let ctx = thread_ctx();
    let depth = LOCK_DEPTH.with(|d| d.get());
    if depth == 0 {
        // SAFETY: `ctx` is this thread's thread-safe context.
        unsafe { raw::RedisModule_ThreadSafeContextLock.unwrap()(ctx) };
    }
    LOCK_DEPTH.with(|d| d.set(depth + 1));
    ctx
}

/// Releases one [`acquire`] of this thread.
pub fn release() {
    if on_main_thread() {
        return;
    }
    let depth = LOCK_DEPTH.with(|d| d.get());
    debug_assert!(depth > 0, "release without acquire");
    let depth = depth.saturating_sub(1);
    LOCK_DEPTH.with(|d| d.set(depth));
    if depth == 0 {
        // SAFETY: this thread locked it in `acquire`.
        unsafe { raw::RedisModule_ThreadSafeContextUnlock.unwrap()(thread_ctx()) };
    }
}

/// Runs `f` with the Redis lock held and a context valid for calls.
pub fn with_lock<R>(f: impl FnOnce(*mut raw::RedisModuleCtx) -> R) -> R {
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            release();
        }
    }
    let ctx = acquire();
    let _release = Release;
    f(ctx)
}

/// A call reply converted to a [`Reply`]; frees the raw reply.
///
/// # Safety
/// `r` must be a reply returned by `RedisModule_Call` (or an element of
/// one when `owned` is false), used with the Redis lock held.
unsafe fn convert_call_reply(r: *mut raw::RedisModuleCallReply, owned: bool) -> Reply {
    if r.is_null() {
        return Reply::Null;
    }
    let string = |r| {
        let mut len = 0usize;
        let p = raw::RedisModule_CallReplyStringPtr.unwrap()(r, &mut len);
        if p.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
        }
    };
    let out = match raw::RedisModule_CallReplyType.unwrap()(r) as isize {
        raw::REDISMODULE_REPLY_STRING => Reply::Bulk(string(r)),
        raw::REDISMODULE_REPLY_ERROR => {
            Reply::Error(String::from_utf8_lossy(&string(r)).into_owned())
        }
        raw::REDISMODULE_REPLY_INTEGER => Reply::Int(raw::RedisModule_CallReplyInteger.unwrap()(r)),
        raw::REDISMODULE_REPLY_ARRAY => {
            let n = raw::RedisModule_CallReplyLength.unwrap()(r);
            Reply::Array(
                (0..n)
                    .map(|i| {
                        convert_call_reply(
                            raw::RedisModule_CallReplyArrayElement.unwrap()(r, i),
                            false,
                        )
                    })
                    .collect(),
            )
        }
        raw::REDISMODULE_REPLY_NULL => Reply::Null,
        _ => Reply::Bulk(string(r)),
    };
    if owned {
        raw::RedisModule_FreeCallReply.unwrap()(r);
    }
    out
}

/// Runs a command through `RedisModule_Call`, replicating its effects.
/// Takes the Redis lock if this thread does not hold it.
pub fn call(argv: &[Vec<u8>]) -> Reply {
    call_with(argv, c"!vE")
}

/// Like [`call`] with explicit `RedisModule_Call` flags.
pub fn call_with(argv: &[Vec<u8>], flags: &std::ffi::CStr) -> Reply {
    if argv.is_empty() {
        return Reply::Error("ERR empty command".into());
    }
    let Ok(cmd) = CString::new(argv[0].clone()) else {
        return Reply::Error("ERR the command name contains a NUL byte".into());
    };
    with_lock(|ctx| call_locked(ctx, &cmd, &argv[1..], flags))
}

/// Like [`call`] but with the lock already held and explicit flags.
pub fn call_locked(
    ctx: *mut raw::RedisModuleCtx,
    cmd: &CString,
    args: &[Vec<u8>],
    flags: &std::ffi::CStr,
) -> Reply {
    // SAFETY: the caller holds the Redis lock and `ctx` is valid; the strings
    // we create are freed after the call, and the reply is freed by the
    // conversion.
    unsafe {
        let strings: Vec<*mut raw::RedisModuleString> = args
            .iter()
            .map(|a| {
                raw::RedisModule_CreateString.unwrap()(ctx, a.as_ptr().cast::<c_char>(), a.len())
            })
            .collect();
        let r = raw::RedisModule_Call.unwrap()(
            ctx,
            cmd.as_ptr(),
            flags.as_ptr(),
            strings.as_ptr(),
            strings.len(),
        );
        let out = if r.is_null() {
            Reply::Error(format!(
                "ERR command failed ({})",
                std::io::Error::last_os_error()
            ))
        } else {
            convert_call_reply(r, true)
        };
        for s in strings {
            raw::RedisModule_FreeString.unwrap()(ctx, s);
        }
        out
    }
}

fn clean(s: &str) -> CString {
    // Error and status replies are single lines without NUL.
    let s: String = s
        .chars()
        .map(|c| {
            if c == '\r' || c == '\n' || c == '\0' {
                ' '
            } else {
                c
            }
        })
        .collect();
    CString::new(s).expect("NULs were replaced")
}

/// Writes `reply` to the client of `ctx`.
pub fn reply(ctx: *mut raw::RedisModuleCtx, r: &Reply) {
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
                    reply(ctx, i);
                }
            }
        }
    }
}

/// A client blocked until an execution finishes.
pub struct Blocked(SendPtr<raw::RedisModuleBlockedClient>);

impl Blocked {
    /// Blocks the client of the current command (no timeout).
    pub fn new(ctx: *mut raw::RedisModuleCtx) -> Blocked {
        // SAFETY: called from a command handler on the main thread.
        let bc = unsafe { raw::RedisModule_BlockClient.unwrap()(ctx, None, None, None, 0) };
        Blocked(SendPtr(bc))
    }

    /// Sends `r` and unblocks the client. Any thread, no lock needed.
    pub fn reply(self, r: &Reply) {
        // SAFETY: replies through a blocked client's thread-safe context need
        // no lock; the context is freed before unblocking, as documented.
        unsafe {
            let ctx = raw::RedisModule_GetThreadSafeContext.unwrap()(self.0 .0);
            reply(ctx, r);
            raw::RedisModule_FreeThreadSafeContext.unwrap()(ctx);
            raw::RedisModule_UnblockClient.unwrap()(self.0 .0, ptr::null_mut());
        }
    }
}

/// Writes to the Redis log, prefixed like every gears message.
pub fn log(level: &str, message: &str) {
    let Some(ctx) = MAIN_CTX.get() else { return };
    let level = CString::new(level).expect("static level");
    let msg = CString::new(format!("GEARS: {message}").replace('\0', " ")).expect("NULs replaced");
    // SAFETY: RedisModule_Log may be called from any thread; "%s" with a
    // NUL-terminated string.
    unsafe {
        raw::RedisModule_Log.unwrap()(ctx.0, level.as_ptr(), c"%s".as_ptr(), msg.as_ptr());
    }
}

/// The flags of a command's context.
pub fn context_flags(ctx: *mut raw::RedisModuleCtx) -> u32 {
    // SAFETY: `ctx` is a live command context.
    unsafe { raw::RedisModule_GetContextFlags.unwrap()(ctx) as u32 }
}
