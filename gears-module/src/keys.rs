//! Reading keys: the KeysReader that scans the keyspace in batches, and the
//! record of one key for an event. Keys are read in the database of the
//! execution, and only those its user may read.

use crate::errors::Error;
use crate::redis::{self, bulk_list, read_filter, with_lock, LockedCtx, ScanCursor};
use gears_core::glob::Glob;
use gears_core::record::{KeyEntry, KeyType, KeyValue};
use gears_core::{Identity, Reader, Record, Reply};
use gears_python::KeysReaderSpec;

/// How many keys one batch reads under the Redis lock. Small enough that
/// other clients wait well under a millisecond, large enough to amortize the
/// lock and the MGET.
const BATCH: usize = 1024;

/// How long one batch may hold the Redis lock: the main thread waits that
/// long at most for it (a batch of big values ends early).
const BATCH_LOCK_TIME: std::time::Duration = std::time::Duration::from_micros(600);

pub struct KeysReader {
    spec: KeysReaderSpec,
    who: Identity,
    glob: Glob,
    cursor: ScanCursor,
    done: bool,
    /// The event that triggered this read (registrations).
    event: Option<String>,
}

impl KeysReader {
    /// A scan (or, with `no_scan`, a read of one key) for `who`.
    pub fn new(spec: KeysReaderSpec, who: Identity) -> KeysReader {
        KeysReader {
            glob: Glob::new(&spec.pattern),
            spec,
            who,
            cursor: ScanCursor::default(),
            done: false,
            event: None,
        }
    }

    /// Reads one key when an execution triggered by `event` starts.
    pub fn for_event(key: Vec<u8>, event: String, read_value: bool, who: Identity) -> KeysReader {
        let spec = KeysReaderSpec {
            pattern: key,
            no_scan: true,
            read_value,
        };
        let mut r = KeysReader::new(spec, who);
        r.event = Some(event);
        r
    }
}

/// The record of `key` (database selected) for an event, read now.
pub fn key_record(ctx: LockedCtx, key: &[u8], event: &str, read_value: bool) -> Record {
    redis::without_key_miss_events(|| key_record_now(ctx, key, event, read_value))
}

fn key_record_now(ctx: LockedCtx, key: &[u8], event: &str, read_value: bool) -> Record {
    let value = read_value.then(|| match redis::key_type_and_string(ctx, key) {
        (KeyType::String, Some(v)) => Some(Ok(KeyValue::String(v))),
        (ty, _) => read_values(ctx, vec![(key.to_vec(), ty)]).pop(),
    });
    key_entry(key.to_vec(), value.flatten(), Some(event.to_owned()))
}

/// A key's record, or the error of reading its value.
fn key_entry(
    key: Vec<u8>,
    value: Option<Result<KeyValue, Error>>,
    event: Option<String>,
) -> Record {
    match value.transpose() {
        Ok(value) => Record::Key(Box::new(KeyEntry { key, value, event })),
        Err(e) => Record::Error(format!(
            "could not read key '{}': {e}",
            String::from_utf8_lossy(&key)
        )),
    }
}

/// The value of one key read by a command, or its error.
fn value_of(reply: Reply, ty: KeyType) -> Result<KeyValue, Error> {
    match (ty, reply) {
        (_, Reply::Error(e)) => Err(Error::Key(e)),
        (KeyType::String, Reply::Bulk(b)) => Ok(KeyValue::String(b)),
        // Gone between the scan and the read.
        (_, Reply::Null) => Ok(KeyValue::Missing),
        (KeyType::List, r) => Ok(KeyValue::List(bulk_list(r))),
        (KeyType::Hash, r) => {
            let flat = bulk_list(r);
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                pairs.push((f, v));
            }
            Ok(KeyValue::Hash(pairs))
        }
        (_, other) => Err(Error::Key(format!("unexpected reply {other:?}"))),
    }
}

/// Reads the values of `keys` (name, type) with the lock held. Strings are
/// read with one MGET, except in cluster mode, where one command can not
/// span slots.
fn read_values(ctx: LockedCtx, keys: Vec<(Vec<u8>, KeyType)>) -> Vec<Result<KeyValue, Error>> {
    let read = c"vE";
    let mut values: Vec<Option<Result<KeyValue, Error>>> = vec![None; keys.len()];
    let strings: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].1 == KeyType::String)
        .collect();
    if strings.len() > 1 && !ctx.cluster_enabled() {
        let names: Vec<Vec<u8>> = strings.iter().map(|&i| keys[i].0.clone()).collect();
        match redis::call_locked(ctx, c"MGET", &names, read) {
            Reply::Array(items) if items.len() == strings.len() => {
                for (&i, item) in strings.iter().zip(items) {
                    values[i] = Some(match item {
                        Reply::Bulk(b) => Ok(KeyValue::String(b)),
                        _ => Ok(KeyValue::Missing),
                    });
                }
            }
            // Read them one by one below, each with its own outcome.
            _ => {}
        }
    }
    for (i, (name, ty)) in keys.iter().enumerate() {
        if values[i].is_some() {
            continue;
        }
        let one = |cmd: &std::ffi::CStr, extra: &[&[u8]]| {
            let mut args = vec![name.clone()];
            args.extend(extra.iter().map(|e| e.to_vec()));
            redis::call_locked(ctx, cmd, &args, read)
        };
        values[i] = Some(match *ty {
            KeyType::String => value_of(one(c"GET", &[]), KeyType::String),
            KeyType::List => value_of(one(c"LRANGE", &[b"0", b"-1"]), KeyType::List),
            KeyType::Hash => value_of(one(c"HGETALL", &[]), KeyType::Hash),
            KeyType::Empty => Ok(KeyValue::Missing),
            other => Ok(KeyValue::Other(other)),
        });
    }
    values
        .into_iter()
        .map(|v| v.unwrap_or(Ok(KeyValue::Missing)))
        .collect()
}

type Found = Vec<(Vec<u8>, Option<Result<KeyValue, Error>>)>;

impl Reader for KeysReader {
    fn prefetch(&self) -> bool {
        !self.spec.no_scan
    }

    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, gears_core::Error> {
        if self.done {
            return Ok(None);
        }
        let read_value = self.spec.read_value;
        let keys: Found = with_lock(|ctx| {
            redis::without_key_miss_events(|| {
                ctx.select_db(self.who.db);
                let readable = read_filter(ctx, &self.who, !self.spec.no_scan);
                // Keys with the value read while scanning (strings), or
                // still to read (other types).
                let keys: Vec<(Vec<u8>, KeyType, Option<Vec<u8>>)> = if self.spec.no_scan {
                    self.done = true;
                    let name = self.spec.pattern.clone();
                    if !readable(&name) {
                        return Vec::new();
                    }
                    let (ty, value) = redis::key_type_and_string(ctx, &name);
                    vec![(name, ty, value)]
                } else {
                    let mut found = Vec::with_capacity(BATCH);
                    let glob = &self.glob;
                    let started = std::time::Instant::now();
                    while found.len() < BATCH && started.elapsed() < BATCH_LOCK_TIME {
                        let more = self.cursor.step(ctx, read_value, |name, ty, value| {
                            if ty != KeyType::Empty && glob.matches(name) && readable(name) {
                                found.push((name.to_vec(), ty, value.map(<[u8]>::to_vec)));
                            }
                        });
                        if !more {
                            self.done = true;
                            break;
                        }
                    }
                    found
                };
                if !read_value {
                    return keys.into_iter().map(|(k, _, _)| (k, None)).collect();
                }
                // The other types, read by command, in one go.
                let others: Vec<(Vec<u8>, KeyType)> = keys
                    .iter()
                    .filter(|k| k.2.is_none())
                    .map(|k| (k.0.clone(), k.1))
                    .collect();
                let mut read = read_values(ctx, others).into_iter();
                keys.into_iter()
                    .map(|(name, _, value)| {
                        let value = match value {
                            Some(v) => Ok(KeyValue::String(v)),
                            None => read.next().unwrap_or(Ok(KeyValue::Missing)),
                        };
                        (name, Some(value))
                    })
                    .collect()
            })
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
                .map(|(key, value)| key_entry(key, value, self.event.clone()))
                .collect(),
        ))
    }
}
