//! The script body being run on this thread, and what it leaves behind: the
//! execution `run()` prepared and the registrations `register()` made, which
//! the host starts and applies once the body has succeeded.

use crate::errors::ON_REGISTERED_COROUTINE;
use crate::host::{LogLevel, ScriptScope};
use crate::runtime::host;
use crate::traceback::error_text;
use gears_core::execution::Execution;
use gears_core::plan::Plan;
use gears_core::registration::{OnRegistered, Registration};
use gears_core::scope::on_drop;
use gears_core::Reader;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;

/// An execution prepared by `run()` in a script body, started once the
/// script has finished without error.
pub struct PendingRun {
    pub execution: Arc<Execution>,
    pub(crate) plan: Plan,
    pub(crate) reader: Box<dyn Reader>,
    /// In a cluster, what every shard needs to run it too (the pickled
    /// builder), when the run spans the shards.
    pub(crate) shipped: Option<Vec<u8>>,
}

impl PendingRun {
    /// The run as the other shards receive it, when it spans them.
    pub fn shipped(&self) -> Option<&[u8]> {
        self.shipped.as_deref()
    }
}

/// A registration made by a script body, applied by the host once the
/// script has succeeded.
pub struct PendingRegistration {
    pub reg: Arc<Registration>,
}

impl PendingRegistration {
    /// A registration (its `onRegistered`, if any, is part of it).
    pub fn plain(reg: Arc<Registration>) -> PendingRegistration {
        PendingRegistration { reg }
    }

    /// Runs the `onRegistered` callback, if any.
    pub fn on_registered(&self) {
        self.reg.announce();
    }
}

/// 1.2's `onRegistered`: run as the registration's owner (in database 0,
/// where its events' commands start too); its errors are logged.
pub(crate) struct PyOnRegistered(pub(crate) Py<PyAny>);

impl OnRegistered for PyOnRegistered {
    fn call(&self, reg: &Registration) {
        let owner = gears_core::Identity::new(reg.owner.clone(), 0);
        // An `atomic()` block left open goes with the call.
        crate::acting::run_as(crate::acting::Acting::of(owner), || {
            Python::with_gil(|py| {
                let func = self.0.bind(py);
                let failure = match crate::profiling::around(py, func, || func.call0()) {
                    Err(e) => Some(error_text(py, &e)),
                    // As in 1.2, it may not be a coroutine (nothing would
                    // wait for it).
                    Ok(out) => crate::aio::refuse_coroutine(&out, ON_REGISTERED_COROUTINE),
                };
                if let Some(failure) = failure {
                    host().log(
                        LogLevel::Warning,
                        &format!("onRegistered of registration {} failed: {failure}", reg.id),
                    );
                }
            })
        });
    }
}

/// What a script body did.
pub struct ScriptOutcome {
    pub run: Option<PendingRun>,
    pub registrations: Vec<PendingRegistration>,
}

/// State of the script body being run on this thread.
#[derive(Default)]
pub(crate) struct ScriptCtx {
    pub(crate) run: Option<PendingRun>,
    pub(crate) registrations: Vec<PendingRegistration>,
    pub(crate) scope: ScriptScope,
}

thread_local! {
    /// Per thread by nature: `run()` and `register()` are called from the
    /// body on the thread that runs it (the Redis main thread).
    static SCRIPT: RefCell<Option<ScriptCtx>> = const { RefCell::new(None) };
}

/// Runs `f` as the body of a script of `scope`; returns its result and what
/// the body prepared.
pub(crate) fn with_script<R>(scope: ScriptScope, f: impl FnOnce() -> R) -> (R, ScriptCtx) {
    SCRIPT.with(|s| {
        *s.borrow_mut() = Some(ScriptCtx {
            scope,
            ..ScriptCtx::default()
        })
    });
    // Also on panic: no script body is in progress any more.
    let clear = on_drop(|| {
        if let Some(ctx) = SCRIPT.with(|s| s.borrow_mut().take()) {
            Python::with_gil(|_py| drop(ctx));
        }
    });
    let out = f();
    let ctx = SCRIPT.with(|s| s.borrow_mut().take()).unwrap_or_default();
    drop(clear);
    (out, ctx)
}

/// Runs `f` on the script body in progress on this thread, if any.
pub(crate) fn in_script<R>(f: impl FnOnce(&mut ScriptCtx) -> R) -> Option<R> {
    SCRIPT.with(|s| s.borrow_mut().as_mut().map(f))
}
