//! A RESP-shaped value: what a client finally sees.
//!
//! Results are converted to [`Reply`] once, when an execution ends, so that the
//! execution registry never has to touch host-language objects again.

use crate::error::{Error, Form};

/// How deeply a reply may nest; deeper data (or a cycle) is an error, never
/// a recursion that runs out of stack.
pub const MAX_REPLY_DEPTH: usize = 1000;

/// The text of data nested deeper than [`MAX_REPLY_DEPTH`]
/// ([`Error::ReplyTooDeep`]).
pub fn too_deep() -> String {
    Error::ReplyTooDeep {
        limit: MAX_REPLY_DEPTH,
    }
    .to_string()
}

/// A reply tree, independent of any Redis API.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Null,
    Int(i64),
    /// A bulk string (binary safe).
    Bulk(Vec<u8>),
    /// A simple (status) string, `+OK` on the wire.
    Status(String),
    /// An error reply, `-ERR ...` on the wire.
    Error(String),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn bulk(s: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(s.into())
    }

    /// Builds an array of `[name, value, name, value ...]`, the shape 1.2 uses
    /// for most of its management replies.
    pub fn map<I, K>(pairs: I) -> Reply
    where
        I: IntoIterator<Item = (K, Reply)>,
        K: Into<Vec<u8>>,
    {
        let mut out = Vec::new();
        for (k, v) in pairs {
            out.push(Reply::Bulk(k.into()));
            out.push(v);
        }
        Reply::Array(out)
    }

    /// The reply a string result gets: a simple string for `+text`, an error
    /// for `-text` (when longer than one character), a bulk string otherwise.
    pub fn from_result_text(text: &str) -> Reply {
        if text.len() > 1 {
            if let Some(rest) = text.strip_prefix('+') {
                return Reply::Status(rest.to_owned());
            }
            if let Some(rest) = text.strip_prefix('-') {
                return Reply::Error(rest.to_owned());
            }
        }
        Reply::Bulk(text.as_bytes().to_vec())
    }

    /// The `%lf` rendering of a float result (six decimals, like C's printf).
    pub fn from_float(f: f64) -> Reply {
        Reply::Bulk(format!("{f:.6}").into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_prefixes_follow_the_reference() {
        assert_eq!(Reply::from_result_text("+OK"), Reply::Status("OK".into()));
        assert_eq!(Reply::from_result_text("-bad"), Reply::Error("bad".into()));
        assert_eq!(Reply::from_result_text("+"), Reply::bulk("+"));
        assert_eq!(Reply::from_result_text("-"), Reply::bulk("-"));
        assert_eq!(Reply::from_result_text("x"), Reply::bulk("x"));
    }

    #[test]
    fn floats_have_six_decimals() {
        assert_eq!(Reply::from_float(1.5), Reply::bulk("1.500000"));
        assert_eq!(Reply::from_float(-0.25), Reply::bulk("-0.250000"));
    }
}

impl Reply {
    /// Appends the binary form of the reply (for another shard): a tag
    /// byte, then little-endian lengths and values.
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        match self {
            Reply::Null => out.push(0),
            Reply::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Reply::Bulk(b) => {
                out.push(2);
                bytes(out, b);
            }
            Reply::Status(s) => {
                out.push(3);
                bytes(out, s.as_bytes());
            }
            Reply::Error(e) => {
                out.push(4);
                bytes(out, e.as_bytes());
            }
            Reply::Array(items) => {
                out.push(5);
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for i in items {
                    i.encode(out);
                }
            }
        }
    }

    /// Reads what [`Reply::encode`] wrote; nesting deeper than
    /// [`MAX_REPLY_DEPTH`] is refused.
    pub fn decode(input: &mut &[u8]) -> Result<Reply, Error> {
        Reply::decode_at(input, 0)
    }

    fn decode_at(input: &mut &[u8], depth: usize) -> Result<Reply, Error> {
        use crate::codec::read;
        const TRUNCATED: Error = Error::Truncated(Form::Reply);
        fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
            read(input, |r| r.take(n)).ok_or(TRUNCATED)
        }
        fn u64_of(input: &mut &[u8]) -> Result<u64, Error> {
            read(input, |r| r.u64()).ok_or(TRUNCATED)
        }
        fn bytes(input: &mut &[u8]) -> Result<Vec<u8>, Error> {
            read(input, |r| r.bytes().map(<[u8]>::to_vec)).ok_or(TRUNCATED)
        }
        fn text(input: &mut &[u8]) -> Result<String, Error> {
            String::from_utf8(bytes(input)?).map_err(|_| Error::BadText(Form::Reply))
        }
        if depth > MAX_REPLY_DEPTH {
            return Err(Error::ReplyTooDeep {
                limit: MAX_REPLY_DEPTH,
            });
        }
        Ok(match take(input, 1)?[0] {
            0 => Reply::Null,
            1 => Reply::Int(u64_of(input)? as i64),
            2 => Reply::Bulk(bytes(input)?),
            3 => Reply::Status(text(input)?),
            4 => Reply::Error(text(input)?),
            5 => {
                let n = u64_of(input)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(Reply::decode_at(input, depth + 1)?);
                }
                Reply::Array(items)
            }
            t => return Err(Error::UnknownTag(Form::Reply, u64::from(t))),
        })
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    #[test]
    fn replies_round_trip_and_garbage_is_refused() {
        let r = Reply::Array(vec![
            Reply::Null,
            Reply::Int(-3),
            Reply::bulk("a\0b"),
            Reply::Status("OK".into()),
            Reply::Error("ERR x".into()),
            Reply::Array(vec![]),
        ]);
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(Reply::decode(&mut out.as_slice()).unwrap(), r);
        assert!(
            Reply::decode(&mut [5u8, 255, 255, 255, 255, 255, 255, 255, 255].as_slice()).is_err()
        );
        assert!(Reply::decode(&mut [9u8].as_slice()).is_err());
        let deep = [5u8, 1, 0, 0, 0, 0, 0, 0, 0].repeat(2000);
        assert!(Reply::decode(&mut deep.as_slice()).is_err());
    }
}
