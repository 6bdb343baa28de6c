//! The boundary to the host language that runs a plan's callbacks.

use crate::command::CommandCtx;
use crate::execution::Execution;
use crate::plan::Plan;
use crate::reader::Reader;
use std::sync::Arc;

/// Runs executions whose steps are callbacks of a host language. Implemented
/// by the language binding (gears-python).
pub trait PlanRunner: Send + Sync + 'static {
    /// Runs `exec` on this thread, reading from `reader`, with `command` as
    /// the client command its steps may act on. When `may_wait`, records may
    /// wait for answers (see [`crate::pending`]): the runner then returns
    /// once the input is read and lets the execution finish elsewhere, when
    /// the last answer arrives.
    fn run(
        &self,
        exec: &Arc<Execution>,
        plan: &Plan,
        reader: Box<dyn Reader>,
        command: Option<Arc<CommandCtx>>,
        may_wait: bool,
    );
}
