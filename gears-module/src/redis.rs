//! The Redis layer: the only module that touches the raw Redis module API.
//! Everything else uses the safe functions here: the Redis lock, command
//! calls, replies, blocked clients, the log, key types and scans, keyspace
//! notifications and the command filter.
//!
//! The Redis lock is tracked per thread: the main thread always holds it;
//! worker threads take it through [`with_lock`], which is reentrant.

use gears_core::record::{too_deep, KeyType, MAX_REPLY_DEPTH};
use gears_core::{Identity, Reply};
use once_cell::sync::OnceCell;
use redis_module::{raw, Context};
use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// A thread's own detached context, freed when the thread ends (threads
/// that read ahead for one execution come and go).
struct ThreadCtx(Cell<*mut raw::RedisModuleCtx>);

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
static YIELDING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Who the `call_as` in progress on this thread runs as: the identity
    /// of a module command it calls (whose client is a fake one).
    static CALLING_AS: std::cell::RefCell<Option<Identity>> = const { std::cell::RefCell::new(None) };
    /// Set while the module reads keys for its own records: the key misses
    /// those reads raise are not events (a registration on key misses would
    /// otherwise trigger itself, or another one, forever).
    static READING: Cell<u32> = const { Cell::new(0) };
    /// The context of the command or notification the main thread serves
    /// now (per thread: only the main thread sets it): what
    /// `RedisModule_Yield` measures `busy-reply-threshold` from.
    static SERVING: Cell<*mut raw::RedisModuleCtx> = const { Cell::new(ptr::null_mut()) };
    /// How many times this (non-main) thread holds the Redis lock: the lock
    /// is held by a thread, so its depth is per thread.
    static LOCK_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// This thread's own thread-safe context, created on first use (a
    /// context locks for the thread that uses it).
    static THREAD_CTX: ThreadCtx = const { ThreadCtx(Cell::new(ptr::null_mut())) };
}

/// A keyspace notification: the event's name, the key and its database.
pub struct Notification<'a> {
    pub event: &'a str,
    pub key: &'a [u8],
    pub db: i64,
    /// Raised outside MULTI and Lua: what it starts may go on in the
    /// background.
    pub may_wait: bool,
}

/// Where Redis's callbacks go. Each runs under `catch_unwind`.
pub struct Callbacks {
    /// Every keyspace event and key miss, on a master that is not loading.
    pub keyspace: fn(&Notification<'_>),
    /// Stream events (a second subscriber: Redis does not re-enter a
    /// subscriber from its own callback).
    pub stream: fn(&Notification<'_>),
    /// Every command a client sends (`NOSELF`: not our own calls).
    pub command_filter: fn(&mut CommandFilter<'_>),
    /// The registrations part of the RDB aux data (written before the
    /// keys), when none was prepared.
    pub aux_save: fn() -> Vec<u8>,
    /// The id counters part of the aux data (read in a forked child: no
    /// locks).
    pub aux_counters: fn() -> Vec<u8>,
    /// Reads what the aux save wrote; an error fails the load.
    pub aux_load: fn(Aux<'_>) -> Result<(), String>,
    /// A load (RDB, AOF, full sync) starts (`true`) or ended (`false`).
    pub loading: fn(bool),
    /// The server became a master (`true`) or a replica (`false`).
    pub role_changed: fn(bool),
    /// An AOF rewrite without RDB preamble started: the state kept in aux
    /// data must reach the new AOF as commands.
    pub aof_rewrite: fn(),
    /// A time event was loaded (RDB): start its timer.
    pub time_event: fn(&TimeEvent),
    /// The module's INFO sections (`true`: for a crash report, where no
    /// lock may be taken).
    pub info: fn(bool) -> Vec<InfoSection>,
}

/// A value of the module's INFO output.
pub enum InfoValue {
    Int(i64),
    Text(String),
    /// `name:a=1,b=x` (scalars only).
    Dict(Vec<(String, InfoValue)>),
}

/// One INFO section: `# rg` for the empty name, `# rg_<name>` otherwise;
/// Redis prefixes every field with `rg_`.
pub struct InfoSection {
    pub name: &'static str,
    pub fields: Vec<(String, InfoValue)>,
}

/// The data type that only carries the module's RDB aux data (no key is
/// ever of this type).
pub static GEARS_TYPE: redis_module::native_types::RedisType =
    redis_module::native_types::RedisType::new(
        "GEARS_REG",
        AUX_VERSION,
        raw::RedisModuleTypeMethods {
            aux_load: Some(aux_load),
            aux_save: Some(aux_save),
            aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as i32,
            ..NO_METHODS
        },
    );

/// A data type's callbacks, none set.
const NO_METHODS: raw::RedisModuleTypeMethods = raw::RedisModuleTypeMethods {
    version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
    rdb_load: None,
    rdb_save: None,
    aof_rewrite: None,
    free: None,
    mem_usage: None,
    digest: None,
    aux_load: None,
    aux_save: None,
    aux_save2: None,
    aux_save_triggers: 0,
    free_effort: None,
    unlink: None,
    copy: None,
    defrag: None,
    copy2: None,
    free_effort2: None,
    mem_usage2: None,
    unlink2: None,
};

/// A time event: the value of a key of type [`TIME_EVENT_TYPE`]. Deleting
/// the key frees the value, which cancels the event.
pub struct TimeEvent {
    pub period_ms: u64,
    pub owner: Option<String>,
    /// The callback in the host language's saved form.
    pub payload: Vec<u8>,
    pub cancelled: std::sync::Arc<AtomicBool>,
}

impl TimeEvent {
    pub fn new(period_ms: u64, owner: Option<String>, payload: Vec<u8>) -> TimeEvent {
        TimeEvent {
            period_ms,
            owner,
            payload,
            cancelled: std::sync::Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The type of keys that hold a time event (`registerTimeEvent`).
pub static TIME_EVENT_TYPE: redis_module::native_types::RedisType =
    redis_module::native_types::RedisType::new(
        "GEARS_TEV",
        1,
        raw::RedisModuleTypeMethods {
            rdb_load: Some(te_rdb_load),
            rdb_save: Some(te_rdb_save),
            aof_rewrite: Some(te_aof_rewrite),
            free: Some(te_free),
            ..NO_METHODS
        },
    );

extern "C" fn te_rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: Redis hands back a value this module set (a `TimeEvent`).
    let ev = unsafe { &*value.cast::<TimeEvent>() };
    guard("time event save", || {
        raw::save_unsigned(rdb, ev.period_ms);
        raw::save_slice(rdb, ev.owner.as_deref().unwrap_or("").as_bytes());
        raw::save_slice(rdb, &ev.payload);
    });
}

extern "C" fn te_rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    // Only a load (RDB, full sync, DEBUG RELOAD) brings time events: a
    // RESTORE could hand any owner and any code to run.
    if !is_loading() {
        log("warning", "refused a time event outside a load (RESTORE)");
        return ptr::null_mut();
    }
    if encver != 1 {
        log(
            "warning",
            &format!("a time event of version {encver} can not be loaded"),
        );
        return ptr::null_mut();
    }
    let (Ok(period_ms), Ok(owner), Ok(payload)) = (
        raw::load_unsigned(rdb),
        raw::load_string_buffer(rdb),
        raw::load_string_buffer(rdb),
    ) else {
        return ptr::null_mut();
    };
    let owner = String::from_utf8_lossy(owner.as_ref()).into_owned();
    let ev = TimeEvent::new(
        period_ms,
        (!owner.is_empty()).then_some(owner),
        payload.as_ref().to_vec(),
    );
    if let Some(layer) = LAYER.get() {
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (layer.callbacks.time_event)(&ev)
        }));
        if started.is_err() {
            log("warning", "starting a loaded time event panicked");
        }
    }
    Box::into_raw(Box::new(ev)).cast()
}

extern "C" fn te_aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    // SAFETY: a `TimeEvent` of ours; `key` is live for the call; the
    // strings passed are copied by Redis.
    unsafe {
        let ev = &*value.cast::<TimeEvent>();
        let period = ev.period_ms.to_string();
        let owner = ev.owner.as_deref().unwrap_or("");
        raw::RedisModule_EmitAOF.unwrap()(
            aof,
            c"RG.INNERTIMEEVENT".as_ptr(),
            c"sbbb".as_ptr(),
            key,
            period.as_ptr(),
            period.len(),
            owner.as_ptr(),
            owner.len(),
            ev.payload.as_ptr(),
            ev.payload.len(),
        );
    }
}

extern "C" fn te_free(value: *mut c_void) {
    // SAFETY: a `TimeEvent` boxed by this module, freed once by Redis.
    let ev = unsafe { Box::from_raw(value.cast::<TimeEvent>()) };
    ev.cancelled.store(true, Ordering::SeqCst);
}

/// Stores `ev` under `key` (database selected); an error if the key
/// exists.
pub fn set_time_event(ctx: LockedCtx, key: &[u8], ev: TimeEvent) -> Result<(), String> {
    // SAFETY: lock held; the key is closed and the string freed here; on
    // success Redis owns the boxed value (freed by `te_free`).
    unsafe {
        let name =
            raw::RedisModule_CreateString.unwrap()(ctx.0, key.as_ptr().cast::<c_char>(), key.len());
        let k = raw::RedisModule_OpenKey.unwrap()(
            ctx.0,
            name,
            (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as i32,
        );
        raw::RedisModule_FreeString.unwrap()(ctx.0, name);
        let out = if raw::RedisModule_KeyType.unwrap()(k) != raw::REDISMODULE_KEYTYPE_EMPTY as c_int
        {
            Err("key already exists".to_string())
        } else {
            let value = Box::into_raw(Box::new(ev));
            let set = raw::RedisModule_ModuleTypeSetValue.unwrap()(
                k,
                *TIME_EVENT_TYPE.raw_type.borrow(),
                value.cast(),
            );
            if set == raw::REDISMODULE_OK as c_int {
                Ok(())
            } else {
                drop(Box::from_raw(value));
                Err("could not store the time event".to_string())
            }
        };
        raw::RedisModule_CloseKey.unwrap()(k);
        out
    }
}

/// The encoding version of the aux data (each part carries its own format
/// version too). Version 1 had the registrations only; version 2 has the
/// id counters, the Python requirements and the registrations, in that
/// order (requirements are installed before the registrations that import
/// them are restored).
const AUX_VERSION: i32 = 2;

/// The parts of the aux data that are encoded ahead of a save.
#[derive(Clone, Copy)]
pub enum AuxPart {
    Registrations = 0,
    Requirements = 1,
}

/// The aux data as it was loaded.
pub struct Aux<'a> {
    /// The id counters (`None` in version 1 data).
    pub counters: Option<&'a [u8]>,
    pub requirements: &'a [u8],
    pub registrations: &'a [u8],
}

/// The aux parts, encoded again (main thread) whenever what they hold
/// changes: a forked child (BGSAVE, full sync, AOF rewrite) writes them
/// without taking any lock that another thread may have held at the fork.
static PREPARED: [std::sync::atomic::AtomicPtr<Vec<u8>>; 2] = [
    std::sync::atomic::AtomicPtr::new(ptr::null_mut()),
    std::sync::atomic::AtomicPtr::new(ptr::null_mut()),
];

/// Keeps `blob` as the aux data `part` to save (Redis lock held).
pub fn prepare_aux(part: AuxPart, blob: Vec<u8>) {
    let new = Box::into_raw(Box::new(blob));
    let old = PREPARED[part as usize].swap(new, Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: boxed here, swapped out once.
        drop(unsafe { Box::from_raw(old) });
    }
}

extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return;
    }
    let Some(layer) = LAYER.get() else { return };
    // Counters are atomics: safe to read in a forked child.
    let counters = std::panic::catch_unwind(layer.callbacks.aux_counters).unwrap_or_default();
    raw::save_slice(rdb, &counters);
    for part in [AuxPart::Requirements, AuxPart::Registrations] {
        let prepared = PREPARED[part as usize].load(Ordering::SeqCst);
        if !prepared.is_null() {
            // SAFETY: replaced only under the Redis lock, which a save holds
            // (a forked child has its own copy).
            raw::save_slice(rdb, unsafe { &*prepared });
            continue;
        }
        let blob = match part {
            AuxPart::Requirements => Vec::new(),
            AuxPart::Registrations => std::panic::catch_unwind(layer.callbacks.aux_save)
                .unwrap_or_else(|_| {
                    log(
                        "warning",
                        "saving the registrations panicked; none are saved",
                    );
                    Vec::new()
                }),
        };
        raw::save_slice(rdb, &blob);
    }
}

extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, encver: c_int, _when: c_int) -> c_int {
    let fail = |why: &str| {
        log(
            "warning",
            &format!("could not load the registrations: {why}"),
        );
        raw::REDISMODULE_ERR as c_int
    };
    if encver != 1 && encver != AUX_VERSION {
        return fail(&format!(
            "aux data of version {encver}, this module reads versions 1 and {AUX_VERSION}"
        ));
    }
    let Some(layer) = LAYER.get() else {
        return fail("the module is not initialized");
    };
    let parts = if encver == 1 { 1 } else { 3 };
    let mut bufs = Vec::with_capacity(parts);
    for _ in 0..parts {
        let Ok(buf) = raw::load_string_buffer(rdb) else {
            return fail("the RDB ended early");
        };
        bufs.push(buf.as_ref().to_vec());
    }
    let aux = match bufs.as_slice() {
        [registrations] => Aux {
            counters: None,
            requirements: &[],
            registrations,
        },
        [counters, requirements, registrations] => Aux {
            counters: Some(counters),
            requirements,
            registrations,
        },
        _ => return fail("unexpected aux layout"),
    };
    match std::panic::catch_unwind(|| (layer.callbacks.aux_load)(aux)) {
        Ok(Ok(())) => raw::REDISMODULE_OK as c_int,
        Ok(Err(e)) => fail(&e),
        Err(_) => fail("loading them panicked"),
    }
}

extern "C" fn on_server_event(
    _ctx: *mut raw::RedisModuleCtx,
    eid: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    let Some(layer) = LAYER.get() else { return };
    let cb = &layer.callbacks;
    guard("server event", || {
        if eid.id == raw::REDISMODULE_EVENT_LOADING {
            match subevent {
                raw::REDISMODULE_SUBEVENT_LOADING_RDB_START
                | raw::REDISMODULE_SUBEVENT_LOADING_AOF_START
                | raw::REDISMODULE_SUBEVENT_LOADING_REPL_START => (cb.loading)(true),
                raw::REDISMODULE_SUBEVENT_LOADING_ENDED => (cb.loading)(false),
                _ => {}
            }
        } else if eid.id == raw::REDISMODULE_EVENT_FORK_CHILD
            && subevent == raw::REDISMODULE_SUBEVENT_FORK_CHILD_BORN
            && aof_rewrite_without_preamble()
        {
            (cb.aof_rewrite)();
        } else if eid.id == raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED {
            let master = subevent == raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER;
            MASTER.store(master, Ordering::SeqCst);
            (cb.role_changed)(master);
        }
    });
}

/// Whether the child just forked rewrites the AOF into commands only
/// (`aof-use-rdb-preamble no`): its base file then has no aux data.
fn aof_rewrite_without_preamble() -> bool {
    server_info("persistence", "aof_rewrite_in_progress").as_deref() == Some("1")
        && config_get("aof-use-rdb-preamble").as_deref() == Some("no")
}

/// Whether this server is loading data (RDB, AOF, full sync).
pub fn is_loading() -> bool {
    LAYER
        .get()
        .is_some_and(|l| context_flags(l.main_ctx.0) & raw::REDISMODULE_CTX_FLAGS_LOADING != 0)
}

/// This server's role, kept by the main thread (at load, and on role
/// changes) so that other threads read it without the Redis lock.
static MASTER: AtomicBool = AtomicBool::new(true);

/// Reads the role from the server (main thread).
fn read_role() {
    if let Some(l) = LAYER.get() {
        let master = context_flags(l.main_ctx.0) & raw::REDISMODULE_CTX_FLAGS_MASTER != 0;
        MASTER.store(master, Ordering::SeqCst);
    }
}

/// Logs `message()` unless this `last` (a call site's own static) logged
/// within the same `period_s` seconds: repeated warnings under load.
pub fn log_at_most_every(
    last: &AtomicU64,
    period_s: u64,
    level: &str,
    message: impl FnOnce() -> String,
) {
    let slot = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / period_s.max(1));
    if last.swap(slot, Ordering::Relaxed) != slot {
        log(level, &message());
    }
}

/// An event was queued beyond `MaxQueuedExecutions` (`queued` wait now):
/// kept, not dropped, and logged at most once a minute. (Redis 7.0 gives
/// modules no safe way to make the writers wait: `CLIENT PAUSE WRITE`
/// asserts when the workers' writes propagate during the pause.)
pub fn queue_over_limit(queued: usize) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    log_at_most_every(&LAST, 60, "notice", || {
        format!(
            "{queued} executions wait for a worker, beyond MaxQueuedExecutions: events are \
             kept and processed in order as the workers catch up (DropEventsWhenQueueFull 1 \
             drops them instead)"
        )
    });
}

/// The number of databases (`databases`, fixed at start-up).
pub fn database_count() -> i64 {
    static COUNT: OnceLock<i64> = OnceLock::new();
    *COUNT.get_or_init(|| {
        config_get("databases")
            .and_then(|n| n.parse().ok())
            .unwrap_or(16)
    })
}

/// Whether this server is a master now.
pub fn is_master() -> bool {
    MASTER.load(Ordering::SeqCst)
}

/// Propagates `cmd args...` to the AOF and the replicas, as part of the
/// command being served (main thread).
pub fn replicate(cmd: &CStr, args: &[&[u8]]) {
    let ctx = if on_main_thread() {
        let serving = SERVING.with(|s| s.get());
        if serving.is_null() {
            main_ctx()
        } else {
            serving
        }
    } else {
        thread_ctx()
    };
    // SAFETY: main thread, lock held; the strings are freed after the call,
    // which copies them.
    unsafe {
        let strings: Vec<*mut raw::RedisModuleString> = args
            .iter()
            .map(|a| {
                raw::RedisModule_CreateString.unwrap()(ctx, a.as_ptr().cast::<c_char>(), a.len())
            })
            .collect();
        raw::RedisModule_Replicate.unwrap()(
            ctx,
            cmd.as_ptr(),
            c"v".as_ptr(),
            strings.as_ptr(),
            strings.len(),
        );
        for s in strings {
            raw::RedisModule_FreeString.unwrap()(ctx, s);
        }
    }
}

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

/// Runs `f` (the module's own key reads) without raising key-miss events.
pub fn reading<R>(f: impl FnOnce() -> R) -> R {
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            READING.with(|r| r.set(r.get() - 1));
        }
    }
    READING.with(|r| r.set(r.get() + 1));
    let _done = Done;
    f()
}

/// Runs `f` as the work of the command or notification of `ctx`.
fn serving<R>(ctx: *mut raw::RedisModuleCtx, f: impl FnOnce() -> R) -> R {
    struct Restore(*mut raw::RedisModuleCtx);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERVING.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERVING.with(|s| s.replace(ctx)));
    f()
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

fn main_ctx() -> *mut raw::RedisModuleCtx {
    LAYER.get().expect("module initialized").main_ctx.0
}

fn thread_ctx() -> *mut raw::RedisModuleCtx {
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
pub struct LockedCtx<'a>(*mut raw::RedisModuleCtx, std::marker::PhantomData<&'a ()>);

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
fn acquire() -> *mut raw::RedisModuleCtx {
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
fn release() {
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
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            release();
        }
    }
    let ctx = LockedCtx(acquire(), std::marker::PhantomData);
    let _release = Release;
    f(ctx)
}

/// A call reply converted to a [`Reply`]; frees the raw reply.
///
/// # Safety
/// `r` must be a reply returned by `RedisModule_Call` (or an element of
/// one when `owned` is false), used with the Redis lock held.
unsafe fn convert_call_reply(
    r: *mut raw::RedisModuleCallReply,
    owned: bool,
    depth: usize,
) -> Reply {
    if r.is_null() {
        return Reply::Null;
    }
    if depth > MAX_REPLY_DEPTH {
        if owned {
            raw::RedisModule_FreeCallReply.unwrap()(r);
        }
        return Reply::Error(too_deep());
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
                            depth + 1,
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
pub fn call_with(argv: &[Vec<u8>], flags: &CStr) -> Reply {
    if argv.is_empty() {
        return Reply::Error("ERR empty command".into());
    }
    let Ok(cmd) = CString::new(argv[0].clone()) else {
        return Reply::Error("ERR the command name contains a NUL byte".into());
    };
    with_lock(|ctx| call_locked(ctx, &cmd, &argv[1..], flags))
}

/// Runs a command as `who`: in its database, with its user's permissions
/// (a command or key it may not use gets a `NOPERM` error), refused over
/// `maxmemory` when it would grow the data, and refused to write on a
/// read-only replica. Replicated when it writes.
pub fn call_as(who: &Identity, argv: &[Vec<u8>]) -> Reply {
    if argv.is_empty() {
        return Reply::Error("ERR empty command".into());
    }
    let Ok(cmd) = CString::new(argv[0].clone()) else {
        return Reply::Error("ERR the command name contains a NUL byte".into());
    };
    with_lock(|ctx| {
        let mut words = Words::new(ctx, argv);
        if let Some(user) = &who.user {
            if let Err(e) = permitted(ctx, user, &mut words) {
                return e;
            }
        }
        ctx.select_db(who.db);
        let flags = if ctx.read_only_replica() {
            c"!vEMW"
        } else {
            c"!vEM"
        };
        struct Restore(Option<Identity>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                CALLING_AS.with(|c| *c.borrow_mut() = prev);
            }
        }
        let _restore = Restore(CALLING_AS.with(|c| c.replace(Some(who.clone()))));
        call_words(ctx, &cmd, &words.strings[1..], flags)
    })
}

/// Runs a command replayed from the master or the AOF, as it was: in
/// database `db`, unchecked and not propagated again (a replica proxies its
/// master's stream to its own replicas).
pub fn call_replayed(ctx: &Context, argv: &[Vec<u8>]) -> Reply {
    let Some((cmd, args)) = argv.split_first() else {
        return Reply::Error("ERR empty command".into());
    };
    let Ok(cmd) = CString::new(cmd.clone()) else {
        return Reply::Error("ERR the command name contains a NUL byte".into());
    };
    // On the replayed command's own context (the master's client, or the
    // AOF's): its database, its slots, and `!` reaches this server's own
    // AOF (replicas of a replica get the master's stream as it is).
    let locked = LockedCtx(ctx.ctx, std::marker::PhantomData);
    call_locked(locked, &cmd, args, c"!vE")
}

/// Propagates a replayed module command as it came (to this server's AOF).
pub fn replicate_verbatim(ctx: &Context) {
    // SAFETY: a live command context on the main thread.
    unsafe { raw::RedisModule_ReplicateVerbatim.unwrap()(ctx.ctx) };
}

/// Commands that check permissions of their own when they run, which the
/// fake client of `RedisModule_Call` (no user) would skip: refused to
/// Python acting for a user.
fn escapes_acl(words: &Words) -> bool {
    let cmd = String::from_utf8_lossy(words.first()).to_ascii_lowercase();
    match cmd.as_str() {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => true,
        // SORT ... BY/GET patterns read other keys.
        "sort" | "sort_ro" => words.strings.iter().skip(2).any(|s| {
            // SAFETY: live strings of `words`.
            let w = unsafe { string_bytes(*s) };
            w.eq_ignore_ascii_case(b"by") || w.eq_ignore_ascii_case(b"get")
        }),
        _ => false,
    }
}

/// Whether `user` may run the command of `words` (command and keys), by
/// the server's ACLs.
fn permitted(ctx: LockedCtx, user: &str, words: &mut Words) -> Result<(), Reply> {
    if escapes_acl(words) {
        return Err(Reply::Error(format!(
            "NOPERM '{}' can not be run from gears on behalf of a user",
            String::from_utf8_lossy(words.first()).to_ascii_lowercase()
        )));
    }
    let Some(u) = AclUser::find(ctx, user) else {
        return Err(Reply::Error(format!(
            "NOPERM the user '{user}' does not exist"
        )));
    };
    // SAFETY: lock held (a `LockedCtx` exists); `words` are live strings.
    let (status, errno) = unsafe {
        let status = raw::RedisModule_ACLCheckCommandPermissions.unwrap()(
            u.0,
            words.strings.as_mut_ptr(),
            words.strings.len() as c_int,
        );
        (status, std::io::Error::last_os_error().raw_os_error())
    };
    if status == raw::REDISMODULE_OK as c_int || errno == Some(ENOENT) {
        // (An unknown command: let the call say so.)
        return Ok(());
    }
    Err(Reply::Error(format!(
        "NOPERM this user has no permissions to run the '{}' command or to access one of its keys",
        String::from_utf8_lossy(words.first()).to_ascii_lowercase()
    )))
}

/// Redis's allocator (`RedisModule_Alloc`...): what it allocates counts in
/// `used_memory` and against `maxmemory`. Thread-safe, lock-free.
pub fn allocator() -> gears_python::alloc::Allocator {
    // SAFETY: function pointers the API filled in at load, before this is
    // called; they stay valid for the life of the process.
    unsafe {
        gears_python::alloc::Allocator {
            malloc: raw::RedisModule_Alloc.unwrap(),
            calloc: raw::RedisModule_Calloc.unwrap(),
            realloc: raw::RedisModule_Realloc.unwrap(),
            free: raw::RedisModule_Free.unwrap(),
        }
    }
}

/// Whether this server files module commands under ACL categories
/// (`RedisModule_SetCommandACLCategories`: Redis 7.2 and later, Valkey).
pub fn acl_categories_supported() -> bool {
    // SAFETY: reads a function pointer the API filled in at load.
    unsafe { raw::RedisModule_SetCommandACLCategories }.is_some()
}

/// Whether `user` may run the command `argv` by the server's ACLs. Called
/// from a command handler (the lock is held).
pub fn may_run(ctx: &Context, user: &str, argv: &[&str]) -> bool {
    let locked = LockedCtx(ctx.ctx, std::marker::PhantomData);
    let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let mut words = Words::new(locked, &argv);
    permitted(locked, user, &mut words).is_ok()
}

/// Whether Redis asks this call of a `getkeys-api` command for its key
/// positions (ACL key checks, `COMMAND GETKEYS`) instead of running it.
pub fn is_keys_position_request(ctx: &Context) -> bool {
    // SAFETY: a live command context.
    unsafe { raw::RedisModule_IsKeysPositionRequest.unwrap()(ctx.ctx) != 0 }
}

/// Answers a key position request: argument `pos` is a key, read, or read
/// and written when `writes`.
pub fn key_at(ctx: &Context, pos: usize, writes: bool) {
    let flags = if writes {
        raw::REDISMODULE_CMD_KEY_RW
            | raw::REDISMODULE_CMD_KEY_ACCESS
            | raw::REDISMODULE_CMD_KEY_UPDATE
    } else {
        raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS
    };
    // SAFETY: a live context of a key position request.
    unsafe {
        match raw::RedisModule_KeyAtPosWithFlags {
            Some(with_flags) => with_flags(ctx.ctx, pos as c_int, flags as c_int),
            None => raw::RedisModule_KeyAtPos.unwrap()(ctx.ctx, pos as c_int),
        }
    }
}

/// A command's words as Redis strings, freed on drop.
struct Words {
    ctx: *mut raw::RedisModuleCtx,
    strings: Vec<*mut raw::RedisModuleString>,
}

impl Words {
    fn new(ctx: LockedCtx, argv: &[Vec<u8>]) -> Words {
        let strings = argv
            .iter()
            .map(|a| {
                // SAFETY: lock held (a `LockedCtx` exists); freed by `Drop`.
                unsafe {
                    raw::RedisModule_CreateString.unwrap()(
                        ctx.0,
                        a.as_ptr().cast::<c_char>(),
                        a.len(),
                    )
                }
            })
            .collect();
        Words {
            ctx: ctx.0,
            strings,
        }
    }

    fn first(&self) -> &[u8] {
        match self.strings.first() {
            // SAFETY: a live string of ours.
            Some(s) => unsafe { string_bytes(*s) },
            None => &[],
        }
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        for s in self.strings.drain(..) {
            // SAFETY: created in `Words::new` with this context, freed once,
            // still under the lock of the `LockedCtx` that made them.
            unsafe { raw::RedisModule_FreeString.unwrap()(self.ctx, s) };
        }
    }
}

/// A Redis ACL user, looked up by name, to check key permissions with.
pub struct AclUser(*mut raw::RedisModuleUser);

impl AclUser {
    /// The user called `name`, or `None` if there is none.
    pub fn find(ctx: LockedCtx, name: &str) -> Option<AclUser> {
        // SAFETY: lock held (a `LockedCtx` exists); the name is freed here,
        // the user by `Drop`.
        unsafe {
            let s = raw::RedisModule_CreateString.unwrap()(
                ctx.0,
                name.as_ptr().cast::<c_char>(),
                name.len(),
            );
            let u = raw::RedisModule_GetModuleUserFromUserName.unwrap()(s);
            raw::RedisModule_FreeString.unwrap()(ctx.0, s);
            (!u.is_null()).then(|| AclUser(u))
        }
    }

    /// Whether the user may read `key`.
    pub fn may_read(&self, ctx: LockedCtx, key: &[u8]) -> bool {
        // ACCESS alone asks for read permission (other flags are refused).
        self.may(ctx, key, raw::REDISMODULE_CMD_KEY_ACCESS as c_int)
    }

    /// Whether the user may use `key` as `flags` (ACCESS, INSERT...) says.
    fn may(&self, ctx: LockedCtx, key: &[u8], flags: c_int) -> bool {
        // SAFETY: lock held; the string is freed here.
        unsafe {
            let s = raw::RedisModule_CreateString.unwrap()(
                ctx.0,
                key.as_ptr().cast::<c_char>(),
                key.len(),
            );
            let status = raw::RedisModule_ACLCheckKeyPermissions.unwrap()(self.0, s, flags);
            raw::RedisModule_FreeString.unwrap()(ctx.0, s);
            status == raw::REDISMODULE_OK as c_int
        }
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        // SAFETY: obtained from GetModuleUserFromUserName, freed once.
        unsafe { raw::RedisModule_FreeModuleUser.unwrap()(self.0) };
    }
}

/// What `who` may write: everything for the module itself, the keys its
/// user's ACLs allow otherwise.
pub fn write_filter<'a>(ctx: LockedCtx<'a>, who: &Identity) -> impl Fn(&[u8]) -> bool + 'a {
    let user = who.user.as_deref().map(|name| AclUser::find(ctx, name));
    move |key: &[u8]| match &user {
        None => true,
        Some(None) => false,
        Some(Some(u)) => u.may(ctx, key, raw::REDISMODULE_CMD_KEY_INSERT as c_int),
    }
}

/// Whether `user` may read every key (`~*` or `%R~*` among its key
/// patterns), so that no key needs a check of its own.
fn reads_all_keys(ctx: LockedCtx, user: &str) -> bool {
    let reply = call_locked(
        ctx,
        c"ACL",
        &[b"GETUSER".to_vec(), user.as_bytes().to_vec()],
        c"",
    );
    let Reply::Array(fields) = reply else {
        return false;
    };
    fields
        .chunks(2)
        .find(|kv| matches!(&kv[0], Reply::Bulk(k) if k == b"keys"))
        .and_then(|kv| match kv.get(1) {
            Some(Reply::Bulk(v)) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        })
        .is_some_and(|keys| {
            keys.split(' ')
                .any(|p| p == "~*" || p == "%R~*" || p == "%RW~*" || p == "%WR~*")
        })
}

/// What `who` may read: everything for the module itself, the keys its
/// user's ACLs allow otherwise (nothing for a user that no longer exists).
/// For `many` keys (a scan), a user who may read every key is found out
/// once instead of checking each key.
pub fn read_filter<'a>(
    ctx: LockedCtx<'a>,
    who: &Identity,
    many: bool,
) -> impl Fn(&[u8]) -> bool + 'a {
    let user = who
        .user
        .as_deref()
        .filter(|name| !(many && reads_all_keys(ctx, name)))
        .map(|name| AclUser::find(ctx, name));
    move |key: &[u8]| match &user {
        None => true,
        Some(None) => false,
        Some(Some(u)) => u.may_read(ctx, key),
    }
}

/// `ENOENT`, the errno of an ACL check of an unknown command.
const ENOENT: i32 = 2;

/// Who the client of a command is: its user and its database. A command
/// replayed from the master or the AOF is the module's own; one that our
/// own `call_as` runs is the identity it runs as (its client is a fake one,
/// without a user).
pub fn identity_of(ctx: &Context) -> Identity {
    // SAFETY: `ctx` is a live command context; the returned name is freed.
    let db = unsafe { raw::RedisModule_GetSelectedDb.unwrap()(ctx.ctx) as i64 };
    if is_replayed(ctx) {
        return Identity::module(db);
    }
    // SAFETY: as above; a client id that is not a connected client (a fake
    // client) gives NULL, as does a client without a user.
    let user = unsafe {
        match raw::RedisModule_GetClientUserNameById {
            Some(by_id) => {
                let id = raw::RedisModule_GetClientId.unwrap()(ctx.ctx);
                let name = by_id(ctx.ctx, id);
                if name.is_null() {
                    None
                } else {
                    let u = String::from_utf8_lossy(string_bytes(name)).into_owned();
                    raw::RedisModule_FreeString.unwrap()(ctx.ctx, name);
                    Some(u)
                }
            }
            None => None,
        }
    };
    match user {
        Some(u) => Identity::new(Some(u), db),
        None => CALLING_AS.with(|c| c.borrow().clone()).map_or_else(
            // Lua, FUNCTION or another module's call: the user behind it is
            // unknown, so fail closed (no user can have this name).
            || Identity::new(Some(UNKNOWN_CALLER.into()), db),
            |who| Identity::new(who.user, db),
        ),
    }
}

/// The identity of a caller whose user can not be known: every permission
/// check fails for it (user names can not hold spaces).
pub const UNKNOWN_CALLER: &str = "<unknown caller: Lua, FUNCTION or another module>";

/// Like [`call`] but with the lock already held and explicit flags.
pub fn call_locked(ctx: LockedCtx, cmd: &CStr, args: &[Vec<u8>], flags: &CStr) -> Reply {
    let words = Words::new(ctx, args);
    call_words(ctx, cmd, &words.strings, flags)
}

/// `RedisModule_Call` of `cmd` with `args` (live strings), converted.
fn call_words(
    ctx: LockedCtx,
    cmd: &CStr,
    args: &[*mut raw::RedisModuleString],
    flags: &CStr,
) -> Reply {
    // SAFETY: the caller holds the Redis lock (a `LockedCtx` exists) and
    // `args` are live strings; `RedisModule_Call` only reads the array (the
    // pointer is cast to mutable for the C signature); the reply is freed by
    // the conversion.
    unsafe {
        let r = raw::RedisModule_Call.unwrap()(
            ctx.0,
            cmd.as_ptr(),
            flags.as_ptr(),
            args.as_ptr().cast_mut(),
            args.len(),
        );
        if r.is_null() {
            Reply::Error(format!(
                "ERR command failed ({})",
                std::io::Error::last_os_error()
            ))
        } else {
            convert_call_reply(r, true, 0)
        }
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

/// Writes `reply` to the client of a command.
pub fn reply(ctx: &Context, r: &Reply) {
    write_reply(ctx.ctx, r)
}

/// Writes `reply` to the client of `ctx`.
fn write_reply(ctx: *mut raw::RedisModuleCtx, r: &Reply) {
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
fn answer(bc: *mut raw::RedisModuleBlockedClient, r: &Reply) {
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

/// This process's run id (`INFO server`), which changes at every start.
pub fn run_id() -> String {
    server_info("server", "run_id").unwrap_or_default()
}

/// A field of `INFO section` (`None` when the server does not show it).
pub fn server_info(section: &str, field: &str) -> Option<String> {
    let argv = [b"INFO".to_vec(), section.as_bytes().to_vec()];
    let Reply::Bulk(b) = call_with(&argv, c"v") else {
        return None;
    };
    let prefix = format!("{field}:");
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
}

/// The value of a server option (`CONFIG GET name`).
pub fn config_get(name: &str) -> Option<String> {
    let argv = [
        b"CONFIG".to_vec(),
        b"GET".to_vec(),
        name.as_bytes().to_vec(),
    ];
    let Reply::Array(a) = call_with(&argv, c"v") else {
        return None;
    };
    match a.get(1) {
        Some(Reply::Bulk(v)) => Some(String::from_utf8_lossy(v).into_owned()),
        _ => None,
    }
}

/// The base name of the server's log file (`None` when it logs to stdout).
/// Call while the server runs (at module load the option is not read yet).
pub fn log_file_name() -> Option<String> {
    let file = config_get("logfile")?;
    std::path::Path::new(&file)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|f| !f.is_empty())
}

/// Writes to the Redis log, prefixed like every gears message.
pub fn log(level: &str, message: &str) {
    let Some(layer) = LAYER.get() else { return };
    let ctx = &layer.main_ctx;
    let level = CString::new(level).expect("static level");
    let msg = CString::new(format!("GEARS: {message}").replace('\0', " ")).expect("NULs replaced");
    // SAFETY: RedisModule_Log may be called from any thread; "%s" with a
    // NUL-terminated string.
    unsafe {
        raw::RedisModule_Log.unwrap()(ctx.0, level.as_ptr(), c"%s".as_ptr(), msg.as_ptr());
    }
}

/// The flags of a command's context.
fn context_flags(ctx: *mut raw::RedisModuleCtx) -> u32 {
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

/// The bytes of a Redis string.
///
/// # Safety
/// `s` must be a live `RedisModuleString`.
unsafe fn string_bytes<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    let p = raw::RedisModule_StringPtrLen.unwrap()(s, &mut len);
    if p.is_null() {
        return &[];
    }
    std::slice::from_raw_parts(p.cast::<u8>(), len)
}

fn key_type_of(raw_type: c_int) -> KeyType {
    match raw_type as isize {
        raw::REDISMODULE_KEYTYPE_STRING => KeyType::String,
        raw::REDISMODULE_KEYTYPE_LIST => KeyType::List,
        raw::REDISMODULE_KEYTYPE_HASH => KeyType::Hash,
        raw::REDISMODULE_KEYTYPE_SET => KeyType::Set,
        raw::REDISMODULE_KEYTYPE_ZSET => KeyType::Zset,
        raw::REDISMODULE_KEYTYPE_MODULE => KeyType::Module,
        raw::REDISMODULE_KEYTYPE_STREAM => KeyType::Stream,
        _ => KeyType::Empty,
    }
}

/// A key's type and, for a string, its value, read in place (no command
/// call): the record of a key event. Lock held.
pub fn key_type_and_string(ctx: LockedCtx, name: &[u8]) -> (KeyType, Option<Vec<u8>>) {
    read_key(ctx, name, true)
}

/// The type of key `name`. Lock held.
pub fn key_type(ctx: LockedCtx, name: &[u8]) -> KeyType {
    read_key(ctx, name, false).0
}

/// Opens `name` for reading: its type and, with `string`, a string key's
/// value.
fn read_key(ctx: LockedCtx, name: &[u8], string: bool) -> (KeyType, Option<Vec<u8>>) {
    // SAFETY: lock held by the caller (a `LockedCtx` exists); the key is
    // opened for reading and closed here, after its value was copied out of
    // the DMA pointer (valid while the key is open and unmodified); the
    // string is freed here.
    unsafe {
        let ctx = ctx.0;
        let s =
            raw::RedisModule_CreateString.unwrap()(ctx, name.as_ptr().cast::<c_char>(), name.len());
        let k = raw::RedisModule_OpenKey.unwrap()(ctx, s, raw::REDISMODULE_READ as i32);
        let mut out = (KeyType::Empty, None);
        if !k.is_null() {
            let ty = key_type_of(raw::RedisModule_KeyType.unwrap()(k.cast()));
            let mut value = None;
            if string && ty == KeyType::String {
                let mut len: usize = 0;
                let p = raw::RedisModule_StringDMA.unwrap()(
                    k.cast(),
                    &mut len,
                    raw::REDISMODULE_READ as i32,
                );
                if !p.is_null() {
                    value = Some(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec());
                }
            }
            out = (ty, value);
            raw::RedisModule_CloseKey.unwrap()(k.cast());
        }
        raw::RedisModule_FreeString.unwrap()(ctx, s);
        out
    }
}

/// A position in a scan of the keyspace.
pub struct ScanCursor(SendPtr<raw::RedisModuleScanCursor>);

impl Default for ScanCursor {
    fn default() -> Self {
        // SAFETY: creating a scan cursor has no preconditions.
        ScanCursor(SendPtr(unsafe {
            raw::RedisModule_ScanCursorCreate.unwrap()()
        }))
    }
}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        // SAFETY: the cursor was created in `default` and is destroyed once.
        unsafe { raw::RedisModule_ScanCursorDestroy.unwrap()(self.0 .0) };
    }
}

/// What a scan step hands each key to: its name, its type and, when asked
/// for, a string key's value.
struct KeyVisitor<'a> {
    strings: bool,
    visit: &'a mut VisitFn<'a>,
}

type VisitFn<'a> = dyn FnMut(&[u8], KeyType, Option<&[u8]>) + 'a;

extern "C" fn visit_key(
    _ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    key: *mut raw::RedisModuleKey,
    privdata: *mut c_void,
) {
    // SAFETY: `privdata` is the `KeyVisitor` passed to RedisModule_Scan in
    // `ScanCursor::step`, alive for the whole call; `name` and `key` are
    // valid for this callback (the key opened for reading by the scan), and
    // a DMA pointer of it stays valid until the callback returns.
    unsafe {
        let v = &mut *privdata.cast::<KeyVisitor>();
        let ty = if key.is_null() {
            KeyType::Empty
        } else {
            key_type_of(raw::RedisModule_KeyType.unwrap()(key))
        };
        let mut value = None;
        if v.strings && ty == KeyType::String {
            let mut len: usize = 0;
            let p =
                raw::RedisModule_StringDMA.unwrap()(key, &mut len, raw::REDISMODULE_READ as i32);
            if !p.is_null() {
                value = Some(std::slice::from_raw_parts(p.cast::<u8>(), len));
            }
        }
        let name = string_bytes(name);
        // Never unwinds into Redis's scan.
        guard("key scan", || (v.visit)(name, ty, value));
    }
}

impl ScanCursor {
    /// Scans one step, calling `visit` with each key, its type and (with
    /// `strings`) a string key's value, read in place; `false` once the
    /// scan is complete. Lock held.
    pub fn step(
        &self,
        ctx: LockedCtx,
        strings: bool,
        mut visit: impl FnMut(&[u8], KeyType, Option<&[u8]>),
    ) -> bool {
        let mut visitor = KeyVisitor {
            strings,
            visit: &mut visit,
        };
        // SAFETY: lock held (a `LockedCtx` exists); `visitor` outlives the
        // call, and `visit_key` casts the pointer back to its type.
        let more = unsafe {
            raw::RedisModule_Scan.unwrap()(
                ctx.0,
                self.0 .0,
                Some(visit_key),
                (&mut visitor as *mut KeyVisitor).cast::<c_void>(),
            )
        };
        more != 0
    }
}

/// The arguments of a command as the command filter sees them.
pub struct CommandFilter<'a> {
    fctx: *mut raw::RedisModuleCommandFilterCtx,
    _life: std::marker::PhantomData<&'a ()>,
}

impl CommandFilter<'_> {
    pub fn len(&self) -> usize {
        // SAFETY: `fctx` is valid during the filter callback.
        unsafe { raw::RedisModule_CommandFilterArgsCount.unwrap()(self.fctx) as usize }
    }

    /// Argument `i` (empty when out of range).
    pub fn arg(&self, i: usize) -> Vec<u8> {
        // SAFETY: `fctx` is valid during the callback; the string stays
        // owned by the filter.
        unsafe {
            let s = raw::RedisModule_CommandFilterArgGet.unwrap()(self.fctx, i as _);
            if s.is_null() {
                return Vec::new();
            }
            string_bytes(s).to_vec()
        }
    }

    /// Inserts `word` before the command name.
    pub fn prepend(&mut self, word: &[u8]) {
        // SAFETY: a string without context belongs to whoever takes it: the
        // filter takes ownership of inserted arguments.
        unsafe {
            let s = raw::RedisModule_CreateString.unwrap()(
                ptr::null_mut(),
                word.as_ptr().cast(),
                word.len(),
            );
            raw::RedisModule_CommandFilterArgInsert.unwrap()(self.fctx, 0, s);
        }
    }
}

extern "C" fn on_info(ctx: *mut raw::RedisModuleInfoCtx, for_crash_report: c_int) {
    let Some(layer) = LAYER.get() else { return };
    guard("INFO", || {
        for section in (layer.callbacks.info)(for_crash_report != 0) {
            let name = CString::new(section.name).unwrap_or_default();
            // SAFETY: INFO callback context; the strings live across the
            // calls, which copy them.
            unsafe {
                raw::RedisModule_InfoAddSection.unwrap()(ctx, name.as_ptr());
                for (field, value) in &section.fields {
                    info_field(ctx, field, value);
                }
            }
        }
    });
}

/// # Safety
/// `ctx` is the context of an INFO callback, inside a section.
unsafe fn info_field(ctx: *mut raw::RedisModuleInfoCtx, field: &str, value: &InfoValue) {
    let name = CString::new(field.replace('\0', "")).unwrap_or_default();
    let name = name.as_ptr();
    match value {
        InfoValue::Int(i) => {
            raw::RedisModule_InfoAddFieldLongLong.unwrap()(ctx, name, *i);
        }
        InfoValue::Text(t) => {
            let t = CString::new(t.replace('\0', "")).unwrap_or_default();
            raw::RedisModule_InfoAddFieldCString.unwrap()(ctx, name, t.as_ptr());
        }
        InfoValue::Dict(fields) => {
            raw::RedisModule_InfoBeginDictField.unwrap()(ctx, name);
            for (f, v) in fields {
                if !matches!(v, InfoValue::Dict(_)) {
                    info_field(ctx, f, v);
                }
            }
            raw::RedisModule_InfoEndDictField.unwrap()(ctx);
        }
    }
}

fn guard(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log("warning", &format!("a {what} callback panicked"));
    }
}

/// A notification's event and key, if events are to be handled now: only
/// on a master that is not loading.
///
/// # Safety
/// The arguments are those Redis passes to a notification callback.
unsafe fn notification<'a>(
    ctx: *mut raw::RedisModuleCtx,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> Option<(std::borrow::Cow<'a, str>, &'a [u8], i64)> {
    let flags = context_flags(ctx);
    if flags & (raw::REDISMODULE_CTX_FLAGS_LOADING | raw::REDISMODULE_CTX_FLAGS_SLAVE) != 0 {
        return None;
    }
    let db = raw::RedisModule_GetSelectedDb.unwrap()(ctx) as i64;
    Some((
        CStr::from_ptr(event).to_string_lossy(),
        string_bytes(key),
        db,
    ))
}

/// Hands a notification to `pick`'s callback, with the context it came
/// with as the one being served.
///
/// # Safety
/// The arguments are those Redis passes to a notification callback.
unsafe fn deliver(
    ctx: *mut raw::RedisModuleCtx,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
    what: &str,
    pick: fn(&Callbacks) -> fn(&Notification<'_>),
) -> c_int {
    let Some(layer) = LAYER.get() else {
        return raw::REDISMODULE_OK as c_int;
    };
    let Some((event, key, db)) = notification(ctx, event, key) else {
        return raw::REDISMODULE_OK as c_int;
    };
    if event == "keymiss" && READING.with(|r| r.get()) > 0 {
        return raw::REDISMODULE_OK as c_int;
    }
    let callback = pick(&layer.callbacks);
    guard(what, || {
        serving(ctx, || {
            callback(&Notification {
                event: &event,
                key,
                db,
                may_wait: context_flags(ctx)
                    & (raw::REDISMODULE_CTX_FLAGS_MULTI | raw::REDISMODULE_CTX_FLAGS_LUA)
                    == 0,
            })
        })
    });
    raw::REDISMODULE_OK as c_int
}

extern "C" fn on_keyspace(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: the arguments come from Redis for this callback.
    unsafe { deliver(ctx, event, key, "keyspace event", |c| c.keyspace) }
}

extern "C" fn on_stream(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: the arguments come from Redis for this callback.
    unsafe { deliver(ctx, event, key, "stream event", |c| c.stream) }
}

extern "C" fn on_command(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    if let Some(layer) = LAYER.get() {
        let mut filter = CommandFilter {
            fctx,
            _life: std::marker::PhantomData,
        };
        guard("command filter", || {
            (layer.callbacks.command_filter)(&mut filter)
        });
    }
}

/// Where a command keeps its keys (COMMAND INFO's first, last, step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub first: i64,
    pub last: i64,
    pub step: i64,
}

impl KeySpec {
    /// The argument positions holding keys, for a command of `argc` words.
    pub fn positions(self, argc: usize) -> impl Iterator<Item = usize> {
        let last = if self.last < 0 {
            argc as i64 + self.last
        } else {
            self.last.min(argc as i64 - 1)
        };
        let (first, step) = (self.first, self.step.max(1));
        (0..)
            .map(move |i| first + i * step)
            .take_while(move |&p| first > 0 && p <= last)
            .map(|p| p as usize)
    }
}

/// What COMMAND INFO says about a command.
pub struct CommandInfo {
    pub flags: Vec<String>,
    pub spec: KeySpec,
}

/// COMMAND INFO of `name`: `None` if there is no such command.
pub fn command_info(name: &str) -> Option<CommandInfo> {
    let reply = call(&[
        b"COMMAND".to_vec(),
        b"INFO".to_vec(),
        name.as_bytes().to_vec(),
    ]);
    let Reply::Array(mut entries) = reply else {
        return None;
    };
    let Some(Reply::Array(info)) = entries.pop() else {
        return None;
    };
    let int = |i: usize| match info.get(i) {
        Some(Reply::Int(n)) => *n,
        _ => 0,
    };
    let flags = match info.get(2) {
        Some(Reply::Array(f)) => f
            .iter()
            .filter_map(|x| match x {
                Reply::Status(s) => Some(s.clone()),
                Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(CommandInfo {
        flags,
        spec: KeySpec {
            first: int(3),
            last: int(4),
            step: int(5),
        },
    })
}

/// The bulk strings of an array reply.
pub fn bulk_list(r: Reply) -> Vec<Vec<u8>> {
    match r {
        Reply::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                Reply::Bulk(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_positions_follow_command_info() {
        let hset = KeySpec {
            first: 1,
            last: 1,
            step: 1,
        };
        assert_eq!(hset.positions(4).collect::<Vec<_>>(), [1]);
        let mset = KeySpec {
            first: 1,
            last: -1,
            step: 2,
        };
        assert_eq!(mset.positions(5).collect::<Vec<_>>(), [1, 3]);
        let ping = KeySpec {
            first: 0,
            last: 0,
            step: 0,
        };
        assert_eq!(ping.positions(2).count(), 0);
        // A short command never reads past its arguments.
        assert_eq!(hset.positions(1).count(), 0);
    }
}
