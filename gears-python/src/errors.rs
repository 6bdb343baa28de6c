//! The Python exception types of the runtime and the RedisGears 1.2 error
//! texts this crate raises, in one place. Imports nothing of the crate, so
//! every other module may use it.

use pyo3::create_exception;
use pyo3::exceptions::{PyBaseException, PyException};
use std::fmt;

/// What goes wrong in the binding outside the Python exceptions a script
/// sees (those are raised as `GearsError` with the texts below). Each
/// variant names the job that failed; the text says what, as the log or
/// the client shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// CPython could not start, or lacks what the runtime needs.
    Start(String),
    /// pip, wheels and the requirements' saved form.
    Requirements(String),
    /// Saved callbacks (cloudpickle) that do not restore or run here.
    Restore(String),
    /// Starting an execution: the queue is full, or a thread could not
    /// start.
    Submit(String),
    /// A Python exception, in 1.2's words (`traceback::error_text`).
    Python(String),
    /// What the host (Redis) answered.
    Host(String),
    /// A gears-core error (records, replies, saved data).
    Core(gears_core::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Start(t)
            | Error::Requirements(t)
            | Error::Restore(t)
            | Error::Submit(t)
            | Error::Python(t)
            | Error::Host(t) => f.write_str(t),
            Error::Core(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<gears_core::Error> for Error {
    fn from(e: gears_core::Error) -> Error {
        Error::Core(e)
    }
}

/// At the FFI edge, to the script: a `GearsError` with the text.
impl From<Error> for pyo3::PyErr {
    fn from(e: Error) -> pyo3::PyErr {
        GearsError::new_err(e.to_string())
    }
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

/// 1.2's error class is `gears.error`: its name shows in the error texts
/// clients get (`gears.error: ...` in a traceback, `<class 'gears.error'>`
/// without one). Scripts know it as `GearsError`.
mod gears {
    #![allow(non_camel_case_types)]
    pyo3::create_exception!(gears, error, pyo3::exceptions::PyException);
}
pub use gears::error as GearsError;
create_exception!(redisgears, GearsFlatError, PyException);
create_exception!(
    redisgears,
    ForceStoppedError,
    PyBaseException,
    "Raised inside a step when RG.ABORTEXECUTION stops its execution."
);

// The API functions.
pub const COMMAND_NOT_STRING: &str = "the given command must be a string";
pub const NO_HOOK_CTX: &str = "Can not get CommandHook ctx";
pub const NO_COMMAND_CTX: &str = "Can not get command ctx";
pub const OVERRIDE_TWICE: &str = "Can only override reply once";
pub const ALREADY_ATOMIC: &str = "Already inside an atomic block";
pub fn unknown_log_level(level: &str) -> String {
    format!("unknown log level '{level}'")
}

// Coroutines and futures (1.2's texts, spelling included).
pub const ASYNC_NOT_ALLOWED: &str = "Creating async record is not allow";
pub const FUTURE_OUTSIDE_STEP: &str =
    "Future object can only be created inside certain execution steps";
pub const FUTURE_TWICE_IN_STEP: &str = "Can not create async record twice on the same step";
pub const FUTURE_CONTINUED_TWICE: &str = "Can not continue with the same future twice";
pub const FUTURE_NOT_RETURNED_YET: &str =
    "Can not handle future untill it returned from the callback";
pub const AWAIT_IN_ATOMIC: &str = "await is not allow inside atomic block";
pub const STEP_NO_ASYNC: &str = "Step does not support async";
pub const COROUTINE_ON_EXTRACTOR: &str = "coroutine are not allow on extractor";
pub const COROUTINE_ON_REDUCE: &str = "coroutine are not allow on reduce";
pub const NOT_A_COROUTINE: &str = "runCoroutine expects a coroutine";
pub const BAD_DELAY: &str = "runCoroutine delay must be a non negative number of seconds";
pub const NOT_A_FUTURE: &str = "expected a future created by createFuture";
pub const ON_REGISTERED_COROUTINE: &str = "onRegistered can not be a coroutine";

// run() and its readers.
pub const TWO_RUNS: &str = "Can not run more then 1 executions in a single script";
pub const MODE_NOT_STRING: &str = "mode argument must be a string";
pub fn bad_run_mode(mode: &str) -> String {
    format!("unknown or unsupported execution mode '{mode}' for run (use async or async_local)")
}
pub const PATTERN_NOT_STRING: &str = "pattern argument must be a string";
pub const NOSCAN_NOT_BOOL: &str = "exactMatch value is not boolean";
pub const READVALUE_NOT_BOOL: &str = "readValue value is not boolean";
pub const PYREADER_NOT_FUNCTION: &str = "pyreader argument must be a function";
pub const STREAM_NAME_NOT_STRING: &str = "stream name argument must be a string";
pub const FROMID_NOT_STRING: &str = "fromId argument must be a string";
pub const READER_CANNOT_RUN: &str = "reader do not support run";
pub const UNKNOWN_RUN_READER: &str = "Given reader do not support run or not exists";
pub const LIMIT_WITHOUT_BOUNDS: &str = "limit needs bounds";
pub fn unknown_step(kind: &str) -> String {
    format!("unknown step kind {kind}")
}

// registerTimeEvent().
pub const TIME_EVENT_PERIOD: &str = "time event period must be a positive number of seconds";
pub const TIME_EVENT_CALLBACK: &str = "time event callback must be a function";
pub const TIME_EVENT_KEY: &str = "time event key must be a string";

// register().
pub const REGISTER_OUTSIDE_SCRIPT: &str =
    "register() is only supported at the top level of an RG.PYEXECUTE script";
pub fn bad_register_mode(mode: &str) -> String {
    format!("unknown execution mode '{mode}' (use sync, async or async_local)")
}
pub const ONREGISTERED_NOT_FUNCTION: &str = "onRegistered argument must be a function";
pub const UNKNOWN_REGISTER_READER: &str =
    "given reader does not exists or does not support register";
pub const TRIGGER_TWICE_IN_SESSION: &str = "trigger already registered in this session";
pub fn not_iterable(name: &str) -> String {
    format!("given {name} is not iterable")
}
pub fn item_not_string(item: &str) -> String {
    format!("given {item} type is not string")
}
pub const UNKNOWN_KEY_TYPE: &str = "unknown key type";
pub const REGEX_NOT_STRING: &str = "regex argument must be a string";
pub const READVALUE_IS_NOT_BOOL: &str = "readValue is not boolean";
pub const BATCH_NOT_NUMBER: &str = "batch argument must be a number";
pub const DURATION_NOT_NUMBER: &str = "duration argument must be a number";
pub const BAD_ON_FAILED: &str = "onFailedPolicy must be Continue/Abort/Retry";
pub const SYNC_NEEDS_CONTINUE: &str =
    "ExecutionMode sync can only be combined with OnFailedPolicy Continue";
pub const RETRY_NOT_NUMBER: &str = "retryInterval argument must be a number";
pub const TRIM_NOT_BOOL: &str = "pyTrimmStream argument must be a boolean";
pub const INORDER_NOT_BOOL: &str = "inorder argument is be boolean";
pub const TRIGGER_NOT_STRING: &str = "trigger argument is not string";
pub const TRIGGER_WITH_HOOK: &str = "trigger argument can not be given with keyprefix or hook";
pub const HOOK_NOT_STRING: &str = "hook argument is not string";
pub const KEYPREFIX_NOT_STRING: &str = "keyprefix argument is not string";
pub const NO_TRIGGER_OR_HOOK: &str = "no trigger or hook argument was given";

pub fn serialize_failed(callback: &str, error: &str) -> String {
    format!("Error occured when serialized a python callback, callback={callback} error={error}")
}

// Error records of executions.
pub const EXECUTION_PANICKED: &str = "internal error: the execution panicked (see the Redis log)";
pub const EXECUTION_ABORTED: &str = "Execution was aborted";
pub const FOREIGN_RECORD: &str = "foreign host record";
