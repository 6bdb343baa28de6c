//! Throughput of the core's record pipeline with native callbacks, so that
//! the cost of the engine itself (not of Python) is visible.

#![allow(clippy::unwrap_used)] // a benchmark or test: a failure should stop it

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gears_core::pending::{Answer, Later};
use gears_core::pipeline::Pipeline;
use gears_core::plan::{Callable, Plan, Step, StepKind, StepResult};
use gears_core::Record;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

struct Sum;
impl Callable for Sum {
    fn map(&self, r: Record, _: &Later) -> StepResult<Answer<Record>> {
        Ok(Answer::Now(match r {
            Record::Str(s) => Record::Long(s.len() as i64),
            r => r,
        }))
    }
    fn filter(&self, r: &Record, _: &Later) -> StepResult<Answer<bool>> {
        Ok(Answer::Now(matches!(r, Record::Long(i) if i % 2 == 0)))
    }
    fn extract_key(&self, r: &Record) -> StepResult<String> {
        Ok(match r {
            Record::Long(i) => (i % 16).to_string(),
            _ => String::new(),
        })
    }
    fn accumulate(&self, acc: Option<Record>, r: Record, _: &Later) -> StepResult<Answer<Record>> {
        Ok(Answer::Now(match (acc, r) {
            (Some(Record::Long(a)), Record::Long(b)) => Record::Long(a + b),
            (_, r) => r,
        }))
    }
    fn accumulate_by_key(
        &self,
        _: &str,
        acc: Option<Record>,
        r: Record,
        l: &Later,
    ) -> StepResult<Answer<Record>> {
        self.accumulate(acc, r, l)
    }
}

/// A map whose every record waits: it answers through the resolver at
/// once, as a coroutine that finished on the loop would.
struct AnswersLater;
impl Callable for AnswersLater {
    fn map(&self, r: Record, later: &Later) -> StepResult<Answer<Record>> {
        match later.defer() {
            Some(resolver) => {
                resolver.resolve(Ok(r));
                Ok(Answer::Later)
            }
            None => Ok(Answer::Now(r)),
        }
    }
}

fn plan(steps: Vec<Step>) -> Plan {
    Plan {
        reader: "bench".into(),
        steps,
        desc: None,
    }
}

fn input(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record::Str(vec![b'x'; i % 32])).collect()
}

fn bench(c: &mut Criterion) {
    let cb: Arc<dyn Callable> = Arc::new(Sum);
    let s = |k: StepKind| Step::new(k, k.name(), Some(cb.clone()));
    let n = 100_000;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(n as u64));
    let sum = plan(vec![
        s(StepKind::Map),
        s(StepKind::Filter),
        s(StepKind::Accumulate),
    ]);
    g.bench_function("map_filter_accumulate", |b| {
        b.iter(|| {
            let mut p = Pipeline::new(&sum, Arc::new(AtomicBool::new(false)));
            for chunk in input(n).chunks_mut(1000) {
                p.push_batch(chunk.iter_mut().map(|r| std::mem::replace(r, Record::Null)));
            }
            p.finish();
            black_box(p.results.len())
        })
    });
    let by_key = plan(vec![
        s(StepKind::Map),
        s(StepKind::ExtractKey),
        s(StepKind::AccumulateByKey),
    ]);
    g.bench_function("map_groupby", |b| {
        b.iter(|| {
            let mut p = Pipeline::new(&by_key, Arc::new(AtomicBool::new(false)));
            p.push_batch(input(n));
            p.finish();
            black_box(p.results.len())
        })
    });
    // The path of records that wait: queued in input order, answered
    // through the inbox, absorbed and passed on.
    let waits = plan(vec![
        Step::new(StepKind::Map, "later", Some(Arc::new(AnswersLater))),
        s(StepKind::Map),
        s(StepKind::Accumulate),
    ]);
    g.bench_function("map_answered_later", |b| {
        b.iter(|| {
            let mut p = Pipeline::new(&waits, Arc::new(AtomicBool::new(false)));
            p.allow_waiting(true);
            for chunk in input(n).chunks_mut(1000) {
                p.push_batch(chunk.iter_mut().map(|r| std::mem::replace(r, Record::Null)));
                p.absorb();
            }
            while !p.finish() {}
            black_box(p.results.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
