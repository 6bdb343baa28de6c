//! Executions (one run of a plan) and the registry that keeps them.

use crate::identity::Identity;
use crate::plan::Plan;
use crate::sync::LockExt;
use crate::{HostValue, Reply};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Done,
    Aborted,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Done => "done",
            Status::Aborted => "aborted",
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, Status::Done | Status::Aborted)
    }
}

/// How a step is shown by `RG.GETEXECUTION`.
#[derive(Debug, Clone)]
pub struct StepInfo {
    pub kind: &'static str,
    pub name: String,
    pub arg: String,
}

/// How `RG.GETEXECUTION` shows the steps of `plan`.
pub fn step_infos(plan: &Plan) -> Arc<[StepInfo]> {
    plan.steps
        .iter()
        .map(|s| StepInfo {
            kind: s.kind.name(),
            name: s.name.clone(),
            arg: s.arg(),
        })
        .collect()
}

/// A result as an execution keeps it: its reply, or a host object whose
/// reply is made only when someone reads it (most results of registrations
/// are never read).
#[derive(Clone, Debug)]
pub enum Kept {
    Reply(Reply),
    Deferred(Arc<dyn HostValue>),
}

impl Kept {
    /// The reply, made now for a deferred object.
    pub fn reply(self) -> Reply {
        match self {
            Kept::Reply(r) => r,
            Kept::Deferred(h) => h.to_reply(),
        }
    }
}

impl From<Reply> for Kept {
    fn from(r: Reply) -> Kept {
        Kept::Reply(r)
    }
}

/// Replies for kept results. Called with the execution's lock released:
/// a deferred object may need the host's own lock (the GIL) to render.
fn replies(kept: Vec<Kept>) -> Vec<Reply> {
    kept.into_iter().map(Kept::reply).collect()
}

/// A callback run once when the execution finishes.
pub type DoneCallback = Box<dyn FnOnce(&Execution) + Send>;

struct Inner {
    status: Status,
    results: Vec<Kept>,
    /// Per step, in plan order, the ms its callbacks took (profiling only).
    step_ms: Vec<u64>,
    errors: Vec<String>,
    total_ms: u64,
    read_ms: u64,
    waiters: Vec<DoneCallback>,
}

pub struct Execution {
    pub id: String,
    pub registered: bool,
    pub steps: Arc<[StepInfo]>,
    /// Who its commands run as.
    pub identity: Identity,
    inner: Mutex<Inner>,
    abort: Arc<AtomicBool>,
    /// Running, but only waiting for answers (coroutines, futures).
    waiting: AtomicBool,
    interrupter: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// What happened to an abort request.
#[derive(Debug, PartialEq, Eq)]
pub enum AbortOutcome {
    /// The execution had not started; it is now `aborted`.
    AbortedBeforeStart,
    /// It is running; it was asked to stop and will finish soon.
    Stopping,
    /// It had already finished.
    AlreadyFinished,
}

impl Execution {
    pub fn new(id: String, plan: &Plan, registered: bool) -> Execution {
        Execution::with_steps(id, step_infos(plan), registered)
    }

    /// An execution whose step descriptions were computed once, ahead of
    /// time (registrations run the same plan many times).
    pub fn with_steps(id: String, steps: Arc<[StepInfo]>, registered: bool) -> Execution {
        Execution {
            id,
            registered,
            steps,
            identity: Identity::default(),
            inner: Mutex::new(Inner {
                status: Status::Created,
                results: Vec::new(),
                step_ms: Vec::new(),
                errors: Vec::new(),
                total_ms: 0,
                read_ms: 0,
                waiters: Vec::new(),
            }),
            abort: Arc::new(AtomicBool::new(false)),
            waiting: AtomicBool::new(false),
            interrupter: Mutex::new(None),
        }
    }

    /// The same execution, acting as `identity`.
    pub fn acting_as(mut self, identity: Identity) -> Execution {
        self.identity = identity;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.inner.lock_unpoisoned()
    }

    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// Marks the execution as only waiting for answers to its records (or
    /// working again).
    pub fn set_waiting(&self, yes: bool) {
        self.waiting.store(yes, Ordering::SeqCst);
    }

    /// Whether the execution has not started yet, or only waits for
    /// answers: what `abortpending` aborts.
    pub fn is_pending(&self) -> bool {
        match self.status() {
            Status::Created => true,
            Status::Running => self.waiting.load(Ordering::SeqCst),
            _ => false,
        }
    }

    /// The flag a pipeline polls to stop early.
    pub fn abort_flag(&self) -> Arc<AtomicBool> {
        self.abort.clone()
    }

    /// Installs the function that interrupts running user code (for Python,
    /// an asynchronous exception in the worker thread).
    pub fn set_interrupter(&self, f: Option<Box<dyn Fn() + Send + Sync>>) {
        *self.interrupter.lock_unpoisoned() = f;
    }

    /// Moves `created` to `running`; false if the execution was aborted first.
    pub fn start(&self) -> bool {
        let mut g = self.lock();
        if g.status != Status::Created {
            return false;
        }
        g.status = Status::Running;
        true
    }

    /// Records the outcome, marks the execution `done` and runs the waiters.
    pub fn finish(&self, results: Vec<Kept>, errors: Vec<String>, total_ms: u64, read_ms: u64) {
        self.set_interrupter(None);
        let waiters = {
            let mut g = self.lock();
            if g.status.finished() {
                return;
            }
            g.status = Status::Done;
            g.results = results;
            g.errors = errors;
            g.total_ms = total_ms;
            g.read_ms = read_ms;
            std::mem::take(&mut g.waiters)
        };
        for w in waiters {
            w(self);
        }
    }

    /// Asks the execution to stop.
    pub fn abort(&self) -> AbortOutcome {
        self.abort.store(true, Ordering::SeqCst);
        let waiters = {
            let mut g = self.lock();
            match g.status {
                Status::Done | Status::Aborted => return AbortOutcome::AlreadyFinished,
                Status::Running => None,
                Status::Created => {
                    g.status = Status::Aborted;
                    Some(std::mem::take(&mut g.waiters))
                }
            }
        };
        match waiters {
            Some(ws) => {
                for w in ws {
                    w(self);
                }
                AbortOutcome::AbortedBeforeStart
            }
            None => {
                if let Some(f) = &*self.interrupter.lock_unpoisoned() {
                    f();
                }
                AbortOutcome::Stopping
            }
        }
    }

    /// Runs `cb` when the execution finishes. If it already has, `cb` is
    /// handed back so the caller can act on the spot.
    pub fn when_done(&self, cb: DoneCallback) -> Option<DoneCallback> {
        let mut g = self.lock();
        if g.status.finished() {
            Some(cb)
        } else {
            g.waiters.push(cb);
            None
        }
    }

    /// The first error of a finished execution, if any.
    pub fn first_error(&self) -> Option<String> {
        self.lock().errors.first().cloned()
    }

    /// The results of a finished execution.
    pub fn results(&self) -> Vec<Reply> {
        let kept = self.lock().results.clone();
        replies(kept)
    }

    /// The errors of a finished execution.
    pub fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    pub fn total_ms(&self) -> u64 {
        self.lock().total_ms
    }

    /// Runs `cb` when the execution finishes, or now if it already has.
    pub fn on_finish(&self, cb: DoneCallback) {
        if let Some(cb) = self.when_done(cb) {
            cb(self);
        }
    }

    /// `[results, errors]`, the reply of a finished execution.
    pub fn results_reply(&self) -> Reply {
        let (kept, errors) = {
            let g = self.lock();
            (g.results.clone(), g.errors.clone())
        };
        Reply::Array(vec![
            Reply::Array(replies(kept)),
            Reply::Array(errors.iter().map(|e| Reply::bulk(e.as_bytes())).collect()),
        ])
    }

    /// Records how long each step took (`ProfileExecutions`).
    pub fn set_step_ms(&self, ms: Vec<u64>) {
        self.lock().step_ms = ms;
    }

    /// Per step, in plan order, the ms its callbacks took (0 when the
    /// execution was not profiled).
    pub fn step_ms(&self) -> Vec<u64> {
        let g = self.lock();
        (0..self.steps.len())
            .map(|i| g.step_ms.get(i).copied().unwrap_or(0))
            .collect()
    }

    /// A snapshot for `RG.GETEXECUTION`.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        Snapshot {
            status: g.status,
            results: g.results.len(),
            errors: g.errors.clone(),
            total_ms: g.total_ms,
            read_ms: g.read_ms,
        }
    }
}

pub struct Snapshot {
    pub status: Status,
    pub results: usize,
    pub errors: Vec<String>,
    pub total_ms: u64,
    pub read_ms: u64,
}

/// Why an execution could not be dropped.
#[derive(Debug, PartialEq, Eq)]
pub enum DropError {
    NotFound,
    Running,
}

/// The registry of executions, capped by `MaxExecutions`.
pub struct Executions {
    inner: Mutex<Registry>,
    max: AtomicUsize,
    /// Ids of executions in the order they finished, pushed by their finish
    /// callbacks: eviction takes from the front and never walks what is
    /// still pending, so adding an execution costs the same whatever the
    /// backlog.
    finished: Arc<Mutex<VecDeque<String>>>,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Arc<Execution>>,
    order: VecDeque<String>,
}

impl Registry {
    /// Removes `id`; its place in `order` is cleaned up lazily, so removing
    /// one execution among thousands stays cheap.
    fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let by_id = &self.by_id;
            self.order.retain(|x| by_id.contains_key(x));
        }
    }
}

impl Executions {
    pub fn new(max: usize) -> Executions {
        Executions {
            inner: Mutex::new(Registry::default()),
            max: AtomicUsize::new(max),
            finished: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock_unpoisoned()
    }

    pub fn add(&self, e: Arc<Execution>) {
        {
            let mut g = self.lock();
            g.order.push_back(e.id.clone());
            g.by_id.insert(e.id.clone(), e.clone());
        }
        let log = self.finished.clone();
        let id = e.id.clone();
        e.on_finish(Box::new(move |_| log.lock_unpoisoned().push_back(id)));
        self.evict();
    }

    pub fn get(&self, id: &str) -> Option<Arc<Execution>> {
        self.lock().by_id.get(id).cloned()
    }

    /// All executions, oldest first.
    pub fn list(&self) -> Vec<Arc<Execution>> {
        let g = self.lock();
        g.order
            .iter()
            .filter_map(|id| g.by_id.get(id).cloned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes a finished execution.
    pub fn drop_execution(&self, id: &str) -> Result<(), DropError> {
        let mut g = self.lock();
        let e = g.by_id.get(id).ok_or(DropError::NotFound)?;
        if !e.status().finished() {
            return Err(DropError::Running);
        }
        g.remove(id);
        Ok(())
    }

    /// Removes an execution whatever its state (used when the script that
    /// created it failed).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
        self.evict();
    }

    /// Drops the executions that finished first while the registry is
    /// over its cap; pending ones stay. O(1) per execution dropped.
    pub fn evict(&self) {
        let max = self.max.load(Ordering::Relaxed);
        let mut g = self.lock();
        let mut excess = g.by_id.len().saturating_sub(max);
        let mut log = self.finished.lock_unpoisoned();
        while excess > 0 {
            let Some(id) = log.pop_front() else { break };
            if g.by_id.contains_key(&id) {
                g.remove(&id);
                excess -= 1;
            }
        }
        // Ids of executions dropped by other means are skipped when met;
        // they are cleared here once they outnumber the kept ones.
        if log.len() > 2 * g.by_id.len() + 64 {
            let by_id = &g.by_id;
            log.retain(|id| by_id.contains_key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn exec(id: &str) -> Arc<Execution> {
        let plan = Plan {
            reader: "r".into(),
            steps: vec![],
            desc: None,
        };
        Arc::new(Execution::new(id.into(), &plan, false))
    }

    #[test]
    fn lifecycle_and_waiters() {
        let e = exec("a");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        assert!(e
            .when_done(Box::new(move |_| {
                h.fetch_add(1, Ordering::SeqCst);
            }))
            .is_none());
        assert!(e.start());
        assert_eq!(e.status(), Status::Running);
        e.finish(vec![Reply::Int(1).into()], vec!["err".into()], 3, 1);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            e.results_reply(),
            Reply::Array(vec![
                Reply::Array(vec![Reply::Int(1)]),
                Reply::Array(vec![Reply::bulk("err")])
            ])
        );
        assert!(e.when_done(Box::new(|_| {})).is_some());
        assert_eq!(e.abort(), AbortOutcome::AlreadyFinished);
    }

    #[test]
    fn abort_before_start_marks_aborted_and_runs_waiters() {
        let e = exec("a");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        e.when_done(Box::new(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(e.abort(), AbortOutcome::AbortedBeforeStart);
        assert_eq!(e.status(), Status::Aborted);
        assert!(!e.start());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn abort_while_running_interrupts() {
        let e = exec("a");
        e.start();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        e.set_interrupter(Some(Box::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        })));
        assert_eq!(e.abort(), AbortOutcome::Stopping);
        assert!(e.abort_flag().load(Ordering::SeqCst));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_pending_backlog_is_kept_and_finished_ones_go_first() {
        let reg = Executions::new(3);
        let pending: Vec<_> = (0..10).map(|i| exec(&format!("p{i}"))).collect();
        for p in &pending {
            reg.add(p.clone());
        }
        // Over the cap, but nothing finished: everything stays.
        assert_eq!(reg.len(), 10);
        for i in 0..5 {
            let e = exec(&format!("f{i}"));
            reg.add(e.clone());
            e.finish(vec![], vec![], 0, 0);
        }
        // Each finished one is dropped by the next addition (the last
        // one waits for the next).
        assert_eq!(reg.len(), 11);
        let ids: Vec<_> = reg.list().iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.last().map(String::as_str), Some("f4"));
        // Pending ones finish in any order; while over the cap every
        // finished one goes, pending ones stay.
        pending[7].finish(vec![], vec![], 0, 0);
        pending[2].finish(vec![], vec![], 0, 0);
        reg.add(exec("late"));
        for gone in ["f4", "p7", "p2"] {
            assert!(reg.get(gone).is_none(), "{gone}");
        }
        assert_eq!(reg.len(), 9);
        // A dropped execution's id is skipped when met.
        pending[0].finish(vec![], vec![], 0, 0);
        assert_eq!(reg.drop_execution("p0"), Ok(()));
        reg.set_max(0);
        assert!(reg.get("p0").is_none());
        assert_eq!(reg.len(), 8);
    }

    #[test]
    fn registry_evicts_oldest_finished_only() {
        let reg = Executions::new(2);
        let a = exec("a");
        let b = exec("b");
        let c = exec("c");
        reg.add(a.clone());
        reg.add(b.clone());
        b.finish(vec![], vec![], 0, 0);
        reg.add(c.clone());
        // a is still running, so b (finished) goes first.
        let ids: Vec<_> = reg.list().iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec!["a", "c"]);
        assert_eq!(reg.drop_execution("a"), Err(DropError::Running));
        assert_eq!(reg.drop_execution("zz"), Err(DropError::NotFound));
        a.finish(vec![], vec![], 0, 0);
        reg.set_max(1);
        let ids: Vec<_> = reg.list().iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec!["c"]);
        assert_eq!(reg.drop_execution("c"), Err(DropError::Running));
    }
}
