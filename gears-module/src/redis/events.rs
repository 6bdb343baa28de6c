//! What Redis tells the module: server events (loading, role changes,
//! forks), keyspace and stream notifications, and the command filter.
//! Each callback catches panics and forwards to the module's
//! [`Callbacks`]; no module logic runs here.

use super::*;

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
    pub aux_load: fn(Aux<'_>) -> Result<(), crate::errors::Error>,
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

pub(super) extern "C" fn on_server_event(
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
pub(super) fn aof_rewrite_without_preamble() -> bool {
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
pub(super) static MASTER: AtomicBool = AtomicBool::new(true);

/// Reads the role from the server (main thread).
pub(super) fn read_role() {
    if let Some(l) = LAYER.get() {
        let master = context_flags(l.main_ctx.0) & raw::REDISMODULE_CTX_FLAGS_MASTER != 0;
        MASTER.store(master, Ordering::SeqCst);
    }
}

/// Whether this server is a master now.
pub fn is_master() -> bool {
    MASTER.load(Ordering::SeqCst)
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

/// A notification's event and key, if events are to be handled now: only
/// on a master that is not loading.
///
/// # Safety
/// The arguments are those Redis passes to a notification callback.
pub(super) unsafe fn notification<'a>(
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
pub(super) unsafe fn deliver(
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
    if event == "keymiss" && QUIET_READS.with(|r| r.get()) > 0 {
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

pub(super) extern "C" fn on_keyspace(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: the arguments come from Redis for this callback.
    unsafe { deliver(ctx, event, key, "keyspace event", |c| c.keyspace) }
}

pub(super) extern "C" fn on_stream(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: the arguments come from Redis for this callback.
    unsafe { deliver(ctx, event, key, "stream event", |c| c.stream) }
}

pub(super) extern "C" fn on_command(fctx: *mut raw::RedisModuleCommandFilterCtx) {
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
