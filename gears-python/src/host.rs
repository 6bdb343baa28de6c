//! What the Python runtime needs from Redis: the [`RedisHost`] trait that
//! `gears-module` implements (and tests fake), and the small types that
//! cross it.

use crate::errors::Error;
use gears_core::registration::ReaderArgs;
use gears_core::{Identity, Reader, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

impl LogLevel {
    /// The level of a `log()` call.
    pub fn parse(name: &str) -> Option<LogLevel> {
        match name {
            "debug" => Some(LogLevel::Debug),
            "verbose" => Some(LogLevel::Verbose),
            "notice" => Some(LogLevel::Notice),
            "warning" => Some(LogLevel::Warning),
            _ => None,
        }
    }

    /// Redis's name of the level.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Verbose => "verbose",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
        }
    }
}

/// What `GB('KeysReader').run(...)` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysReaderSpec {
    pub pattern: Vec<u8>,
    pub no_scan: bool,
    pub read_value: bool,
}

/// The session a script body runs for, the session it replaces (`UPGRADE`
/// or `REPLACE_WITH`, whose registrations are about to go), and who sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptScope {
    pub session: String,
    pub replacing: Option<String>,
    /// The client that sent the script: its body's commands and its `run()`
    /// act as it; its registrations are owned by its user.
    pub identity: Identity,
}

impl From<&str> for ScriptScope {
    fn from(session: &str) -> ScriptScope {
        ScriptScope {
            session: session.to_owned(),
            ..ScriptScope::default()
        }
    }
}

/// Everything the Python runtime needs from Redis.
pub trait RedisHost: Send + Sync + 'static {
    /// Runs a command as `who` (its user's permissions, its database;
    /// replicated when it writes, refused over `maxmemory` when it would
    /// grow the data). Called without the GIL, from any thread; a top-level
    /// error comes back as [`Reply::Error`].
    fn call(&self, who: &Identity, argv: &[Vec<u8>]) -> Reply;
    fn log(&self, level: LogLevel, message: &str);
    /// A configuration value (built-in option or extra key).
    fn config_get(&self, key: &str) -> Option<gears_config::Value>;
    fn hashtag(&self) -> String;
    /// Whether `run()` spans the shards of a cluster.
    fn is_cluster(&self) -> bool {
        false
    }
    /// This shard's id when it is known without asking Redis (a single
    /// shard: "1"); `None` sends ShardsIDReader to `RG.INFOCLUSTER`.
    fn shard_id(&self) -> Option<String> {
        None
    }
    /// A reader over the keyspace (the keys `who` may read).
    fn keys_reader(&self, who: Identity, spec: KeysReaderSpec) -> Box<dyn Reader>;
    /// A reader over the messages of stream `key` after id `from`, read as
    /// `who`.
    fn stream_reader(&self, who: Identity, key: Vec<u8>, from: Vec<u8>) -> Box<dyn Reader>;
    /// Takes the Redis lock for the calling thread (reentrant; `atomic()`).
    /// Called without the GIL.
    fn lock(&self);
    /// Releases one [`RedisHost::lock`].
    fn unlock(&self);
    /// Stores a time event under `key` (in `who`'s database) and starts it:
    /// `payload` (a saved callback) runs every `period_ms` as `who`'s user.
    /// Called without the GIL.
    fn create_time_event(
        &self,
        _who: &Identity,
        _key: &[u8],
        _period_ms: u64,
        _payload: Vec<u8>,
    ) -> Result<(), Error> {
        Err(Error::Host("time events are not supported here".into()))
    }
    /// Checks and applies a registration made outside a script body (from
    /// a step), for `scope`. Called without the GIL.
    fn apply_registration(
        &self,
        _reg: std::sync::Arc<gears_core::registration::Registration>,
        _scope: &ScriptScope,
    ) -> Result<(), Error> {
        Err(Error::Host(crate::errors::REGISTER_OUTSIDE_SCRIPT.into()))
    }
    /// Called every few milliseconds while Python runs on the Redis main
    /// thread: lets Redis serve other clients; `true` when a client asked
    /// to stop the running code.
    fn yield_to_clients(&self) -> bool {
        false
    }
    /// Checks a registration against the registrations already applied
    /// (hooked command exists, trigger name free...), for a script of
    /// `scope`; called from the script body, lock held.
    fn check_registration(&self, args: &ReaderArgs, scope: &ScriptScope) -> Result<(), Error>;
}
