//! The module's errors, in one place: the RedisGears 1.2 texts it replies
//! with, one variant each (`Display` is the text a client sees), then its
//! own failures. Imports nothing of the crate. Replies and error records
//! take the text through `From<Error> for String`.

use std::fmt;

/// What a command hook is checked for: a hook (`register(hook=...)`,
/// "override") or a KeysReader `commands=[...]` ("hook").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hooking {
    Override,
    Hook,
}

impl fmt::Display for Hooking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hooking::Override => "override",
            Hooking::Hook => "hook",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Internal,
    WrongArity(String),
    /// A non-sync execution would block a client that cannot be blocked.
    NoAsyncHere,
    // RG.PYEXECUTE.
    PyexecuteNotHere,
    /// A requirement pip could not install (details in the log).
    RequirementsFailed,
    NoSuchRequirement,
    // Messages between shards.
    BadMsgId,
    NoSuchReceiver,
    // RG.PYPROFILE.
    WrongProfileSubcommand,
    NoSuchSessionToProfile,
    ScriptNotUtf8,
    BadSessionId,
    IdMissing,
    DescriptionMissing,
    ReplaceWithMissing,
    UnknownArgument(String),
    SessionExists(String),
    NoSessionToReplace(String),
    CannotReplaceExisting {
        session: String,
        old: String,
    },
    // Executions.
    NoSuchPlan,
    NoSuchExecution,
    StillRunning,
    DropRunning,
    NoCluster,
    UnknownSubcommand,
    // RG.CONFIGGET / RG.CONFIGSET.
    UnsupportedConfig(String),
    ConfigValueMissing(String),
    /// How RG.CONFIGSET shows most configuration errors.
    Config(String),
    // Registrations.
    UnknownOption(String),
    NoSuchSession(String),
    NotRegistered,
    NothingToPause,
    NoRegistrationOnShard {
        id: String,
        shard: String,
    },
    ReaderCannot {
        reader: String,
        verb: &'static str,
    },
    NoSuchTrigger,
    TriggerTaken,
    OverrideNonSyncSameSession,
    OverrideNonSync,
    // Hooks.
    /// An unknown command: hooks say so, KeysReader `commands` report what
    /// 1.2's `COMMAND INFO` check saw.
    NoSuchCommand(Hooking),
    CommandNotScriptable(Hooking),
    MovableKeysByPrefix(Hooking),
    NotBusy,
    HookOneResult,
    ClusterOnly(&'static str),
    InternalCommand(&'static str),
    /// Redis's words for a command the user may not run (an @admin gears
    /// command on a server without module ACL categories).
    NoPermission(String),
    // The module's own failures (not 1.2 texts): what failed, in its words.
    /// A malformed message from another shard.
    BadMessage,
    /// Another shard, or the way to it.
    Shard(String),
    /// Loading the module, or data saved by it (RDB aux data, requirements,
    /// time events).
    Load(String),
    /// A key that could not be read as its type says.
    Key(String),
    /// A time event that could not be created or restored.
    TimeEvent(String),
    /// The binding's own error (a Python exception, a callback that does
    /// not restore...).
    Python(gears_python::Error),
    /// gears-core's error (saved data, records, replies).
    Core(gears_core::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            Internal => f.write_str("ERR internal error in the gears module (see the Redis log)"),
            WrongArity(command) => {
                write!(f, "ERR wrong number of arguments for '{command}' command")
            }
            NoAsyncHere => f.write_str(
                "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.",
            ),
            PyexecuteNotHere => f.write_str(
                "Can not run gears inside a multi exec, lua, or when blocking is not allowed",
            ),
            RequirementsFailed => f.write_str(
                "Could not satisfy requirements (look at redis log file for more information)",
            ),
            NoSuchRequirement => f.write_str("requirement does not exists"),
            BadMsgId => f.write_str("bad msg id given"),
            NoSuchReceiver => f.write_str("can not find the callback requested"),
            WrongProfileSubcommand => f.write_str("Wrong subcommand given to RG.PYPROFILE"),
            NoSuchSessionToProfile => f.write_str("session does not exists"),
            ScriptNotUtf8 => f.write_str("the script is not valid UTF-8"),
            BadSessionId => {
                f.write_str("ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']")
            }
            IdMissing => f.write_str("ID is missing"),
            DescriptionMissing => f.write_str("DESCRIPTION is missing"),
            ReplaceWithMissing => f.write_str("REPLACE_WITH is missing"),
            UnknownArgument(arg) => write!(f, "Unknown arguments were given: {arg}"),
            SessionExists(session) => write!(f, "Session {session} already exists"),
            NoSessionToReplace(old) => {
                write!(f, "Can not replace with {old}, session does not exists.")
            }
            CannotReplaceExisting { session, old } => {
                write!(f, "Can not replace an existing session {session} with {old}")
            }
            NoSuchPlan => f.write_str("execution plan does not exist"),
            NoSuchExecution => f.write_str("execution does not exist"),
            StillRunning => f.write_str("execution is still running"),
            DropRunning => f.write_str("can not drop a not yet finished execution, abort it first."),
            NoCluster => {
                f.write_str("no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead")
            }
            UnknownSubcommand => f.write_str("unknown subcommand"),
            UnsupportedConfig(key) => write!(f, "(error) Unsupported config parameter: {key}"),
            ConfigValueMissing(key) => write!(f, "(error) Value was not given to {key}"),
            Config(message) => write!(f, "(error) {message}"),
            UnknownOption(tok) => write!(f, "Unknown option {tok}"),
            NoSuchSession(id) => write!(f, "Session {id} does not exists"),
            NotRegistered => f.write_str("execution is not registered"),
            NothingToPause => f.write_str("ERR no registration to pause"),
            NoRegistrationOnShard { id, shard } => {
                write!(f, "Execution {id} does not exists on shard {shard}")
            }
            ReaderCannot { reader, verb } => write!(f, "Reader {reader} does not support {verb}"),
            NoSuchTrigger => f.write_str("ERR subcommand not found"),
            TriggerTaken => f.write_str("trigger already registered"),
            OverrideNonSyncSameSession => f.write_str(
                "Can not override a none sync registration which already created on this session",
            ),
            OverrideNonSync => f.write_str("Can not override a none sync registration"),
            NoSuchCommand(Hooking::Hook) => f.write_str("bad reply on COMMAND command"),
            NoSuchCommand(Hooking::Override) => {
                f.write_str("Can not override an unexisting command")
            }
            CommandNotScriptable(what) => write!(
                f,
                "Can not {what} a command which are not allowed inside a script"
            ),
            MovableKeysByPrefix(what) => {
                write!(f, "Can not {what} a command with moveable keys by key prefix")
            }
            NotBusy => f.write_str(
                "NOTBUSY No gears Python code is running on the main thread right now.",
            ),
            HookOneResult => f.write_str("Command hook must return exactly one result"),
            ClusterOnly(name) => write!(
                f,
                "ERR {name} is only used between the shards of a cluster, and this server is not in one"
            ),
            InternalCommand(name) => write!(
                f,
                "ERR {name} is internal to the gears module and can not be called directly"
            ),
            NoPermission(command) => write!(
                f,
                "NOPERM this user has no permissions to run the '{}' command",
                command.to_ascii_lowercase()
            ),
            BadMessage => f.write_str("bad message"),
            Shard(text) | Load(text) | Key(text) | TimeEvent(text) => f.write_str(text),
            Python(e) => e.fmt(f),
            Core(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<gears_python::Error> for Error {
    fn from(e: gears_python::Error) -> Error {
        Error::Python(e)
    }
}

/// Where gears-core's interfaces want their own error (a `Crossing`, a
/// `Reader`): the module's text, as the host's words.
impl From<Error> for gears_core::Error {
    fn from(e: Error) -> gears_core::Error {
        match e {
            Error::Core(e) => e,
            other => gears_core::Error::Host(other.to_string()),
        }
    }
}

impl From<gears_core::Error> for Error {
    fn from(e: gears_core::Error) -> Error {
        Error::Core(e)
    }
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, with RedisGears 1.2's text for it (from its
    /// documentation and the internals digest).
    fn texts() -> Vec<(Error, &'static str)> {
        use Error::*;
        let s = String::from;
        vec![
            (Internal, "ERR internal error in the gears module (see the Redis log)"),
            (WrongArity(s("rg.pyimportreq")), "ERR wrong number of arguments for 'rg.pyimportreq' command"),
            (NoAsyncHere, "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading."),
            (PyexecuteNotHere, "Can not run gears inside a multi exec, lua, or when blocking is not allowed"),
            (RequirementsFailed, "Could not satisfy requirements (look at redis log file for more information)"),
            (NoSuchRequirement, "requirement does not exists"),
            (BadMsgId, "bad msg id given"),
            (NoSuchReceiver, "can not find the callback requested"),
            (WrongProfileSubcommand, "Wrong subcommand given to RG.PYPROFILE"),
            (NoSuchSessionToProfile, "session does not exists"),
            (ScriptNotUtf8, "the script is not valid UTF-8"),
            (BadSessionId, "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"),
            (IdMissing, "ID is missing"),
            (DescriptionMissing, "DESCRIPTION is missing"),
            (ReplaceWithMissing, "REPLACE_WITH is missing"),
            (UnknownArgument(s("FOO")), "Unknown arguments were given: FOO"),
            (SessionExists(s("s1")), "Session s1 already exists"),
            (NoSessionToReplace(s("old")), "Can not replace with old, session does not exists."),
            (CannotReplaceExisting { session: s("s1"), old: s("s0") }, "Can not replace an existing session s1 with s0"),
            (NoSuchPlan, "execution plan does not exist"),
            (NoSuchExecution, "execution does not exist"),
            (StillRunning, "execution is still running"),
            (DropRunning, "can not drop a not yet finished execution, abort it first."),
            (NoCluster, "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead"),
            (UnknownSubcommand, "unknown subcommand"),
            (UnsupportedConfig(s("Foo")), "(error) Unsupported config parameter: Foo"),
            (ConfigValueMissing(s("MaxExecutions")), "(error) Value was not given to MaxExecutions"),
            (Config(s("bad value")), "(error) bad value"),
            (UnknownOption(s("X")), "Unknown option X"),
            (NoSuchSession(s("s9")), "Session s9 does not exists"),
            (NotRegistered, "execution is not registered"),
            (NothingToPause, "ERR no registration to pause"),
            (NoRegistrationOnShard { id: s("0-1"), shard: s("abc") }, "Execution 0-1 does not exists on shard abc"),
            (ReaderCannot { reader: s("CommandReader"), verb: "pause" }, "Reader CommandReader does not support pause"),
            (NoSuchTrigger, "ERR subcommand not found"),
            (TriggerTaken, "trigger already registered"),
            (OverrideNonSyncSameSession, "Can not override a none sync registration which already created on this session"),
            (OverrideNonSync, "Can not override a none sync registration"),
            (NoSuchCommand(Hooking::Override), "Can not override an unexisting command"),
            (NoSuchCommand(Hooking::Hook), "bad reply on COMMAND command"),
            (CommandNotScriptable(Hooking::Override), "Can not override a command which are not allowed inside a script"),
            (MovableKeysByPrefix(Hooking::Hook), "Can not hook a command with moveable keys by key prefix"),
            (NotBusy, "NOTBUSY No gears Python code is running on the main thread right now."),
            (HookOneResult, "Command hook must return exactly one result"),
            (ClusterOnly("RG.HELLO"), "ERR RG.HELLO is only used between the shards of a cluster, and this server is not in one"),
            (InternalCommand("RG.INNERHOOK"), "ERR RG.INNERHOOK is internal to the gears module and can not be called directly"),
            (NoPermission(s("RG.PYDUMPREQS")), "NOPERM this user has no permissions to run the 'rg.pydumpreqs' command"),
        ]
    }

    /// Does not compile when a variant is added without a case here (and,
    /// so, in `texts`).
    fn covered(e: &Error) -> bool {
        use Error::*;
        match e {
            Internal
            | WrongArity(_)
            | NoAsyncHere
            | PyexecuteNotHere
            | RequirementsFailed
            | NoSuchRequirement
            | BadMsgId
            | NoSuchReceiver
            | WrongProfileSubcommand
            | NoSuchSessionToProfile
            | ScriptNotUtf8
            | BadSessionId
            | IdMissing
            | DescriptionMissing
            | ReplaceWithMissing
            | UnknownArgument(_)
            | SessionExists(_)
            | NoSessionToReplace(_)
            | CannotReplaceExisting { .. }
            | NoSuchPlan
            | NoSuchExecution
            | StillRunning
            | DropRunning
            | NoCluster
            | UnknownSubcommand
            | UnsupportedConfig(_)
            | ConfigValueMissing(_)
            | Config(_)
            | UnknownOption(_)
            | NoSuchSession(_)
            | NotRegistered
            | NothingToPause
            | NoRegistrationOnShard { .. }
            | ReaderCannot { .. }
            | NoSuchTrigger
            | TriggerTaken
            | OverrideNonSyncSameSession
            | OverrideNonSync
            | NoSuchCommand(_)
            | CommandNotScriptable(_)
            | MovableKeysByPrefix(_)
            | NotBusy
            | HookOneResult
            | ClusterOnly(_)
            | InternalCommand(_)
            | NoPermission(_) => true,
            // The module's own, tested in `own_failures_show_their_words`.
            BadMessage | Shard(_) | Load(_) | Key(_) | TimeEvent(_) | Python(_) | Core(_) => true,
        }
    }

    #[test]
    fn every_variant_shows_the_text_of_1_2() {
        let all = texts();
        // One case per variant (NoSuchCommand has one per hooking kind).
        assert_eq!(all.len(), 47);
        for (e, text) in all {
            assert!(covered(&e));
            assert_eq!(e.to_string(), text, "{e:?}");
        }
    }

    #[test]
    fn own_failures_show_their_words() {
        use Error::*;
        let cases = [
            (BadMessage, "bad message"),
            (Shard("shard abc: gone".into()), "shard abc: gone"),
            (
                Load("unknown format version 9".into()),
                "unknown format version 9",
            ),
            (Key("WRONGTYPE".into()), "WRONGTYPE"),
            (TimeEvent("key already exists".into()), "key already exists"),
            (
                Python(gears_python::Error::Python("NameError: x".into())),
                "NameError: x",
            ),
            (
                Core(gears_core::Error::NotSendable),
                "this record type can not be sent to another shard",
            ),
        ];
        for (e, text) in cases {
            assert!(covered(&e));
            assert_eq!(e.to_string(), text);
        }
    }
}
