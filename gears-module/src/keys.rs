//! Reading keys: the KeysReader that scans the keyspace in batches, and the
//! record of one key for an event.

use crate::redis::{self, bulk_list, with_lock, LockedCtx, ScanCursor};
use gears_core::glob::Glob;
use gears_core::record::{KeyEntry, KeyType, KeyValue};
use gears_core::{Reader, Record, Reply};
use gears_python::KeysReaderSpec;

/// How many keys one batch reads under the Redis lock. Small enough that
/// other clients wait well under a millisecond, large enough to amortize the
/// lock and the MGET.
const BATCH: usize = 1024;

pub struct KeysReader {
    spec: KeysReaderSpec,
    glob: Glob,
    cursor: ScanCursor,
    done: bool,
    /// The event that triggered this read (registrations).
    event: Option<String>,
}

impl KeysReader {
    pub fn new(spec: KeysReaderSpec) -> KeysReader {
        KeysReader {
            glob: Glob::new(&spec.pattern),
            spec,
            cursor: ScanCursor::default(),
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

/// The record of `key` for an event, read now.
pub fn key_record(ctx: LockedCtx, key: &[u8], event: &str, read_value: bool) -> Record {
    let value = read_value.then(|| {
        let ty = redis::key_type(ctx, key);
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

/// Reads the values of `keys` (name, type) with the lock held.
fn read_values(ctx: LockedCtx, keys: Vec<(Vec<u8>, KeyType)>) -> Vec<KeyValue> {
    let read = c"vE";
    let mut values: Vec<Option<KeyValue>> = vec![None; keys.len()];
    let strings: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].1 == KeyType::String)
        .collect();
    if !strings.is_empty() {
        let names: Vec<Vec<u8>> = strings.iter().map(|&i| keys[i].0.clone()).collect();
        if let Reply::Array(items) = redis::call_locked(ctx, c"MGET", &names, read) {
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
        let one = |cmd: &std::ffi::CStr, extra: &[&[u8]]| {
            let mut args = vec![name.clone()];
            args.extend(extra.iter().map(|e| e.to_vec()));
            redis::call_locked(ctx, cmd, &args, read)
        };
        values[i] = Some(match *ty {
            KeyType::List => KeyValue::List(bulk_list(one(c"LRANGE", &[b"0", b"-1"]))),
            KeyType::Hash => {
                let flat = bulk_list(one(c"HGETALL", &[]));
                let mut pairs = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(f), Some(v)) = (it.next(), it.next()) {
                    pairs.push((f, v));
                }
                KeyValue::Hash(pairs)
            }
            KeyType::Empty => KeyValue::Missing,
            other => KeyValue::Other(other),
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
            let keys: Vec<(Vec<u8>, KeyType)> = if self.spec.no_scan {
                self.done = true;
                let name = self.spec.pattern.clone();
                let ty = redis::key_type(ctx, &name);
                vec![(name, ty)]
            } else {
                let mut found = Vec::with_capacity(BATCH);
                let glob = &self.glob;
                while found.len() < BATCH {
                    let more = self.cursor.step(ctx, |name, ty| {
                        if ty != KeyType::Empty && glob.matches(name) {
                            found.push((name.to_vec(), ty));
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
