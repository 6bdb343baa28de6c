//! Pushing records through the steps of a plan.
//!
//! The pipeline is push-based and depth-first: each record of a batch travels
//! through every step before the next record starts, so that the first error
//! that reaches the end stops the input exactly as 1.2's pull model does.
//! Stateful steps (accumulate, group-by) keep their state until [`Pipeline::finish`].

use crate::plan::{Callable, Plan, StepKind};
use crate::Record;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Records grouped by key, in first-seen order.
#[derive(Default)]
struct Groups {
    index: HashMap<String, usize>,
    entries: Vec<(String, Vec<Record>)>,
}

/// Accumulators by key, in first-seen order.
#[derive(Default)]
struct KeyedAccs {
    index: HashMap<String, usize>,
    entries: Vec<(String, Option<Record>)>,
}

enum State {
    None,
    Limit { seen: usize },
    Accumulate(Option<Record>),
    ByKey(KeyedAccs),
    Group(Groups),
}

struct StepRun {
    kind: StepKind,
    callback: Option<Arc<dyn Callable>>,
    state: State,
}

pub struct Pipeline {
    steps: Vec<StepRun>,
    pub results: Vec<Record>,
    pub errors: Vec<String>,
    input_closed: bool,
    abort: Arc<AtomicBool>,
}

impl Pipeline {
    pub fn new(plan: &Plan, abort: Arc<AtomicBool>) -> Pipeline {
        let steps = plan
            .steps
            .iter()
            .map(|s| StepRun {
                kind: s.kind,
                callback: s.callback.clone(),
                state: match s.kind {
                    StepKind::Limit { .. } => State::Limit { seen: 0 },
                    StepKind::Accumulate => State::Accumulate(None),
                    StepKind::AccumulateByKey => State::ByKey(KeyedAccs::default()),
                    StepKind::Group => State::Group(Groups::default()),
                    _ => State::None,
                },
            })
            .collect();
        Pipeline {
            steps,
            results: Vec::new(),
            errors: Vec::new(),
            input_closed: false,
            abort,
        }
    }

    /// True once no more input is wanted: an error reached the end, a limit
    /// is satisfied, or the execution was aborted.
    pub fn input_closed(&self) -> bool {
        self.input_closed || self.abort.load(Ordering::Relaxed)
    }

    /// Pushes a batch from the reader. Stops early when the input closes.
    pub fn push_batch(&mut self, batch: impl IntoIterator<Item = Record>) {
        for r in batch {
            if self.input_closed() {
                return;
            }
            self.push(0, r);
        }
    }

    /// Ends the input: stateful steps emit what they hold, in step order.
    pub fn finish(&mut self) {
        for i in 0..self.steps.len() {
            let state = std::mem::replace(&mut self.steps[i].state, State::None);
            match state {
                State::Accumulate(Some(acc)) => self.push(i + 1, acc),
                State::ByKey(accs) => {
                    for (k, acc) in accs.entries {
                        let v = acc.unwrap_or(Record::Null);
                        self.push(i + 1, Record::Keyed(k, Box::new(v)));
                    }
                }
                State::Group(groups) => {
                    for (k, list) in groups.entries {
                        self.push(i + 1, Record::Keyed(k, Box::new(Record::List(list))));
                    }
                }
                _ => {}
            }
        }
    }

    fn sink(&mut self, r: Record) {
        match r {
            Record::Error(e) => {
                self.errors.push(e);
                self.input_closed = true;
            }
            r => self.results.push(r),
        }
    }

    /// Runs `r` through the steps starting at `from`.
    fn push(&mut self, from: usize, mut r: Record) {
        let mut i = from;
        while i < self.steps.len() {
            if r.is_error() {
                break;
            }
            let step = &mut self.steps[i];
            let cb = step.callback.as_deref();
            match step.kind {
                StepKind::Map => r = need(cb).map(r).unwrap_or_else(Record::Error),
                StepKind::Filter => match need(cb).filter(&r) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => r = Record::Error(e),
                },
                StepKind::Foreach => {
                    if let Err(e) = need(cb).foreach(&r) {
                        r = Record::Error(e);
                    }
                }
                StepKind::FlatMap => {
                    if let Record::List(items) = r {
                        for item in items.into_iter().rev() {
                            if self.abort.load(Ordering::Relaxed) {
                                return;
                            }
                            self.push(i + 1, item);
                        }
                        return;
                    }
                }
                StepKind::ExtractKey => match need(cb).extract_key(&r) {
                    Ok(k) => r = Record::Keyed(k, Box::new(r)),
                    Err(e) => r = Record::Error(e),
                },
                StepKind::Repartition | StepKind::Collect => {}
                StepKind::Group => {
                    let State::Group(groups) = &mut step.state else {
                        unreachable!("group step without group state")
                    };
                    match r {
                        Record::Keyed(k, v) => {
                            let at = *groups.index.entry(k.clone()).or_insert_with(|| {
                                groups.entries.push((k, Vec::new()));
                                groups.entries.len() - 1
                            });
                            groups.entries[at].1.push(*v);
                            return;
                        }
                        _ => r = Record::Error("group step expects a keyed record".into()),
                    }
                }
                StepKind::Reduce => match r {
                    Record::Keyed(k, v) => {
                        let list = match *v {
                            Record::List(l) => l,
                            other => vec![other],
                        };
                        r = match need(cb).reduce(&k, list) {
                            Ok(v) => Record::Keyed(k, Box::new(v)),
                            Err(e) => Record::Error(e),
                        };
                    }
                    _ => r = Record::Error("reduce step expects a keyed record".into()),
                },
                StepKind::Limit { offset, len } => {
                    let State::Limit { seen } = &mut step.state else {
                        unreachable!("limit step without limit state")
                    };
                    let at = *seen;
                    *seen += 1;
                    if at < offset {
                        return;
                    }
                    if at + 1 >= offset.saturating_add(len) {
                        self.input_closed = true;
                        if at >= offset.saturating_add(len) {
                            return;
                        }
                    }
                }
                StepKind::Accumulate => {
                    let State::Accumulate(acc) = &mut step.state else {
                        unreachable!("accumulate step without its state")
                    };
                    match need(cb).accumulate(acc.take(), r) {
                        Ok(v) => {
                            *acc = Some(v);
                            return;
                        }
                        Err(e) => r = Record::Error(e),
                    }
                }
                StepKind::AccumulateByKey => {
                    let State::ByKey(accs) = &mut step.state else {
                        unreachable!("accumulatebykey step without its state")
                    };
                    match r {
                        Record::Keyed(k, v) => {
                            let at = match accs.index.get(&k) {
                                Some(at) => *at,
                                None => {
                                    accs.index.insert(k.clone(), accs.entries.len());
                                    accs.entries.push((k, None));
                                    accs.entries.len() - 1
                                }
                            };
                            let (key, slot) = &mut accs.entries[at];
                            match need(cb).accumulate_by_key(key, slot.take(), *v) {
                                Ok(acc) => {
                                    *slot = Some(acc);
                                    return;
                                }
                                Err(e) => r = Record::Error(e),
                            }
                        }
                        _ => {
                            r = Record::Error("accumulatebykey step expects a keyed record".into())
                        }
                    }
                }
            }
            i += 1;
        }
        self.sink(r);
    }
}

fn need(cb: Option<&dyn Callable>) -> &dyn Callable {
    // Plans are validated before they run; a missing callback is a bug.
    cb.expect("validated plan step without callback")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, Step, StepResult};

    /// A callback over native records, for tests without a host language.
    struct F(fn(Record) -> StepResult<Record>);
    impl Callable for F {
        fn map(&self, r: Record) -> StepResult<Record> {
            (self.0)(r)
        }
        fn filter(&self, r: &Record) -> StepResult<bool> {
            match r {
                Record::Long(i) => Ok(i % 2 == 0),
                _ => Err("not a number".into()),
            }
        }
        fn extract_key(&self, r: &Record) -> StepResult<String> {
            match r {
                Record::Long(i) => Ok((i % 3).to_string()),
                _ => Err("no key".into()),
            }
        }
        fn accumulate(&self, acc: Option<Record>, r: Record) -> StepResult<Record> {
            match (acc, r) {
                (None, Record::Long(i)) => Ok(Record::Long(i)),
                (Some(Record::Long(a)), Record::Long(i)) => Ok(Record::Long(a + i)),
                _ => Err("bad accumulate".into()),
            }
        }
        fn accumulate_by_key(
            &self,
            _k: &str,
            acc: Option<Record>,
            r: Record,
        ) -> StepResult<Record> {
            self.accumulate(acc, r)
        }
        fn reduce(&self, _k: &str, records: Vec<Record>) -> StepResult<Record> {
            Ok(Record::Long(records.len() as i64))
        }
    }

    fn step(kind: StepKind, f: fn(Record) -> StepResult<Record>) -> Step {
        Step::new(kind, kind.name(), Some(Arc::new(F(f))))
    }
    fn ident(r: Record) -> StepResult<Record> {
        Ok(r)
    }
    fn longs(rs: &[Record]) -> Vec<i64> {
        rs.iter()
            .map(|r| match r {
                Record::Long(i) => *i,
                Record::Keyed(_, v) => match **v {
                    Record::Long(i) => i,
                    _ => panic!("not a long: {r:?}"),
                },
                _ => panic!("not a long: {r:?}"),
            })
            .collect()
    }

    fn run(steps: Vec<Step>, input: Vec<Record>) -> Pipeline {
        let plan = Plan {
            reader: "test".into(),
            steps,
            desc: None,
        };
        plan.validate().unwrap();
        let mut p = Pipeline::new(&plan, Arc::new(AtomicBool::new(false)));
        p.push_batch(input);
        p.finish();
        p
    }

    fn nums(n: i64) -> Vec<Record> {
        (0..n).map(Record::Long).collect()
    }

    #[test]
    fn map_filter_accumulate() {
        let p = run(
            vec![
                step(StepKind::Map, |r| match r {
                    Record::Long(i) => Ok(Record::Long(i * 10)),
                    _ => Err("x".into()),
                }),
                step(StepKind::Filter, ident),
                step(StepKind::Accumulate, ident),
            ],
            nums(5),
        );
        assert_eq!(longs(&p.results), vec![20 + 40 + 10 + 30]);
        assert!(p.errors.is_empty());
    }

    #[test]
    fn accumulate_on_empty_input_emits_nothing() {
        let p = run(vec![step(StepKind::Accumulate, ident)], vec![]);
        assert!(p.results.is_empty());
    }

    #[test]
    fn flatmap_expands_lists_from_the_end() {
        let p = run(
            vec![
                step(StepKind::Map, |_| {
                    Ok(Record::List(vec![
                        Record::Long(1),
                        Record::Long(2),
                        Record::Long(3),
                    ]))
                }),
                Step::plain(StepKind::FlatMap),
            ],
            nums(1),
        );
        assert_eq!(longs(&p.results), vec![3, 2, 1]);
    }

    #[test]
    fn flatmap_then_limit_matches_the_reference_order() {
        // lpush l 1 2 3 4 5 stores [5,4,3,2,1]; flatmap pops from the end,
        // so limit(1, 3) sees 1,2,3,4,5 and keeps the second element.
        let p = run(
            vec![
                step(StepKind::Map, |_| {
                    Ok(Record::List((1..=5).rev().map(Record::Long).collect()))
                }),
                Step::plain(StepKind::FlatMap),
                Step::plain(StepKind::Limit { offset: 1, len: 3 }),
            ],
            nums(1),
        );
        assert_eq!(longs(&p.results), vec![2, 3, 4]);
    }

    #[test]
    fn limit_closes_the_input() {
        let plan = Plan {
            reader: "t".into(),
            steps: vec![Step::plain(StepKind::Limit { offset: 2, len: 2 })],
            desc: None,
        };
        let mut p = Pipeline::new(&plan, Arc::new(AtomicBool::new(false)));
        p.push_batch(nums(3));
        assert!(!p.input_closed());
        p.push_batch(nums(1));
        assert!(p.input_closed());
        assert_eq!(longs(&p.results), vec![2, 0]);
    }

    #[test]
    fn first_error_stops_the_input_and_keeps_the_accumulator() {
        let p = run(
            vec![
                step(StepKind::Map, |r| match r {
                    Record::Long(3) => Err("boom".into()),
                    r => Ok(r),
                }),
                step(StepKind::Accumulate, ident),
            ],
            nums(10),
        );
        assert_eq!(p.errors, vec!["boom".to_string()]);
        // 0+1+2 were accumulated before the error closed the input.
        assert_eq!(longs(&p.results), vec![3]);
    }

    #[test]
    fn group_by_key_in_first_seen_order() {
        let p = run(
            vec![
                step(StepKind::ExtractKey, ident),
                step(StepKind::AccumulateByKey, ident),
            ],
            nums(7),
        );
        let keys: Vec<_> = p
            .results
            .iter()
            .map(|r| match r {
                Record::Keyed(k, _) => k.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(keys, vec!["0", "1", "2"]);
        assert_eq!(longs(&p.results), vec![3 + 6, 1 + 4, 2 + 5]);
    }

    #[test]
    fn batch_group_and_reduce() {
        let p = run(
            vec![
                step(StepKind::ExtractKey, ident),
                Step::plain(StepKind::Repartition),
                Step::plain(StepKind::Group),
                step(StepKind::Reduce, ident),
            ],
            nums(7),
        );
        assert_eq!(longs(&p.results), vec![3, 2, 2]);
    }

    #[test]
    fn abort_flag_stops_the_input() {
        let plan = Plan {
            reader: "t".into(),
            steps: vec![],
            desc: None,
        };
        let flag = Arc::new(AtomicBool::new(false));
        let mut p = Pipeline::new(&plan, flag.clone());
        p.push_batch(nums(2));
        flag.store(true, Ordering::Relaxed);
        p.push_batch(nums(2));
        assert_eq!(p.results.len(), 2);
        assert!(p.input_closed());
    }

    #[test]
    fn missing_callback_is_refused_by_validate() {
        let plan = Plan {
            reader: "t".into(),
            steps: vec![Step::new(StepKind::Map, "map", None)],
            desc: None,
        };
        assert_eq!(
            plan.validate().unwrap_err(),
            "map step is missing its callback"
        );
    }
}
