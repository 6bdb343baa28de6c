//! Keyspace events: which KeysReader and StreamReader registrations an
//! event triggers, and how their executions start.
//!
//! Redis calls [`on_keyspace_event`] on whatever thread made the change, with
//! the Redis lock held: the main thread for a client's command, a worker
//! inside `execute()`. `sync` registrations run right there, before the
//! change's command returns; the others are queued on the worker pool.

use crate::host::{key_record, key_type, KeysReader};
use crate::redis;
use gears_core::engine::VecReader;
use gears_core::registration::{prefix_matches, Mode, ReaderArgs, Registration};
use gears_python::CommandCtx;
use once_cell::sync::Lazy;
use redis_module::raw;
use std::cell::RefCell;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The registrations events look at, rebuilt whenever one is added or
/// removed so that the event path only clones an `Arc`.
#[derive(Default)]
pub struct Tables {
    pub keys: Vec<Arc<Registration>>,
    pub streams: Vec<Arc<Registration>>,
}

static TABLES: Lazy<RwLock<Arc<Tables>>> = Lazy::new(Default::default);
/// Fast exits for servers without KeysReader/StreamReader registrations.
static ANY_KEYS: AtomicBool = AtomicBool::new(false);
static ANY_STREAMS: AtomicBool = AtomicBool::new(false);

pub fn tables() -> Arc<Tables> {
    TABLES.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Rebuilds the tables after the registry changed.
pub fn refresh() {
    let all = crate::engine().registrations.snapshot();
    let t = Tables {
        keys: all
            .iter()
            .filter(|r| matches!(r.args, ReaderArgs::Keys { .. }))
            .cloned()
            .collect(),
        streams: all
            .iter()
            .filter(|r| matches!(r.args, ReaderArgs::Stream { .. }))
            .cloned()
            .collect(),
    };
    ANY_KEYS.store(!t.keys.is_empty(), Ordering::SeqCst);
    ANY_STREAMS.store(!t.streams.is_empty(), Ordering::SeqCst);
    *TABLES.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    crate::hooks::refresh();
}

/// A client command whose executions it waits for (`commands=[...]`).
pub struct Linked {
    /// Lower-cased command name.
    pub command: String,
    /// `None` inside MULTI or Lua: executions run, but nothing waits.
    pub ctx: Option<Arc<CommandCtx>>,
    /// The command itself plus every queued execution not yet finished.
    pending: AtomicUsize,
    real: Mutex<Option<gears_core::Reply>>,
    blocked: Mutex<Option<redis::Blocked>>,
}

impl Linked {
    pub fn new(command: String, attached: bool) -> Arc<Linked> {
        Arc::new(Linked {
            command,
            ctx: attached.then(|| Arc::new(CommandCtx::new(None))),
            pending: AtomicUsize::new(1),
            real: Mutex::new(None),
            blocked: Mutex::new(None),
        })
    }

    /// Whether queued executions still hold the client.
    pub fn waiting(&self) -> bool {
        self.pending.load(Ordering::SeqCst) > 1
    }

    /// The reply the client gets: an override if a step set one.
    pub fn final_reply(&self) -> gears_core::Reply {
        let real = self
            .real
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(gears_core::Reply::Null);
        self.ctx
            .as_ref()
            .and_then(|c| c.take_override())
            .unwrap_or(real)
    }

    pub fn set_real(&self, r: gears_core::Reply) {
        *self.real.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }

    /// Parks the blocked client; replied when the last holder releases.
    pub fn park(&self, b: redis::Blocked) {
        *self.blocked.lock().unwrap_or_else(|e| e.into_inner()) = Some(b);
    }

    fn hold(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    pub fn release(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            let blocked = self
                .blocked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(b) = blocked {
                b.reply(&self.final_reply());
            }
        }
    }
}

thread_local! {
    /// The hooked command being run on this thread, if any.
    static LINKED: RefCell<Option<Arc<Linked>>> = const { RefCell::new(None) };
}

/// Runs `f` with `linked` as the command events see on this thread.
pub fn with_linked<R>(linked: &Arc<Linked>, f: impl FnOnce() -> R) -> R {
    let prev = LINKED.with(|l| l.replace(Some(linked.clone())));
    let r = f();
    LINKED.with(|l| *l.borrow_mut() = prev);
    r
}

fn key_type_name(t: isize) -> &'static str {
    match t {
        raw::REDISMODULE_KEYTYPE_STRING => "string",
        raw::REDISMODULE_KEYTYPE_LIST => "list",
        raw::REDISMODULE_KEYTYPE_HASH => "hash",
        raw::REDISMODULE_KEYTYPE_SET => "set",
        raw::REDISMODULE_KEYTYPE_ZSET => "zset",
        raw::REDISMODULE_KEYTYPE_MODULE => "module",
        raw::REDISMODULE_KEYTYPE_STREAM => "stream",
        _ => "empty",
    }
}

/// The name of an event and its key, if events are to be handled now:
/// only on a master that is not loading.
///
/// # Safety
/// The arguments are those Redis passes to a notification callback.
unsafe fn event_of(
    ctx: *mut raw::RedisModuleCtx,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> Option<(String, Vec<u8>)> {
    let flags = redis::context_flags(ctx);
    if flags & (raw::REDISMODULE_CTX_FLAGS_LOADING | raw::REDISMODULE_CTX_FLAGS_SLAVE) != 0 {
        return None;
    }
    let mut len = 0usize;
    let p = raw::RedisModule_StringPtrLen.unwrap()(key, &mut len);
    Some((
        CStr::from_ptr(event).to_string_lossy().into_owned(),
        std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec(),
    ))
}

fn guard(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        redis::log(
            "warning",
            &format!("a {what} registration panicked while handling an event"),
        );
    }
}

/// The keyspace notification callback of KeysReader registrations (every
/// event type, plus key misses).
///
/// Redis does not call a subscriber again while it is inside one of its
/// callbacks: writes made by a `sync` registration raise no KeysReader
/// events (so `expire` in a function on every key does not loop).
pub extern "C" fn on_keyspace_event(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if ANY_KEYS.load(Ordering::Relaxed) {
        // SAFETY: the arguments come from Redis for this callback.
        if let Some((event, key)) = unsafe { event_of(ctx, event, key) } {
            guard("KeysReader", || dispatch_keys(&event, &key));
        }
    }
    raw::REDISMODULE_OK as c_int
}

/// The stream notification callback of StreamReader registrations. A
/// separate subscriber, so that a message added by a `sync` KeysReader
/// function still reaches the stream consumers.
pub extern "C" fn on_stream_event(
    ctx: *mut raw::RedisModuleCtx,
    _type: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if ANY_STREAMS.load(Ordering::Relaxed) {
        // SAFETY: the arguments come from Redis for this callback.
        if let Some((event, key)) = unsafe { event_of(ctx, event, key) } {
            if event == "xadd" {
                guard("StreamReader", || dispatch_stream(&key));
            }
        }
    }
    raw::REDISMODULE_OK as c_int
}

fn dispatch_stream(key: &[u8]) {
    for reg in &tables().streams {
        if let ReaderArgs::Stream { prefix, .. } = &reg.args {
            if prefix_matches(prefix, key) && !gears_python::is_running_here(reg) {
                crate::streams::on_message(reg, key);
            }
        }
    }
}

fn dispatch_keys(event: &str, key: &[u8]) {
    let t = tables();
    for reg in &t.keys {
        if let ReaderArgs::Keys {
            prefix,
            event_types,
            key_types,
            read_value,
            commands,
        } = &reg.args
        {
            if !prefix_matches(prefix, key) || gears_python::is_running_here(reg) {
                continue;
            }
            if let Some(ev) = event_types {
                if !ev.iter().any(|e| e.eq_ignore_ascii_case(event)) {
                    continue;
                }
            }
            let linked = match commands {
                Some(cmds) => match LINKED.with(|l| l.borrow().clone()) {
                    Some(l) if cmds.contains(&l.command) => Some(l),
                    _ => continue,
                },
                None => None,
            };
            if let Some(kt) = key_types {
                let ty = redis::with_lock(|ctx| key_type_name(key_type(ctx, key)));
                if !kt.iter().any(|t| t == ty) {
                    continue;
                }
            }
            fire_keys(reg, key, event, *read_value, linked);
        }
    }
}

fn fire_keys(
    reg: &Arc<Registration>,
    key: &[u8],
    event: &str,
    read_value: bool,
    linked: Option<Arc<Linked>>,
) {
    let ctx = linked.as_ref().and_then(|l| l.ctx.clone());
    if reg.mode == Mode::Sync {
        let record = redis::with_lock(|c| key_record(c, key, event, read_value));
        gears_python::run_inline(reg, Box::new(VecReader(Some(vec![record]))), ctx);
        return;
    }
    let reader = KeysReader::for_event(key.to_vec(), event.to_owned(), read_value);
    let exec = gears_python::run_queued(reg, Box::new(reader), ctx.clone());
    if let (Some(l), Some(_)) = (linked, ctx) {
        l.hold();
        exec.on_finish(Box::new(move |_| l.release()));
    }
}
