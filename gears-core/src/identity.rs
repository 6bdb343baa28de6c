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

/// The user of [`Identity::nobody`].
pub const NOBODY: &str = "<nobody: Python outside any gears session>";

impl Identity {
    pub fn new(user: Option<String>, db: i64) -> Identity {
        Identity { user, db }
    }

    /// The module itself, in database `db`.
    pub fn module(db: i64) -> Identity {
        Identity { user: None, db }
    }

    /// Nobody: Python running outside any execution, script body or
    /// session the runtime knows of. The name can not be an ACL user's
    /// (Redis refuses spaces in user names), so every permission check
    /// fails.
    pub fn nobody() -> Identity {
        Identity {
            user: Some(NOBODY.to_owned()),
            db: 0,
        }
    }
}
