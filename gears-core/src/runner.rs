//! The boundary to the host language that runs a plan's callbacks.

use crate::command::CommandCtx;
use crate::execution::Execution;
use crate::plan::Plan;
use crate::reader::Reader;
use std::sync::Arc;

/// Runs executions whose steps are callbacks of a host language. Implemented
/// by the language binding (gears-python).
pub trait PlanRunner: Send + Sync + 'static {
    /// Runs `exec` to its end on this thread, reading from `reader`, with
    /// `command` as the client command its steps may act on.
    fn run(
        &self,
        exec: &Arc<Execution>,
        plan: &Plan,
        reader: Box<dyn Reader>,
        command: Option<Arc<CommandCtx>>,
    );
}
