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
//!
//! # Example
//!
//! The crate alone, with callbacks written in Rust: a plan that upper-cases
//! strings then keeps the long ones, fed by a [`engine::VecReader`].
//!
//! ```rust
//! use gears_core::engine::VecReader;
//! use gears_core::pipeline::Pipeline;
//! use gears_core::pending::{Answer, Later};
//! use gears_core::plan::{Callable, Plan, Step, StepKind, StepResult};
//! use gears_core::{Reader, Record, Reply};
//! use std::sync::atomic::AtomicBool;
//! use std::sync::Arc;
//!
//! /// A map callback: upper-cases string records, fails on anything else.
//! struct Upper;
//! impl Callable for Upper {
//!     fn map(&self, r: Record, _later: &Later) -> StepResult<Answer<Record>> {
//!         match r {
//!             Record::Str(s) => Ok(Answer::Now(Record::Str(s.to_ascii_uppercase()))),
//!             other => Err(format!("not a string: {other:?}").into()),
//!         }
//!     }
//! }
//!
//! /// A filter callback: keeps strings longer than three bytes.
//! struct Long;
//! impl Callable for Long {
//!     fn filter(&self, r: &Record, _later: &Later) -> StepResult<Answer<bool>> {
//!         Ok(Answer::Now(matches!(r, Record::Str(s) if s.len() > 3)))
//!     }
//! }
//!
//! let plan = Plan {
//!     reader: "VecReader".into(),
//!     steps: vec![
//!         Step::new(StepKind::Map, "upper", Some(Arc::new(Upper))),
//!         Step::new(StepKind::Filter, "long", Some(Arc::new(Long))),
//!     ],
//!     desc: None,
//! };
//! plan.validate()?;
//!
//! let run = |input: Vec<Record>| -> Result<Pipeline, gears_core::Error> {
//!     let mut reader = VecReader(Some(input));
//!     let mut pipeline = Pipeline::new(&plan, Arc::new(AtomicBool::new(false)));
//!     while let Some(batch) = reader.next_batch()? {
//!         pipeline.push_batch(batch);
//!     }
//!     pipeline.finish();
//!     Ok(pipeline)
//! };
//! let strs = |words: &[&str]| words.iter().map(|w| Record::Str(w.as_bytes().to_vec())).collect();
//!
//! let done = run(strs(&["redis", "gears", "py", "rust"]))?;
//! let replies: Vec<Reply> = done.results.iter().map(Record::to_reply).collect();
//! assert_eq!(replies, [Reply::bulk("REDIS"), Reply::bulk("GEARS"), Reply::bulk("RUST")]);
//! assert!(done.errors.is_empty());
//!
//! // A failing callback turns its record into an error, which stops the input.
//! let mut input: Vec<Record> = strs(&["redis"]);
//! input.extend([Record::Long(7), Record::Str(b"never seen".to_vec())]);
//! let done = run(input)?;
//! assert_eq!(done.results.len(), 1);
//! assert_eq!(done.errors, ["not a string: Long(7)"]);
//! # Ok::<(), gears_core::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod codec;
pub mod command;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod execution;
pub mod glob;
pub mod id;
pub mod identity;
pub mod pending;
pub mod persist;
pub mod pipeline;
pub mod plan;
pub mod pool;
pub mod prefix;
pub mod reader;
pub mod record;
pub mod registration;
pub mod reply;
pub mod runner;
pub mod scope;
pub mod span;
pub mod sync;

pub use command::{CallNext, CommandCtx};
pub use dispatch::{Caller, Fired, Placement};
pub use engine::Engine;
pub use error::Error;
pub use identity::Identity;
pub use reader::Reader;
pub use record::{HostObject, HostValue, Record};
pub use reply::Reply;
pub use runner::PlanRunner;
