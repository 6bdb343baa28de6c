//! The engine of the gears runtime, free of Redis and of Python.
//!
//! A user's pipeline becomes a [`plan::Plan`]: an ordered list of steps whose
//! callbacks are opaque [`plan::Callable`] objects supplied by a host language
//! (Python, in `gears-python`). A [`pipeline::Pipeline`] pushes batches of
//! [`record::Record`]s through those steps; an [`execution::Execution`] tracks
//! one run of a plan (status, results, errors, durations) inside the
//! [`execution::Executions`] registry; [`pool::WorkerPool`] runs them off the
//! Redis main thread.
//!
//! Nothing here takes a lock that belongs to Redis or to Python: whoever drives
//! a pipeline decides under which lock each batch runs.

pub mod engine;
pub mod execution;
pub mod glob;
pub mod id;
pub mod pipeline;
pub mod plan;
pub mod pool;
pub mod record;
pub mod registration;
pub mod reply;

pub use engine::{Engine, Reader};
pub use record::{HostObject, HostValue, Record};
pub use reply::Reply;
