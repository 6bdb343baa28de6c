//! What every event of a KeysReader registration pays on the Python side:
//! building the record's dict, rendering it for convertToStr (eagerly, or
//! the check that lets it be rendered only when read), and turning a
//! Python result into a reply.

#![allow(clippy::unwrap_used)] // a benchmark or test: a failure should stop it

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gears_core::record::{KeyEntry, KeyValue};
use gears_core::Record;
use gears_python::convert::{py_to_reply, record_to_py, LazyStr};
use pyo3::prelude::*;
use pyo3::types::PyList;

fn key_record() -> Record {
    Record::Key(Box::new(KeyEntry {
        key: b"user:1000".to_vec(),
        value: Some(KeyValue::String(b"some value".to_vec())),
        event: Some("set".into()),
    }))
}

fn records(c: &mut Criterion) {
    pyo3::prepare_freethreaded_python();
    Python::with_gil(|py| {
        c.bench_function("records/key_record_to_py", |b| {
            b.iter(|| black_box(record_to_py(py, key_record()).unwrap()))
        });
        c.bench_function("records/str_of_key_record_eager", |b| {
            b.iter(|| {
                let d = record_to_py(py, key_record()).unwrap();
                black_box(d.str().unwrap())
            })
        });
        c.bench_function("records/str_of_key_record_lazy", |b| {
            b.iter(|| {
                let d = record_to_py(py, key_record()).unwrap();
                black_box(LazyStr::of(d).is_ok())
            })
        });
        let list = PyList::new(py, (0..100).map(|i| i.to_string())).unwrap();
        c.bench_function("records/py_to_reply_list_100", |b| {
            b.iter(|| black_box(py_to_reply(list.as_any()).unwrap()))
        });
    });
}

criterion_group!(benches, records);
criterion_main!(benches);
