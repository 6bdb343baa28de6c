//! The coroutine API Python calls: `gearsFuture()`, `createFuture`,
//! `setFutureResults` / `setFutureException`, `runCoroutine`,
//! `isAsyncAllow`, and the loop thread's gate. The machinery behind them is
//! in the parent module.

use super::*;

/// The loop thread enters the gate to run its callbacks (see
/// `runtime::Gate`).
#[pyfunction]
pub(super) fn gate_enter(py: Python<'_>) {
    the_loop().gate.enter_from_python(py);
}

/// The loop thread leaves the gate to wait for I/O.
#[pyfunction]
pub(super) fn gate_leave() {
    the_loop().gate.leave();
}

/// `gearsFuture()`.
#[pyfunction]
#[pyo3(name = "gearsFuture")]
pub(super) fn gears_future(py: Python<'_>) -> PyResult<Py<GearsFuture>> {
    FRAME.with(|fr| {
        let mut fr = fr.borrow_mut();
        let Some(frame) = fr.as_mut() else {
            return Err(GearsError::new_err(e::FUTURE_OUTSIDE_STEP));
        };
        if !frame.supports_async {
            return Err(GearsError::new_err(e::STEP_NO_ASYNC));
        }
        if !frame.may_wait {
            return Err(GearsError::new_err(e::ASYNC_NOT_ALLOWED));
        }
        if frame.created.is_some() {
            return Err(GearsError::new_err(e::FUTURE_TWICE_IN_STEP));
        }
        let fut = Py::new(
            py,
            GearsFuture {
                state: Mutex::new(FutureState::Created(std::thread::current().id())),
            },
        )?;
        frame.created = Some(fut.clone_ref(py));
        Ok(fut)
    })
}

/// Who the code running here acts as, for a thread it starts (see
/// the prelude's `threading.Thread` patch).
#[pyfunction]
pub(super) fn current_acting(py: Python<'_>) -> PyResult<Py<StepActing>> {
    acting_here(py)
}

/// `isAsyncAllow()`: whether the execution running here may wait (not
/// inside MULTI or Lua).
#[pyfunction]
#[pyo3(name = "isAsyncAllow")]
pub(super) fn is_async_allow() -> bool {
    acting::may_wait()
}

/// `createFuture()`: a future of the gears loop, for a coroutine to await.
#[pyfunction]
#[pyo3(name = "createFuture")]
pub(crate) fn create_future(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    the_loop().event_loop.bind(py).call_method0("create_future")
}

/// Refuses what is neither an asyncio future nor a gearsFuture.
pub(super) fn check_future(f: &Bound<'_, PyAny>) -> PyResult<()> {
    let asyncio_future = f.hasattr("set_result")? && f.hasattr("set_exception")?;
    if !asyncio_future && !f.is_instance_of::<GearsFuture>() {
        return Err(GearsError::new_err(e::NOT_A_FUTURE));
    }
    Ok(())
}

/// Resolves `f` (a future of the gears loop, or a gearsFuture) on the loop
/// thread.
pub(crate) fn settle_future(
    py: Python<'_>,
    f: &Bound<'_, PyAny>,
    ok: bool,
    value: Bound<'_, PyAny>,
) -> PyResult<()> {
    check_future(f)?;
    let lp = the_loop();
    let ok = pyo3::types::PyBool::new(py, ok).to_owned().into_any();
    lp.soon(py, &lp.settle_future, vec![f.clone(), ok, value])
}

/// `setFutureResults(f, res)`.
#[pyfunction]
#[pyo3(name = "setFutureResults")]
pub(super) fn set_future_results(f: &Bound<'_, PyAny>, res: Bound<'_, PyAny>) -> PyResult<()> {
    settle_future(f.py(), f, true, res)
}

/// `setFutureException(f, ex)`: a text becomes a GearsError.
#[pyfunction]
#[pyo3(name = "setFutureException")]
pub(super) fn set_future_exception(f: &Bound<'_, PyAny>, ex: Bound<'_, PyAny>) -> PyResult<()> {
    settle_future(f.py(), f, false, ex)
}

/// `runCoroutine(cr, f=None, delay=0)`: runs `cr` on the loop after `delay`
/// seconds, acting as the caller; resolves `f` with its outcome.
#[pyfunction]
#[pyo3(name = "runCoroutine", signature = (cr, f=None, delay=None))]
pub(super) fn run_coroutine(
    py: Python<'_>,
    cr: Bound<'_, PyAny>,
    f: Option<Bound<'_, PyAny>>,
    delay: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    if !is_coroutine(&cr) {
        return Err(GearsError::new_err(e::NOT_A_COROUTINE));
    }
    let delay: f64 = match delay {
        None => 0.0,
        Some(d) => d.extract().map_err(|_| GearsError::new_err(e::BAD_DELAY))?,
    };
    if !(0.0..1e9).contains(&delay) {
        return Err(GearsError::new_err(e::BAD_DELAY));
    }
    let acting = Bound::new(
        py,
        StepActing(Acting {
            may_wait: true,
            ..acting::current()
        }),
    )?;
    if let Some(f) = &f {
        check_future(f)?;
    }
    let f = f.unwrap_or_else(|| py.None().into_bound(py));
    let lp = the_loop();
    let delay = pyo3::types::PyFloat::new(py, delay).into_any();
    lp.soon(py, &lp.run_coroutine, vec![acting.into_any(), cr, f, delay])
}

pub(crate) fn install(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GearsFuture>()?;
    m.add_function(wrap_pyfunction!(gate_enter, m)?)?;
    m.add_function(wrap_pyfunction!(current_acting, m)?)?;
    m.add_function(wrap_pyfunction!(gate_leave, m)?)?;
    m.add_function(wrap_pyfunction!(gears_future, m)?)?;
    m.add_function(wrap_pyfunction!(is_async_allow, m)?)?;
    m.add_function(wrap_pyfunction!(create_future, m)?)?;
    m.add_function(wrap_pyfunction!(set_future_results, m)?)?;
    m.add_function(wrap_pyfunction!(set_future_exception, m)?)?;
    m.add_function(wrap_pyfunction!(run_coroutine, m)?)?;
    Ok(())
}
