//! Registrations: plans that run on events (keyspace changes, stream
//! messages, commands), with their statistics, and the registry that holds
//! them.
//!
//! What an event *is* belongs to the host (gears-module knows keyspace
//! notifications and command filters); this module only keeps the
//! registrations, answers "which ones match", counts what they did and
//! orders their executions.

use crate::execution::{step_infos, Execution, StepInfo};
use crate::plan::Plan;
use crate::pool::{PoolHandle, WorkerPool};
use crate::sync::{LockExt, RwLockExt};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock_unpoisoned()
}

/// Where and when a registration's executions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inline, on the thread that raised the event, before it goes on.
    Sync,
    /// On the worker pool (distributed in a cluster; local otherwise).
    Async,
    /// On the worker pool, on this shard only.
    AsyncLocal,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "sync" => Some(Mode::Sync),
            "async" => Some(Mode::Async),
            "async_local" => Some(Mode::AsyncLocal),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::AsyncLocal => "async_local",
        }
    }
}

/// 1.2's key filter: a prefix ending in `*` matches every key that starts
/// with the rest; anything else must equal the key. It is not a glob.
pub fn prefix_matches(prefix: &[u8], key: &[u8]) -> bool {
    match prefix.split_last() {
        Some((b'*', head)) => key.starts_with(head),
        _ => prefix == key,
    }
}

/// What a StreamReader registration does when an execution fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailed {
    /// Acknowledge the batch anyway and go on.
    Continue,
    /// Stop the registration (status `ABORTED`).
    Abort,
    /// Read the same messages again after the retry interval.
    Retry,
}

impl OnFailed {
    /// Case-insensitive, as 1.2 reads it.
    pub fn parse(s: &str) -> Option<OnFailed> {
        match s.to_ascii_lowercase().as_str() {
            "continue" => Some(OnFailed::Continue),
            "abort" => Some(OnFailed::Abort),
            "retry" => Some(OnFailed::Retry),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OnFailed::Continue => "continue",
            OnFailed::Abort => "abort",
            OnFailed::Retry => "retry",
        }
    }
}

/// The state of a StreamReader registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    Ok,
    WaitingForRetry,
    Aborted,
    Paused,
}

impl StreamStatus {
    pub fn name(self) -> &'static str {
        match self {
            StreamStatus::Ok => "OK",
            StreamStatus::WaitingForRetry => "WAITING_FOR_RETRY_ON_FAILURE",
            StreamStatus::Aborted => "ABORTED",
            StreamStatus::Paused => "PAUSED",
        }
    }
}

/// The reader-specific part of a registration.
#[derive(Debug, Clone, PartialEq)]
pub enum ReaderArgs {
    Keys {
        prefix: Vec<u8>,
        /// Lower-cased event names, `None` for every event.
        event_types: Option<Vec<String>>,
        key_types: Option<Vec<String>>,
        read_value: bool,
        /// Lower-cased commands whose clients wait for the executions.
        commands: Option<Vec<String>>,
    },
    Stream {
        prefix: Vec<u8>,
        batch: usize,
        duration_ms: u64,
        on_failed: OnFailed,
        retry_interval_s: u64,
        trim: bool,
    },
    Trigger {
        name: String,
        inorder: bool,
    },
    Hook {
        /// Lower-cased command name.
        command: String,
        keyprefix: Option<Vec<u8>>,
        inorder: bool,
    },
}

impl ReaderArgs {
    pub fn reader_name(&self) -> &'static str {
        match self {
            ReaderArgs::Keys { .. } => "KeysReader",
            ReaderArgs::Stream { .. } => "StreamReader",
            ReaderArgs::Trigger { .. } | ReaderArgs::Hook { .. } => "CommandReader",
        }
    }

    /// Whether executions of one registration must run one at a time, in
    /// the order they were triggered.
    pub fn ordered(&self) -> bool {
        match self {
            ReaderArgs::Keys { .. } | ReaderArgs::Stream { .. } => true,
            ReaderArgs::Trigger { inorder, .. } | ReaderArgs::Hook { inorder, .. } => *inorder,
        }
    }
}

/// Counters shown by `RG.DUMPREGISTRATIONS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub triggered: u64,
    pub success: u64,
    pub failures: u64,
    pub aborted: u64,
    pub last_run_ms: u64,
    pub total_run_ms: u64,
    pub last_error: Option<String>,
    /// Streams: how long the last batch waited from its first message to
    /// the end of its processing.
    pub last_lag_ms: u64,
    pub total_lag_ms: u64,
    pub lag_samples: u64,
}

impl Stats {
    pub fn avg_run_ms(&self) -> f64 {
        let n = self.success + self.failures + self.aborted;
        if n == 0 {
            0.0
        } else {
            self.total_run_ms as f64 / n as f64
        }
    }

    pub fn avg_lag_ms(&self) -> f64 {
        if self.lag_samples == 0 {
            0.0
        } else {
            self.total_lag_ms as f64 / self.lag_samples as f64
        }
    }
}

/// How one execution of a registration ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Failure(String),
    Aborted,
}

/// What a stream consumer does after a batch's execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Success,
    /// A step asked to pause the registration.
    Pause,
    Failure,
}

impl BatchOutcome {
    /// 1.2's protocol: an error whose text starts with `PAUSE` (raised with
    /// `flat_error`, so the text is not a traceback) pauses the registration.
    pub fn of(exec: &Execution) -> BatchOutcome {
        match exec.first_error() {
            None => BatchOutcome::Success,
            Some(e) if e.starts_with("PAUSE") => BatchOutcome::Pause,
            Some(_) => BatchOutcome::Failure,
        }
    }
}

/// A callback of the host language run whenever a registration appears
/// on a master: registered, loaded from the RDB or AOF, or found on a
/// replica that was promoted (1.2's `onRegistered`).
pub trait OnRegistered: Send + Sync {
    fn call(&self, reg: &Registration);
}

/// A registered plan.
pub struct Registration {
    pub id: String,
    pub desc: Option<String>,
    pub mode: Mode,
    pub args: ReaderArgs,
    pub plan: Plan,
    /// Step descriptions, computed once for all executions.
    pub steps: Arc<[StepInfo]>,
    /// The session (RG.PYEXECUTE `ID`) that registered it.
    pub session: String,
    /// The user who registered it: executions that events start run as
    /// this user (`None`: unrestricted).
    pub owner: Option<String>,
    /// The plan's callbacks in the host language's saved form (empty when
    /// they can not be saved).
    pub payload: Vec<u8>,
    on_registered: Option<Arc<dyn OnRegistered>>,
    stats: Mutex<Stats>,
    queue: SerialQueue,
    /// Executions kept for `RG.DUMPEXECUTIONS`, oldest first.
    executions: Mutex<VecDeque<Arc<Execution>>>,
    stream_status: Mutex<StreamStatus>,
    unregistered: AtomicBool,
}

impl Registration {
    pub fn new(
        id: String,
        desc: Option<String>,
        mode: Mode,
        args: ReaderArgs,
        plan: Plan,
        session: String,
    ) -> Registration {
        Registration {
            id,
            desc,
            mode,
            args,
            steps: step_infos(&plan),
            plan,
            session,
            owner: None,
            payload: Vec::new(),
            on_registered: None,
            stats: Mutex::new(Stats::default()),
            queue: SerialQueue::default(),
            executions: Mutex::new(VecDeque::new()),
            stream_status: Mutex::new(StreamStatus::Ok),
            unregistered: AtomicBool::new(false),
        }
    }

    /// The same registration, with its callbacks saved as `payload`.
    pub fn with_payload(mut self, payload: Vec<u8>) -> Registration {
        self.payload = payload;
        self
    }

    /// The same registration, with the callback [`Registration::announce`]
    /// runs.
    pub fn with_on_registered(mut self, f: Option<Arc<dyn OnRegistered>>) -> Registration {
        self.on_registered = f;
        self
    }

    /// Runs its `onRegistered` callback, if it has one.
    pub fn announce(&self) {
        if let Some(f) = &self.on_registered {
            f.call(self);
        }
    }

    /// The same registration, owned by `user`.
    pub fn owned_by(mut self, user: Option<String>) -> Registration {
        self.owner = user;
        self
    }

    pub fn reader_name(&self) -> &'static str {
        self.args.reader_name()
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub fn on_trigger(&self) {
        lock(&self.stats).triggered += 1;
    }

    /// Counts a finished execution (1.2: errors make a failure and become
    /// `lastError`; a success clears it).
    pub fn on_done(&self, outcome: &Outcome, run_ms: u64) {
        let mut s = lock(&self.stats);
        match outcome {
            Outcome::Success => {
                s.success += 1;
                s.last_error = None;
            }
            Outcome::Failure(e) => {
                s.failures += 1;
                s.last_error = Some(e.clone());
            }
            Outcome::Aborted => s.aborted += 1,
        }
        s.last_run_ms = run_ms;
        s.total_run_ms += run_ms;
    }

    pub fn on_lag(&self, lag_ms: u64) {
        let mut s = lock(&self.stats);
        s.last_lag_ms = lag_ms;
        s.total_lag_ms += lag_ms;
        s.lag_samples += 1;
    }

    /// `RG.CLEARREGISTRATIONSSTATS`: finished executions leave
    /// `numTriggered`; everything else starts again from zero.
    pub fn clear_stats(&self) {
        let mut s = lock(&self.stats);
        let finished = s.success + s.failures + s.aborted;
        *s = Stats {
            triggered: s.triggered.saturating_sub(finished),
            ..Stats::default()
        };
    }

    /// Keeps `e` for `RG.DUMPEXECUTIONS`; returns the ids of the oldest
    /// finished executions beyond `max`, which the caller drops.
    pub fn track(&self, e: Arc<Execution>, max: usize) -> Vec<String> {
        lock(&self.executions).push_back(e);
        self.prune(max)
    }

    /// The ids of the oldest finished executions beyond `max`, forgotten
    /// here; the caller drops them from the execution registry.
    pub fn prune(&self, max: usize) -> Vec<String> {
        let mut q = lock(&self.executions);
        let mut dropped = Vec::new();
        while q.len() > max {
            match q.front() {
                Some(old) if old.status().finished() => {
                    dropped.push(old.id.clone());
                    q.pop_front();
                }
                _ => break,
            }
        }
        dropped
    }

    /// Executions of this registration that have not started yet, or only
    /// wait for answers to their records.
    pub fn pending_executions(&self) -> Vec<Arc<Execution>> {
        lock(&self.executions)
            .iter()
            .filter(|e| e.is_pending())
            .cloned()
            .collect()
    }

    pub fn stream_status(&self) -> StreamStatus {
        *lock(&self.stream_status)
    }

    pub fn set_stream_status(&self, s: StreamStatus) {
        *lock(&self.stream_status) = s;
    }

    /// Runs `job` on `pool`: after the registration's earlier jobs when its
    /// executions are ordered, in parallel otherwise.
    pub fn submit(&self, pool: &WorkerPool, job: impl FnOnce() + Send + 'static) {
        if self.args.ordered() {
            self.queue.push(pool, Box::new(job));
        } else {
            pool.submit(job);
        }
    }

    pub fn mark_unregistered(&self) {
        self.unregistered.store(true, Ordering::SeqCst);
    }

    pub fn is_unregistered(&self) -> bool {
        self.unregistered.load(Ordering::SeqCst)
    }
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    draining: bool,
}

/// Jobs that run on a shared pool one at a time, in submission order.
#[derive(Default, Clone)]
pub struct SerialQueue {
    state: Arc<Mutex<QueueState>>,
}

/// How many queued jobs one worker runs before giving its place back to the
/// pool, so that one busy registration does not hold a worker forever.
const DRAIN_TURN: usize = 64;

impl SerialQueue {
    pub fn push(&self, pool: &WorkerPool, job: Job) {
        let start = {
            let mut s = lock(&self.state);
            s.jobs.push_back(job);
            !std::mem::replace(&mut s.draining, true)
        };
        if start {
            self.schedule(pool);
        }
    }

    fn schedule(&self, pool: &WorkerPool) {
        self.schedule_on(pool.handle());
    }

    fn schedule_on(&self, pool: PoolHandle) {
        let me = self.clone();
        pool.clone().submit(move || me.drain(pool));
    }

    fn drain(&self, pool: PoolHandle) {
        for _ in 0..DRAIN_TURN {
            let job = {
                let mut s = lock(&self.state);
                match s.jobs.pop_front() {
                    Some(j) => j,
                    None => {
                        s.draining = false;
                        return;
                    }
                }
            };
            // A panicking job must not stop the ones behind it.
            let _ = catch_unwind(AssertUnwindSafe(job));
        }
        self.schedule_on(pool);
    }
}

/// A session: the registrations one RG.PYEXECUTE `ID` made.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub desc: Option<String>,
    pub registrations: Vec<String>,
    /// The REQUIREMENTS its script named.
    pub requirements: Vec<String>,
}

/// Every registration of this shard, and the sessions that own them.
#[derive(Default)]
pub struct Registrations {
    all: RwLock<Arc<Vec<Arc<Registration>>>>,
    sessions: Mutex<Vec<Session>>,
}

impl Registrations {
    /// A snapshot of all registrations, oldest first. Cheap: event handlers
    /// call it on every event.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Registration>>> {
        self.all.read_unpoisoned().clone()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Registration>> {
        self.snapshot().iter().find(|r| r.id == id).cloned()
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Arc<Registration>>)) {
        let mut g = self.all.write_unpoisoned();
        let mut next = (**g).clone();
        f(&mut next);
        *g = Arc::new(next);
    }

    pub fn add(&self, r: Arc<Registration>) {
        {
            let mut sessions = lock(&self.sessions);
            if let Some(s) = sessions.iter_mut().find(|s| s.id == r.session) {
                s.registrations.push(r.id.clone());
            }
        }
        self.update(|v| v.push(r));
    }

    /// Removes a registration; `None` if there is no such id.
    pub fn remove(&self, id: &str) -> Option<Arc<Registration>> {
        let mut found = None;
        self.update(|v| {
            if let Some(i) = v.iter().position(|r| r.id == id) {
                found = Some(v.remove(i));
            }
        });
        if let Some(r) = &found {
            r.mark_unregistered();
            let mut sessions = lock(&self.sessions);
            for s in sessions.iter_mut() {
                s.registrations.retain(|x| x != id);
            }
            sessions.retain(|s| !s.registrations.is_empty());
        }
        found
    }

    /// The trigger registered under `name`.
    pub fn trigger(&self, name: &str) -> Option<Arc<Registration>> {
        self.snapshot()
            .iter()
            .find(|r| matches!(&r.args, ReaderArgs::Trigger { name: n, .. } if n == name))
            .cloned()
    }

    /// The hooks of `command` (lower case), newest first.
    pub fn hooks(&self, command: &str) -> Vec<Arc<Registration>> {
        self.snapshot()
            .iter()
            .rev()
            .filter(|r| matches!(&r.args, ReaderArgs::Hook { command: c, .. } if c == command))
            .cloned()
            .collect()
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> Vec<Session> {
        lock(&self.sessions).clone()
    }

    pub fn session(&self, id: &str) -> Option<Session> {
        lock(&self.sessions).iter().find(|s| s.id == id).cloned()
    }

    /// Records a session that is about to own registrations (an existing
    /// one takes the requirements given now).
    pub fn open_session(&self, id: &str, desc: Option<String>, requirements: Vec<String>) {
        let mut sessions = lock(&self.sessions);
        match sessions.iter_mut().find(|s| s.id == id) {
            Some(s) => s.requirements = requirements,
            None => sessions.push(Session {
                id: id.to_owned(),
                desc,
                registrations: Vec::new(),
                requirements,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            reader: "KeysReader".into(),
            steps: Vec::new(),
            desc: None,
        }
    }

    fn reg(id: &str, args: ReaderArgs) -> Arc<Registration> {
        Arc::new(Registration::new(
            id.into(),
            None,
            Mode::Async,
            args,
            plan(),
            "s".into(),
        ))
    }

    #[test]
    fn prefixes_match_by_prefix_only_with_a_trailing_star() {
        assert!(prefix_matches(b"*", b"anything"));
        assert!(prefix_matches(b"person:*", b"person:1"));
        assert!(!prefix_matches(b"person:*", b"persons"));
        assert!(prefix_matches(b"person", b"person"));
        assert!(!prefix_matches(b"person", b"person:1"));
        // Not a glob: `?` and `[` are plain characters.
        assert!(!prefix_matches(b"a?c", b"abc"));
        assert!(prefix_matches(b"a?*", b"a?c"));
    }

    #[test]
    fn stats_follow_outcomes_and_clearing_keeps_unfinished_triggers() {
        let r = reg(
            "r-1",
            ReaderArgs::Trigger {
                name: "t".into(),
                inorder: false,
            },
        );
        for _ in 0..4 {
            r.on_trigger();
        }
        r.on_done(&Outcome::Failure("boom".into()), 4);
        assert_eq!(r.stats().last_error.as_deref(), Some("boom"));
        r.on_done(&Outcome::Success, 2);
        r.on_done(&Outcome::Aborted, 0);
        let s = r.stats();
        assert_eq!(
            (s.triggered, s.success, s.failures, s.aborted),
            (4, 1, 1, 1)
        );
        assert_eq!(s.last_error, None, "a success clears lastError");
        assert_eq!(s.avg_run_ms(), 2.0);
        r.clear_stats();
        assert_eq!(
            r.stats(),
            Stats {
                triggered: 1,
                ..Stats::default()
            }
        );
    }

    #[test]
    fn registry_finds_triggers_and_hooks_newest_first_and_tracks_sessions() {
        let regs = Registrations::default();
        regs.open_session("s", None, Vec::new());
        let hook = |id: &str| {
            reg(
                id,
                ReaderArgs::Hook {
                    command: "hset".into(),
                    keyprefix: None,
                    inorder: false,
                },
            )
        };
        regs.add(hook("h-1"));
        regs.add(hook("h-2"));
        regs.add(reg(
            "t-1",
            ReaderArgs::Trigger {
                name: "go".into(),
                inorder: true,
            },
        ));
        let ids: Vec<String> = regs.hooks("hset").iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, ["h-2", "h-1"]);
        assert_eq!(regs.trigger("go").unwrap().id, "t-1");
        assert!(regs.trigger("Go").is_none());
        assert_eq!(regs.session("s").unwrap().registrations.len(), 3);
        let removed = regs.remove("h-2").unwrap();
        assert!(removed.is_unregistered());
        assert!(regs.remove("h-2").is_none());
        regs.remove("h-1");
        regs.remove("t-1");
        assert!(regs.session("s").is_none(), "an empty session goes away");
        assert!(regs.is_empty());
    }

    #[test]
    fn serial_queue_runs_jobs_one_at_a_time_in_order() {
        let pool = WorkerPool::new("q", 3, |_| {}).unwrap();
        let pool = &pool;
        let q = SerialQueue::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..500 {
            let seen = seen.clone();
            let tx = tx.clone();
            q.push(
                pool,
                Box::new(move || {
                    if i == 7 {
                        panic!("a failing job");
                    }
                    seen.lock().unwrap().push(i);
                    tx.send(()).unwrap();
                }),
            );
        }
        for _ in 0..499 {
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        }
        let seen = seen.lock().unwrap();
        let expected: Vec<i32> = (0..500).filter(|&i| i != 7).collect();
        assert_eq!(*seen, expected);
    }

    #[test]
    fn tracking_drops_the_oldest_finished_executions() {
        let r = reg(
            "r-1",
            ReaderArgs::Trigger {
                name: "t".into(),
                inorder: false,
            },
        );
        let mk = |id: &str, done: bool| {
            let e = Arc::new(Execution::with_steps(id.into(), r.steps.clone(), true));
            if done {
                e.start();
                e.finish(Vec::new(), Vec::new(), 0, 0);
            }
            e
        };
        assert!(r.track(mk("e1", true), 2).is_empty());
        assert!(r.track(mk("e2", false), 2).is_empty());
        assert_eq!(r.track(mk("e3", true), 2), ["e1"]);
        // e2 still runs: nothing more can go.
        assert!(r.track(mk("e4", true), 2).is_empty());
        assert_eq!(r.pending_executions().len(), 1);
    }
}
