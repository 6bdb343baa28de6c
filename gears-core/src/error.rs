//! The errors of gears-core, one variant per text. What reaches a client
//! (an error record, a log line, a reply) is the `Display` text, and those
//! texts are the contract: the tests below spell each one.

use std::fmt;

/// What the bytes being decoded were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A record crossing shards.
    Record,
    /// A list of records crossing shards.
    RecordList,
    /// A reply crossing shards.
    Reply,
    /// A saved registration (RDB aux data, `RG.INNERREGISTER`).
    Registration,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Record => "record",
            Form::RecordList => "records",
            Form::Reply => "reply",
            Form::Registration => "registration data",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the value does.
    Truncated(Form),
    /// Text that is not UTF-8.
    BadText(Form),
    /// A tag no version of the format has.
    UnknownTag(Form, u64),
    /// Bytes left after the value.
    TrailingBytes(Form),
    /// A saved registration of a format version this build can not read.
    UnsupportedVersion { found: u8, newest: u8 },
    /// A field of a saved registration with a value no version writes.
    UnknownValue { field: &'static str, value: String },
    /// A reply nested deeper than its limit, `MAX_REPLY_DEPTH` (or a
    /// cycle).
    ReplyTooDeep { limit: usize },
    /// A record nested deeper than `MAX_RECORD_DEPTH` for crossing shards.
    RecordTooDeep,
    /// A record kind that never leaves its shard.
    NotSendable,
    /// A key record (read where the key lives).
    KeyRecordLocal,
    /// A callback asked to be a step it can not be.
    UnsupportedCallback(&'static str),
    /// A record that waited, whose resolver was dropped unanswered (1.2's
    /// text).
    NeverAnswered,
    /// A step of a plan that needs a callback and has none.
    MissingCallback(&'static str),
    /// The host language's own text (a Python exception, a failed
    /// conversion): shown as it is.
    Host(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated(form) => write!(f, "truncated {}", form.name()),
            Error::BadText(Form::Registration) => f.write_str("invalid text in registration data"),
            Error::BadText(form) => write!(f, "bad utf-8 in {}", form.name()),
            Error::UnknownTag(form, tag) => write!(f, "unknown {} tag {tag}", form.name()),
            Error::TrailingBytes(form) => write!(f, "trailing bytes after {}", form.name()),
            Error::UnsupportedVersion { found, newest } => write!(
                f,
                "registration data of format version {found}, this module reads versions 1 and {newest}"
            ),
            Error::UnknownValue { field, value } if value.is_empty() => write!(f, "unknown {field}"),
            Error::UnknownValue { field, value } => write!(f, "unknown {field} {value}"),
            Error::ReplyTooDeep { limit } => write!(
                f,
                "reply nesting too deep (more than {limit} levels, or a cycle)"
            ),
            Error::RecordTooDeep => f.write_str("record nesting too deep to cross shards"),
            Error::NotSendable => f.write_str("this record type can not be sent to another shard"),
            Error::KeyRecordLocal => f.write_str("key records are read locally only"),
            Error::UnsupportedCallback(what) => write!(f, "callback can not be used as {what}"),
            Error::NeverAnswered => f.write_str("Async record did not called continue"),
            Error::MissingCallback(step) => write!(f, "{step} step is missing its callback"),
            Error::Host(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for Error {}

/// Text from the host language (a Python exception's words, a message the
/// binding made): [`Error::Host`].
impl From<String> for Error {
    fn from(text: String) -> Error {
        Error::Host(text)
    }
}

impl From<&str> for Error {
    fn from(text: &str) -> Error {
        Error::Host(text.to_owned())
    }
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant's text, next to what users and logs have always seen.
    #[test]
    fn every_error_keeps_its_text() {
        let cases = [
            (Error::Truncated(Form::Record), "truncated record"),
            (Error::Truncated(Form::RecordList), "truncated records"),
            (Error::Truncated(Form::Reply), "truncated reply"),
            (
                Error::Truncated(Form::Registration),
                "truncated registration data",
            ),
            (Error::BadText(Form::Record), "bad utf-8 in record"),
            (Error::BadText(Form::Reply), "bad utf-8 in reply"),
            (
                Error::BadText(Form::Registration),
                "invalid text in registration data",
            ),
            (Error::UnknownTag(Form::Record, 9), "unknown record tag 9"),
            (Error::UnknownTag(Form::Reply, 7), "unknown reply tag 7"),
            (
                Error::TrailingBytes(Form::Registration),
                "trailing bytes after registration data",
            ),
            (
                Error::UnsupportedVersion {
                    found: 9,
                    newest: 2,
                },
                "registration data of format version 9, this module reads versions 1 and 2",
            ),
            (
                Error::UnknownValue {
                    field: "reader kind",
                    value: "Foo".into(),
                },
                "unknown reader kind Foo",
            ),
            (
                Error::UnknownValue {
                    field: "onFailedPolicy",
                    value: String::new(),
                },
                "unknown onFailedPolicy",
            ),
            (
                Error::ReplyTooDeep { limit: 1000 },
                "reply nesting too deep (more than 1000 levels, or a cycle)",
            ),
            (
                Error::RecordTooDeep,
                "record nesting too deep to cross shards",
            ),
            (
                Error::NotSendable,
                "this record type can not be sent to another shard",
            ),
            (Error::KeyRecordLocal, "key records are read locally only"),
            (
                Error::UnsupportedCallback("reducer"),
                "callback can not be used as reducer",
            ),
            (Error::NeverAnswered, "Async record did not called continue"),
            (
                Error::MissingCallback("map"),
                "map step is missing its callback",
            ),
            (Error::Host("NameError: x".into()), "NameError: x"),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
