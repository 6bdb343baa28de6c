//! Threads and the Redis lock: the main thread's and each worker's
//! context, the reentrant lock ([`with_lock`], [`LockedCtx`]), what the main
//! thread is serving (for `RedisModule_Yield`), and the per-thread flags
//! that go with them. Calls, replies and keys live elsewhere; this file
//! only hands out contexts and the lock.

use super::*;

/// A thread's own detached context, freed when the thread ends (threads
/// that read ahead for one execution come and go).
pub(super) struct ThreadCtx(Cell<*mut raw::RedisModuleCtx>);

impl Drop for ThreadCtx {
    fn drop(&mut self) {
        let ctx = self.0.get();
        if !ctx.is_null() {
            // SAFETY: created by this thread in `thread_ctx` and freed once;
            // the thread is ending and holds no lock, so it takes the Redis
            // lock around the free (freeing a context's client touches
            // server state). Unlocking does not use the context.
            unsafe {
                raw::RedisModule_ThreadSafeContextLock.unwrap()(ctx);
                raw::RedisModule_FreeThreadSafeContext.unwrap()(ctx);
                raw::RedisModule_ThreadSafeContextUnlock.unwrap()(main_ctx());
            }
        }
    }
}

/// Whether the main thread is inside `RedisModule_Yield` (serving clients
/// while Python runs long).
pub(super) static YIELDING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Who the `call_as` in progress on this thread runs as: the identity
    /// of a module command it calls (whose client is a fake one).
    pub(super) static CALLING_AS: std::cell::RefCell<Option<Identity>> = const { std::cell::RefCell::new(None) };
    /// Set while the module reads keys for its own records: the key misses
    /// those reads raise are not events (a registration on key misses would
    /// otherwise trigger itself, or another one, forever).
    pub(super) static QUIET_READS: Cell<u32> = const { Cell::new(0) };
    /// The context of the command or notification the main thread serves
    /// now (per thread: only the main thread sets it): what
    /// `RedisModule_Yield` measures `busy-reply-threshold` from.
    pub(super) static SERVING: Cell<*mut raw::RedisModuleCtx> = const { Cell::new(ptr::null_mut()) };
    /// How many times this (non-main) thread holds the Redis lock: the lock
    /// is held by a thread, so its depth is per thread.
    pub(super) static LOCK_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// This thread's own thread-safe context, created on first use (a
    /// context locks for the thread that uses it).
    pub(super) static THREAD_CTX: ThreadCtx = const { ThreadCtx(Cell::new(ptr::null_mut())) };
}

/// Runs `f` (the module's own key reads) without raising key-miss events.
pub fn without_key_miss_events<R>(f: impl FnOnce() -> R) -> R {
    QUIET_READS.with(|r| r.set(r.get() + 1));
    let _done = on_drop(|| QUIET_READS.with(|r| r.set(r.get() - 1)));
    f()
}

/// Runs `f` as the work of the command or notification of `ctx`.
pub(super) fn serving<R>(ctx: *mut raw::RedisModuleCtx, f: impl FnOnce() -> R) -> R {
    with_local_cell(&SERVING, ctx, f)
}

/// Runs a command handler as the work of its command (see
/// [`yield_to_clients`]).
pub fn serving_command<R>(ctx: &Context, f: impl FnOnce() -> R) -> R {
    serving(ctx.ctx, f)
}

/// While long work runs on the main thread for a command or notification,
/// lets Redis process events and other clients' commands (they get `BUSY`
/// once `busy-reply-threshold` has passed since the command started, except
/// `allow-busy` ones). A no-op elsewhere.
pub fn yield_to_clients() {
    if !on_main_thread() {
        return;
    }
    let ctx = SERVING.with(|s| s.get());
    if ctx.is_null() {
        return;
    }
    YIELDING.store(true, Ordering::SeqCst);
    // SAFETY: main thread, inside the command or notification `ctx` belongs
    // to; Redis guards against nested yields itself.
    unsafe {
        raw::RedisModule_Yield.unwrap()(
            ctx,
            raw::REDISMODULE_YIELD_FLAG_CLIENTS as c_int,
            c"a gears Python function is running; RG.PYKILL stops it".as_ptr(),
        )
    };
    YIELDING.store(false, Ordering::SeqCst);
}

/// Whether a command runs while the main thread yields (see
/// [`yield_to_clients`]).
pub fn yielding() -> bool {
    YIELDING.load(Ordering::SeqCst)
}

pub fn on_main_thread() -> bool {
    LAYER.get().map(|l| l.main_thread) == Some(std::thread::current().id())
}

pub(super) fn main_ctx() -> *mut raw::RedisModuleCtx {
    LAYER.get().expect("module initialized").main_ctx.0
}

pub(super) fn thread_ctx() -> *mut raw::RedisModuleCtx {
    THREAD_CTX.with(|c| {
        if c.0.get().is_null() {
            // SAFETY: creating a detached thread-safe context is allowed from
            // any thread; `ThreadCtx` frees it when the thread ends.
            c.0.set(unsafe { raw::RedisModule_GetDetachedThreadSafeContext.unwrap()(main_ctx()) });
        }
        c.0.get()
    })
}

/// A context valid for calls, proof that this thread holds the Redis lock:
/// only [`with_lock`] makes one, and it can not outlive the closure.
#[derive(Clone, Copy)]
pub struct LockedCtx<'a>(
    pub(super) *mut raw::RedisModuleCtx,
    pub(super) std::marker::PhantomData<&'a ()>,
);

impl LockedCtx<'_> {
    /// Selects database `db` for the calls made with this context.
    pub fn select_db(self, db: i64) {
        // SAFETY: a context of this thread, lock held; an id out of range
        // fails without effect.
        unsafe { raw::RedisModule_SelectDb.unwrap()(self.0, db as c_int) };
    }

    /// Whether this server runs in cluster mode.
    pub fn cluster_enabled(self) -> bool {
        context_flags(self.0) & raw::REDISMODULE_CTX_FLAGS_CLUSTER != 0
    }

    /// Whether this server is a read-only replica.
    pub fn read_only_replica(self) -> bool {
        let f = context_flags(self.0);
        f & raw::REDISMODULE_CTX_FLAGS_SLAVE != 0 && f & raw::REDISMODULE_CTX_FLAGS_READONLY != 0
    }
}

/// Takes the Redis lock for this thread (reentrant; a no-op on the main
/// thread, which always holds it) and returns a context valid for calls.
/// Every `acquire` is paired with a [`release`].
pub(super) fn acquire() -> *mut raw::RedisModuleCtx {
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
pub(super) fn release() {
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

/// Takes the Redis lock until a matching [`unlock`] (`atomic()` blocks,
/// whose end is a separate call).
pub fn lock() {
    acquire();
}

/// Releases one [`lock`] of this thread.
pub fn unlock() {
    release();
}

/// Runs `f` with the Redis lock held and a context valid for calls.
pub fn with_lock<R>(f: impl for<'a> FnOnce(LockedCtx<'a>) -> R) -> R {
    let ctx = LockedCtx(acquire(), std::marker::PhantomData);
    let _release = on_drop(release);
    f(ctx)
}

/// The flags of a command's context.
pub(super) fn context_flags(ctx: *mut raw::RedisModuleCtx) -> u32 {
    // SAFETY: `ctx` is a live command or callback context.
    unsafe { raw::RedisModule_GetContextFlags.unwrap()(ctx) as u32 }
}

/// Whether the client of a command may be blocked (not inside MULTI, Lua,
/// or a context that denies blocking).
pub fn can_block(ctx: &Context) -> bool {
    let forbidden = raw::REDISMODULE_CTX_FLAGS_MULTI
        | raw::REDISMODULE_CTX_FLAGS_LUA
        | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING;
    context_flags(ctx.ctx) & forbidden == 0
}

/// Whether a command is replayed as it was (from the master or while
/// loading) rather than sent by a client.
pub fn is_replayed(ctx: &Context) -> bool {
    let replay = raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING;
    context_flags(ctx.ctx) & replay != 0
}
