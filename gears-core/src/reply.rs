//! A RESP-shaped value: what a client finally sees.
//!
//! Results are converted to [`Reply`] once, when an execution ends, so that the
//! execution registry never has to touch host-language objects again.

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
