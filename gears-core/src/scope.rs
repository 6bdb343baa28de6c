//! Undo on every way out of a scope, panics included.
//!
//! Executions run user code that may panic (caught at the FFI boundary);
//! per-thread state a scope sets must be put back on the way out, whichever
//! way that is, or the thread's next job inherits it.

use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

/// Runs its closure when dropped.
#[must_use = "the closure runs when this is dropped: bind it to a variable"]
pub struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A guard that runs `f` when the scope holding it ends.
pub fn on_drop<F: FnOnce()>(f: F) -> OnDrop<F> {
    OnDrop(Some(f))
}

/// Runs `f` with the thread-local `key` set to `value`, then puts the
/// previous value back.
pub fn with_local<T: 'static, R>(
    key: &'static LocalKey<RefCell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    let prev = key.with(|c| c.replace(value));
    let _restore = on_drop(move || key.with(|c| *c.borrow_mut() = prev));
    f()
}

/// [`with_local`] for a `Cell`.
pub fn with_local_cell<T: Copy + 'static, R>(
    key: &'static LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    let prev = key.with(|c| c.replace(value));
    let _restore = on_drop(move || key.with(|c| c.set(prev)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    thread_local! {
        static NAME: RefCell<&'static str> = const { RefCell::new("outer") };
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    #[test]
    fn a_thread_local_is_put_back_after_a_panic() {
        let seen = catch_unwind(AssertUnwindSafe(|| {
            with_local(&NAME, "inner", || {
                with_local_cell(&DEPTH, 7, || {
                    assert_eq!(NAME.with(|n| *n.borrow()), "inner");
                    assert_eq!(DEPTH.with(Cell::get), 7);
                    panic!("user code failed");
                })
            })
        }));
        assert!(seen.is_err());
        assert_eq!(NAME.with(|n| *n.borrow()), "outer");
        assert_eq!(DEPTH.with(Cell::get), 0);
    }

    #[test]
    fn on_drop_runs_once_at_the_end_of_the_scope() {
        let ran = Cell::new(0);
        {
            let _g = on_drop(|| ran.set(ran.get() + 1));
            assert_eq!(ran.get(), 0);
        }
        assert_eq!(ran.get(), 1);
    }
}
