//! The client command of the execution running on this thread, for
//! `call_next` and `override_reply`.

use gears_core::CommandCtx;
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// Per thread by nature: the steps that call `call_next` run on the
    /// thread of the execution that set it.
    static CURRENT_COMMAND: RefCell<Option<Arc<CommandCtx>>> = const { RefCell::new(None) };
}

/// Runs `f` with `command` as this thread's command context.
pub(crate) fn with_command<R>(command: Option<Arc<CommandCtx>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<CommandCtx>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT_COMMAND.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT_COMMAND.with(|c| c.replace(command));
    let _restore = Restore(prev);
    f()
}

pub(crate) fn current() -> Option<Arc<CommandCtx>> {
    CURRENT_COMMAND.with(|c| c.borrow().clone())
}
