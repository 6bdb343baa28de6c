//! The thread that drives an execution now, and whether it is in Python:
//! what an abort needs to interrupt exactly that execution's code.

use super::*;

/// The thread that drives an execution now and whether it is in Python:
/// what an abort needs to interrupt it. A waiting execution changes threads.
#[derive(Default)]
pub(super) struct Driver {
    ident: AtomicU64,
    in_python: AtomicBool,
    /// An interruption was posted and may not have fired yet.
    posted: AtomicBool,
}

impl Driver {
    /// This thread drives the execution from now on.
    pub(super) fn here(&self) {
        let ident = crate::watchdog::ident();
        self.ident.store(ident, Ordering::SeqCst);
    }

    /// Runs `f` holding the GIL, with `in_python` raised so that an abort
    /// may interrupt it; a pending interruption that did not fire is
    /// cleared before the GIL is released, so it never leaks into unrelated
    /// code.
    pub(super) fn in_gil<R>(&self, f: impl FnOnce(Python<'_>) -> R) -> R {
        /// Leaves Python, also when `f` panics, while the GIL is still held.
        struct Leave<'a>(&'a Driver);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.in_python.store(false, Ordering::SeqCst);
                // Posting and clearing both happen under the GIL: no race.
                if self.0.posted.swap(false, Ordering::SeqCst) {
                    let ident = self.0.ident.load(Ordering::SeqCst);
                    // SAFETY: we hold the GIL; a NULL exception clears any
                    // pending asynchronous exception of that thread (our
                    // own).
                    unsafe {
                        pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, std::ptr::null_mut())
                    };
                }
            }
        }
        Python::with_gil(|py| {
            self.in_python.store(true, Ordering::SeqCst);
            let _leave = Leave(self);
            f(py)
        })
    }

    /// Interrupts the Python code the execution runs, if it runs some now.
    pub(super) fn interrupt(&self) {
        Python::with_gil(|py| {
            if self.in_python.load(Ordering::SeqCst) {
                let exc = py.get_type::<ForceStoppedError>();
                let ident = self.ident.load(Ordering::SeqCst);
                // SAFETY: we hold the GIL and `ident` is a live Python
                // thread (it is inside `in_gil`, as `in_python` says under
                // this GIL).
                unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, exc.as_ptr()) };
                self.posted.store(true, Ordering::SeqCst);
            }
        })
    }
}
