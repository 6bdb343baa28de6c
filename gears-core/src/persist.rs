//! The saved form of registrations: what RDB aux data, AOF and replication
//! carry. Versioned: data of an unknown version is refused, never guessed
//! at. A registration's callbacks are the host language's bytes
//! ([`Registration::payload`]); everything else is encoded here.
//!
//! Layout: a version byte, then length-prefixed fields (lengths and numbers
//! as little-endian u64).

use crate::codec::{self, Encoder};
use crate::error::{Error, Form};
use crate::registration::{Mode, OnFailed, ReaderArgs, Registration, Registrations, Session};

/// The version this build writes. It reads this one and version 1 (which
/// had no session requirements).
pub const FORMAT_VERSION: u8 = 2;

/// A registration as saved: everything but its plan's callbacks, which
/// `payload` holds for the host language to restore.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub id: String,
    pub desc: Option<String>,
    pub mode: Mode,
    pub args: ReaderArgs,
    pub session: String,
    pub session_desc: Option<String>,
    /// The requirements of its session (format 2).
    pub session_requirements: Vec<String>,
    pub owner: Option<String>,
    pub reader: String,
    pub plan_desc: Option<String>,
    pub payload: Vec<u8>,
}

/// Every registration and session of a shard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// (id, description, requirements).
    pub sessions: Vec<(String, Option<String>, Vec<String>)>,
    pub registrations: Vec<Saved>,
}

/// The optional fields of the saved form, over [`codec::Encoder`].
trait WriteOptions {
    fn bool(&mut self, b: bool);
    fn opt_str(&mut self, s: &Option<String>);
    fn opt_bytes(&mut self, s: &Option<Vec<u8>>);
    fn opt_list(&mut self, l: &Option<Vec<String>>);
}

impl WriteOptions for Encoder {
    fn bool(&mut self, b: bool) {
        self.u64(b as u64);
    }
    fn opt_str(&mut self, s: &Option<String>) {
        self.bool(s.is_some());
        if let Some(s) = s {
            self.str(s);
        }
    }
    fn opt_bytes(&mut self, s: &Option<Vec<u8>>) {
        self.bool(s.is_some());
        if let Some(s) = s {
            self.bytes(s);
        }
    }
    fn opt_list(&mut self, l: &Option<Vec<String>>) {
        self.bool(l.is_some());
        if let Some(l) = l {
            self.u64(l.len() as u64);
            for s in l {
                self.str(s);
            }
        }
    }
}

/// [`codec::Decoder`] with this format's errors.
struct SavedDecoder<'a>(codec::Decoder<'a>);

const TRUNCATED: Error = Error::Truncated(Form::Registration);

impl<'a> SavedDecoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        self.0.take(n).ok_or(TRUNCATED)
    }
    fn u64(&mut self) -> Result<u64, Error> {
        self.0.u64().ok_or(TRUNCATED)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        Ok(self.0.bytes().ok_or(TRUNCATED)?.to_vec())
    }
    fn str(&mut self) -> Result<String, Error> {
        String::from_utf8(self.bytes()?).map_err(|_| Error::BadText(Form::Registration))
    }
    fn bool(&mut self) -> Result<bool, Error> {
        Ok(self.u64()? != 0)
    }
    fn opt_str(&mut self) -> Result<Option<String>, Error> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }
    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, Error> {
        Ok(if self.bool()? {
            Some(self.bytes()?)
        } else {
            None
        })
    }
    fn opt_list(&mut self) -> Result<Option<Vec<String>>, Error> {
        if !self.bool()? {
            return Ok(None);
        }
        let n = self.u64()?;
        // Each entry takes at least its length: a bound before allocating.
        if n > self.0.rest().len() as u64 / 8 {
            return Err(TRUNCATED);
        }
        (0..n)
            .map(|_| self.str())
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

fn write_args(w: &mut Encoder, args: &ReaderArgs) {
    match args {
        ReaderArgs::Keys {
            prefix,
            event_types,
            key_types,
            read_value,
            commands,
        } => {
            w.u64(0);
            w.bytes(prefix);
            w.opt_list(event_types);
            w.opt_list(key_types);
            w.bool(*read_value);
            w.opt_list(commands);
        }
        ReaderArgs::Stream {
            prefix,
            batch,
            duration_ms,
            on_failed,
            retry_interval_s,
            trim,
        } => {
            w.u64(1);
            w.bytes(prefix);
            w.u64(*batch as u64);
            w.u64(*duration_ms);
            w.str(on_failed.name());
            w.u64(*retry_interval_s);
            w.bool(*trim);
        }
        ReaderArgs::Trigger { name, inorder } => {
            w.u64(2);
            w.str(name);
            w.bool(*inorder);
        }
        ReaderArgs::Hook {
            command,
            keyprefix,
            inorder,
        } => {
            w.u64(3);
            w.str(command);
            w.opt_bytes(keyprefix);
            w.bool(*inorder);
        }
    }
}

fn read_args(r: &mut SavedDecoder) -> Result<ReaderArgs, Error> {
    Ok(match r.u64()? {
        0 => ReaderArgs::Keys {
            prefix: r.bytes()?,
            event_types: r.opt_list()?,
            key_types: r.opt_list()?,
            read_value: r.bool()?,
            commands: r.opt_list()?,
        },
        1 => ReaderArgs::Stream {
            prefix: r.bytes()?,
            batch: r.u64()? as usize,
            duration_ms: r.u64()?,
            on_failed: OnFailed::parse(&r.str()?).ok_or(Error::UnknownValue {
                field: "onFailedPolicy",
                value: String::new(),
            })?,
            retry_interval_s: r.u64()?,
            trim: r.bool()?,
        },
        2 => ReaderArgs::Trigger {
            name: r.str()?,
            inorder: r.bool()?,
        },
        3 => ReaderArgs::Hook {
            command: r.str()?,
            keyprefix: r.opt_bytes()?,
            inorder: r.bool()?,
        },
        other => {
            return Err(Error::UnknownValue {
                field: "reader kind",
                value: other.to_string(),
            })
        }
    })
}

fn write_saved(w: &mut Encoder, r: &Registration, session: Option<&Session>) {
    w.str(&r.id);
    w.opt_str(&r.desc);
    w.str(r.mode.name());
    write_args(w, &r.args);
    w.str(&r.session);
    w.opt_str(&session.and_then(|s| s.desc.clone()));
    w.opt_str(&r.owner);
    w.str(&r.plan.reader);
    w.opt_str(&r.plan.desc);
    w.bytes(&r.payload);
    w.opt_list(&Some(
        session.map(|s| s.requirements.clone()).unwrap_or_default(),
    ));
}

fn read_saved(r: &mut SavedDecoder, version: u8) -> Result<Saved, Error> {
    let mut saved = Saved {
        id: r.str()?,
        desc: r.opt_str()?,
        mode: Mode::parse(&r.str()?).ok_or(Error::UnknownValue {
            field: "registration mode",
            value: String::new(),
        })?,
        args: read_args(r)?,
        session: r.str()?,
        session_desc: r.opt_str()?,
        session_requirements: Vec::new(),
        owner: r.opt_str()?,
        reader: r.str()?,
        plan_desc: r.opt_str()?,
        payload: r.bytes()?,
    };
    if version >= 2 {
        saved.session_requirements = r.opt_list()?.unwrap_or_default();
    }
    Ok(saved)
}

fn check_version(r: &mut SavedDecoder) -> Result<u8, Error> {
    match r.take(1)?[0] {
        v @ (1 | FORMAT_VERSION) => Ok(v),
        v => Err(Error::UnsupportedVersion {
            found: v,
            newest: FORMAT_VERSION,
        }),
    }
}

/// One registration with its session, for `RG.INNERREGISTER`.
pub fn encode_registration(r: &Registration, session: Option<&Session>) -> Vec<u8> {
    let mut w = Encoder(vec![FORMAT_VERSION]);
    write_saved(&mut w, r, session);
    w.0
}

pub fn decode_registration(bytes: &[u8]) -> Result<Saved, Error> {
    let mut r = SavedDecoder(codec::Decoder(bytes));
    let version = check_version(&mut r)?;
    let saved = read_saved(&mut r, version)?;
    if !r.0.rest().is_empty() {
        return Err(Error::TrailingBytes(Form::Registration));
    }
    Ok(saved)
}

/// Every session and registration of `regs`, for RDB aux data.
pub fn encode_snapshot(regs: &Registrations) -> Vec<u8> {
    let sessions: Vec<Session> = regs.sessions();
    let mut w = Encoder(vec![FORMAT_VERSION]);
    w.u64(sessions.len() as u64);
    for s in &sessions {
        w.str(&s.id);
        w.opt_str(&s.desc);
        w.opt_list(&Some(s.requirements.clone()));
    }
    // By id: one lookup per registration, not a walk over the sessions
    // (a thousand registrations may have a thousand sessions).
    let by_id: std::collections::HashMap<&str, &Session> =
        sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    let all = regs.snapshot();
    w.u64(all.len() as u64);
    for r in all.iter() {
        let session = by_id.get(r.session.as_str()).copied();
        write_saved(&mut w, r, session);
    }
    w.0
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, Error> {
    let mut r = SavedDecoder(codec::Decoder(bytes));
    let version = check_version(&mut r)?;
    let mut snap = Snapshot::default();
    for _ in 0..r.u64()? {
        let (id, desc) = (r.str()?, r.opt_str()?);
        let requirements = if version >= 2 {
            r.opt_list()?.unwrap_or_default()
        } else {
            Vec::new()
        };
        snap.sessions.push((id, desc, requirements));
    }
    for _ in 0..r.u64()? {
        snap.registrations.push(read_saved(&mut r, version)?);
    }
    if !r.0.rest().is_empty() {
        return Err(Error::TrailingBytes(Form::Registration));
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use std::sync::Arc;

    fn reg(id: &str, session: &str, args: ReaderArgs) -> Arc<Registration> {
        let plan = Plan {
            reader: "KeysReader".into(),
            steps: Vec::new(),
            desc: Some("plan".into()),
        };
        Arc::new(
            Registration::new(
                id.into(),
                Some("d".into()),
                Mode::Sync,
                args,
                plan,
                session.into(),
            )
            .owned_by(Some("alice".into()))
            .with_payload(b"\x00callbacks\xff".to_vec()),
        )
    }

    #[test]
    fn registrations_and_sessions_round_trip() {
        let regs = Registrations::default();
        regs.open_session("s1", Some("first".into()), vec!["pkg==1.0".into()]);
        regs.open_session("s2", None, Vec::new());
        let all = [
            ReaderArgs::Keys {
                prefix: b"k*".to_vec(),
                event_types: Some(vec!["set".into()]),
                key_types: None,
                read_value: false,
                commands: Some(vec!["get".into()]),
            },
            ReaderArgs::Stream {
                prefix: b"s".to_vec(),
                batch: 5,
                duration_ms: 50,
                on_failed: OnFailed::Retry,
                retry_interval_s: 3,
                trim: false,
            },
            ReaderArgs::Trigger {
                name: "t".into(),
                inorder: true,
            },
            ReaderArgs::Hook {
                command: "set".into(),
                keyprefix: Some(b"p".to_vec()),
                inorder: false,
            },
        ];
        for (i, args) in all.into_iter().enumerate() {
            let session = if i % 2 == 0 { "s1" } else { "s2" };
            regs.add(reg(&format!("id-{i}"), session, args));
        }
        let snap = decode_snapshot(&encode_snapshot(&regs)).unwrap();
        assert_eq!(
            snap.sessions,
            [
                (
                    "s1".to_string(),
                    Some("first".to_string()),
                    vec!["pkg==1.0".to_string()]
                ),
                ("s2".into(), None, Vec::new())
            ]
        );
        assert_eq!(snap.registrations.len(), 4);
        for (saved, r) in snap.registrations.iter().zip(regs.snapshot().iter()) {
            assert_eq!(saved.id, r.id);
            assert_eq!(saved.args, r.args);
            assert_eq!(saved.owner.as_deref(), Some("alice"));
            assert_eq!(saved.payload, b"\x00callbacks\xff");
            assert_eq!(saved.plan_desc.as_deref(), Some("plan"));
        }
        assert_eq!(snap.registrations[0].session_requirements, ["pkg==1.0"]);
        assert!(snap.registrations[1].session_requirements.is_empty());
        let one = decode_registration(&encode_registration(&regs.snapshot()[0], None)).unwrap();
        assert_eq!(
            one,
            Saved {
                session_desc: None,
                session_requirements: Vec::new(),
                ..snap.registrations[0].clone()
            }
        );
    }

    #[test]
    fn unknown_versions_and_damaged_data_are_refused() {
        let regs = Registrations::default();
        let mut bytes = encode_snapshot(&regs);
        assert_eq!(decode_snapshot(&bytes).unwrap(), Snapshot::default());
        bytes[0] = 9;
        assert_eq!(
            decode_snapshot(&bytes).unwrap_err(),
            Error::UnsupportedVersion {
                found: 9,
                newest: FORMAT_VERSION
            }
        );
        regs.add(reg(
            "x",
            "s",
            ReaderArgs::Trigger {
                name: "t".into(),
                inorder: false,
            },
        ));
        let bytes = encode_snapshot(&regs);
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A huge declared length does not allocate.
        let mut huge = vec![FORMAT_VERSION];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_snapshot(&huge).is_err());
    }
}
