//! Records: the values that flow between the steps of a pipeline.
//!
//! Readers produce native records (strings, keys with their values...); a host
//! language wraps its own objects in [`Record::Host`]. Native records have a
//! stable binary encoding ([`Record::encode`]) so that the cluster layer can
//! move them between shards; host objects bring their own through
//! [`HostValue::encode`].

use crate::error::{Error, Form};
use std::any::Any;
use std::fmt;

/// An object owned by the host language (for Python, a `Py<PyAny>`).
///
/// The core never looks inside; it only asks the host the few questions a
/// step needs answered.
pub trait HostValue: Send + Sync + fmt::Debug + 'static {
    fn as_any(&self) -> &dyn Any;
    /// The reply a client sees for this object. Called with whatever lock the
    /// host needs already held by the caller.
    fn to_reply(&self) -> crate::Reply;
    /// Like [`HostValue::to_reply`], or why the object has no reply (nested
    /// deeper than [`MAX_REPLY_DEPTH`], cyclic...).
    fn try_reply(&self) -> Result<crate::Reply, Error> {
        Ok(self.to_reply())
    }
    /// Bytes that `decode` on another shard turns back into the object.
    fn encode(&self) -> Result<Vec<u8>, Error> {
        Err(Error::NotSendable)
    }
}

pub type HostObject = Box<dyn HostValue>;

/// The value of a key as read by KeysReader.
#[derive(Debug)]
pub struct KeyEntry {
    pub key: Vec<u8>,
    /// `None` when the reader was asked not to read values.
    pub value: Option<KeyValue>,
    /// The event that triggered the read, `None` for batch runs.
    pub event: Option<String>,
}

/// The type of a key, as Redis reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Empty,
    String,
    List,
    Hash,
    Set,
    Zset,
    Module,
    Stream,
}

impl KeyType {
    pub const ALL: [KeyType; 8] = [
        KeyType::Empty,
        KeyType::String,
        KeyType::List,
        KeyType::Hash,
        KeyType::Set,
        KeyType::Zset,
        KeyType::Module,
        KeyType::Stream,
    ];

    /// The name `keyTypes=[...]` of a registration uses.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Empty => "empty",
            KeyType::String => "string",
            KeyType::List => "list",
            KeyType::Hash => "hash",
            KeyType::Set => "set",
            KeyType::Zset => "zset",
            KeyType::Module => "module",
            KeyType::Stream => "stream",
        }
    }

    /// The type of a `keyTypes` name (lower case).
    pub fn parse(name: &str) -> Option<KeyType> {
        KeyType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The `type` a KeysReader record shows: 1.2 calls a stream `unknown`.
    pub fn record_name(self) -> &'static str {
        match self {
            KeyType::Stream => "unknown",
            t => t.name(),
        }
    }
}

/// What KeysReader found under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A key of a type whose value is not read (set, zset, stream, module).
    Other(KeyType),
    /// The key does not exist (any more).
    Missing,
}

impl KeyValue {
    /// The type name a KeysReader record carries.
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyValue::String(_) => "string",
            KeyValue::List(_) => "list",
            KeyValue::Hash(_) => "hash",
            KeyValue::Other(t) => t.record_name(),
            KeyValue::Missing => KeyType::Empty.record_name(),
        }
    }
}

#[derive(Debug)]
pub enum Record {
    Null,
    /// Bytes; a host shows them as text when they are UTF-8.
    Str(Vec<u8>),
    Long(i64),
    Double(f64),
    List(Vec<Record>),
    /// A record tagged with a grouping key (output of extract-key steps).
    Keyed(String, Box<Record>),
    /// A key and its value, as KeysReader produces them.
    Key(Box<KeyEntry>),
    /// Named fields (a dictionary for the host; stream messages).
    Dict(Vec<(Vec<u8>, Record)>),
    /// A failure; error records skip every step and end in the errors list.
    Error(String),
    Host(HostObject),
}

pub use crate::reply::{too_deep, MAX_REPLY_DEPTH};

/// How deeply native records that cross shards may nest (Python values
/// travel pickled, as one host payload): plenty for lists of records, and
/// shallow enough for any thread's stack.
pub const MAX_RECORD_DEPTH: usize = 64;

impl Record {
    pub fn is_error(&self) -> bool {
        matches!(self, Record::Error(_))
    }

    /// The reply a native record gets (host objects answer for themselves);
    /// a record that has none replies its error.
    pub fn to_reply(&self) -> crate::Reply {
        self.try_reply()
            .unwrap_or_else(|e| crate::Reply::Error(e.to_string()))
    }

    /// The reply of a record, or why it has none (see [`MAX_REPLY_DEPTH`]).
    pub fn try_reply(&self) -> Result<crate::Reply, Error> {
        self.reply_at(0)
    }

    fn reply_at(&self, depth: usize) -> Result<crate::Reply, Error> {
        use crate::Reply;
        if depth > MAX_REPLY_DEPTH {
            return Err(Error::ReplyTooDeep {
                limit: MAX_REPLY_DEPTH,
            });
        }
        let inner = |r: &Record| r.reply_at(depth + 1);
        Ok(match self {
            Record::Null => Reply::Null,
            Record::Str(s) => Reply::Bulk(s.clone()),
            Record::Long(i) => Reply::Int(*i),
            Record::Double(d) => Reply::from_float(*d),
            Record::List(l) => Reply::Array(l.iter().map(inner).collect::<Result<_, _>>()?),
            Record::Keyed(k, v) => Reply::Array(vec![Reply::bulk(k.as_bytes()), inner(v)?]),
            Record::Key(e) => Reply::Array(vec![
                Reply::Bulk(e.key.clone()),
                match &e.value {
                    Some(KeyValue::String(s)) => Reply::Bulk(s.clone()),
                    Some(KeyValue::List(l)) => {
                        Reply::Array(l.iter().map(|x| Reply::Bulk(x.clone())).collect())
                    }
                    Some(KeyValue::Hash(h)) => Reply::Array(
                        h.iter()
                            .map(|(f, v)| {
                                Reply::Array(vec![Reply::Bulk(f.clone()), Reply::Bulk(v.clone())])
                            })
                            .collect(),
                    ),
                    _ => Reply::Null,
                },
            ]),
            Record::Dict(d) => Reply::Array(
                d.iter()
                    .map(|(k, v)| Ok(Reply::Array(vec![Reply::Bulk(k.clone()), inner(v)?])))
                    .collect::<Result<_, Error>>()?,
            ),
            Record::Error(e) => Reply::Error(e.clone()),
            Record::Host(h) => h.try_reply()?,
        })
    }

    /// Appends the binary form of a native record to `out`.
    ///
    /// Layout: one tag byte, then the payload; lengths and integers are
    /// little-endian u64/i64. Host records are encoded by the host.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        match self {
            Record::Null => out.push(0),
            Record::Str(s) => {
                out.push(1);
                bytes(out, s);
            }
            Record::Long(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Record::Double(d) => {
                out.push(3);
                out.extend_from_slice(&d.to_le_bytes());
            }
            Record::List(l) => {
                out.push(4);
                out.extend_from_slice(&(l.len() as u64).to_le_bytes());
                for r in l {
                    r.encode(out)?;
                }
            }
            Record::Keyed(k, v) => {
                out.push(5);
                bytes(out, k.as_bytes());
                v.encode(out)?;
            }
            Record::Error(e) => {
                out.push(6);
                bytes(out, e.as_bytes());
            }
            Record::Host(h) => {
                out.push(7);
                bytes(out, &h.encode()?);
            }
            Record::Dict(d) => {
                out.push(8);
                out.extend_from_slice(&(d.len() as u64).to_le_bytes());
                for (k, v) in d {
                    bytes(out, k);
                    v.encode(out)?;
                }
            }
            Record::Key(_) => return Err(Error::KeyRecordLocal),
        }
        Ok(())
    }

    /// Reads a record written by [`Record::encode`]. Host payloads are handed
    /// to `host` to rebuild. Nesting deeper than [`MAX_RECORD_DEPTH`] is
    /// refused (the bytes come from another shard).
    pub fn decode(
        input: &mut &[u8],
        host: &dyn Fn(&[u8]) -> Result<HostObject, Error>,
    ) -> Result<Record, Error> {
        Record::decode_at(input, host, 0)
    }

    fn decode_at(
        input: &mut &[u8],
        host: &dyn Fn(&[u8]) -> Result<HostObject, Error>,
        depth: usize,
    ) -> Result<Record, Error> {
        if depth > MAX_RECORD_DEPTH {
            return Err(Error::RecordTooDeep);
        }
        use crate::codec::read;
        const TRUNCATED: Error = Error::Truncated(Form::Record);
        fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
            read(input, |r| r.take(n)).ok_or(TRUNCATED)
        }
        fn u64_of(input: &mut &[u8]) -> Result<u64, Error> {
            read(input, |r| r.u64()).ok_or(TRUNCATED)
        }
        fn bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], Error> {
            read(input, |r| r.bytes()).ok_or(TRUNCATED)
        }
        fn text(input: &mut &[u8]) -> Result<String, Error> {
            String::from_utf8(bytes(input)?.to_vec()).map_err(|_| Error::BadText(Form::Record))
        }
        let tag = take(input, 1)?[0];
        Ok(match tag {
            0 => Record::Null,
            1 => Record::Str(bytes(input)?.to_vec()),
            2 => Record::Long(u64_of(input)? as i64),
            3 => Record::Double(f64::from_bits(u64_of(input)?)),
            4 => {
                let n = u64_of(input)? as usize;
                let mut l = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    l.push(Record::decode_at(input, host, depth + 1)?);
                }
                Record::List(l)
            }
            5 => {
                let k = text(input)?;
                Record::Keyed(k, Box::new(Record::decode_at(input, host, depth + 1)?))
            }
            6 => Record::Error(text(input)?),
            7 => Record::Host(host(bytes(input)?)?),
            8 => {
                let n = u64_of(input)? as usize;
                let mut d = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let k = bytes(input)?.to_vec();
                    d.push((k, Record::decode_at(input, host, depth + 1)?));
                }
                Record::Dict(d)
            }
            t => return Err(Error::UnknownTag(Form::Record, u64::from(t))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;

    fn roundtrip(r: &Record) -> Record {
        let mut buf = Vec::new();
        r.encode(&mut buf).unwrap();
        let mut input = &buf[..];
        let back = Record::decode(&mut input, &|_| Err(Error::Host("no host".into()))).unwrap();
        assert!(input.is_empty());
        back
    }

    #[test]
    fn native_records_roundtrip() {
        let r = Record::List(vec![
            Record::Null,
            Record::Str(b"a\0b".to_vec()),
            Record::Long(-7),
            Record::Double(2.5),
            Record::Keyed("k".into(), Box::new(Record::Error("e".into()))),
            Record::Dict(vec![(b"f".to_vec(), Record::Str(b"v".to_vec()))]),
        ]);
        assert_eq!(roundtrip(&r).to_reply(), r.to_reply());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        Record::Str(b"hello".to_vec()).encode(&mut buf).unwrap();
        for cut in 0..buf.len() {
            let mut input = &buf[..cut];
            assert!(Record::decode(&mut input, &|_| Err(Error::Host("x".into()))).is_err());
        }
        let mut bad: &[u8] = &[99];
        assert_eq!(
            Record::decode(&mut bad, &|_| Err(Error::Host("x".into()))).unwrap_err(),
            Error::UnknownTag(Form::Record, 99)
        );
        // Lists nested past the bound (hostile bytes from a peer) are an
        // error, not a stack overflow.
        let deep = [4u8, 1, 0, 0, 0, 0, 0, 0, 0].repeat(100_000);
        let mut input = deep.as_slice();
        assert_eq!(
            Record::decode(&mut input, &|_| Err(Error::Host("x".into()))).unwrap_err(),
            Error::RecordTooDeep
        );
    }

    #[test]
    fn key_records_reply_as_pairs() {
        let r = Record::Key(Box::new(KeyEntry {
            key: b"k".to_vec(),
            value: Some(KeyValue::String(b"v".to_vec())),
            event: None,
        }));
        assert_eq!(
            r.to_reply(),
            Reply::Array(vec![Reply::bulk("k"), Reply::bulk("v")])
        );
    }
}
