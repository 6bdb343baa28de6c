//! The runtime's one piece of process-wide state: the host, the engine and
//! the prelude globals, set once at module load.
//!
//! It is a static because the functions Python calls back (`execute()`,
//! `log()`...) receive no Rust context; everything else receives what it
//! needs as arguments.

use crate::errors::GearsError;
use crate::host::RedisHost;
use gears_core::scope::on_drop;
use gears_core::sync::{wait_unpoisoned, LockExt};
use gears_core::Engine;
use once_cell::sync::OnceCell;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub(crate) struct Runtime {
    pub(crate) host: Arc<dyn RedisHost>,
    pub(crate) engine: Arc<Engine>,
    /// The globals every script body starts from (a copy of them).
    pub(crate) prelude: Py<PyDict>,
    /// The event loop of coroutines (see `aio`).
    pub(crate) aio: EventLoop,
    /// Compiled script bodies by their text (see `interpreter`).
    pub(crate) scripts: std::sync::Mutex<std::collections::HashMap<String, Py<PyAny>>>,
}

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

pub(crate) fn install(rt: Runtime) -> Result<(), crate::errors::Error> {
    RUNTIME.set(rt).map_err(|_| {
        crate::errors::Error::Start("the Python runtime is already initialized".to_string())
    })
}

pub(crate) fn runtime() -> &'static Runtime {
    RUNTIME
        .get()
        .expect("the Python runtime is initialized at module load")
}

pub(crate) fn host() -> &'static dyn RedisHost {
    &*runtime().host
}

pub(crate) fn engine() -> &'static Engine {
    &runtime().engine
}

/// `PythonAttemptTraceback`: error texts carry the traceback.
pub(crate) fn attempt_traceback() -> bool {
    match RUNTIME
        .get()
        .and_then(|r| r.host.config_get("PythonAttemptTraceback"))
    {
        Some(gears_config::Value::Int(v)) => v != 0,
        _ => true,
    }
}

/// The event loop and the prelude helpers that work with it.
pub(crate) struct EventLoop {
    pub(crate) event_loop: Py<PyAny>,
    pub(crate) call_soon_threadsafe: Py<PyAny>,
    pub(crate) set_running: Py<PyAny>,
    pub(crate) get_running: Py<PyAny>,
    pub(crate) continue_on_loop: Py<PyAny>,
    pub(crate) run_coroutine: Py<PyAny>,
    pub(crate) settle_future: Py<PyAny>,
    /// The `set` and `reset` methods of the `contextvars.ContextVar`
    /// holding who the coroutine (or task, or callback) running on the
    /// loop acts as.
    pub(crate) acting_set: Py<PyAny>,
    pub(crate) acting_reset: Py<PyAny>,
    /// Who may run asyncio code now.
    pub(crate) gate: Gate,
}

/// asyncio is not thread-safe, yet a coroutine's first steps run on its
/// step's thread while the loop thread runs others. The gate lets one of
/// them at a time run asyncio code: the loop thread while it runs its
/// callbacks (not while it waits for I/O), a step's thread while it starts a
/// coroutine. It is reentrant on its holder's thread.
///
/// Lock order: Redis lock, then gate, then GIL. Nobody waits for the gate
/// holding the GIL, and the holder lets it go before it may wait for the
/// Redis lock ([`waiting_for_redis`]).
#[derive(Default)]
pub(crate) struct Gate {
    owner: Mutex<Option<std::thread::ThreadId>>,
    free: Condvar,
}

thread_local! {
    /// How many times this thread entered the gate. Per thread by nature:
    /// the gate is held by a thread.
    static GATE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

impl Gate {
    fn owner(&self) -> MutexGuard<'_, Option<std::thread::ThreadId>> {
        self.owner.lock_unpoisoned()
    }

    /// Whether this thread holds the gate.
    pub(crate) fn held_here(&self) -> bool {
        GATE_DEPTH.with(|d| d.get()) > 0
    }

    /// Enters if the gate is free or ours; false if another thread holds it.
    pub(crate) fn try_enter(&self) -> bool {
        if GATE_DEPTH.with(|d| d.get()) > 0 {
            GATE_DEPTH.with(|d| d.set(d.get() + 1));
            return true;
        }
        let mut owner = self.owner();
        if owner.is_some() {
            return false;
        }
        *owner = Some(std::thread::current().id());
        GATE_DEPTH.with(|d| d.set(1));
        true
    }

    /// Enters from code holding the GIL: waits for the holder, if any,
    /// with the GIL released.
    pub(crate) fn enter_from_python(&self, py: Python<'_>) {
        if !self.try_enter() {
            py.allow_threads(|| self.enter());
        }
    }

    /// Enters, waiting for the holder. Call without the GIL.
    pub(crate) fn enter(&self) {
        if self.try_enter() {
            return;
        }
        let mut owner = self.owner();
        while owner.is_some() {
            owner = wait_unpoisoned(&self.free, owner);
        }
        *owner = Some(std::thread::current().id());
        GATE_DEPTH.with(|d| d.set(1));
    }

    pub(crate) fn leave(&self) {
        let depth = GATE_DEPTH.with(|d| d.get());
        if depth == 0 {
            return;
        }
        GATE_DEPTH.with(|d| d.set(depth - 1));
        if depth == 1 {
            *self.owner() = None;
            self.free.notify_one();
        }
    }

    /// Runs `f` with the gate let go, if this thread held it; takes it back
    /// after (also when `f` panics).
    fn released<R>(&self, f: impl FnOnce() -> R) -> R {
        let depth = GATE_DEPTH.with(|d| d.get());
        if depth == 0 {
            return f();
        }
        GATE_DEPTH.with(|d| d.set(1));
        self.leave();
        let _back = on_drop(|| {
            self.enter();
            GATE_DEPTH.with(|d| d.set(depth));
        });
        f()
    }
}

/// Runs `f`, which may wait for the Redis lock, without the asyncio gate
/// (see [`Gate`]). Call without the GIL.
pub(crate) fn waiting_for_redis<R>(f: impl FnOnce() -> R) -> R {
    match RUNTIME.get() {
        Some(rt) => rt.aio.gate.released(f),
        None => f(),
    }
}

impl EventLoop {
    /// The event loop (the prelude's `_new_loop`), not running yet: see
    /// [`EventLoop::spawn`].
    pub(crate) fn new(py: Python<'_>, prelude: &Bound<'_, PyDict>) -> PyResult<EventLoop> {
        let get = |name: &str| -> PyResult<Py<PyAny>> {
            prelude
                .get_item(name)?
                .map(Bound::unbind)
                .ok_or_else(|| GearsError::new_err(format!("the prelude lacks {name}")))
        };
        let event_loop = get("_new_loop")?.bind(py).call0()?;
        let events = py.import("asyncio")?.getattr("events")?;
        Ok(EventLoop {
            call_soon_threadsafe: event_loop.getattr("call_soon_threadsafe")?.unbind(),
            event_loop: event_loop.unbind(),
            set_running: events.getattr("_set_running_loop")?.unbind(),
            get_running: events.getattr("_get_running_loop")?.unbind(),
            continue_on_loop: get("_continue_on_loop")?,
            run_coroutine: get("_run_coroutine")?,
            settle_future: get("_settle_future")?,
            acting_set: get("_ACTING")?.bind(py).getattr("set")?.unbind(),
            acting_reset: get("_ACTING")?.bind(py).getattr("reset")?.unbind(),
            gate: Gate::default(),
        })
    }

    /// Starts the loop's thread; once the runtime is installed (the loop
    /// calls into it).
    pub(crate) fn spawn(&self, py: Python<'_>, prelude: &Bound<'_, PyDict>) -> PyResult<()> {
        prelude
            .get_item("_spawn_loop")?
            .ok_or_else(|| GearsError::new_err("the prelude lacks _spawn_loop"))?
            .call1((self.event_loop.bind(py),))?;
        Ok(())
    }

    /// Runs `f(args...)` on the loop thread, soon.
    pub(crate) fn soon(
        &self,
        py: Python<'_>,
        f: &Py<PyAny>,
        args: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut all = vec![f.bind(py).clone()];
        all.extend(args);
        self.call_soon_threadsafe
            .bind(py)
            .call1(PyTuple::new(py, all)?)?;
        Ok(())
    }
}
