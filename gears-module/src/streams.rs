//! StreamReader: `run()` over one stream and registrations that consume
//! streams through a consumer group.
//!
//! Each (registration, stream) pair has one consumer state. At most one
//! execution per stream is in flight. An execution reads with XREADGROUP
//! (the consumer's pending entries first after a (re)start, new ones
//! after), and only once it succeeded are its messages acknowledged (and
//! trimmed). A failed batch stays pending in the group, so nothing is lost:
//! `retry` reads it again, a restart reads it again.

use crate::redis::{self, bulk_list};
use crate::state::{Consumer, Gears};
use gears_core::execution::Execution;
use gears_core::registration::{
    prefix_matches, BatchOutcome, OnFailed, ReaderArgs, Registration, StreamStatus,
};
use gears_core::{Caller, Fired, Reader, Record, Reply};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const GROUP: &str = "__gears_consumer_group__";
pub const CONSUMER: &str = "__gears_client__";

fn call(args: &[&[u8]]) -> Reply {
    redis::call(&args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
}

/// Stream entries of an XREAD/XREADGROUP reply as records; also returns
/// their ids.
fn entries(reply: Reply, key: &[u8]) -> (Vec<Record>, Vec<Vec<u8>>) {
    let mut records = Vec::new();
    let mut ids = Vec::new();
    let Reply::Array(streams) = reply else {
        return (records, ids);
    };
    for s in streams {
        let Reply::Array(mut pair) = s else { continue };
        let Some(Reply::Array(items)) = pair.pop() else {
            continue;
        };
        for item in items {
            let Reply::Array(mut e) = item else { continue };
            let fields = match e.pop() {
                Some(Reply::Array(f)) => f,
                _ => Vec::new(),
            };
            let Some(Reply::Bulk(id)) = e.pop() else {
                continue;
            };
            let mut value = Vec::with_capacity(fields.len() / 2);
            let mut it = fields.into_iter();
            while let (Some(Reply::Bulk(f)), Some(Reply::Bulk(v))) = (it.next(), it.next()) {
                value.push((f, Record::Str(v)));
            }
            ids.push(id.clone());
            records.push(Record::Dict(vec![
                (b"id".to_vec(), Record::Str(id)),
                (b"key".to_vec(), Record::Str(key.to_vec())),
                (b"value".to_vec(), Record::Dict(value)),
            ]));
        }
    }
    (records, ids)
}

/// `GB('StreamReader').run(key, fromId=...)`: every message after `from`.
pub struct StreamRunReader {
    key: Vec<u8>,
    from: Vec<u8>,
    done: bool,
}

impl StreamRunReader {
    pub fn new(key: Vec<u8>, from: Vec<u8>) -> StreamRunReader {
        StreamRunReader {
            key,
            from,
            done: false,
        }
    }
}

impl Reader for StreamRunReader {
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, String> {
        if self.done {
            return Ok(None);
        }
        let reply = call(&[
            b"XREAD", b"COUNT", b"1024", b"STREAMS", &self.key, &self.from,
        ]);
        if let Reply::Error(e) = reply {
            return Err(e);
        }
        let (records, ids) = entries(reply, &self.key);
        match ids.last() {
            Some(last) if records.len() == 1024 => self.from = last.clone(),
            _ => self.done = true,
        }
        Ok((!records.is_empty()).then_some(records))
    }
}

/// What one batch read, shared between its reader and its completion.
#[derive(Default)]
struct BatchInfo {
    ids: Vec<Vec<u8>>,
}

/// Reads one batch of a registration through the consumer group.
struct GroupReader {
    key: Vec<u8>,
    batch: usize,
    pending_first: bool,
    info: Arc<Mutex<BatchInfo>>,
    done: bool,
    /// A batch already read by whoever started the execution.
    ready: Option<(Vec<Record>, Vec<Vec<u8>>)>,
}

impl GroupReader {
    fn read(&self, from: &[u8]) -> Reply {
        let count = self.batch.to_string();
        let mut args: Vec<&[u8]> = vec![
            b"XREADGROUP",
            b"GROUP",
            GROUP.as_bytes(),
            CONSUMER.as_bytes(),
        ];
        if from == b">" {
            args.extend([b"COUNT".as_slice(), count.as_bytes()]);
        }
        args.extend([b"STREAMS".as_slice(), &self.key, from]);
        let reply = call(&args);
        match &reply {
            Reply::Error(e) if e.starts_with("NOGROUP") => {
                let created = call(&[b"XGROUP", b"CREATE", &self.key, GROUP.as_bytes(), b"0"]);
                if let Reply::Error(e) = created {
                    return Reply::Error(e);
                }
                call(&args)
            }
            _ => reply,
        }
    }
}

impl GroupReader {
    /// The pending entries (when asked) or else the next new ones.
    fn read_batch(&self) -> Result<(Vec<Record>, Vec<Vec<u8>>), String> {
        let mut got = (Vec::new(), Vec::new());
        if self.pending_first {
            match self.read(b"0") {
                Reply::Error(e) => return Err(e),
                r => got = entries(r, &self.key),
            }
        }
        if got.0.is_empty() {
            match self.read(b">") {
                Reply::Error(e) => return Err(e),
                r => got = entries(r, &self.key),
            }
        }
        Ok(got)
    }
}

impl Reader for GroupReader {
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, String> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let (records, ids) = match self.ready.take() {
            Some(r) => r,
            None => self.read_batch()?,
        };
        self.info.lock().unwrap_or_else(|e| e.into_inner()).ids = ids;
        Ok((!records.is_empty()).then_some(records))
    }
}

struct Params {
    batch: usize,
    duration_ms: u64,
    on_failed: OnFailed,
    retry_s: u64,
    trim: bool,
}

fn params(reg: &Registration) -> Option<Params> {
    match &reg.args {
        ReaderArgs::Stream {
            batch,
            duration_ms,
            on_failed,
            retry_interval_s,
            trim,
            ..
        } => Some(Params {
            batch: *batch,
            duration_ms: *duration_ms,
            on_failed: *on_failed,
            retry_s: *retry_interval_s,
            trim: *trim,
        }),
        _ => None,
    }
}

/// A message was added to `key`, which `reg` consumes. Lock held.
pub fn on_message(g: &'static Gears, reg: &Arc<Registration>, key: &[u8]) {
    let Some(p) = params(reg) else { return };
    if reg.stream_status() != StreamStatus::Ok {
        return;
    }
    let start = g.consumer(reg, key, |c| {
        c.unread += 1;
        if c.running {
            false
        } else if c.pending_first || c.unread >= p.batch {
            c.running = true;
            true
        } else {
            arm_flush(g, c, reg, key, &p);
            false
        }
    });
    if start {
        start_batch(g, reg, key);
    }
}

/// Arms the `duration` timer that flushes a partial batch, once.
fn arm_flush(g: &'static Gears, c: &mut Consumer, reg: &Arc<Registration>, key: &[u8], p: &Params) {
    if p.duration_ms > 0 && !c.timer {
        c.timer = true;
        let delay = Duration::from_millis(p.duration_ms);
        arm(g, reg.clone(), key.to_vec(), delay, false);
    }
}

/// After `delay`, starts a batch if the consumer is idle and has messages
/// (duration timer) or unconditionally after a failure (`retry`).
fn arm(g: &'static Gears, reg: Arc<Registration>, key: Vec<u8>, delay: Duration, retry: bool) {
    g.timer.after(delay, move || {
        redis::with_lock(|_| {
            if reg.is_unregistered() {
                return;
            }
            if retry {
                if reg.stream_status() != StreamStatus::WaitingForRetry {
                    return;
                }
                reg.set_stream_status(StreamStatus::Ok);
            }
            let ok = reg.stream_status() == StreamStatus::Ok;
            let start = g.consumer(&reg, &key, |c| {
                c.timer = false;
                c.pending_first |= retry;
                let go = ok && !c.running && (retry || c.unread > 0);
                c.running |= go;
                go
            });
            if start {
                start_batch_if_any(g, &reg, &key);
            }
        });
    });
}

fn group_reader(g: &Gears, reg: &Registration, key: &[u8], batch: usize) -> GroupReader {
    let pending_first = g.consumer(reg, key, |c| std::mem::take(&mut c.pending_first));
    GroupReader {
        key: key.to_vec(),
        batch,
        pending_first,
        info: Arc::new(Mutex::new(BatchInfo::default())),
        done: false,
        ready: None,
    }
}

/// Starts one execution for `key` (the consumer is marked running); its
/// messages are read when it starts.
fn start_batch(g: &'static Gears, reg: &Arc<Registration>, key: &[u8]) {
    let Some(p) = params(reg) else { return };
    launch(g, reg, key, group_reader(g, reg, key, p.batch));
}

/// Like [`start_batch`], but reads now (lock held) and starts nothing if
/// there is nothing to read: used when it is not known that messages wait.
fn start_batch_if_any(g: &'static Gears, reg: &Arc<Registration>, key: &[u8]) {
    let Some(p) = params(reg) else { return };
    let mut reader = group_reader(g, reg, key, p.batch);
    match reader.read_batch() {
        Ok((records, _)) if records.is_empty() => g.consumer(reg, key, |c| c.running = false),
        Ok(batch) => {
            reader.ready = Some(batch);
            launch(g, reg, key, reader);
        }
        // Let the execution report the error.
        Err(_) => launch(g, reg, key, reader),
    }
}

fn launch(g: &'static Gears, reg: &Arc<Registration>, key: &[u8], reader: GroupReader) {
    let info = reader.info.clone();
    let (r, k) = (reg.clone(), key.to_vec());
    match g.engine.fire(reg, Caller::Event, Box::new(reader), None) {
        Ok(Fired::Finished(exec)) => finish_batch(g, &r, &k, &exec, &info),
        Ok(Fired::Queued(exec)) => {
            exec.on_finish(Box::new(move |e| finish_batch(g, &r, &k, e, &info)))
        }
        Err(_) => unreachable!("an event never waits for its execution"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The two numbers of a stream id `ms-seq`.
fn id_parts(id: &[u8]) -> Option<(u64, u64)> {
    let (ms, seq) = std::str::from_utf8(id).ok()?.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The id right after `id` (`ms-seq` → `ms-(seq+1)`).
fn next_id(id: &[u8]) -> Option<Vec<u8>> {
    let (ms, seq) = id_parts(id)?;
    Some(format!("{ms}-{}", seq.checked_add(1)?).into_bytes())
}

fn ack(key: &[u8], ids: &[Vec<u8>], trim: bool) {
    let Some(last) = ids.last() else { return };
    let mut args = vec![b"XACK".to_vec(), key.to_vec(), GROUP.as_bytes().to_vec()];
    args.extend(ids.iter().cloned());
    redis::call(&args);
    if trim {
        if let Some(min) = next_id(last) {
            call(&[b"XTRIM", key, b"MINID", &min]);
        }
    }
}

fn finish_batch(
    g: &'static Gears,
    reg: &Arc<Registration>,
    key: &[u8],
    exec: &Execution,
    info: &Mutex<BatchInfo>,
) {
    let Some(p) = params(reg) else { return };
    let ids = std::mem::take(&mut info.lock().unwrap_or_else(|e| e.into_inner()).ids);
    redis::with_lock(|_| {
        match BatchOutcome::of(exec) {
            BatchOutcome::Success => ack(key, &ids, p.trim),
            BatchOutcome::Pause => reg.set_stream_status(StreamStatus::Paused),
            BatchOutcome::Failure => match p.on_failed {
                OnFailed::Continue => ack(key, &ids, p.trim),
                OnFailed::Abort => reg.set_stream_status(StreamStatus::Aborted),
                OnFailed::Retry => {
                    reg.set_stream_status(StreamStatus::WaitingForRetry);
                    arm(
                        g,
                        reg.clone(),
                        key.to_vec(),
                        Duration::from_secs(p.retry_s),
                        true,
                    );
                }
            },
        }
        if let Some((ms, _)) = ids.first().and_then(|id| id_parts(id)) {
            reg.on_lag(now_ms().saturating_sub(ms));
        }
        if reg.is_unregistered() {
            // Its consumers are gone; do not bring one back.
            return;
        }
        let again = g.consumer(reg, key, |c| {
            c.running = false;
            c.unread = c.unread.saturating_sub(ids.len());
            let ok = reg.stream_status() == StreamStatus::Ok;
            let more = (!ids.is_empty() && ids.len() >= p.batch) || c.unread >= p.batch;
            if ok && more {
                c.running = true;
                true
            } else {
                if ok && c.unread > 0 {
                    arm_flush(g, c, reg, key, &p);
                }
                false
            }
        });
        if again {
            start_batch_if_any(g, reg, key);
        }
    });
}

/// Starts consuming every existing stream `reg` matches (at registration
/// and on unpause): pending entries first, then the backlog. Lock held.
pub fn scan_existing(g: &'static Gears, reg: &Arc<Registration>) {
    let ReaderArgs::Stream { prefix, .. } = &reg.args else {
        return;
    };
    let mut cursor = b"0".to_vec();
    let mut keys = Vec::new();
    loop {
        let reply = call(&[
            b"SCAN", &cursor, b"MATCH", prefix, b"COUNT", b"1000", b"TYPE", b"stream",
        ]);
        let Reply::Array(mut parts) = reply else {
            break;
        };
        if let Some(found) = parts.pop() {
            keys.extend(bulk_list(found));
        }
        match parts.pop() {
            Some(Reply::Bulk(c)) if c != b"0" => cursor = c,
            _ => break,
        }
    }
    for key in keys {
        if !prefix_matches(prefix, &key) {
            continue;
        }
        let start = g.consumer(reg, &key, |c| {
            c.pending_first = true;
            !std::mem::replace(&mut c.running, true)
        });
        if start {
            start_batch_if_any(g, reg, &key);
        }
    }
}

/// Forgets the consumers of an unregistered registration.
pub fn forget(g: &Gears, reg: &Registration) {
    g.consumers().retain(|(id, _), _| id != &reg.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_advance_by_one_sequence_number() {
        assert_eq!(next_id(b"1-0").unwrap(), b"1-1");
        assert_eq!(next_id(b"1700000000000-41").unwrap(), b"1700000000000-42");
        assert!(next_id(b"nonsense").is_none());
    }
}
