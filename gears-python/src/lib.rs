//! The embedded CPython runtime of gears: the language binding.
//!
//! This crate owns everything Python: starting the interpreter inside the
//! Redis process, the `redisgears` native module and the GearsBuilder
//! prelude, running RG.PYEXECUTE script bodies, and running executions whose
//! steps are Python callbacks ([`PyRunner`], the gears-core `PlanRunner`).
//! It reaches Redis only through the [`RedisHost`] trait, which
//! `gears-module` implements (and tests fake). Registrations, their
//! statistics and how they are dispatched belong to gears-core.
//!
//! Lock order: a thread that holds the GIL never waits for the Redis lock.
//! `execute()` releases the GIL before calling into the host, and the runner
//! reads input batches before taking the GIL.
//!
//! Modules depend one way, from the API Python sees down to the error
//! types: ARCHITECTURE.md's layer table for this crate lists every module,
//! and `cargo xtask lint` checks the imports against it.

mod acting;
mod aio;
pub mod alloc;
mod api;
mod args;
mod callbacks;
pub mod convert;
mod errors;
mod host;
mod interpreter;
mod persist;
pub mod profiling;
mod readers;
mod register;
pub mod requirements;
mod runner;
mod runtime;
mod script;
mod steps;
mod traceback;
mod watchdog;

pub use api::remote_run;
pub use errors::Error;
pub use host::{KeysReaderSpec, LogLevel, RedisHost, ScriptScope};
pub use interpreter::{check_packages, collect_garbage, exec_script, initialize, RUNTIME_PACKAGES};
pub use persist::{forget_restored_sessions, restore, TimeCallback};
pub use runner::PyRunner;
pub use runner::{submit, submit_spanning};
pub use script::{PendingRegistration, PendingRun, ScriptOutcome};
pub use traceback::error_text;
