//! Who an execution acts as.

/// The Redis user whose permissions an execution's commands get, and the
/// database they act on: the client that sent the command that started it,
/// or, for executions that events start, the user who registered the
/// registration and the database of the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `None`: the module itself (no permission checks).
    pub user: Option<String>,
    pub db: i64,
}

impl Identity {
    pub fn new(user: Option<String>, db: i64) -> Identity {
        Identity { user, db }
    }

    /// The module itself, in database `db`.
    pub fn module(db: i64) -> Identity {
        Identity { user: None, db }
    }
}
