//! The one-shot StreamReader of `run()`: reads one stream (or every
//! stream matching a pattern) from a start id, in batches, as the
//! execution's user. No consumer group, nothing acknowledged.

use super::*;

/// `GB('StreamReader').run(key, fromId=...)`: every message after `from`.
pub struct StreamRunReader {
    who: Identity,
    key: Vec<u8>,
    from: Vec<u8>,
    done: bool,
}

impl StreamRunReader {
    pub fn new(who: Identity, key: Vec<u8>, from: Vec<u8>) -> StreamRunReader {
        StreamRunReader {
            who,
            key,
            from,
            done: false,
        }
    }
}

impl Reader for StreamRunReader {
    fn next_batch(&mut self) -> Result<Option<Vec<Record>>, gears_core::Error> {
        if self.done {
            return Ok(None);
        }
        let reply = call(
            &self.who,
            &[
                b"XREAD", b"COUNT", b"1024", b"STREAMS", &self.key, &self.from,
            ],
        );
        if let Reply::Error(e) = reply {
            return Err(e.into());
        }
        let (records, ids) = entries(reply, &self.key);
        match ids.last() {
            Some(last) if records.len() == 1024 => self.from = last.clone(),
            _ => self.done = true,
        }
        Ok((!records.is_empty()).then_some(records))
    }
}
