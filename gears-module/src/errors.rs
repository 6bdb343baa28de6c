//! The RedisGears 1.2 error texts the module replies with, in one place.
//! Imports nothing of the crate.

pub const INTERNAL: &str = "ERR internal error in the gears module (see the Redis log)";

pub fn wrong_arity(command: &str) -> String {
    format!("ERR wrong number of arguments for '{command}' command")
}

/// A non-sync execution would block a client that cannot be blocked.
pub const NO_ASYNC_HERE: &str = "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.";

// RG.PYEXECUTE.
pub const PYEXECUTE_NOT_HERE: &str =
    "Can not run gears inside a multi exec, lua, or when blocking is not allowed";
/// A requirement pip could not install (details in the log), 1.2's texts.
pub const REQUIREMENTS_FAILED: &str =
    "Could not satisfy requirements (look at redis log file for more information)";
pub const NO_SUCH_REQUIREMENT: &str = "requirement does not exists";

// Messages between shards (1.2's texts).
pub const BAD_MSG_ID: &str = "bad msg id given";
pub const NO_SUCH_RECEIVER: &str = "can not find the callback requested";

// RG.PYPROFILE.
pub const WRONG_PROFILE_SUBCOMMAND: &str = "Wrong subcommand given to RG.PYPROFILE";
pub const NO_SUCH_SESSION_TO_PROFILE: &str = "session does not exists";
pub const SCRIPT_NOT_UTF8: &str = "the script is not valid UTF-8";
pub const BAD_SESSION_ID: &str =
    "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']";
pub const ID_MISSING: &str = "ID is missing";
pub const DESCRIPTION_MISSING: &str = "DESCRIPTION is missing";
pub const REPLACE_WITH_MISSING: &str = "REPLACE_WITH is missing";
pub fn unknown_argument(arg: &str) -> String {
    format!("Unknown arguments were given: {arg}")
}
pub fn session_exists(session: &str) -> String {
    format!("Session {session} already exists")
}
pub fn no_session_to_replace(old: &str) -> String {
    format!("Can not replace with {old}, session does not exists.")
}
pub fn cannot_replace_existing(session: &str, old: &str) -> String {
    format!("Can not replace an existing session {session} with {old}")
}

// Executions.
pub const NO_SUCH_PLAN: &str = "execution plan does not exist";
pub const NO_SUCH_EXECUTION: &str = "execution does not exist";
pub const STILL_RUNNING: &str = "execution is still running";
pub const DROP_RUNNING: &str = "can not drop a not yet finished execution, abort it first.";
pub const NO_CLUSTER: &str = "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead";
pub const UNKNOWN_SUBCOMMAND: &str = "unknown subcommand";

// RG.CONFIGGET / RG.CONFIGSET.
pub fn unsupported_config(key: &str) -> String {
    format!("(error) Unsupported config parameter: {key}")
}
pub fn config_value_missing(key: &str) -> String {
    format!("(error) Value was not given to {key}")
}
/// How RG.CONFIGSET shows most configuration errors.
pub fn config_error(message: &str) -> String {
    format!("(error) {message}")
}

// Registrations.
pub fn unknown_option(tok: &str) -> String {
    format!("Unknown option {tok}")
}
pub fn no_such_session(id: &str) -> String {
    format!("Session {id} does not exists")
}
pub const NOT_REGISTERED: &str = "execution is not registered";
pub const NOTHING_TO_PAUSE: &str = "ERR no registration to pause";
pub fn no_registration_on_shard(id: &str, shard: &str) -> String {
    format!("Execution {id} does not exists on shard {shard}")
}
pub fn reader_cannot(reader: &str, verb: &str) -> String {
    format!("Reader {reader} does not support {verb}")
}
pub const NO_SUCH_TRIGGER: &str = "ERR subcommand not found";
pub const TRIGGER_TAKEN: &str = "trigger already registered";
pub const OVERRIDE_NON_SYNC_SAME_SESSION: &str =
    "Can not override a none sync registration which already created on this session";
pub const OVERRIDE_NON_SYNC: &str = "Can not override a none sync registration";

// Hooks. `what` is "override" for hooks, "hook" for KeysReader `commands`.
/// An unknown command: hooks say so, KeysReader `commands` report what
/// 1.2's `COMMAND INFO` check saw.
pub fn no_such_command(what: &str) -> &'static str {
    if what == "hook" {
        "bad reply on COMMAND command"
    } else {
        "Can not override an unexisting command"
    }
}
pub fn command_not_scriptable(what: &str) -> String {
    format!("Can not {what} a command which are not allowed inside a script")
}
pub fn movable_keys_by_prefix(what: &str) -> String {
    format!("Can not {what} a command with moveable keys by key prefix")
}
pub const NOT_BUSY: &str = "NOTBUSY No gears Python code is running on the main thread right now.";
pub const HOOK_ONE_RESULT: &str = "Command hook must return exactly one result";
pub fn cluster_only(name: &str) -> String {
    format!(
        "ERR {name} is only used between the shards of a cluster, and this server is not in one"
    )
}
pub fn internal_command(name: &str) -> String {
    format!("ERR {name} is internal to the gears module and can not be called directly")
}
