//! The engine's cost per event, without Python or Redis: what a sync
//! trigger pays for its execution's bookkeeping (id, registry, per
//! registration history and statistics, eviction) around a runner that does
//! nothing.

#![allow(clippy::unwrap_used)] // a benchmark or test: a failure should stop it

use criterion::{criterion_group, criterion_main, Criterion};
use gears_core::execution::{Execution, Executions};
use gears_core::plan::Plan;
use gears_core::prefix::PrefixIndex;
use gears_core::reader::VecReader;
use gears_core::registration::{Mode, ReaderArgs, Registration};
use gears_core::{Caller, CommandCtx, Engine, Identity, PlanRunner, Reader, Record};
use std::sync::Arc;

struct Nothing;

impl PlanRunner for Nothing {
    fn run(
        &self,
        exec: &Arc<Execution>,
        _plan: &Plan,
        mut reader: Box<dyn Reader>,
        _command: Option<Arc<CommandCtx>>,
        _may_wait: bool,
    ) {
        exec.start();
        let _ = reader.next_batch();
        exec.finish(Vec::new(), Vec::new(), 0, 0);
    }
}

fn sync_event(c: &mut Criterion) {
    let engine = Arc::new(Engine::new(1, 1000, 100, Arc::new(Nothing), |_| {}).unwrap());
    let plan = Plan {
        reader: "KeysReader".into(),
        steps: Vec::new(),
        desc: None,
    };
    let args = ReaderArgs::Trigger {
        name: "t".into(),
        inorder: false,
    };
    let reg = Arc::new(Registration::new(
        "r".into(),
        None,
        Mode::Sync,
        args,
        plan,
        "s".into(),
    ));
    c.bench_function("dispatch/sync_event", |b| {
        b.iter(|| {
            let reader = Box::new(VecReader(Some(vec![Record::Long(1)])));
            engine
                .fire(&reg, Caller::Event, Identity::default(), reader, None)
                .unwrap()
        })
    });
}

/// Adding an execution to the registry (`MaxExecutions` 1000) with no
/// backlog, and behind 100,000 executions that have not finished (a burst
/// on an `async` registration): the cost must not grow with the backlog.
fn registry_add(c: &mut Criterion) {
    let plan = Plan {
        reader: "KeysReader".into(),
        steps: Vec::new(),
        desc: None,
    };
    for backlog in [0usize, 100_000] {
        let registry = Executions::new(1000);
        for i in 0..backlog {
            registry.add(Arc::new(Execution::new(
                format!("pending-{i}"),
                &plan,
                true,
            )));
        }
        let mut n = 0u64;
        c.bench_function(&format!("dispatch/registry_add/backlog_{backlog}"), |b| {
            b.iter(|| {
                n += 1;
                let e = Arc::new(Execution::new(format!("e-{n}"), &plan, true));
                registry.add(e.clone());
                e.finish(Vec::new(), Vec::new(), 0, 0);
            })
        });
    }
}

/// Finding the registrations of a keyspace event's key among 1 and 1,000
/// registrations on other prefixes (literal keys, `prefix*`, prefixes with
/// a `*` inside): the lookup must not grow with their number.
fn prefix_lookup(c: &mut Criterion) {
    for others in [0usize, 1000] {
        let mut index = PrefixIndex::new();
        for i in 0..others {
            let prefix = match i % 3 {
                0 => format!("other:{i}"),
                1 => format!("other:{i}:*"),
                _ => format!("o*{i}:*"),
            };
            index.insert(prefix.as_bytes(), i);
        }
        index.insert(b"a:*", others);
        c.bench_function(
            &format!("dispatch/prefix_lookup/{}_registrations", others + 1),
            |b| b.iter(|| index.matches(b"a:12345")),
        );
    }
}

criterion_group!(benches, sync_event, registry_add, prefix_lookup);
criterion_main!(benches);
