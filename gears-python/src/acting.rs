//! Who the code running on this thread acts as ([`Acting`]): the identity
//! its commands run as, the client command it may act on (`call_next`,
//! `override_reply`), whether its records may wait (`isAsyncAllow`), and
//! whether it is inside `atomic()`. (A *session*, elsewhere, is 1.2's group
//! of registrations made by one script.)

use gears_core::dispatch::Running;
use gears_core::scope::on_drop;
use gears_core::{CommandCtx, Identity};
use std::cell::RefCell;
use std::sync::Arc;

/// What an execution's steps (and its coroutines, wherever they resume)
/// act with.
#[derive(Default, Clone)]
pub(crate) struct Acting {
    pub(crate) command: Option<Arc<CommandCtx>>,
    pub(crate) identity: Identity,
    pub(crate) may_wait: bool,
    /// The registrations running where this started acting (the
    /// self-trigger guard).
    pub(crate) running: Running,
}

impl Acting {
    /// Acting as `identity`, with no command, without waiting.
    pub(crate) fn of(identity: Identity) -> Acting {
        Acting {
            identity,
            ..Acting::default()
        }
    }
}

thread_local! {
    /// Per thread by nature: the steps (or the body) that call `execute()`
    /// and `call_next` run on the thread of the execution that set it.
    /// Outside any context (a thread of the runtime's own, before it
    /// enters one), Python acts as nobody: every permission check fails.
    static CURRENT: RefCell<Acting> = RefCell::new(Acting::of(Identity::nobody()));
}

/// Runs `f` acting as `acting` on this thread.
pub(crate) fn with_acting<R>(acting: Acting, f: impl FnOnce() -> R) -> R {
    let running = acting.running.clone();
    let prev = CURRENT.with(|c| c.replace(acting));
    GENERATION.with(|g| g.set(g.get() + 1));
    let _restore = on_drop(move || {
        CURRENT.with(|c| *c.borrow_mut() = prev);
        GENERATION.with(|g| g.set(g.get() + 1));
    });
    running.enter(f)
}

/// Runs `f` acting as `acting`, as [`with_acting`]; an `atomic()` block that `f`
/// opened and left open is released when it returns (one this thread was
/// in already belongs to whoever opened it).
pub(crate) fn run_as<R>(acting: Acting, f: impl FnOnce() -> R) -> R {
    let atomic_before = in_atomic();
    let out = with_acting(acting, f);
    if !atomic_before {
        leave_atomic();
    }
    out
}

pub(crate) fn command() -> Option<Arc<CommandCtx>> {
    CURRENT.with(|c| c.borrow().command.clone())
}

thread_local! {
    /// Changes whenever this thread's context does: what was derived from
    /// the context (a Python object standing for it) can be kept until then.
    static GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Which context this thread is in, as a number that changes with it.
pub(crate) fn generation() -> u64 {
    GENERATION.with(|g| g.get())
}

/// This thread's context, to take along to where a coroutine resumes.
pub(crate) fn current() -> Acting {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether the records of this thread's execution may wait.
pub(crate) fn may_wait() -> bool {
    CURRENT.with(|c| c.borrow().may_wait)
}

/// Who this thread's commands run as.
pub(crate) fn identity() -> Identity {
    CURRENT.with(|c| c.borrow().identity.clone())
}

thread_local! {
    /// Whether this thread is inside `with atomic():`. Per thread by nature:
    /// the Redis lock it stands for is held by this thread.
    static IN_ATOMIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside an `atomic()` block.
pub(crate) fn in_atomic() -> bool {
    IN_ATOMIC.with(|a| a.get())
}

/// Leaves an `atomic()` block this thread is in, if any (its exit, or the
/// end of the execution or script body it was left open in).
pub(crate) fn leave_atomic() {
    if IN_ATOMIC.with(|a| a.replace(false)) {
        crate::runtime::host().unlock();
    }
}

/// Marks this thread as inside an `atomic()` block (its lock is taken).
pub(crate) fn enter_atomic() {
    IN_ATOMIC.with(|a| a.set(true));
}
