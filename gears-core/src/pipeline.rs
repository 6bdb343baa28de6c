//! Pushing records through the steps of a plan.
//!
//! The pipeline is push-based and depth-first: each record of a batch travels
//! through every step before the next record starts, so that the first error
//! that reaches the end stops the input exactly as 1.2's pull model does.
//! Stateful steps (accumulate, group-by) keep their state until
//! [`Pipeline::finish`].
//!
//! A callback may answer later ([`crate::pending`]). Its record then waits
//! in its step, holding its place: map, filter and foreach keep a queue in
//! input order, and what follows a waiting record goes on only once it is
//! answered, so the steps after it see the input's order. An accumulator
//! waits for one record at a time; the records that come meanwhile queue up
//! behind it. Whoever drives the pipeline calls [`Pipeline::absorb`] to take
//! in the answers and [`Pipeline::finish`] until it says the run is over.

use crate::pending::{Answer, Inbox, Later, MAX_WAITING_PER_STEP};
use crate::plan::{Callable, Plan, StepKind, StepResult, Timed};
use crate::Record;
use std::collections::{HashMap, VecDeque};
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

/// A place in a step's queue.
enum Slot {
    /// Waiting for its answer; holds the record a filter or foreach passes
    /// on.
    Waiting(Option<Record>),
    /// Answered; `None` when a filter dropped it.
    Ready(Option<Record>),
}

struct StepRun {
    kind: StepKind,
    callback: Option<Arc<dyn Callable>>,
    state: State,
    /// Sequence number of the next call (a waiting record's ticket).
    calls: u64,
    /// Map, filter, foreach: records in input order, from the first that
    /// waits on.
    queue: VecDeque<(u64, Slot)>,
    /// Accumulators: the call they wait for and, by key, the entry it is for.
    acc_waits_for: Option<(u64, usize)>,
    /// Accumulators: the records that came while it waited.
    backlog: VecDeque<Record>,
    waiting: usize,
}

pub struct Pipeline {
    steps: Vec<StepRun>,
    pub results: Vec<Record>,
    pub errors: Vec<String>,
    input_closed: bool,
    abort: Arc<AtomicBool>,
    inbox: Arc<Inbox>,
    may_wait: bool,
    /// Records of every step that wait for an answer.
    waiting: usize,
    /// Input held back while a step has too many records waiting.
    held: VecDeque<Record>,
    /// How many steps [`Pipeline::finish`] has flushed.
    flushed: usize,
    /// Per step, the time its callback took (see [`Pipeline::timed`]).
    spent: Vec<Arc<std::sync::atomic::AtomicU64>>,
}

/// A callback's answer, checked.
enum Flow<T> {
    Now(T),
    Wait,
    Fail(String),
}

fn settle<T>(out: StepResult<Answer<T>>, later: &Later) -> Flow<T> {
    match out {
        Ok(Answer::Now(v)) => Flow::Now(v),
        Ok(Answer::Later) if later.deferred() => Flow::Wait,
        Ok(Answer::Later) => Flow::Fail("a callback answered later without a resolver".into()),
        Err(e) => Flow::Fail(e.to_string()),
    }
}

impl Pipeline {
    /// A pipeline whose records may not wait (see [`Pipeline::allow_waiting`]).
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
                calls: 0,
                queue: VecDeque::new(),
                acc_waits_for: None,
                backlog: VecDeque::new(),
                waiting: 0,
            })
            .collect();
        Pipeline {
            steps,
            results: Vec::new(),
            errors: Vec::new(),
            input_closed: false,
            abort,
            inbox: Arc::new(Inbox::default()),
            may_wait: false,
            waiting: 0,
            held: VecDeque::new(),
            flushed: 0,
            spent: Vec::new(),
        }
    }

    /// Times every callback call (`ProfileExecutions`); see
    /// [`Pipeline::step_ms`].
    pub fn timed(mut self) -> Pipeline {
        self.spent = self
            .steps
            .iter()
            .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0)))
            .collect();
        for (step, spent) in self.steps.iter_mut().zip(&self.spent) {
            if let Some(inner) = step.callback.take() {
                step.callback = Some(Arc::new(Timed {
                    inner,
                    spent: spent.clone(),
                }));
            }
        }
        self
    }

    /// Milliseconds each step's callback took, in plan order (empty unless
    /// [`Pipeline::timed`]).
    pub fn step_ms(&self) -> Vec<u64> {
        self.spent
            .iter()
            .map(|s| s.load(Ordering::Relaxed) / 1_000_000)
            .collect()
    }

    /// Lets callbacks answer later (not inside MULTI or Lua, where nobody
    /// can wait).
    pub fn allow_waiting(&mut self, yes: bool) {
        self.may_wait = yes;
    }

    /// Where the answers of waiting records arrive.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// How many records wait for an answer.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// True once no more input is wanted: an error reached the end, a limit
    /// is satisfied, or the execution was aborted.
    pub fn input_closed(&self) -> bool {
        self.input_closed || self.aborted()
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Whether input is held back until some waiting record is answered:
    /// the driver waits for the inbox, then calls [`Pipeline::absorb`],
    /// before it reads more.
    pub fn blocked(&self) -> bool {
        !self.held.is_empty() && !self.input_closed()
    }

    /// Whether a step holds too many records: waiting ones, answered ones
    /// behind a waiting one, or records queued for a waiting accumulator.
    fn saturated(&self) -> bool {
        self.waiting > 0
            && self
                .steps
                .iter()
                .any(|s| s.queue.len() + s.backlog.len() >= MAX_WAITING_PER_STEP)
    }

    /// Pushes a batch from the reader. Stops early when the input closes;
    /// holds the rest back when a step has too many records waiting.
    pub fn push_batch(&mut self, batch: impl IntoIterator<Item = Record>) {
        let mut batch = batch.into_iter();
        while let Some(r) = batch.next() {
            if self.input_closed() {
                return;
            }
            if !self.held.is_empty() || self.saturated() {
                self.held.push_back(r);
                self.held.extend(batch);
                return;
            }
            self.push(0, r);
        }
    }

    /// Takes in the answers that arrived, then the input held back, as far
    /// as the steps let it through.
    pub fn absorb(&mut self) {
        if (self.waiting == 0 && self.held.is_empty()) || self.aborted() {
            return;
        }
        for ((step, seq), outcome) in self.inbox.take() {
            self.answer(step, seq, outcome);
        }
        while !self.held.is_empty() && !self.input_closed() && !self.saturated() {
            if let Some(r) = self.held.pop_front() {
                self.push(0, r);
            }
        }
    }

    /// Ends the input: stateful steps emit what they hold, in step order,
    /// each once every record before it has been answered. True when the
    /// run is over; false while records wait (call it again after they are
    /// answered).
    pub fn finish(&mut self) -> bool {
        loop {
            if self.aborted() {
                // What the waiting records answer now (their cancellation)
                // is not the run's outcome.
                return true;
            }
            self.absorb();
            if self.input_closed() {
                // A limit or an error ended the input: what was held back
                // is never read.
                self.held.clear();
            }
            if self.waiting > 0 || !self.held.is_empty() {
                return false;
            }
            if self.flushed >= self.steps.len() {
                return true;
            }
            let i = self.flushed;
            self.flushed += 1;
            self.flush(i);
        }
    }

    fn flush(&mut self, i: usize) {
        match std::mem::replace(&mut self.steps[i].state, State::None) {
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

    fn sink(&mut self, r: Record) {
        match r {
            Record::Error(e) => {
                self.errors.push(e);
                self.input_closed = true;
            }
            r => self.results.push(r),
        }
    }

    /// The answer for call `seq` of step `i`.
    fn answer(&mut self, i: usize, seq: u64, outcome: StepResult<Record>) {
        let Some(step) = self.steps.get_mut(i) else {
            return;
        };
        match step.kind {
            StepKind::Map | StepKind::Filter | StepKind::Foreach => {
                let Ok(at) = step.queue.binary_search_by_key(&seq, |e| e.0) else {
                    return;
                };
                let Slot::Waiting(original) = &mut step.queue[at].1 else {
                    return;
                };
                let original = original.take();
                let ready = match (step.kind, outcome) {
                    (_, Err(e)) => Some(Record::Error(e.to_string())),
                    (StepKind::Map, Ok(r)) => Some(r),
                    (StepKind::Filter, Ok(Record::Long(1))) => original,
                    (StepKind::Filter, Ok(_)) => None,
                    (_, Ok(_)) => original,
                };
                step.queue[at].1 = Slot::Ready(ready);
                step.waiting -= 1;
                self.waiting -= 1;
                self.release(i);
            }
            StepKind::Accumulate | StepKind::AccumulateByKey => {
                let Some((_, at)) = step.acc_waits_for.filter(|w| w.0 == seq) else {
                    return;
                };
                step.acc_waits_for = None;
                step.waiting -= 1;
                self.waiting -= 1;
                match (outcome, &mut step.state) {
                    (Ok(v), State::Accumulate(acc)) => *acc = Some(v),
                    (Ok(v), State::ByKey(accs)) => {
                        if let Some(slot) = accs.entries.get_mut(at) {
                            slot.1 = Some(v);
                        }
                    }
                    (Ok(_), _) => {}
                    (Err(e), _) => self.push(i + 1, Record::Error(e.to_string())),
                }
                // The records that came meanwhile, until one waits again.
                while self.steps[i].acc_waits_for.is_none() {
                    let Some(r) = self.steps[i].backlog.pop_front() else {
                        break;
                    };
                    self.push(i, r);
                }
            }
            _ => {}
        }
    }

    /// Passes on the answered records at the head of step `i`'s queue.
    fn release(&mut self, i: usize) {
        loop {
            let q = &mut self.steps[i].queue;
            if !matches!(q.front(), Some((_, Slot::Ready(_)))) {
                return;
            }
            if let Some((_, Slot::Ready(Some(r)))) = q.pop_front() {
                self.push(i + 1, r);
            }
        }
    }

    /// Step `i` waits for call `seq`; `original` is what it passes on.
    fn wait_at(&mut self, i: usize, seq: u64, original: Option<Record>) {
        let step = &mut self.steps[i];
        step.queue.push_back((seq, Slot::Waiting(original)));
        step.waiting += 1;
        self.waiting += 1;
    }

    /// Accumulator `i` waits for call `seq` (for its entry `at`, by key).
    fn acc_wait(&mut self, i: usize, seq: u64, at: usize) {
        let step = &mut self.steps[i];
        step.acc_waits_for = Some((seq, at));
        step.waiting += 1;
        self.waiting += 1;
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
                StepKind::Map | StepKind::Filter | StepKind::Foreach => {
                    let seq = step.calls;
                    step.calls += 1;
                    let later = Later::new(&self.inbox, self.may_wait, (i, seq));
                    // What goes on: the record, nothing (filtered out), or
                    // nothing yet (it waits, holding its place).
                    let next = match step.kind {
                        StepKind::Map => match settle(need(cb).map(r, &later), &later) {
                            Flow::Now(v) => Some(v),
                            Flow::Wait => return self.wait_at(i, seq, None),
                            Flow::Fail(e) => Some(Record::Error(e)),
                        },
                        StepKind::Filter => match settle(need(cb).filter(&r, &later), &later) {
                            Flow::Now(true) => Some(r),
                            Flow::Now(false) => None,
                            Flow::Wait => return self.wait_at(i, seq, Some(r)),
                            Flow::Fail(e) => Some(Record::Error(e)),
                        },
                        _ => match settle(need(cb).foreach(&r, &later), &later) {
                            Flow::Now(()) => Some(r),
                            Flow::Wait => return self.wait_at(i, seq, Some(r)),
                            Flow::Fail(e) => Some(Record::Error(e)),
                        },
                    };
                    let Some(next) = next else { return };
                    let queue = &mut self.steps[i].queue;
                    if !queue.is_empty() {
                        // Behind a waiting record: keep the order.
                        queue.push_back((seq, Slot::Ready(Some(next))));
                        return;
                    }
                    r = next;
                }
                StepKind::FlatMap => {
                    if let Record::List(items) = r {
                        for item in items.into_iter().rev() {
                            if self.aborted() {
                                return;
                            }
                            self.push(i + 1, item);
                        }
                        return;
                    }
                }
                StepKind::ExtractKey => match need(cb).extract_key(&r) {
                    Ok(k) => r = Record::Keyed(k, Box::new(r)),
                    Err(e) => r = Record::Error(e.to_string()),
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
                            Err(e) => Record::Error(e.to_string()),
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
                    if step.acc_waits_for.is_some() {
                        step.backlog.push_back(r);
                        return;
                    }
                    let seq = step.calls;
                    step.calls += 1;
                    let State::Accumulate(acc) = &mut step.state else {
                        unreachable!("accumulate step without its state")
                    };
                    let later = Later::new(&self.inbox, self.may_wait, (i, seq));
                    match settle(need(cb).accumulate(acc.take(), r, &later), &later) {
                        Flow::Now(v) => {
                            *acc = Some(v);
                            return;
                        }
                        Flow::Wait => return self.acc_wait(i, seq, 0),
                        Flow::Fail(e) => r = Record::Error(e),
                    }
                }
                StepKind::AccumulateByKey => {
                    if step.acc_waits_for.is_some() {
                        step.backlog.push_back(r);
                        return;
                    }
                    let seq = step.calls;
                    step.calls += 1;
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
                            let later = Later::new(&self.inbox, self.may_wait, (i, seq));
                            let out = need(cb).accumulate_by_key(key, slot.take(), *v, &later);
                            match settle(out, &later) {
                                Flow::Now(acc) => {
                                    *slot = Some(acc);
                                    return;
                                }
                                Flow::Wait => return self.acc_wait(i, seq, at),
                                Flow::Fail(e) => r = Record::Error(e),
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
    use crate::pending::Resolver;
    use crate::plan::{Plan, Step, StepResult};

    /// A callback over native records, for tests without a host language.
    struct F(fn(Record) -> StepResult<Record>);
    impl Callable for F {
        fn map(&self, r: Record, _l: &Later) -> StepResult<Answer<Record>> {
            (self.0)(r).map(Answer::Now)
        }
        fn filter(&self, r: &Record, _l: &Later) -> StepResult<Answer<bool>> {
            match r {
                Record::Long(i) => Ok(Answer::Now(i % 2 == 0)),
                _ => Err("not a number".into()),
            }
        }
        fn extract_key(&self, r: &Record) -> StepResult<String> {
            match r {
                Record::Long(i) => Ok((i % 3).to_string()),
                _ => Err("no key".into()),
            }
        }
        fn accumulate(
            &self,
            acc: Option<Record>,
            r: Record,
            _l: &Later,
        ) -> StepResult<Answer<Record>> {
            match (acc, r) {
                (None, Record::Long(i)) => Ok(Answer::Now(Record::Long(i))),
                (Some(Record::Long(a)), Record::Long(i)) => Ok(Answer::Now(Record::Long(a + i))),
                _ => Err("bad accumulate".into()),
            }
        }
        fn accumulate_by_key(
            &self,
            _k: &str,
            acc: Option<Record>,
            r: Record,
            l: &Later,
        ) -> StepResult<Answer<Record>> {
            self.accumulate(acc, r, l)
        }
        fn reduce(&self, _k: &str, records: Vec<Record>) -> StepResult<Record> {
            Ok(Record::Long(records.len() as i64))
        }
    }

    /// A callback that answers later: it holds every resolver it takes in a
    /// shared list, for the test to answer in any order.
    #[derive(Clone, Default)]
    struct Deferred(Arc<std::sync::Mutex<Vec<(Record, Resolver)>>>);
    impl Deferred {
        fn hold(&self, r: Record, l: &Later) -> StepResult<Answer<Record>> {
            match l.defer() {
                Some(res) => {
                    self.0.lock().unwrap().push((r, res));
                    Ok(Answer::Later)
                }
                None => Err("Creating async record is not allow".into()),
            }
        }
        fn take(&self) -> Vec<(Record, Resolver)> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }
    impl Callable for Deferred {
        fn map(&self, r: Record, l: &Later) -> StepResult<Answer<Record>> {
            self.hold(r, l)
        }
        fn filter(&self, r: &Record, l: &Later) -> StepResult<Answer<bool>> {
            let Record::Long(i) = r else { unreachable!() };
            self.hold(Record::Long(*i), l).map(|_| Answer::Later)
        }
        fn accumulate(
            &self,
            acc: Option<Record>,
            r: Record,
            l: &Later,
        ) -> StepResult<Answer<Record>> {
            let a = match acc {
                Some(Record::Long(a)) => a,
                _ => 0,
            };
            let Record::Long(i) = r else { unreachable!() };
            self.hold(Record::Long(a + i), l)
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
        assert!(p.finish());
        p
    }

    fn waiting_pipeline(steps: Vec<Step>) -> Pipeline {
        let plan = Plan {
            reader: "test".into(),
            steps,
            desc: None,
        };
        let mut p = Pipeline::new(&plan, Arc::new(AtomicBool::new(false)));
        p.allow_waiting(true);
        p
    }

    #[test]
    fn waiting_records_keep_the_input_order() {
        let d = Deferred::default();
        let mut p = waiting_pipeline(vec![
            Step::new(StepKind::Map, "m", Some(Arc::new(d.clone()))),
            step(StepKind::Map, |r| match r {
                Record::Long(i) => Ok(Record::Long(i * 10)),
                r => Ok(r),
            }),
        ]);
        p.push_batch(nums(4));
        assert_eq!(p.waiting(), 4);
        assert!(!p.finish());
        // Answered from last to first: the results still come in order.
        let mut held = d.take();
        while let Some((r, res)) = held.pop() {
            res.resolve(Ok(r));
            p.absorb();
            if !held.is_empty() {
                assert!(p.results.is_empty(), "the first record holds the rest");
            }
        }
        assert!(p.finish());
        assert_eq!(longs(&p.results), vec![0, 10, 20, 30]);
    }

    #[test]
    fn waiting_filters_and_errors_and_unanswered_records() {
        let d = Deferred::default();
        let mut p = waiting_pipeline(vec![Step::new(
            StepKind::Filter,
            "f",
            Some(Arc::new(d.clone())),
        )]);
        p.push_batch(nums(3));
        let mut held = d.take().into_iter();
        let (_, r0) = held.next().unwrap();
        let (_, r1) = held.next().unwrap();
        let (_, r2) = held.next().unwrap();
        r0.resolve(Ok(Record::Long(1)));
        r1.resolve(Ok(Record::Long(0)));
        drop(r2);
        assert!(p.finish());
        assert_eq!(longs(&p.results), vec![0]);
        assert_eq!(p.errors, vec![crate::pending::NEVER_ANSWERED.to_string()]);
    }

    #[test]
    fn held_input_is_dropped_when_a_limit_closes_the_input() {
        let d = Deferred::default();
        let mut p = waiting_pipeline(vec![
            Step::new(StepKind::Map, "m", Some(Arc::new(d.clone()))),
            Step::plain(StepKind::Limit { offset: 0, len: 2 }),
        ]);
        let n = crate::pending::MAX_WAITING_PER_STEP as i64;
        p.push_batch(nums(n + 24));
        assert!(p.blocked());
        for (v, res) in d.take() {
            res.resolve(Ok(v));
        }
        assert!(p.finish(), "the held records are not waited for");
        assert_eq!(longs(&p.results), vec![0, 1]);
    }

    #[test]
    fn an_accumulator_backlog_is_bounded() {
        let d = Deferred::default();
        let mut p = waiting_pipeline(vec![Step::new(
            StepKind::Accumulate,
            "a",
            Some(Arc::new(d.clone())),
        )]);
        let n = crate::pending::MAX_WAITING_PER_STEP as i64;
        p.push_batch(nums(3 * n));
        assert!(p.blocked(), "the reader stops while the backlog is full");
        loop {
            for (v, res) in d.take() {
                res.resolve(Ok(v));
            }
            p.absorb();
            if p.finish() {
                break;
            }
        }
        assert_eq!(longs(&p.results), vec![(3 * n) * (3 * n - 1) / 2]);
    }

    #[test]
    fn a_waiting_accumulator_takes_later_records_in_order() {
        let d = Deferred::default();
        let mut p = waiting_pipeline(vec![Step::new(
            StepKind::Accumulate,
            "a",
            Some(Arc::new(d.clone())),
        )]);
        p.push_batch(nums(4));
        assert_eq!(p.waiting(), 1, "one accumulator call at a time");
        for _ in 0..4 {
            let mut held = d.take();
            assert_eq!(held.len(), 1);
            let (v, res) = held.pop().unwrap();
            assert!(!p.finish());
            res.resolve(Ok(v));
            p.absorb();
        }
        assert!(p.finish());
        assert_eq!(longs(&p.results), vec![6]);
    }

    #[test]
    fn waiting_is_refused_unless_allowed_and_bounded_per_step() {
        let d = Deferred::default();
        let plan = Plan {
            reader: "test".into(),
            steps: vec![Step::new(StepKind::Map, "m", Some(Arc::new(d.clone())))],
            desc: None,
        };
        let mut p = Pipeline::new(&plan, Arc::new(AtomicBool::new(false)));
        p.push_batch(nums(1));
        assert!(p.finish());
        assert_eq!(
            p.errors,
            vec!["Creating async record is not allow".to_string()]
        );

        let mut p = waiting_pipeline(plan.steps.clone());
        let n = crate::pending::MAX_WAITING_PER_STEP as i64;
        p.push_batch(nums(n + 5));
        assert_eq!(p.waiting(), n as usize);
        assert!(p.blocked());
        let mut held = d.take().into_iter();
        let (v, first) = held.next().unwrap();
        first.resolve(Ok(v));
        p.absorb();
        assert_eq!(p.waiting(), n as usize, "one answered, one more let in");
        for (v, res) in held.chain(d.take()) {
            res.resolve(Ok(v));
        }
        while !p.finish() {
            for (v, res) in d.take() {
                res.resolve(Ok(v));
            }
        }
        assert_eq!(p.results.len(), (n + 5) as usize);
        assert_eq!(longs(&p.results)[..3], [0, 1, 2]);
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
            crate::Error::MissingCallback("map")
        );
    }
}
