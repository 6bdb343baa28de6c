//! Registrations' callbacks in saved form: the steps of a registration and
//! its `onRegistered`, pickled together with `cloudpickle` (functions of
//! the script are saved by value, with the globals they use).

use crate::errors::{serialize_failed, Error, GearsError};
use crate::runtime::runtime;
use crate::script::{PendingRegistration, PyOnRegistered};
use crate::steps::make_steps;
use crate::traceback::error_text;
use gears_core::persist::Saved;
use gears_core::plan::Plan;
use gears_core::registration::{OnRegistered, Registration};
use gears_core::Identity;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use std::sync::Arc;

fn cloudpickle(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("cloudpickle")
}

/// The saved form of `steps` (the prelude's step tuples) and
/// `on_registered`; 1.2's error naming the callback that can not be saved.
pub(crate) fn save(
    py: Python<'_>,
    steps: &Bound<'_, PyList>,
    on_registered: Option<&Py<PyAny>>,
) -> PyResult<Vec<u8>> {
    let cp = cloudpickle(py)?;
    let whole = PyTuple::new(
        py,
        [
            steps.clone().into_any(),
            on_registered.map_or_else(|| py.None().into_bound(py), |f| f.bind(py).clone()),
        ],
    )?;
    match cp.call_method1("dumps", (whole,)) {
        Ok(b) => Ok(b.downcast::<PyBytes>()?.as_bytes().to_vec()),
        Err(whole_err) => {
            // Name the callback that fails on its own.
            let mut funcs: Vec<Bound<'_, PyAny>> = Vec::new();
            for item in steps.iter() {
                if let Ok(f) = item.get_item(2) {
                    if !f.is_none() {
                        funcs.push(f);
                    }
                }
            }
            if let Some(f) = on_registered {
                funcs.push(f.bind(py).clone());
            }
            for f in funcs {
                if let Err(e) = cp.call_method1("dumps", (&f,)) {
                    let name = f
                        .getattr("__name__")
                        .and_then(|n| n.str().map(|s| s.to_string()))
                        .unwrap_or_else(|_| "<unknown>".into());
                    return Err(GearsError::new_err(serialize_failed(
                        &name,
                        &error_text(py, &e),
                    )));
                }
            }
            Err(GearsError::new_err(serialize_failed(
                "<registration>",
                &error_text(py, &whole_err),
            )))
        }
    }
}

/// A saved registration, ready to be applied again.
pub fn restore(saved: Saved) -> Result<PendingRegistration, Error> {
    Python::with_gil(|py| {
        let fail = |e: PyErr| Error::Restore(error_text(py, &e));
        let loaded = cloudpickle(py)
            .and_then(|cp| cp.call_method1("loads", (PyBytes::new(py, &saved.payload),)))
            .map_err(fail)?;
        let (steps, on_registered): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            loaded.extract().map_err(fail)?;
        // One globals dict for the restored functions of a session.
        let share = runtime()
            .prelude
            .bind(py)
            .get_item("_restore_callbacks")
            .map_err(fail)?;
        let share =
            share.ok_or_else(|| Error::Restore("the prelude lacks _restore_callbacks".into()))?;
        let shared = share
            .call1((saved.session.as_str(), steps, on_registered))
            .map_err(fail)?;
        let (steps, on_registered): (Bound<'_, PyList>, Option<Py<PyAny>>) =
            shared.extract().map_err(fail)?;
        let plan = Plan {
            reader: saved.reader,
            steps: make_steps(&steps).map_err(fail)?,
            desc: saved.plan_desc,
        };
        plan.validate()?;
        let reg = Registration::new(
            saved.id,
            saved.desc,
            saved.mode,
            saved.args,
            plan,
            saved.session,
        )
        .owned_by(saved.owner)
        .with_payload(saved.payload)
        .with_on_registered(
            on_registered
                .filter(|f| !f.is_none(py))
                .map(|f| Arc::new(PyOnRegistered(f)) as Arc<dyn OnRegistered>),
        );
        Ok(PendingRegistration::plain(Arc::new(reg)))
    })
}

/// A single callback in saved form (time events).
pub(crate) fn save_callable(py: Python<'_>, f: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    match cloudpickle(py)?.call_method1("dumps", (f,)) {
        Ok(b) => Ok(b.downcast::<PyBytes>()?.as_bytes().to_vec()),
        Err(e) => {
            let name = f
                .getattr("__name__")
                .and_then(|n| n.str().map(|s| s.to_string()))
                .unwrap_or_else(|_| "<unknown>".into());
            Err(GearsError::new_err(serialize_failed(
                &name,
                &error_text(py, &e),
            )))
        }
    }
}

/// A saved callback brought back, to call again and again (time events).
pub struct TimeCallback(Py<PyAny>);

impl TimeCallback {
    pub fn restore(payload: &[u8]) -> Result<TimeCallback, Error> {
        Python::with_gil(|py| {
            cloudpickle(py)
                .and_then(|cp| cp.call_method1("loads", (PyBytes::new(py, payload),)))
                .map(|f| TimeCallback(f.unbind()))
                .map_err(|e| Error::Restore(error_text(py, &e)))
        })
    }

    /// Calls it with `who` as the identity of its `execute()` calls.
    pub fn call(&self, who: Identity) -> Result<(), Error> {
        // An `atomic()` block left open goes with the call.
        crate::acting::run_as(crate::acting::Acting::of(who), || {
            Python::with_gil(|py| {
                self.0
                    .bind(py)
                    .call0()
                    .map(|_| ())
                    .map_err(|e| Error::Python(error_text(py, &e)))
            })
        })
    }
}

/// Forgets the shared globals of restored sessions: of `session` (its
/// last registration went), or of all (a load starts anew).
pub fn forget_restored_sessions(session: Option<&str>) {
    Python::with_gil(|py| {
        if let Ok(Some(f)) = runtime()
            .prelude
            .bind(py)
            .get_item("_forget_restored_sessions")
        {
            let _ = f.call1((session,));
        }
    });
}

/// A run as the other shards of a cluster receive it: the builder's reader,
/// its argument, its steps, description and reader options (without
/// `mode`), pickled; a callback that can not be pickled is 1.2's error
/// naming it.
pub(crate) fn ship_run(
    py: Python<'_>,
    reader: &str,
    arg: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyList>,
    desc: &Option<String>,
    kwargs: &Bound<'_, pyo3::types::PyDict>,
) -> PyResult<Vec<u8>> {
    // The step callbacks are checked (and named on failure) as a
    // registration's are.
    save(py, steps, None)?;
    let options = kwargs.copy()?;
    if options.contains("mode")? {
        options.del_item("mode")?;
    }
    let whole = (reader, arg, steps, desc.clone(), options).into_pyobject(py)?;
    let bytes = cloudpickle(py)?.call_method1("dumps", (whole,))?;
    Ok(bytes.downcast::<PyBytes>()?.as_bytes().to_vec())
}

/// What [`ship_run`] made: (reader, argument, steps, description, options).
pub(crate) type ShippedRun = (String, Py<PyAny>, Py<PyAny>, Option<String>, Py<PyAny>);

pub(crate) fn unship_run(py: Python<'_>, payload: &[u8]) -> PyResult<ShippedRun> {
    cloudpickle(py)?
        .call_method1("loads", (PyBytes::new(py, payload),))?
        .extract()
}
