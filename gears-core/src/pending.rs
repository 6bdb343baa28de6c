//! Records that wait: a step's callback may answer later (a coroutine, a
//! future), from any thread.
//!
//! The pipeline hands each callback a [`Later`]. A callback that cannot
//! answer now takes a [`Resolver`] from it and returns [`Answer::Later`]; the
//! record waits in its step while the rest of the input goes on. Whoever
//! finishes the work calls [`Resolver::resolve`], which drops the outcome in
//! the execution's [`Inbox`]; the driver of the execution absorbs it into
//! the pipeline (see `Pipeline::absorb`).
//!
//! The inbox is also how a waiting execution gives its thread back: the
//! driver [`Inbox::park`]s a continuation, which the first outcome to arrive
//! (or an abort) starts.

use crate::sync::{wait_unpoisoned, LockExt};
use crate::Record;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What a callback answers: its result now, or later through the
/// [`Resolver`] it took from its [`Later`].
#[derive(Debug, PartialEq)]
pub enum Answer<T> {
    Now(T),
    Later,
}

/// The error of a record whose resolver was dropped without an answer (a
/// future nobody continued).
pub const NEVER_ANSWERED: crate::Error = crate::Error::NeverAnswered;

/// How many records of one step may wait at once; the execution reads no
/// more input until one of them is answered.
pub const MAX_WAITING_PER_STEP: usize = 1000;

type Job = Box<dyn FnOnce() + Send>;

/// Where a waiting record is: its step and its place in the step.
type Ticket = (usize, u64);

#[derive(Default)]
struct Inner {
    arrived: Vec<(Ticket, Result<Record, crate::Error>)>,
    parked: Option<Job>,
    on_abort: HashMap<Ticket, Job>,
    aborted: bool,
}

/// The outcomes of an execution's waiting records, as they arrive.
#[derive(Default)]
pub struct Inbox {
    inner: Mutex<Inner>,
    arrived: Condvar,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    fn deliver(&self, ticket: Ticket, outcome: Result<Record, crate::Error>) {
        let (resume, cancel) = {
            let mut g = self.lock();
            let cancel = g.on_abort.remove(&ticket);
            g.arrived.push((ticket, outcome));
            (g.parked.take(), cancel)
        };
        self.arrived.notify_all();
        drop(cancel);
        if let Some(resume) = resume {
            resume();
        }
    }

    /// The outcomes that arrived since the last call.
    pub(crate) fn take(&self) -> Vec<(Ticket, Result<Record, crate::Error>)> {
        std::mem::take(&mut self.lock().arrived)
    }

    /// Leaves `resume` to be run by the next outcome (or abort), so the
    /// driver can give its thread back. Hands it back when something has
    /// arrived already: the driver goes on itself.
    pub fn park(&self, resume: Job) -> Result<(), Job> {
        let mut g = self.lock();
        if !g.arrived.is_empty() || g.aborted {
            return Err(resume);
        }
        g.parked = Some(resume);
        Ok(())
    }

    /// Blocks this thread until some outcome arrives or the execution is
    /// aborted.
    pub fn wait(&self) {
        let mut g = self.lock();
        while g.arrived.is_empty() && !g.aborted {
            g = wait_unpoisoned(&self.arrived, g);
        }
    }

    /// The execution was aborted: cancels the work its records wait for and
    /// wakes its driver, wherever it is.
    pub fn abort(&self) {
        let (resume, cancels) = {
            let mut g = self.lock();
            g.aborted = true;
            (g.parked.take(), std::mem::take(&mut g.on_abort))
        };
        self.arrived.notify_all();
        for (_, cancel) in cancels {
            cancel();
        }
        if let Some(resume) = resume {
            resume();
        }
    }
}

/// Given to each callback call: how it may answer later.
pub struct Later<'a> {
    inbox: &'a Arc<Inbox>,
    allowed: bool,
    ticket: Ticket,
    taken: std::cell::Cell<bool>,
}

impl<'a> Later<'a> {
    pub(crate) fn new(inbox: &'a Arc<Inbox>, allowed: bool, ticket: Ticket) -> Later<'a> {
        Later {
            inbox,
            allowed,
            ticket,
            taken: std::cell::Cell::new(false),
        }
    }

    /// Whether this run may wait at all (not inside MULTI or Lua, where
    /// nobody can wait for it).
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The resolver of this record; `None` if waiting is not allowed or the
    /// callback took it already.
    pub fn defer(&self) -> Option<Resolver> {
        if !self.allowed || self.taken.replace(true) {
            return None;
        }
        Some(Resolver {
            inbox: self.inbox.clone(),
            ticket: self.ticket,
            answered: false,
        })
    }

    pub(crate) fn deferred(&self) -> bool {
        self.taken.get()
    }
}

/// Answers one waiting record, once, from any thread. Dropped unanswered,
/// the record becomes the error [`NEVER_ANSWERED`].
pub struct Resolver {
    inbox: Arc<Inbox>,
    ticket: Ticket,
    answered: bool,
}

impl Resolver {
    /// Answers the record: a map's new record, an accumulator's new value;
    /// a filter keeps its record when the answer is `Record::Long(1)`; a
    /// foreach passes its record on whatever the answer. An error becomes
    /// the record's error.
    pub fn resolve(mut self, outcome: Result<Record, crate::Error>) {
        self.answered = true;
        self.inbox.deliver(self.ticket, outcome);
    }

    /// Runs `cancel` if the execution is aborted while the record waits.
    pub fn on_abort(&self, cancel: Job) {
        let mut g = self.inbox.lock();
        if g.aborted {
            drop(g);
            cancel();
        } else {
            g.on_abort.insert(self.ticket, cancel);
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if !self.answered {
            self.inbox
                .deliver(self.ticket, Err(crate::Error::NeverAnswered));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_parked_driver_is_resumed_by_the_first_outcome() {
        let inbox = Arc::new(Inbox::default());
        let later = Later::new(&inbox, true, (1, 0));
        let r = later.defer().unwrap();
        assert!(later.defer().is_none(), "one resolver per call");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        assert!(inbox
            .park(Box::new(move || {
                h.fetch_add(1, Ordering::SeqCst);
            }))
            .is_ok());
        r.resolve(Ok(Record::Long(7)));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let got = inbox.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, (1, 0));
        assert!(matches!(got[0].1, Ok(Record::Long(7))));
        // Nothing arrived: parking succeeds; something arrived: it does not.
        let later = Later::new(&inbox, true, (1, 1));
        drop(later.defer());
        assert!(inbox.park(Box::new(|| {})).is_err());
        assert!(matches!(&inbox.take()[0].1, Err(e) if *e == NEVER_ANSWERED));
    }

    #[test]
    fn waiting_may_be_refused_and_abort_cancels() {
        let inbox = Arc::new(Inbox::default());
        assert!(Later::new(&inbox, false, (0, 0)).defer().is_none());
        let r = Later::new(&inbox, true, (0, 1)).defer().unwrap();
        let cancelled = Arc::new(AtomicUsize::new(0));
        let c = cancelled.clone();
        r.on_abort(Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        inbox.abort();
        assert_eq!(cancelled.load(Ordering::SeqCst), 1);
        inbox.wait(); // returns at once: aborted
        assert!(inbox.park(Box::new(|| {})).is_err());
        r.resolve(Ok(Record::Null));
    }
}
