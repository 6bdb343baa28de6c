//! Keeps Redis responsive while Python runs long on its main thread (a
//! script body, a `sync` function): every few milliseconds a pending call
//! asks the host to let Redis serve other clients (they get `BUSY` once
//! `busy-reply-threshold` has passed, as with a slow Lua script), and stops
//! the code if a client asked to kill it.

use crate::errors::ForceStoppedError;
use crate::runtime;
use gears_core::scope::on_drop;
use pyo3::prelude::*;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

extern "C" {
    fn PyThread_get_thread_ident() -> std::os::raw::c_ulong;
}

/// How often the running code is interrupted to serve clients.
const PERIOD: Duration = Duration::from_millis(10);

/// The Python thread ident of the Redis main thread (where Python started).
static MAIN_IDENT: AtomicU64 = AtomicU64::new(0);
/// How deep the main thread is in Python code run by us.
static MAIN_BUSY: AtomicUsize = AtomicUsize::new(0);
/// A pending call is queued and has not run yet.
static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// This thread's Python thread ident (what `PyThreadState_SetAsyncExc`
/// takes).
pub(crate) fn ident() -> u64 {
    // SAFETY: a plain query of the calling thread's id.
    unsafe { PyThread_get_thread_ident() as u64 }
}

/// Starts the watchdog; call on the main thread, once Python runs.
pub(crate) fn start() -> Result<(), crate::errors::Error> {
    MAIN_IDENT.store(ident(), Ordering::SeqCst);
    std::thread::Builder::new()
        .name("gears-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(PERIOD);
            // A panic skips one tick, never the watchdog.
            let _ = std::panic::catch_unwind(|| {
                if MAIN_BUSY.load(Ordering::SeqCst) > 0 && !SCHEDULED.swap(true, Ordering::SeqCst) {
                    // SAFETY: Py_AddPendingCall may be called from any thread
                    // without the GIL; the callback is a plain function.
                    let queued = unsafe {
                        pyo3::ffi::Py_AddPendingCall(Some(on_pending), std::ptr::null_mut())
                    };
                    if queued != 0 {
                        SCHEDULED.store(false, Ordering::SeqCst);
                        return;
                    }
                    // CPython 3.11 signals a pending call only when the thread
                    // that adds it could run it itself. Asking for the GIL makes
                    // the main thread look at its pending calls (they run before
                    // it hands the GIL over).
                    Python::with_gil(|_py| {});
                }
            });
        })
        .map(|_| ())
        .map_err(|e| {
            crate::errors::Error::Start(format!("could not start the watchdog thread: {e}"))
        })
}

/// Runs `f`, marked as Python work of the main thread when it is on it.
pub(crate) fn watched<R>(f: impl FnOnce() -> R) -> R {
    if MAIN_IDENT.load(Ordering::SeqCst) != ident() {
        return f();
    }
    MAIN_BUSY.fetch_add(1, Ordering::SeqCst);
    let _done = on_drop(|| {
        MAIN_BUSY.fetch_sub(1, Ordering::SeqCst);
    });
    f()
}

/// Runs on the main thread, GIL held, between two bytecodes of the running
/// code.
extern "C" fn on_pending(_: *mut c_void) -> c_int {
    SCHEDULED.store(false, Ordering::SeqCst);
    if MAIN_BUSY.load(Ordering::SeqCst) == 0 {
        return 0;
    }
    let stop = std::panic::catch_unwind(|| runtime::host().yield_to_clients()).unwrap_or(false);
    if !stop {
        return 0;
    }
    Python::with_gil(|py| {
        ForceStoppedError::new_err("the running code was killed (RG.PYKILL)").restore(py);
    });
    -1
}
