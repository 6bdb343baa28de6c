//! Running registrations: the one path from "a registration fired" to an
//! execution, shared by every trigger source (keyspace events, stream
//! messages, triggers, command hooks).
//!
//! [`Engine::placement`] decides where an execution runs; [`Engine::start`]
//! creates it, counts it in the registration's statistics, and runs it
//! through the host language's [`PlanRunner`]: inline on the calling thread
//! (`sync` registrations) or queued on the worker pool.

use crate::command::CommandCtx;
use crate::engine::Engine;
use crate::execution::{Execution, Status};
use crate::identity::Identity;
use crate::reader::Reader;
use crate::registration::{Mode, Outcome, Registration};
use crate::runner::PlanRunner;
use crate::scope::on_drop;
use std::cell::RefCell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Who fired a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An event: nobody waits for the execution.
    Event,
    /// A client command that replies with the execution's outcome
    /// (`RG.TRIGGER`, a hooked command); `can_block` says whether the client
    /// may wait for a queued execution (not inside MULTI or Lua).
    Client { can_block: bool },
}

/// Where an execution of a registration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the calling thread, now, under the lock the caller holds. When
    /// `may_wait`, a record that waits (a coroutine, a future) sends the rest
    /// of the execution to the background; otherwise waiting is an error (a
    /// client inside MULTI or Lua can not wait for it).
    Inline { may_wait: bool },
    /// On the worker pool (in trigger order when the registration is
    /// ordered).
    Queued,
}

/// A non-sync registration fired by a client that cannot be blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CannotBlock;

/// An execution that [`Engine::start`] started.
pub enum Fired {
    /// Ran inline: finished.
    Finished(Arc<Execution>),
    /// Queued, or went on in the background: finishes later.
    Queued(Arc<Execution>),
    /// Refused, `MaxQueuedExecutions` waiting already: it ended at once
    /// with that error, having processed nothing.
    Refused(Arc<Execution>),
}

impl Fired {
    pub fn execution(&self) -> &Arc<Execution> {
        match self {
            Fired::Finished(e) | Fired::Queued(e) | Fired::Refused(e) => e,
        }
    }
}

thread_local! {
    /// Registrations whose executions are on this thread's stack right now.
    /// Per thread by nature: an event raised by an execution is delivered on
    /// the thread that runs it.
    static RUNNING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The registrations whose executions run on this thread, by address.
fn mark_of(reg: &Registration) -> usize {
    reg as *const Registration as usize
}

/// The registrations running on a thread, taken along to where their
/// executions' work goes on (a coroutine resumed on the loop thread, a
/// waiting execution finished on a worker), so that the self-trigger guard
/// holds there too.
#[derive(Debug, Clone, Default)]
pub struct Running(Vec<usize>);

impl Running {
    /// The registrations running on this thread now.
    pub fn here() -> Running {
        Running(RUNNING.with(|r| r.borrow().clone()))
    }

    /// Runs `f` with these registrations marked as running on this thread
    /// too (those not marked already).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        // No allocation: this runs for every execution.
        let added = RUNNING.with(|r| {
            let mut r = r.borrow_mut();
            let before = r.len();
            for m in &self.0 {
                if !r[..before].contains(m) {
                    r.push(*m);
                }
            }
            r.len() - before
        });
        let _unmark = on_drop(|| {
            RUNNING.with(|r| {
                let mut r = r.borrow_mut();
                let keep = r.len().saturating_sub(added);
                r.truncate(keep);
            })
        });
        f()
    }
}

/// How many executions may run nested on one thread (a sync trigger that
/// calls itself through `execute()` stops here instead of overflowing the
/// stack).
pub const MAX_NESTING: usize = 64;

/// The error of an execution refused for [`MAX_NESTING`].
pub fn too_nested() -> String {
    format!("too many nested executions (more than {MAX_NESTING}; does a function trigger itself?)")
}

/// Whether an execution of `reg` is running on this thread: an event it
/// raises itself (its own `execute('expire', key)`) must not trigger it
/// again, or it would never end.
pub fn is_running_here(reg: &Registration) -> bool {
    RUNNING.with(|r| r.borrow().contains(&mark_of(reg)))
}

/// Ends an execution that may not run, at once, as a failure.
fn refuse(exec: &Execution, error: String) {
    exec.start();
    exec.finish(Vec::new(), vec![error], 0, 0);
}

fn run_marked(
    runner: &dyn PlanRunner,
    exec: &Arc<Execution>,
    reg: &Arc<Registration>,
    reader: Box<dyn Reader>,
    command: Option<Arc<CommandCtx>>,
    may_wait: bool,
) {
    RUNNING.with(|r| r.borrow_mut().push(mark_of(reg)));
    let _unmark = on_drop(|| {
        RUNNING.with(|r| r.borrow_mut().pop());
    });
    runner.run(exec, &reg.plan, reader, command, may_wait);
}

impl Engine {
    /// Where an execution of `reg` fired by `caller` runs: `sync`
    /// registrations inline, others queued, refused when the client that
    /// waits for it cannot be blocked.
    pub fn placement(&self, reg: &Registration, caller: Caller) -> Result<Placement, CannotBlock> {
        match (reg.mode, caller) {
            (Mode::Sync, Caller::Event) => Ok(Placement::Inline { may_wait: true }),
            (Mode::Sync, Caller::Client { can_block }) => Ok(Placement::Inline {
                may_wait: can_block,
            }),
            (_, Caller::Client { can_block: false }) => Err(CannotBlock),
            _ => Ok(Placement::Queued),
        }
    }

    /// Starts an execution of `reg` over `reader` where `placement` says,
    /// acting as `identity`. For [`Placement::Inline`] the caller holds
    /// whatever lock the host needs for the reader and the steps (the Redis
    /// lock).
    ///
    /// A queued execution beyond `MaxQueuedExecutions` is refused to a
    /// client (it gets the error); for an event (`caller`) it is queued
    /// anyway, so no event is lost, unless `DropEventsWhenQueueFull` asks
    /// for dropping.
    pub fn start(
        self: &Arc<Self>,
        reg: &Arc<Registration>,
        placement: Placement,
        caller: Caller,
        identity: Identity,
        reader: Box<dyn Reader>,
        command: Option<Arc<CommandCtx>>,
    ) -> Fired {
        let exec = self.new_registered_execution(reg, identity);
        match placement {
            Placement::Inline { may_wait } => {
                if RUNNING.with(|r| r.borrow().len()) >= MAX_NESTING {
                    refuse(&exec, too_nested());
                } else {
                    run_marked(&*self.runner, &exec, reg, reader, command, may_wait);
                }
                if exec.status().finished() {
                    Fired::Finished(exec)
                } else {
                    Fired::Queued(exec)
                }
            }
            Placement::Queued => {
                let reserved = if caller == Caller::Event {
                    self.reserve_event_slot()
                } else {
                    self.reserve_queue_slot()
                };
                let slot = match reserved {
                    Ok(slot) => slot,
                    Err(full) => {
                        refuse(&exec, full.to_string());
                        return Fired::Refused(exec);
                    }
                };
                let (e, r, runner) = (exec.clone(), reg.clone(), self.runner.clone());
                reg.submit(&self.pool, move || {
                    drop(slot);
                    run_marked(&*runner, &e, &r, reader, command, true)
                });
                Fired::Queued(exec)
            }
        }
    }

    /// [`Engine::placement`] then [`Engine::start`].
    pub fn fire(
        self: &Arc<Self>,
        reg: &Arc<Registration>,
        caller: Caller,
        identity: Identity,
        reader: Box<dyn Reader>,
        command: Option<Arc<CommandCtx>>,
    ) -> Result<Fired, CannotBlock> {
        let placement = self.placement(reg, caller)?;
        Ok(self.start(reg, placement, caller, identity, reader, command))
    }

    /// A new execution of `reg`, counted as triggered, kept for
    /// `RG.DUMPEXECUTIONS` and counted in the statistics when it ends.
    fn new_registered_execution(
        self: &Arc<Self>,
        reg: &Arc<Registration>,
        identity: Identity,
    ) -> Arc<Execution> {
        let exec = Arc::new(
            Execution::with_steps(self.next_execution_id(), reg.steps.clone(), true)
                .acting_as(identity),
        );
        reg.on_trigger();
        let (r, engine) = (reg.clone(), Arc::downgrade(self));
        // First waiter: the statistics are up to date before anyone else
        // hears that the execution ended.
        exec.on_finish(Box::new(move |e| {
            let outcome = if e.status() == Status::Aborted {
                Outcome::Aborted
            } else {
                match e.first_error() {
                    Some(err) => Outcome::Failure(err),
                    None => Outcome::Success,
                }
            };
            r.on_done(&outcome, e.total_ms());
            if let Some(engine) = engine.upgrade() {
                for old in r.prune(engine.max_per_registration.load(Relaxed)) {
                    engine.executions.forget(&old);
                }
            }
        }));
        self.executions.add(exec.clone());
        for old in reg.track(exec.clone(), self.max_per_registration.load(Relaxed)) {
            self.executions.forget(&old);
        }
        exec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use crate::reader::VecReader;
    use crate::registration::ReaderArgs;
    use crate::Record;
    use std::sync::Mutex;

    /// Records which registrations were running when each execution ran.
    #[derive(Default)]
    struct Probe(Mutex<Vec<(String, bool)>>);

    impl PlanRunner for Probe {
        fn run(
            &self,
            exec: &Arc<Execution>,
            _plan: &Plan,
            mut reader: Box<dyn Reader>,
            _command: Option<Arc<CommandCtx>>,
            _may_wait: bool,
        ) {
            assert!(exec.start());
            let n = reader.next_batch().unwrap().map_or(0, |b| b.len());
            self.0.lock().unwrap().push((exec.id.clone(), n == 1));
            exec.finish(Vec::new(), Vec::new(), 0, 0);
        }
    }

    fn reg(mode: Mode) -> Arc<Registration> {
        let plan = Plan {
            reader: "CommandReader".into(),
            steps: Vec::new(),
            desc: None,
        };
        let args = ReaderArgs::Trigger {
            name: "t".into(),
            inorder: false,
        };
        Arc::new(Registration::new(
            "r".into(),
            None,
            mode,
            args,
            plan,
            "s".into(),
        ))
    }

    fn one() -> Box<dyn Reader> {
        Box::new(VecReader(Some(vec![Record::Long(1)])))
    }

    #[test]
    fn sync_runs_inline_and_others_are_queued_unless_the_client_cannot_wait() {
        let probe = Arc::new(Probe::default());
        let engine = Arc::new(Engine::new(1, 100, 10, probe.clone(), |_| {}).unwrap());
        let sync = reg(Mode::Sync);
        let blocked = Caller::Client { can_block: false };
        assert_eq!(
            engine.placement(&sync, blocked),
            Ok(Placement::Inline { may_wait: false })
        );
        assert_eq!(
            engine.placement(&sync, Caller::Event),
            Ok(Placement::Inline { may_wait: true })
        );
        let fired = engine
            .fire(&sync, blocked, Identity::default(), one(), None)
            .unwrap();
        assert!(matches!(fired, Fired::Finished(_)));
        assert_eq!(sync.stats().success, 1);

        let asynchronous = reg(Mode::Async);
        assert!(engine
            .fire(&asynchronous, blocked, Identity::default(), one(), None)
            .is_err());
        assert_eq!(asynchronous.stats().triggered, 0);
        let fired = engine
            .fire(
                &asynchronous,
                Caller::Event,
                Identity::module(3),
                one(),
                None,
            )
            .unwrap();
        let Fired::Queued(exec) = fired else {
            panic!("an async registration must be queued")
        };
        assert_eq!(exec.identity, Identity::module(3));
        let (tx, rx) = crossbeam_channel::bounded(1);
        exec.on_finish(Box::new(move |_| tx.send(()).unwrap()));
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(probe.0.lock().unwrap().len(), 2);
        assert!(probe
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|(_, one_record)| *one_record));
    }

    #[test]
    fn a_registration_is_marked_running_only_while_its_execution_runs() {
        struct Check(Arc<Registration>, Mutex<Option<bool>>);
        impl PlanRunner for Check {
            fn run(
                &self,
                exec: &Arc<Execution>,
                _: &Plan,
                _: Box<dyn Reader>,
                _: Option<Arc<CommandCtx>>,
                _: bool,
            ) {
                *self.1.lock().unwrap() = Some(is_running_here(&self.0));
                exec.start();
                exec.finish(Vec::new(), Vec::new(), 0, 0);
            }
        }
        let r = reg(Mode::Sync);
        let check = Arc::new(Check(r.clone(), Mutex::new(None)));
        let engine = Arc::new(Engine::new(1, 100, 10, check.clone(), |_| {}).unwrap());
        assert!(!is_running_here(&r));
        engine
            .fire(&r, Caller::Event, Identity::default(), one(), None)
            .unwrap();
        assert_eq!(*check.1.lock().unwrap(), Some(true));
        assert!(!is_running_here(&r));
    }

    #[test]
    fn running_marks_follow_an_execution_to_another_thread() {
        let r = reg(Mode::Sync);
        RUNNING.with(|m| m.borrow_mut().push(mark_of(&r)));
        let marks = Running::here();
        RUNNING.with(|m| m.borrow_mut().clear());
        let r2 = r.clone();
        std::thread::spawn(move || {
            assert!(!is_running_here(&r2));
            marks.enter(|| {
                assert!(is_running_here(&r2));
                // Entering again adds nothing (the nesting count holds).
                marks.enter(|| RUNNING.with(|m| assert_eq!(m.borrow().len(), 1)));
                assert!(is_running_here(&r2));
            });
            assert!(!is_running_here(&r2));
        })
        .join()
        .unwrap();
    }
}
