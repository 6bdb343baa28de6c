//! The context of the execution (or script body) running on this thread:
//! who its commands run as, the client command it may act on (`call_next`,
//! `override_reply`), and whether its records may wait (`isAsyncAllow`).

use gears_core::dispatch::Running;
use gears_core::scope::on_drop;
use gears_core::{CommandCtx, Identity};
use std::cell::RefCell;
use std::sync::Arc;

/// What an execution's steps (and its coroutines, wherever they resume)
/// act with.
#[derive(Default, Clone)]
pub(crate) struct Session {
    pub(crate) command: Option<Arc<CommandCtx>>,
    pub(crate) identity: Identity,
    pub(crate) may_wait: bool,
    /// The registrations running where the session started (the
    /// self-trigger guard).
    pub(crate) running: Running,
}

impl Session {
    /// A session acting as `identity`, with no command, that may not wait.
    pub(crate) fn of(identity: Identity) -> Session {
        Session {
            identity,
            ..Session::default()
        }
    }
}

thread_local! {
    /// Per thread by nature: the steps (or the body) that call `execute()`
    /// and `call_next` run on the thread of the execution that set it.
    /// Outside any context (a thread of the runtime's own, before it
    /// enters one), Python acts as nobody: every permission check fails.
    static CURRENT: RefCell<Session> = RefCell::new(Session::of(Identity::nobody()));
}

/// Runs `f` with `session` as this thread's context.
pub(crate) fn with_context<R>(session: Session, f: impl FnOnce() -> R) -> R {
    let running = session.running.clone();
    let prev = CURRENT.with(|c| c.replace(session));
    GENERATION.with(|g| g.set(g.get() + 1));
    let _restore = on_drop(move || {
        CURRENT.with(|c| *c.borrow_mut() = prev);
        GENERATION.with(|g| g.set(g.get() + 1));
    });
    running.enter(f)
}

/// Runs `f` in `session`, as [`with_context`]; an `atomic()` block that `f`
/// opened and left open is released when it returns (one this thread was
/// in already belongs to whoever opened it).
pub(crate) fn in_session<R>(session: Session, f: impl FnOnce() -> R) -> R {
    let atomic_before = in_atomic();
    let out = with_context(session, f);
    if !atomic_before {
        leave_atomic();
    }
    out
}

pub(crate) fn current() -> Option<Arc<CommandCtx>> {
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
pub(crate) fn session() -> Session {
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
