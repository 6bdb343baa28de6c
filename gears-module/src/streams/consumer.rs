//! The consumer-group state machine of StreamReader registrations: one
//! state per (registration, database, stream), one execution in flight per
//! stream, batches read with XREADGROUP, acknowledged (and trimmed) only
//! after success, retries and pauses, drained in a loop.

use super::*;
use crate::errors::Error;

/// The ids of one batch, and whether they were pending entries.
#[derive(Default)]
pub(super) struct BatchInfo {
    ids: Vec<Vec<u8>>,
    from_pending: bool,
}

/// One batch of a registration through the consumer group: read already
/// (`ready`), or read when its execution starts (on a worker, when a new
/// message is known to be there).
pub(super) struct GroupReader {
    stream: Stream,
    pending_first: bool,
    batch: usize,
    info: Arc<Mutex<BatchInfo>>,
    ready: Option<Vec<Record>>,
    done: bool,
}

impl Reader for GroupReader {
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, gears_core::Error> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        let records = match self.ready.take() {
            Some(r) => r,
            // Unregistered before its turn came: it claims no message (the
            // stream's group may have a new consumer by now).
            None if self.stream.reg.is_unregistered() => return Ok(None),
            None => {
                let (records, info) = self.stream.read_batch(self.pending_first, self.batch)?;
                *self.info.lock_unpoisoned() = info;
                records
            }
        };
        Ok((!records.is_empty()).then_some(records))
    }

    fn in_memory(&self) -> bool {
        self.ready.is_some()
    }
}

/// A registration's consumer of one stream: what its batches need.
#[derive(Clone)]
pub(super) struct Stream {
    pub(super) reg: Arc<Registration>,
    pub(super) db: i64,
    pub(super) key: Vec<u8>,
}

impl Stream {
    /// Reads as the registration's owner.
    fn owner(&self) -> Identity {
        Identity::new(self.reg.owner.clone(), self.db)
    }

    /// Bookkeeping (group, acks, trims) is the module's own.
    fn module(&self) -> Identity {
        Identity::module(self.db)
    }

    pub(super) fn consumer<R>(&self, g: &Gears, f: impl FnOnce(&mut Consumer) -> R) -> R {
        g.consumer(&self.reg, self.db, &self.key, f)
    }

    fn read(&self, from: &[u8], batch: usize) -> Reply {
        let count = batch.to_string();
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
        let reply = call(&self.owner(), &args);
        match &reply {
            Reply::Error(e) if e.starts_with("NOGROUP") => {
                let group = [b"XGROUP", b"CREATE", &self.key[..], GROUP.as_bytes(), b"0"];
                if let Reply::Error(e) = call(&self.module(), &group) {
                    return Reply::Error(e);
                }
                call(&self.owner(), &args)
            }
            _ => reply,
        }
    }

    /// The next batch: the pending entries (when asked) or else new ones.
    fn read_batch(
        &self,
        pending_first: bool,
        batch: usize,
    ) -> Result<(Vec<Record>, BatchInfo), Error> {
        if pending_first {
            let (records, ids) = match self.read(b"0", batch) {
                Reply::Error(e) => return Err(Error::Key(e)),
                r => entries(r, &self.key),
            };
            if !records.is_empty() {
                let info = BatchInfo {
                    ids,
                    from_pending: true,
                };
                return Ok((records, info));
            }
        }
        match self.read(b">", batch) {
            Reply::Error(e) => Err(Error::Key(e)),
            r => {
                let (records, ids) = entries(r, &self.key);
                Ok((
                    records,
                    BatchInfo {
                        ids,
                        from_pending: false,
                    },
                ))
            }
        }
    }
}

pub(super) struct Params {
    batch: usize,
    duration_ms: u64,
    on_failed: OnFailed,
    retry_s: u64,
    trim: bool,
}

pub(super) fn params(reg: &Registration) -> Option<Params> {
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

/// A message was added to `key` in `db`, which `reg` consumes. Lock held.
pub fn on_message(g: &'static Gears, reg: &Arc<Registration>, db: i64, key: &[u8]) {
    let Some(p) = params(reg) else { return };
    let s = Stream {
        reg: reg.clone(),
        db,
        key: key.to_vec(),
    };
    match reg.stream_status() {
        StreamStatus::Ok => {}
        // Another stream of the registration waits to retry: remember this
        // one, started when the registration resumes.
        StreamStatus::WaitingForRetry => {
            s.consumer(g, |c| c.unread += 1);
            return;
        }
        StreamStatus::Paused | StreamStatus::Aborted => return,
    }
    let start = s.consumer(g, |c| {
        c.unread += 1;
        if c.running {
            false
        } else if c.unread >= p.batch {
            // Live messages start a batch once they make one (a fresh
            // consumer reads what a previous life left pending first).
            c.running = true;
            true
        } else {
            arm_flush(g, c, &s, &p);
            false
        }
    });
    if start {
        drain(g, s, true);
    }
}

/// Arms the `duration` timer that flushes a partial batch, once.
pub(super) fn arm_flush(g: &'static Gears, c: &mut Consumer, s: &Stream, p: &Params) {
    if p.duration_ms > 0 && !c.timer {
        c.timer = true;
        arm(g, s.clone(), Duration::from_millis(p.duration_ms), false);
    }
}

/// After `delay`, starts a batch if the consumer is idle and has messages
/// (duration timer) or, after a failure, reads its pending batch again
/// (`retry`, per stream: two streams that failed are both retried).
pub(super) fn arm(g: &'static Gears, s: Stream, delay: Duration, retry: bool) {
    g.timer.after(delay, move || {
        redis::with_lock(|_| {
            if s.reg.is_unregistered() {
                return;
            }
            let status = s.reg.stream_status();
            if matches!(status, StreamStatus::Paused | StreamStatus::Aborted) {
                return;
            }
            if retry && status == StreamStatus::WaitingForRetry {
                s.reg.set_stream_status(StreamStatus::Ok);
                resume_others(g, &s);
            }
            let ok = s.reg.stream_status() == StreamStatus::Ok;
            let start = s.consumer(g, |c| {
                if retry {
                    c.pending_first = true;
                    // What came while it waited is a backlog now.
                    c.backlog = true;
                } else {
                    c.timer = false;
                }
                let go = ok && !c.running && (retry || c.unread > 0);
                c.running |= go;
                go
            });
            if start {
                drain(g, s, false);
            }
        });
    });
}

/// Starts the registration's other consumers that got messages while it
/// waited to retry `s`.
pub(super) fn resume_others(g: &'static Gears, s: &Stream) {
    let waiting: Vec<Stream> = g
        .consumers()
        .iter_mut()
        .filter(|((id, db, key), c)| {
            id == &s.reg.id && (*db, key) != (s.db, &s.key) && !c.running && c.unread > 0
        })
        .map(|((_, db, key), c)| {
            c.running = true;
            c.pending_first = true;
            Stream {
                reg: s.reg.clone(),
                db: *db,
                key: key.clone(),
            }
        })
        .collect();
    for other in waiting {
        drain(g, other, false);
    }
}

/// Runs batches of `s` (the consumer is marked running) until there is
/// nothing to read, a batch must wait, or an execution is queued (its end
/// goes on). A loop: a sync registration over a long backlog does not
/// recurse. With `known` (a message just arrived), a queued execution reads
/// its first batch itself, on its worker.
pub(super) fn drain(g: &'static Gears, s: Stream, mut known: bool) {
    let Some(p) = params(&s.reg) else { return };
    // A demoted master's timers and queued batches stop here.
    if !redis::is_master() {
        s.consumer(g, |c| c.running = false);
        return;
    }
    let lazy = s.reg.mode != gears_core::registration::Mode::Sync;
    redis::with_lock(|_| loop {
        let pending_first = s.consumer(g, |c| std::mem::take(&mut c.pending_first));
        let info = Arc::new(Mutex::new(BatchInfo::default()));
        let mut reader = GroupReader {
            stream: s.clone(),
            pending_first,
            batch: p.batch,
            info: info.clone(),
            ready: None,
            done: false,
        };
        if !(lazy && std::mem::take(&mut known)) {
            let records = match s.read_batch(pending_first, p.batch) {
                Ok((records, _)) if records.is_empty() => {
                    s.consumer(g, |c| {
                        c.running = false;
                        c.backlog = false;
                    });
                    return;
                }
                Ok((records, read)) => {
                    *info.lock_unpoisoned() = read;
                    records
                }
                Err(e) => vec![Record::Error(e.to_string())],
            };
            reader.ready = Some(records);
        }
        let reader = Box::new(reader);
        let who = s.owner();
        match g.engine.fire(&s.reg, Caller::Event, who, reader, None) {
            // Nothing processed: the batch stays pending, read again later.
            Ok(Fired::Refused(_)) => {
                s.consumer(g, |c| c.running = false);
                arm(g, s.clone(), Duration::from_secs(p.retry_s.max(1)), true);
                return;
            }
            Ok(Fired::Finished(exec)) => {
                if !finish_batch(g, &s, &exec, &info) {
                    return;
                }
            }
            Ok(Fired::Queued(exec)) => {
                let (s2, info2) = (s.clone(), info.clone());
                let next: gears_core::execution::DoneCallback = Box::new(move |e| {
                    if finish_batch(g, &s2, e, &info2) {
                        drain(g, s2, false);
                    }
                });
                if exec.when_done(next).is_none() {
                    // Its end goes on.
                    return;
                }
                // Already finished: go on here rather than recurse.
                if !finish_batch(g, &s, &exec, &info) {
                    return;
                }
            }
            Err(_) => unreachable!("an event never waits for its execution"),
        }
    });
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The two numbers of a stream id `ms-seq`.
pub(super) fn id_parts(id: &[u8]) -> Option<(u64, u64)> {
    let (ms, seq) = std::str::from_utf8(id).ok()?.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The id right after `id` (`ms-seq` → `ms-(seq+1)`).
pub(super) fn next_id(id: &[u8]) -> Option<Vec<u8>> {
    let (ms, seq) = id_parts(id)?;
    Some(format!("{ms}-{}", seq.checked_add(1)?).into_bytes())
}

/// The oldest entry of the group still pending (read, not acknowledged).
pub(super) fn oldest_pending(s: &Stream) -> Option<Vec<u8>> {
    let reply = call(
        &s.module(),
        &[b"XPENDING", &s.key, GROUP.as_bytes(), b"-", b"+", b"1"],
    );
    let Reply::Array(mut entries) = reply else {
        return None;
    };
    match entries.pop() {
        Some(Reply::Array(mut e)) if !e.is_empty() => match e.swap_remove(0) {
            Reply::Bulk(id) => Some(id),
            _ => None,
        },
        _ => None,
    }
}

/// Acknowledges `ids` and, with `trim`, deletes what came before the
/// next entry, but never an entry still pending.
pub(super) fn ack(s: &Stream, ids: &[Vec<u8>], trim: bool) {
    let Some(last) = ids.last() else { return };
    let mut args = vec![b"XACK".to_vec(), s.key.clone(), GROUP.as_bytes().to_vec()];
    args.extend(ids.iter().cloned());
    redis::call_as(&s.module(), &args);
    if !trim {
        return;
    }
    let Some(mut min) = next_id(last) else { return };
    if let Some(pending) = oldest_pending(s) {
        if id_parts(&pending) < id_parts(&min) {
            min = pending;
        }
    }
    call(&s.module(), &[b"XTRIM", &s.key, b"MINID", &min]);
}

/// Settles a finished batch (ack, pause, retry...); whether the consumer
/// goes on reading now (it stays marked running) or stops.
pub(super) fn finish_batch(
    g: &'static Gears,
    s: &Stream,
    exec: &Execution,
    info: &Mutex<BatchInfo>,
) -> bool {
    let Some(p) = params(&s.reg) else {
        return false;
    };
    let info = std::mem::take(&mut *info.lock_unpoisoned());
    let reg = &s.reg;
    redis::with_lock(|_| {
        let aborted = exec.status() == Status::Aborted;
        match BatchOutcome::of(exec) {
            // An aborted batch was not processed: it stays pending and is
            // read first next time.
            _ if aborted => s.consumer(g, |c| c.pending_first = true),
            BatchOutcome::Success => ack(s, &info.ids, p.trim),
            BatchOutcome::Pause => reg.set_stream_status(StreamStatus::Paused),
            BatchOutcome::Failure => match p.on_failed {
                OnFailed::Continue => ack(s, &info.ids, p.trim),
                OnFailed::Abort => reg.set_stream_status(StreamStatus::Aborted),
                OnFailed::Retry => {
                    reg.set_stream_status(StreamStatus::WaitingForRetry);
                    arm(g, s.clone(), Duration::from_secs(p.retry_s), true);
                }
            },
        }
        if let Some((ms, _)) = info.ids.first().and_then(|id| id_parts(id)) {
            reg.on_lag(now_ms().saturating_sub(ms));
        }
        if reg.is_unregistered() {
            // Its consumers are gone; do not bring one back.
            return false;
        }
        s.consumer(g, |c| {
            if !info.from_pending {
                // Pending entries were counted when first read.
                c.unread = c.unread.saturating_sub(info.ids.len());
            }
            let ok = reg.stream_status() == StreamStatus::Ok && !aborted;
            if info.ids.len() < p.batch && !info.from_pending {
                c.backlog = false;
            }
            // Pending entries, and a backlog while batches come back full,
            // are read on now, a partial batch included; live messages wait
            // until they make a batch (or for the `duration` flush).
            let more = info.from_pending
                || (c.backlog && info.ids.len() >= p.batch)
                || c.unread >= p.batch;
            if ok && more {
                return true;
            }
            c.running = false;
            if ok && c.unread > 0 {
                arm_flush(g, c, s, &p);
            }
            false
        })
    })
}

/// Forgets `reg`'s consumer of a stream that was deleted, unless a batch
/// of it is in flight (its end forgets nothing and the next XADD starts
/// afresh).
pub fn forget_stream(g: &Gears, reg: &Registration, db: i64, key: &[u8]) {
    let mut all = g.consumers();
    let k = (reg.id.clone(), db, key.to_vec());
    if all.get(&k).is_some_and(|c| !c.running) {
        all.remove(&k);
    }
}

/// Forgets the consumers of an unregistered registration.
pub fn forget(g: &Gears, reg: &Registration) {
    g.consumers().retain(|(id, _, _), _| id != &reg.id);
}

/// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS of a stream
/// registration: a paused one reads nothing; unpaused, it reads what came
/// meanwhile, in every database.
pub fn set_paused(g: &'static Gears, reg: &Arc<Registration>, pause: bool) {
    if pause {
        reg.set_stream_status(StreamStatus::Paused);
    } else if reg.stream_status() != StreamStatus::Ok {
        reg.set_stream_status(StreamStatus::Ok);
        scan_every_db(g, std::slice::from_ref(reg));
    }
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
