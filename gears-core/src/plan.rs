//! Plans: the steps of a pipeline, in the order the user wrote them.

use crate::pending::{Answer, Later};
use crate::Record;
use std::sync::Arc;

/// The error text a failing callback produces; it becomes an error record.
pub type StepResult<T> = Result<T, crate::Error>;

/// A user callback, implemented by the host language.
///
/// Each step kind calls the one method that matches its shape; a host that
/// cannot serve a shape keeps the default, which fails with a clear message.
/// The shapes that may wait (map, filter, foreach and the accumulators)
/// get a [`Later`] and may answer [`Answer::Later`].
pub trait Callable: Send + Sync {
    /// What `RG.GETEXECUTION` shows as the step's argument.
    fn describe(&self) -> String {
        String::new()
    }
    fn map(&self, r: Record, later: &Later) -> StepResult<Answer<Record>> {
        drop((r, later));
        Err(self.unsupported("map"))
    }
    fn filter(&self, r: &Record, later: &Later) -> StepResult<Answer<bool>> {
        let _ = (r, later);
        Err(self.unsupported("filter"))
    }
    fn foreach(&self, r: &Record, later: &Later) -> StepResult<Answer<()>> {
        let _ = (r, later);
        Err(self.unsupported("foreach"))
    }
    fn extract_key(&self, r: &Record) -> StepResult<String> {
        let _ = r;
        Err(self.unsupported("extractor"))
    }
    fn accumulate(
        &self,
        acc: Option<Record>,
        r: Record,
        later: &Later,
    ) -> StepResult<Answer<Record>> {
        drop((acc, r, later));
        Err(self.unsupported("accumulator"))
    }
    fn accumulate_by_key(
        &self,
        key: &str,
        acc: Option<Record>,
        r: Record,
        later: &Later,
    ) -> StepResult<Answer<Record>> {
        drop((key, acc, r, later));
        Err(self.unsupported("reducer"))
    }
    fn reduce(&self, key: &str, records: Vec<Record>) -> StepResult<Record> {
        drop((key, records));
        Err(self.unsupported("batch reducer"))
    }
    #[doc(hidden)]
    fn unsupported(&self, what: &'static str) -> crate::Error {
        crate::Error::UnsupportedCallback(what)
    }
}

/// A callback whose calls are timed (`ProfileExecutions`): the time adds up
/// in `spent` (nanoseconds), which the execution reads at its end.
pub struct Timed {
    pub inner: Arc<dyn Callable>,
    pub spent: Arc<std::sync::atomic::AtomicU64>,
}

impl Timed {
    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.spent
            .fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
        out
    }
}

impl Callable for Timed {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn map(&self, r: Record, later: &Later) -> StepResult<Answer<Record>> {
        self.time(|| self.inner.map(r, later))
    }
    fn filter(&self, r: &Record, later: &Later) -> StepResult<Answer<bool>> {
        self.time(|| self.inner.filter(r, later))
    }
    fn foreach(&self, r: &Record, later: &Later) -> StepResult<Answer<()>> {
        self.time(|| self.inner.foreach(r, later))
    }
    fn extract_key(&self, r: &Record) -> StepResult<String> {
        self.time(|| self.inner.extract_key(r))
    }
    fn accumulate(
        &self,
        acc: Option<Record>,
        r: Record,
        later: &Later,
    ) -> StepResult<Answer<Record>> {
        self.time(|| self.inner.accumulate(acc, r, later))
    }
    fn accumulate_by_key(
        &self,
        key: &str,
        acc: Option<Record>,
        r: Record,
        later: &Later,
    ) -> StepResult<Answer<Record>> {
        self.time(|| self.inner.accumulate_by_key(key, acc, r, later))
    }
    fn reduce(&self, key: &str, records: Vec<Record>) -> StepResult<Record> {
        self.time(|| self.inner.reduce(key, records))
    }
}

/// The primitive step kinds; `RG.GETEXECUTION` shows them by [`StepKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Map,
    Filter,
    Foreach,
    /// Expands list records into their elements (last element first, as 1.2).
    FlatMap,
    ExtractKey,
    Repartition,
    Group,
    Reduce,
    Collect,
    Limit {
        offset: usize,
        len: usize,
    },
    Accumulate,
    AccumulateByKey,
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Map => "map",
            StepKind::Filter => "filter",
            StepKind::Foreach => "foreach",
            StepKind::FlatMap => "flatmap",
            StepKind::ExtractKey => "extractkey",
            StepKind::Repartition => "repartition",
            StepKind::Group => "group",
            StepKind::Reduce => "reduce",
            StepKind::Collect => "collect",
            StepKind::Limit { .. } => "limit",
            StepKind::Accumulate => "accumulate",
            StepKind::AccumulateByKey => "accumulatebykey",
        }
    }

    /// Whether the step needs a user callback.
    pub fn takes_callback(&self) -> bool {
        !matches!(
            self,
            StepKind::FlatMap
                | StepKind::Repartition
                | StepKind::Group
                | StepKind::Collect
                | StepKind::Limit { .. }
        )
    }
}

/// A built-in callback of the core: unwraps keyed records back to their value
/// (the tail of `repartition`).
pub struct ValueOfKeyed;

impl Callable for ValueOfKeyed {
    fn map(&self, r: Record, _later: &Later) -> StepResult<Answer<Record>> {
        Ok(Answer::Now(match r {
            Record::Keyed(_, v) => *v,
            other => other,
        }))
    }
}

#[derive(Clone)]
pub struct Step {
    pub kind: StepKind,
    /// The callback's name as shown by `RG.GETEXECUTION` (1.2's C names).
    pub name: String,
    pub callback: Option<Arc<dyn Callable>>,
}

impl Step {
    pub fn new(
        kind: StepKind,
        name: impl Into<String>,
        callback: Option<Arc<dyn Callable>>,
    ) -> Step {
        Step {
            kind,
            name: name.into(),
            callback,
        }
    }

    /// A step without a callback, named after its kind.
    pub fn plain(kind: StepKind) -> Step {
        Step::new(kind, kind.name(), None)
    }

    pub fn arg(&self) -> String {
        match (&self.kind, &self.callback) {
            (StepKind::Limit { offset, len }, _) => format!("{offset},{len}"),
            (_, Some(cb)) => cb.describe(),
            _ => String::new(),
        }
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.kind.name(), self.name)
    }
}

/// A pipeline description: the reader's name and the steps after it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub reader: String,
    pub steps: Vec<Step>,
    pub desc: Option<String>,
}

impl Plan {
    /// Checks that every step that needs a callback has one.
    pub fn validate(&self) -> Result<(), crate::Error> {
        for s in &self.steps {
            if s.kind.takes_callback() && s.callback.is_none() {
                return Err(crate::Error::MissingCallback(s.kind.name()));
            }
        }
        Ok(())
    }
}
