//! Registrations restored from their saved form but not applied yet
//! ([`Prepared`]), and the ones another shard prepared here, awaiting its
//! decision (the middle of a two-phase registration: prepared on PREPARE,
//! applied on COMMIT, dropped on CANCEL or when they expire).
//!
//! Data only: `registry` makes and applies them, `distributed` decides,
//! `state` keeps the ones awaiting a decision. Nothing here talks to Redis.

use gears_python::PendingRegistration;

/// A saved registration with its callbacks restored, not applied yet.
pub struct Prepared {
    pub(crate) pending: PendingRegistration,
    pub(crate) session_desc: Option<String>,
    pub(crate) session_requirements: Vec<String>,
}

/// Registrations another shard prepared here, waiting for its decision.
pub struct AwaitingDecision {
    /// The session they replace (`REPLACE_WITH`), removed on commit.
    pub replaced: Option<String>,
    pub ready: Vec<Prepared>,
    /// Their saved form, sent to this shard's replicas and AOF on commit.
    pub blobs: Vec<Vec<u8>>,
}
