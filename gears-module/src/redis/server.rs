//! The server around the module: INFO sections, `CONFIG GET` and INFO
//! fields, the run id, the log (rate-limited too), the allocator handed to
//! Python, and COMMAND INFO's key positions.

use super::*;

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

pub(super) extern "C" fn on_info(ctx: *mut raw::RedisModuleInfoCtx, for_crash_report: c_int) {
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
pub(super) unsafe fn info_field(ctx: *mut raw::RedisModuleInfoCtx, field: &str, value: &InfoValue) {
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
