//! What the Python runtime gets from Redis: [`ModuleHost`] and the
//! KeysReader that scans the keyspace in batches.

use crate::redis::{self, with_lock, SendPtr};
use gears_core::glob::Glob;
use gears_core::record::{KeyEntry, KeyValue};
use gears_core::{Reader, Record, Reply};
use gears_python::{KeysReaderSpec, LogLevel, RedisHost};
use redis_module::raw;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};

/// How many keys one batch reads under the Redis lock. Small enough that
/// other clients wait well under a millisecond, large enough to amortize the
/// lock and the MGET.
const BATCH: usize = 1024;

pub struct ModuleHost;

impl RedisHost for ModuleHost {
    fn call(&self, argv: &[Vec<u8>]) -> Reply {
        redis::call(argv)
    }

    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Verbose => "verbose",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
        };
        redis::log(level, message);
    }

    fn config_get(&self, key: &str) -> Option<gears_config::Value> {
        crate::config().get(key)
    }

    fn hashtag(&self) -> String {
        crate::topology().hashtag().to_owned()
    }

    fn keys_reader(&self, spec: KeysReaderSpec) -> Box<dyn Reader> {
        Box::new(KeysReader::new(spec))
    }

    fn stream_reader(&self, key: Vec<u8>, from: Vec<u8>) -> Box<dyn Reader> {
        Box::new(crate::streams::StreamRunReader::new(key, from))
    }

    fn check_registration(
        &self,
        args: &gears_core::registration::ReaderArgs,
        session: &str,
    ) -> Result<(), String> {
        crate::registrations::check(args, session)
    }

    fn lock(&self) {
        redis::acquire();
    }

    fn unlock(&self) {
        redis::release();
    }
}

pub struct KeysReader {
    spec: KeysReaderSpec,
    glob: Glob,
    cursor: SendPtr<raw::RedisModuleScanCursor>,
    done: bool,
    /// The event that triggered this read (registrations).
    event: Option<String>,
}

impl KeysReader {
    pub fn new(spec: KeysReaderSpec) -> KeysReader {
        // SAFETY: creating a scan cursor has no preconditions.
        let cursor = unsafe { raw::RedisModule_ScanCursorCreate.unwrap()() };
        KeysReader {
            glob: Glob::new(&spec.pattern),
            spec,
            cursor: SendPtr(cursor),
            done: false,
            event: None,
        }
    }

    /// Reads one key when an execution triggered by `event` starts.
    pub fn for_event(key: Vec<u8>, event: String, read_value: bool) -> KeysReader {
        let mut r = KeysReader::new(KeysReaderSpec {
            pattern: key,
            no_scan: true,
            read_value,
        });
        r.event = Some(event);
        r
    }
}

/// The record of `key` for an event, read now (lock held).
pub fn key_record(
    ctx: *mut raw::RedisModuleCtx,
    key: &[u8],
    event: &str,
    read_value: bool,
) -> Record {
    let value = read_value.then(|| {
        let ty = key_type(ctx, key);
        read_values(ctx, vec![(key.to_vec(), ty)])
            .pop()
            .unwrap_or(KeyValue::Missing)
    });
    Record::Key(Box::new(KeyEntry {
        key: key.to_vec(),
        value,
        event: Some(event.to_owned()),
    }))
}

impl Drop for KeysReader {
    fn drop(&mut self) {
        // SAFETY: the cursor was created in `new` and is destroyed once.
        unsafe { raw::RedisModule_ScanCursorDestroy.unwrap()(self.cursor.0) };
    }
}

struct ScanState<'a> {
    glob: &'a Glob,
    found: Vec<(Vec<u8>, isize)>,
}

extern "C" fn on_key(
    _ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    key: *mut raw::RedisModuleKey,
    privdata: *mut c_void,
) {
    // SAFETY: `privdata` is the `ScanState` passed to RedisModule_Scan below,
    // alive for the whole call; `name` and `key` are valid for this callback.
    unsafe {
        let state = &mut *privdata.cast::<ScanState>();
        let mut len = 0usize;
        let p = raw::RedisModule_StringPtrLen.unwrap()(name, &mut len);
        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len);
        if !state.glob.matches(bytes) {
            return;
        }
        let ty = if key.is_null() {
            raw::REDISMODULE_KEYTYPE_EMPTY
        } else {
            raw::RedisModule_KeyType.unwrap()(key) as isize
        };
        if ty != raw::REDISMODULE_KEYTYPE_EMPTY {
            state.found.push((bytes.to_vec(), ty));
        }
    }
}

pub fn key_type(ctx: *mut raw::RedisModuleCtx, name: &[u8]) -> isize {
    // SAFETY: lock held by the caller; the string and key are freed here.
    unsafe {
        let s =
            raw::RedisModule_CreateString.unwrap()(ctx, name.as_ptr().cast::<c_char>(), name.len());
        let k = raw::RedisModule_OpenKey.unwrap()(ctx, s, raw::REDISMODULE_READ as i32);
        let ty = if k.is_null() {
            raw::REDISMODULE_KEYTYPE_EMPTY
        } else {
            raw::RedisModule_KeyType.unwrap()(k.cast()) as isize
        };
        if !k.is_null() {
            raw::RedisModule_CloseKey.unwrap()(k.cast());
        }
        raw::RedisModule_FreeString.unwrap()(ctx, s);
        ty
    }
}

/// The bulk strings of an array reply.
pub(crate) fn bulk_list(r: Reply) -> Vec<Vec<u8>> {
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

/// Reads the values of `keys` (name, type) with the lock held.
fn read_values(ctx: *mut raw::RedisModuleCtx, keys: Vec<(Vec<u8>, isize)>) -> Vec<KeyValue> {
    let read = c"vE";
    let mut values: Vec<Option<KeyValue>> = vec![None; keys.len()];
    let strings: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].1 == raw::REDISMODULE_KEYTYPE_STRING)
        .collect();
    if !strings.is_empty() {
        let names: Vec<Vec<u8>> = strings.iter().map(|&i| keys[i].0.clone()).collect();
        let mget = CString::new("MGET").expect("static");
        if let Reply::Array(items) = redis::call_locked(ctx, &mget, &names, read) {
            for (&i, item) in strings.iter().zip(items) {
                values[i] = Some(match item {
                    Reply::Bulk(b) => KeyValue::String(b),
                    _ => KeyValue::Missing,
                });
            }
        }
    }
    for (i, (name, ty)) in keys.iter().enumerate() {
        if values[i].is_some() {
            continue;
        }
        let one = |cmd: &str, extra: &[&[u8]]| {
            let mut args = vec![name.clone()];
            args.extend(extra.iter().map(|e| e.to_vec()));
            redis::call_locked(ctx, &CString::new(cmd).expect("static"), &args, read)
        };
        values[i] = Some(match *ty {
            raw::REDISMODULE_KEYTYPE_LIST => {
                KeyValue::List(bulk_list(one("LRANGE", &[b"0", b"-1"])))
            }
            raw::REDISMODULE_KEYTYPE_HASH => {
                let flat = bulk_list(one("HGETALL", &[]));
                let mut pairs = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(f), Some(v)) = (it.next(), it.next()) {
                    pairs.push((f, v));
                }
                KeyValue::Hash(pairs)
            }
            raw::REDISMODULE_KEYTYPE_SET => KeyValue::Other("set"),
            raw::REDISMODULE_KEYTYPE_ZSET => KeyValue::Other("zset"),
            raw::REDISMODULE_KEYTYPE_MODULE => KeyValue::Other("module"),
            raw::REDISMODULE_KEYTYPE_EMPTY => KeyValue::Missing,
            _ => KeyValue::Other("unknown"),
        });
    }
    values
        .into_iter()
        .map(|v| v.unwrap_or(KeyValue::Missing))
        .collect()
}

impl Reader for KeysReader {
    fn prefetch(&self) -> bool {
        !self.spec.no_scan
    }

    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, String> {
        if self.done {
            return Ok(None);
        }
        let read_value = self.spec.read_value;
        let keys = with_lock(|ctx| {
            let keys: Vec<(Vec<u8>, isize)> = if self.spec.no_scan {
                self.done = true;
                let name = self.spec.pattern.clone();
                let ty = key_type(ctx, &name);
                vec![(name, ty)]
            } else {
                let mut state = ScanState {
                    glob: &self.glob,
                    found: Vec::with_capacity(BATCH),
                };
                while state.found.len() < BATCH {
                    // SAFETY: lock held; `state` outlives the call.
                    let more = unsafe {
                        raw::RedisModule_Scan.unwrap()(
                            ctx,
                            self.cursor.0,
                            Some(on_key),
                            (&mut state as *mut ScanState).cast::<c_void>(),
                        )
                    };
                    if more == 0 {
                        self.done = true;
                        break;
                    }
                }
                state.found
            };
            if !read_value {
                return keys.into_iter().map(|(k, _)| (k, None)).collect::<Vec<_>>();
            }
            let names: Vec<Vec<u8>> = keys.iter().map(|k| k.0.clone()).collect();
            names
                .into_iter()
                .zip(read_values(ctx, keys).into_iter().map(Some))
                .collect()
        });
        // The lock is a plain mutex: a reader that re-locks at once can keep
        // the main thread waiting for several batches. Step aside briefly so
        // the clients queued on the main thread are served between batches.
        if !self.spec.no_scan {
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
        if keys.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(
            keys.into_iter()
                .map(|(key, value)| {
                    Record::Key(Box::new(KeyEntry {
                        key,
                        value,
                        event: self.event.clone(),
                    }))
                })
                .collect(),
        ))
    }
}
