//! Conversions between native records, Python objects and replies.

use crate::errors::{GearsError, FOREIGN_RECORD};
use gears_core::error::{Error, Form};
use gears_core::record::{too_deep, KeyEntry, KeyValue, MAX_REPLY_DEPTH};
use gears_core::{HostObject, HostValue, Record, Reply};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use pyo3::{intern, IntoPyObjectExt};
use std::any::Any;

/// A Python object travelling through a pipeline.
#[derive(Debug)]
pub struct PyValue(pub Py<PyAny>);

impl HostValue for PyValue {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn to_reply(&self) -> Reply {
        self.try_reply()
            .unwrap_or_else(|e| Reply::Error(e.to_string()))
    }

    fn try_reply(&self) -> Result<Reply, Error> {
        Python::with_gil(|py| py_to_reply(self.0.bind(py)))
    }

    fn encode(&self) -> Result<Vec<u8>, Error> {
        Python::with_gil(|py| pickle(self.0.bind(py)))
    }
}

/// The bytes another shard turns back into `obj` (cloudpickle).
fn pickle(obj: &Bound<'_, PyAny>) -> Result<Vec<u8>, Error> {
    let py = obj.py();
    py.import("cloudpickle")
        .and_then(|cp| cp.call_method1("dumps", (obj,)))
        .and_then(|b| Ok(b.downcast::<PyBytes>()?.as_bytes().to_vec()))
        .map_err(|e| Error::Host(crate::traceback::error_text(py, &e)))
}

/// Records as they travel between shards ([`Record::encode`], Python
/// objects pickled).
pub fn encode_records(records: &[Record]) -> Result<Vec<u8>, Error> {
    let mut out = (records.len() as u64).to_le_bytes().to_vec();
    for r in records {
        r.encode(&mut out)?;
    }
    Ok(out)
}

/// What [`encode_records`] wrote.
pub fn decode_records(bytes: &[u8]) -> Result<Vec<Record>, Error> {
    let mut r = gears_core::codec::Decoder(bytes);
    let n = r.u64().ok_or(Error::Truncated(Form::RecordList))?;
    let mut bytes = r.rest();
    let unpickle = |b: &[u8]| -> Result<HostObject, Error> {
        Python::with_gil(|py| {
            py.import("cloudpickle")
                .and_then(|cp| cp.call_method1("loads", (PyBytes::new(py, b),)))
                .map(|o| Box::new(PyValue(o.unbind())) as HostObject)
                .map_err(|e| Error::Host(crate::traceback::error_text(py, &e)))
        })
    };
    let mut out = Vec::with_capacity((n as usize).min(1 << 16));
    for _ in 0..n {
        out.push(Record::decode(&mut bytes, &unpickle)?);
    }
    Ok(out)
}

pub fn host(obj: Bound<'_, PyAny>) -> Record {
    Record::Host(Box::new(PyValue(obj.unbind())))
}

/// Text as `str` when it is UTF-8, as `bytearray` otherwise.
pub fn bytes_to_py<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyAny> {
    match std::str::from_utf8(b) {
        Ok(s) => PyString::new(py, s).into_any(),
        Err(_) => PyByteArray::new(py, b).into_any(),
    }
}

fn key_entry_to_py<'py>(py: Python<'py>, e: KeyEntry) -> PyResult<Bound<'py, PyAny>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "key"), bytes_to_py(py, &e.key))?;
    if let Some(value) = e.value {
        let ty = value.type_name();
        let v: Bound<'py, PyAny> = match value {
            KeyValue::String(s) => bytes_to_py(py, &s),
            KeyValue::List(l) => PyList::new(py, l.iter().map(|x| bytes_to_py(py, x)))?.into_any(),
            KeyValue::Hash(h) => {
                let hd = PyDict::new(py);
                for (f, v) in h {
                    hd.set_item(bytes_to_py(py, &f), bytes_to_py(py, &v))?;
                }
                hd.into_any()
            }
            KeyValue::Other(_) | KeyValue::Missing => py.None().into_bound(py),
        };
        d.set_item(intern!(py, "value"), v)?;
        d.set_item(intern!(py, "type"), ty)?;
    }
    match e.event {
        Some(ev) => d.set_item(intern!(py, "event"), ev)?,
        None => d.set_item(intern!(py, "event"), py.None())?,
    }
    Ok(d.into_any())
}

/// Turns a record into the Python object a user callback receives.
pub fn record_to_py(py: Python<'_>, r: Record) -> PyResult<Bound<'_, PyAny>> {
    Ok(match r {
        Record::Null => py.None().into_bound(py),
        Record::Str(s) => bytes_to_py(py, &s),
        Record::Long(i) => i.into_bound_py_any(py)?,
        // 1.2 hands doubles to Python as integers (truncated).
        Record::Double(d) => (d as i64).into_bound_py_any(py)?,
        Record::List(l) => {
            let out = PyList::empty(py);
            for x in l {
                out.append(record_to_py(py, x)?)?;
            }
            out.into_any()
        }
        Record::Keyed(k, v) => {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "key"), k)?;
            d.set_item(intern!(py, "value"), record_to_py(py, *v)?)?;
            d.into_any()
        }
        Record::Key(e) => key_entry_to_py(py, *e)?,
        Record::Dict(fields) => {
            let d = PyDict::new(py);
            for (k, v) in fields {
                d.set_item(bytes_to_py(py, &k), record_to_py(py, v)?)?;
            }
            d.into_any()
        }
        Record::Error(e) => return Err(GearsError::new_err(e)),
        Record::Host(h) => host_to_py(py, &h)?,
    })
}

/// The Python object inside a host record.
pub fn host_to_py<'py>(py: Python<'py>, h: &HostObject) -> PyResult<Bound<'py, PyAny>> {
    let any = h.as_any();
    if let Some(v) = any.downcast_ref::<PyValue>() {
        return Ok(v.0.clone_ref(py).into_bound(py));
    }
    match any.downcast_ref::<LazyStr>() {
        Some(v) => Ok(v.0.bind(py).str()?.into_any()),
        None => Err(GearsError::new_err(FOREIGN_RECORD)),
    }
}

/// `str(obj)` not computed yet: the result of convertToStr for an object
/// that nothing else references and that is made only of builtin values, so
/// that rendering it later gives exactly what rendering it now would (see
/// [`crate::callbacks::ToStr`]).
#[derive(Debug)]
pub struct LazyStr(Py<PyAny>);

impl LazyStr {
    /// `Some` when `obj` can be rendered later with the same result.
    pub fn of(obj: Bound<'_, PyAny>) -> Result<LazyStr, Bound<'_, PyAny>> {
        let mut budget = LAZY_STR_BUDGET;
        // SAFETY: the GIL is held (`obj` is bound to it); `obj` is a live
        // object this function owns one reference to.
        let unshared = unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) } == 1;
        // SAFETY: as above; `frozen` only reads the object graph.
        if unshared && unsafe { frozen(obj.as_ptr(), &mut budget, 0) } {
            Ok(LazyStr(obj.unbind()))
        } else {
            Err(obj)
        }
    }
}

impl HostValue for LazyStr {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn encode(&self) -> Result<Vec<u8>, Error> {
        Python::with_gil(|py| {
            let text = self
                .0
                .bind(py)
                .str()
                .map_err(|e| Error::Host(e.to_string()))?;
            pickle(text.as_any())
        })
    }

    fn to_reply(&self) -> Reply {
        Python::with_gil(|py| match self.0.bind(py).str() {
            Ok(s) => py_scalar_reply(s.as_any()),
            Err(e) => Reply::Error(e.to_string()),
        })
    }
}

/// How many objects [`frozen`] looks at before it gives up (and the caller
/// renders at once): checking must stay much cheaper than rendering.
const LAZY_STR_BUDGET: usize = 64;
const LAZY_STR_DEPTH: usize = 4;

/// True when `obj` is an immutable builtin scalar, or a builtin container
/// referenced only by its parent, all the way down: no code can change it
/// any more, and its `repr` runs no user code.
///
/// # Safety
/// The GIL is held and `obj` is a live object.
unsafe fn frozen(obj: *mut pyo3::ffi::PyObject, budget: &mut usize, depth: usize) -> bool {
    use pyo3::ffi;
    if *budget == 0 || depth > LAZY_STR_DEPTH {
        return false;
    }
    *budget -= 1;
    if ffi::PyUnicode_CheckExact(obj) != 0
        || ffi::PyLong_CheckExact(obj) != 0
        || ffi::PyFloat_CheckExact(obj) != 0
        || ffi::PyBool_Check(obj) != 0
        || ffi::PyBytes_CheckExact(obj) != 0
        || obj == ffi::Py_None()
    {
        return true;
    }
    // Containers below the top (which the caller checked) are owned by
    // their parent alone: a tuple too, or a list in a shared tuple could be
    // reached from elsewhere.
    if depth > 0 && ffi::Py_REFCNT(obj) != 1 {
        return false;
    }
    if ffi::PyByteArray_CheckExact(obj) != 0 {
        return true;
    }
    if ffi::PyTuple_CheckExact(obj) != 0 {
        let n = ffi::PyTuple_GET_SIZE(obj);
        return (0..n).all(|i| frozen(ffi::PyTuple_GET_ITEM(obj, i), budget, depth + 1));
    }
    if ffi::PyList_CheckExact(obj) != 0 {
        let n = ffi::PyList_GET_SIZE(obj);
        return (0..n).all(|i| frozen(ffi::PyList_GET_ITEM(obj, i), budget, depth + 1));
    }
    if ffi::PyDict_CheckExact(obj) != 0 {
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key = std::ptr::null_mut();
        let mut value = std::ptr::null_mut();
        while ffi::PyDict_Next(obj, &mut pos, &mut key, &mut value) != 0 {
            if !frozen(key, budget, depth + 1) || !frozen(value, budget, depth + 1) {
                return false;
            }
        }
        return true;
    }
    false
}

/// The reply a Python result gets (1.2's conversion table), or an error
/// for data nested deeper than [`MAX_REPLY_DEPTH`] (a list containing
/// itself included).
pub fn py_to_reply(obj: &Bound<'_, PyAny>) -> Result<Reply, Error> {
    py_reply_at(obj, 0)
}

fn py_reply_at(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Reply, Error> {
    if depth > MAX_REPLY_DEPTH {
        return Err(Error::ReplyTooDeep {
            limit: MAX_REPLY_DEPTH,
        });
    }
    if let Ok(l) = obj.downcast::<PyList>() {
        let items = l.iter().map(|x| py_reply_at(&x, depth + 1));
        return items.collect::<Result<_, _>>().map(Reply::Array);
    }
    Ok(py_scalar_reply(obj))
}

fn py_scalar_reply(obj: &Bound<'_, PyAny>) -> Reply {
    if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i64>() {
            Ok(i) => Reply::Int(i),
            Err(_) => Reply::bulk(obj.to_string()),
        };
    }
    if let Ok(f) = obj.downcast::<PyFloat>() {
        return Reply::from_float(f.value());
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Reply::Bulk(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return match s.to_str() {
            Ok(s) => Reply::from_result_text(s),
            Err(_) => Reply::bulk(s.to_string_lossy().as_bytes()),
        };
    }
    Reply::bulk("PY RECORD")
}

/// The Python value of a command reply (for `execute`).
pub fn reply_to_py(py: Python<'_>, r: Reply) -> PyResult<Bound<'_, PyAny>> {
    reply_to_py_at(py, r, 0)
}

fn reply_to_py_at(py: Python<'_>, r: Reply, depth: usize) -> PyResult<Bound<'_, PyAny>> {
    if depth > MAX_REPLY_DEPTH {
        return Err(GearsError::new_err(too_deep()));
    }
    Ok(match r {
        Reply::Null => py.None().into_bound(py),
        Reply::Int(i) => i.into_bound_py_any(py)?,
        Reply::Bulk(b) => bytes_to_py(py, &b),
        Reply::Status(s) | Reply::Error(s) => PyString::new(py, &s).into_any(),
        Reply::Array(items) => {
            let out = PyList::empty(py);
            for x in items {
                out.append(reply_to_py_at(py, x, depth + 1)?)?;
            }
            out.into_any()
        }
    })
}
