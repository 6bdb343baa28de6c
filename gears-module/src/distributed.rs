//! `run()` across the shards of a cluster (1.2's default `mode='async'`):
//! the shard that got the script sends the pickled builder to every other
//! shard and each runs it over its own keys. Records cross shards at the
//! plan's boundaries: at a `repartition` each goes to the shard owning its
//! key (every shard waits for every other one's), at a `collect` all go to
//! the shard that started the run, which runs the rest over the union; so
//! `count`, `aggregate`, `sort`, `groupby`... answer as they would on one
//! shard. A shard silent for `ExecutionMaxIdleTime` ends the run with an
//! error.

use crate::parked::Parked;
use crate::redis;
use crate::state::Gears;
use gears_core::codec::{Reader, Writer};
use gears_core::plan::StepKind;
use gears_core::span::Crossing;
use gears_core::Identity;
use gears_python::PendingRun;
use std::time::Duration;

/// The message that starts a run on another shard, and the one that brings
/// its records back (1.2's receiver names).
pub const RUN: &str = "ExecutionPlan_OnReceived";
pub const COLLECTED: &str = "ExecutionPlan_CollectOnRecordReceived";
pub const REPARTITIONED: &str = "ExecutionPlan_OnRepartitionRecordReceived";
/// A shard could not run its part (1.2 terminated the execution).
pub const FAILED: &str = "ExecutionPlan_TeminateExecution";
/// RG.ABORTEXECUTION and RG.DROPEXECUTION on every shard.
pub const ABORT: &str = "ExecutionPlan_AbortExecution";
pub const DROP: &str = "RG_OnDropExecutionMsgReceived";
/// A session's requirement (with its wheels), ahead of its registrations.
pub const REQUIREMENT: &str = "Requirement_Received";
/// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS on every shard.
pub const PAUSE: &str = "RG_PauseRegistration";

/// RG.GETEXECUTION ... CLUSTER: the question, and each shard's answer.
pub const GET_EXECUTION: &str = "ExecutionPlan_GetExecution";
pub const EXECUTION_ENTRY: &str = "ExecutionPlan_ExecutionEntry";

/// How long RG.GETEXECUTION ... CLUSTER waits for the other shards.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Registrations and unregistrations made on one shard, for all of them.
pub const REGISTER: &str = "FlatExecutionPlan_RegisterKeySpaceEvent";
pub const UNREGISTER: &str = "ExecutionPlan_UnregisterExecutionReceived";
/// A script's registrations for every shard: prepare, each shard's answer,
/// then apply or cancel.
pub const PREPARE: &str = "RG_RegistrationCtxUpgrade";
pub const REGISTERED: &str = "RG_RegistrationCtxUpgradeDone";
pub const COMMIT: &str = "RG_RegistrationCtxCommit";
pub const CANCEL: &str = "RG_RegistrationCtxCancel";
/// A shard applied (or could not) the registrations it was told to commit.
pub const COMMITTED: &str = "RG_RegistrationCtxCommitted";

/// The next field of a message ([`codec`] layout).
fn take<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let mut r = Reader(input);
    let field = r.bytes().ok_or("bad message")?;
    *input = r.rest();
    Ok(field)
}

fn text(input: &mut &[u8]) -> Result<String, String> {
    String::from_utf8(take(input)?.to_vec()).map_err(|_| "bad message".into())
}

/// The other shards of the topology.
fn others(g: &Gears) -> Vec<String> {
    let t = g.topology();
    t.shards
        .iter()
        .filter(|s| Some(&s.id) != t.my_id.as_ref())
        .map(|s| s.id.clone())
        .collect()
}

/// How a run crosses shards: this shard's part of it.
struct Spanning {
    g: &'static Gears,
    id: String,
    /// The shard that started the run.
    initiator: String,
    me: String,
    /// Every shard of the run, this one included.
    shards: Vec<String>,
    idle: Duration,
    /// A `collect` was crossed: the rest runs on the initiator alone.
    collected: bool,
}

impl Spanning {
    fn new(g: &'static Gears, id: &str, initiator: &str, shards: Vec<String>) -> Spanning {
        let me = g.topology().my_id.clone().unwrap_or_default();
        let idle = Duration::from_millis(g.config().settings().executionmaxidletime.max(1) as u64);
        Spanning {
            g,
            id: id.to_owned(),
            initiator: initiator.to_owned(),
            me,
            shards,
            idle,
            collected: false,
        }
    }

    fn send(&self, to: &str, index: usize, kind: &str, outcome: Result<Vec<u8>, String>) {
        let Some(net) = self.g.net() else { return };
        let mut m = Writer::default();
        m.bytes(self.id.as_bytes());
        m.bytes(index.to_string().as_bytes());
        match outcome {
            Ok(bytes) => {
                m.bytes(b"ok");
                m.bytes(&bytes);
            }
            Err(e) => {
                m.bytes(b"error");
                m.bytes(e.as_bytes());
            }
        }
        net.send(to, kind, m.0);
    }

    /// Waits until every shard of `from` sent its records for boundary
    /// `index`; their errors become error records.
    fn gather(&self, index: usize, from: &[String]) -> Result<Vec<gears_core::Record>, String> {
        let mut got = self.g.mailbox().wait(&self.id, index, from, self.idle)?;
        let mut records = Vec::new();
        for (shard, outcome) in got.drain(..) {
            match outcome.and_then(|b| gears_python::convert::decode_records(&b)) {
                Ok(more) => records.extend(more),
                Err(e) => records.push(gears_core::Record::Error(format!("shard {shard}: {e}"))),
            }
        }
        Ok(records)
    }

    /// The shard that owns `key`'s slot (this one when unknown).
    fn owner(&self, key: &[u8]) -> String {
        let slot = gears_cluster::key_slot(key);
        let t = self.g.topology();
        t.shards
            .iter()
            .find(|s| s.ranges.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|s| s.id.clone())
            .unwrap_or_else(|| self.me.clone())
    }
}

impl Drop for Spanning {
    /// The run is over here: what the mailbox still holds for it goes.
    fn drop(&mut self) {
        self.g.mailbox().forget(&self.id);
    }
}

impl Crossing for Spanning {
    fn cross(
        &mut self,
        index: usize,
        kind: StepKind,
        records: Vec<gears_core::Record>,
    ) -> Result<Option<Vec<gears_core::Record>>, String> {
        if self.collected {
            // Only this shard (the initiator) goes on after a collect.
            return Ok(Some(records));
        }
        let others: Vec<String> = self
            .shards
            .iter()
            .filter(|s| **s != self.me)
            .cloned()
            .collect();
        match kind {
            StepKind::Repartition => {
                let mut mine = Vec::new();
                let mut theirs: std::collections::HashMap<String, Vec<gears_core::Record>> =
                    others.iter().map(|s| (s.clone(), Vec::new())).collect();
                for r in records {
                    let to = match &r {
                        gears_core::Record::Keyed(k, _) => self.owner(k.as_bytes()),
                        _ => self.me.clone(),
                    };
                    match theirs.get_mut(&to) {
                        Some(list) => list.push(r),
                        None => mine.push(r),
                    }
                }
                for (to, list) in theirs {
                    self.send(
                        &to,
                        index,
                        REPARTITIONED,
                        gears_python::convert::encode_records(&list),
                    );
                }
                mine.extend(self.gather(index, &others)?);
                Ok(Some(mine))
            }
            _ if self.me == self.initiator => {
                self.collected = true;
                let mut all = records;
                all.extend(self.gather(index, &others)?);
                Ok(Some(all))
            }
            _ => {
                let initiator = self.initiator.clone();
                self.send(
                    &initiator,
                    index,
                    COLLECTED,
                    gears_python::convert::encode_records(&records),
                );
                Ok(None)
            }
        }
    }
}

/// Starts `run` here and on every other shard (it has a shipped builder).
pub fn start(g: &'static Gears, run: PendingRun) -> Result<(), String> {
    let net = g.net().ok_or("no connection to the other shards")?;
    let shipped = run
        .shipped()
        .ok_or("the run was not prepared for the cluster")?;
    let exec = run.execution.clone();
    let me = g.topology().my_id.clone().unwrap_or_default();
    let mut shards = others(g);
    let mut message = Writer::default();
    message.bytes(exec.id.as_bytes());
    message.bytes(exec.identity.user.as_deref().unwrap_or("").as_bytes());
    message.bytes(&[exec.identity.user.is_some() as u8]);
    message.bytes(exec.identity.db.to_string().as_bytes());
    let mut list = Writer::default();
    for s in &shards {
        list.bytes(s.as_bytes());
    }
    list.bytes(me.as_bytes());
    message.bytes(&list.0);
    message.bytes(shipped);
    for s in &shards {
        net.send(s, RUN, message.0.clone());
    }
    shards.push(me.clone());
    let spanning = Spanning::new(g, &exec.id, &me, shards);
    gears_python::submit_spanning(run, Box::new(spanning))
}

/// Another shard started a run: run its part here (main thread, from
/// RG.INNERMSGCOMMAND).
pub fn received_run(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, Identity, Vec<String>, Vec<u8>), String> {
        let id = text(&mut payload)?;
        let user = text(&mut payload)?;
        let has_user = take(&mut payload)? == [1];
        let db: i64 = text(&mut payload)?.parse().map_err(|_| "bad message")?;
        let mut list = take(&mut payload)?;
        let mut shards = Vec::new();
        while !list.is_empty() {
            shards.push(text(&mut list)?);
        }
        let shipped = take(&mut payload)?.to_vec();
        let identity = Identity::new(has_user.then_some(user), db);
        Ok((id, identity, shards, shipped))
    })();
    let (id, identity, shards, shipped) = match parsed {
        Ok(p) => p,
        Err(e) => {
            redis::log(
                "warning",
                &format!("a run from shard {sender} was refused: {e}"),
            );
            return;
        }
    };
    g.engine.execution_ids.observe(&id);
    let spanning = Spanning::new(g, &id, sender, shards);
    let failed = match gears_python::remote_run(&shipped, &id, identity) {
        Ok(run) => match gears_python::submit_spanning(run, Box::new(spanning)) {
            Ok(()) => return,
            Err(e) => e,
        },
        Err(e) => e,
    };
    // The others must not wait for this shard: each is told why it has
    // nothing.
    let me = g.topology().my_id.clone().unwrap_or_default();
    let mut m = Writer::default();
    m.bytes(id.as_bytes());
    m.bytes(format!("shard {me}: {failed}").as_bytes());
    to_others(g, FAILED, &m.0);
}

/// A shard can not take part in a run.
pub fn received_failure(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    match text(&mut payload).and_then(|id| Ok((id, text(&mut payload)?))) {
        Ok((id, error)) => g.mailbox().fail(&id, sender, error),
        Err(e) => redis::log("warning", &format!("a failure from shard {sender}: {e}")),
    }
}

/// A shard sent records of a run to this one.
pub fn received_records(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, usize, crate::mailbox::Outcome), String> {
        let id = text(&mut payload)?;
        let index: usize = text(&mut payload)?.parse().map_err(|_| "bad message")?;
        let kind = text(&mut payload)?;
        let body = take(&mut payload)?;
        let outcome = if kind == "ok" {
            Ok(body.to_vec())
        } else {
            Err(String::from_utf8_lossy(body).into_owned())
        };
        Ok((id, index, outcome))
    })();
    match parsed {
        Ok((id, index, outcome)) => g.mailbox().deliver(&id, index, sender, outcome),
        Err(e) => redis::log("warning", &format!("records from shard {sender}: {e}")),
    }
}

/// Sends `payload` to `receiver` on every other shard (in a cluster).
pub fn to_others(g: &Gears, receiver: &str, payload: &[u8]) {
    let Some(net) = g.cluster_net() else { return };
    for shard in others(g) {
        net.send(&shard, receiver, payload.to_vec());
    }
}

/// RG.ABORTEXECUTION / RG.DROPEXECUTION of `id` for every other shard.
pub fn share_abort(g: &Gears, id: &str) {
    to_others(g, ABORT, id.as_bytes());
}

pub fn share_drop(g: &Gears, id: &str) {
    to_others(g, DROP, id.as_bytes());
}

/// Another shard aborted a run that spans this one too.
pub fn received_abort(g: &'static Gears, _: &str, id: &[u8]) {
    if let Some(e) = g.engine.executions.get(&String::from_utf8_lossy(id)) {
        e.abort();
    }
}

/// Another shard dropped a run that spans this one too.
pub fn received_drop(g: &'static Gears, _: &str, id: &[u8]) {
    let _ = g
        .engine
        .executions
        .drop_execution(&String::from_utf8_lossy(id));
}

/// Sends `session`'s requirements (with their wheels) to every other
/// shard, so that registrations importing them can be restored there.
fn share_requirements(g: &Gears, names: &[String]) {
    let Some(reqs) = g.requirements_if_any() else {
        return;
    };
    for name in names {
        if let Some(Ok(blob)) = reqs.export(name) {
            to_others(g, REQUIREMENT, &blob);
        }
    }
}

/// A requirement another shard installed: installed here from its wheels,
/// offline, before the registrations that follow it.
pub fn received_requirement(g: &'static Gears, sender: &str, payload: &[u8]) {
    let outcome = g.requirements().and_then(|reqs| {
        let names = reqs.import(payload, true)?;
        crate::requirements::changed(reqs, &names);
        Ok(())
    });
    if let Err(e) = outcome {
        redis::log(
            "warning",
            &format!("a requirement from shard {sender} could not be installed: {e}"),
        );
    }
}

/// Sends every registration of this shard to a shard that joined the
/// cluster (the shard with the lowest id among the old ones does it).
pub fn welcome(g: &Gears, old: &gears_cluster::Topology, new: &gears_cluster::Topology) {
    let Some(me) = new.my_id.as_deref() else {
        return;
    };
    if !old.is_cluster() {
        // The first read: every shard starts from what it has.
        return;
    }
    let lowest = old.shards.iter().map(|s| s.id.as_str()).min();
    if lowest != Some(me) {
        return;
    }
    let Some(net) = g.net() else { return };
    let joined: Vec<&str> = new
        .shards
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| !old.shards.iter().any(|s| s.id == *id))
        .collect();
    if joined.is_empty() {
        return;
    }
    let sessions = g.engine.registrations.sessions();
    let all = g.engine.registrations.snapshot();
    for shard in joined {
        redis::log(
            "notice",
            &format!(
                "shard {shard} joined: sending it {} registrations",
                all.len()
            ),
        );
        for s in &sessions {
            if let Some(reqs) = g.requirements_if_any() {
                for name in &s.requirements {
                    if let Some(Ok(blob)) = reqs.export(name) {
                        net.send(shard, REQUIREMENT, blob);
                    }
                }
            }
        }
        for reg in all.iter() {
            let session = sessions.iter().find(|s| s.id == reg.session);
            let blob = gears_core::persist::encode_registration(reg, session);
            net.send(shard, REGISTER, blob);
        }
    }
}

/// Work to do later, once.
pub type Work = Box<dyn FnOnce() + Send>;
/// A reply that waits for other shards (call it off the main thread).
pub type Answer = Box<dyn FnOnce() -> gears_core::Reply + Send>;

/// A script's registrations in a cluster: every shard prepares them (their
/// callbacks must restore there), and only when all could does any shard
/// apply them; else none does and the client gets each failing shard's
/// error (`ERR shard-<id>: ...`). `apply_here` applies them on this shard
/// (it takes the Redis lock). Returns `None` off-cluster; the function
/// returned waits for the other shards (call it off the main thread) and
/// gives the client's reply.
pub fn register_everywhere(
    g: &'static Gears,
    requirements: Vec<String>,
    replaced: Option<String>,
    saved: Vec<Vec<u8>>,
    apply_here: Work,
) -> Result<Answer, Work> {
    let Some(net) = g.cluster_net() else {
        return Err(apply_here);
    };
    share_requirements(g, &requirements);
    static SHARED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let token = format!(
        "register-{}",
        SHARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut m = Writer::default();
    m.bytes(token.as_bytes());
    m.bytes(replaced.as_deref().unwrap_or("").as_bytes());
    m.bytes(&[replaced.is_some() as u8]);
    for blob in &saved {
        m.bytes(blob);
    }
    let shards = others(g);
    for shard in &shards {
        net.send(shard, PREPARE, m.0.clone());
    }
    let idle =
        Duration::from_millis(g.config().settings().pythoninstallreqmaxidletime.max(1) as u64);
    Ok(Box::new(move || {
        let errors = match g.mailbox().wait(&token, 0, &shards, idle) {
            Ok(answers) => answers
                .into_iter()
                .filter_map(|(shard, a)| a.err().map(|e| format!("ERR shard-{shard}: {e}")))
                .collect(),
            Err(e) => vec![e],
        };
        let decision = if errors.is_empty() { COMMIT } else { CANCEL };
        if let Some(net) = g.net() {
            for shard in &shards {
                net.send(shard, decision, token.as_bytes().to_vec());
            }
        }
        let reply = if errors.is_empty() {
            apply_here();
            // OK once every shard has applied them (or was waited for as
            // long as for its first answer): a client reading any shard
            // after OK finds the registrations there.
            let unapplied = match g.mailbox().wait(&token, 1, &shards, idle) {
                Ok(answers) => answers
                    .into_iter()
                    .filter_map(|(shard, a)| a.err().map(|e| format!("shard {shard}: {e}")))
                    .collect(),
                Err(e) => vec![e],
            };
            if !unapplied.is_empty() {
                redis::log(
                    "warning",
                    &format!(
                        "committed registrations not confirmed: {}",
                        unapplied.join("; ")
                    ),
                );
            }
            gears_core::Reply::Status("OK".into())
        } else {
            gears_core::Reply::Array(errors.into_iter().map(gears_core::Reply::Error).collect())
        };
        g.mailbox().forget(&token);
        reply
    }))
}

/// Sends an RG.UNREGISTER applied here to every other shard.
pub fn share_unregister(g: &Gears, id: &str, abort_pending: bool) {
    let mut m = Writer::default();
    m.bytes(id.as_bytes());
    m.bytes(&[abort_pending as u8]);
    to_others(g, UNREGISTER, &m.0);
}

/// A registration made on another shard: applied here, saved and sent to
/// this shard's replicas and AOF like any other.
pub fn received_registration(g: &'static Gears, sender: &str, payload: &[u8]) {
    let outcome = gears_core::persist::decode_registration(payload)
        .and_then(|saved| crate::registry::restore(g, saved, true));
    match outcome {
        Ok(()) => redis::replicate(c"RG.INNERREGISTER", &[payload]),
        Err(e) => redis::log(
            "warning",
            &format!("a registration from shard {sender} could not be applied: {e}"),
        ),
    }
}

/// The registrations of a script run on another shard: this shard checks
/// that their callbacks restore here, keeps them, and answers; it applies
/// them when told every shard could.
pub fn received_prepare(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    /// (answer token, the session replaced, the saved registrations).
    type Batch = (String, Option<String>, Vec<Vec<u8>>);
    let parsed = (|| -> Result<Batch, String> {
        let token = text(&mut payload)?;
        let replaced = text(&mut payload)?;
        let has_replaced = take(&mut payload)? == [1];
        let mut blobs = Vec::new();
        while !payload.is_empty() {
            blobs.push(take(&mut payload)?.to_vec());
        }
        Ok((token, has_replaced.then_some(replaced), blobs))
    })();
    let (token, replaced, blobs) = match parsed {
        Ok(p) => p,
        Err(e) => {
            redis::log(
                "warning",
                &format!("registrations from shard {sender}: {e}"),
            );
            return;
        }
    };
    let outcome = blobs
        .iter()
        .map(|b| gears_core::persist::decode_registration(b).and_then(crate::registry::prepare))
        .collect::<Result<Vec<_>, _>>();
    let answer = match outcome {
        Ok(ready) => {
            let parked = Parked {
                replaced,
                ready,
                blobs,
            };
            let key = format!("{sender}/{token}");
            redis::log(
                "notice",
                &format!("registrations prepared for {key}, waiting for its decision"),
            );
            g.parked().insert(key.clone(), parked);
            expire_prepared(g, key);
            Ok(())
        }
        Err(e) => {
            redis::log(
                "warning",
                &format!("registrations from shard {sender} can not be applied here: {e}"),
            );
            Err(e)
        }
    };
    answer_registrations(g, sender, REGISTERED, token.as_bytes(), answer);
}

/// Answers `sender` about the registrations of `token` (`receiver`: after
/// the prepare, or after the commit).
fn answer_registrations(
    g: &Gears,
    sender: &str,
    receiver: &str,
    token: &[u8],
    answer: Result<(), String>,
) {
    let Some(net) = g.net() else { return };
    let mut m = Writer::default();
    m.bytes(token);
    match &answer {
        Ok(()) => m.bytes(b""),
        Err(e) => m.bytes(e.as_bytes()),
    }
    m.bytes(&[answer.is_ok() as u8]);
    net.send(sender, receiver, m.0);
}

/// How long registrations prepared here wait for the decision of the shard
/// that sent them: that shard waits at most `PythonInstallReqMaxIdleTime`
/// for every answer, then decides; past three times as long it is gone
/// (killed, partitioned) and will never decide.
fn decision_deadline(g: &Gears) -> Duration {
    let idle = g.config().settings().pythoninstallreqmaxidletime.max(1) as u64;
    Duration::from_millis(idle.saturating_mul(3))
}

/// Drops the registrations prepared under `key` if no decision came by the
/// deadline, with a log line: nothing stays prepared forever.
fn expire_prepared(g: &'static Gears, key: String) {
    let deadline = decision_deadline(g);
    g.timer.after(deadline, move || {
        if g.parked().remove(&key).is_some() {
            redis::log(
                "warning",
                &format!(
                    "registrations prepared for {key} expired: the shard that sent them did not \
                     commit or cancel within {} ms; they are not applied",
                    deadline.as_millis()
                ),
            );
        }
    });
}

/// Every shard could: apply what was prepared here (after removing the
/// session it replaces), save it and send it to this shard's replicas.
pub fn received_commit(g: &'static Gears, sender: &str, token: &[u8]) {
    let key = format!("{sender}/{}", String::from_utf8_lossy(token));
    let Some(parked) = g.parked().remove(&key) else {
        let missing = Err("nothing was prepared here (expired?)".to_string());
        answer_registrations(g, sender, COMMITTED, token, missing);
        return;
    };
    let Parked {
        replaced,
        ready,
        blobs,
    } = parked;
    if let Some(old) = replaced {
        crate::registry::unregister_session(g, &old);
    }
    crate::registry::install(g, ready, true);
    for blob in &blobs {
        redis::replicate(c"RG.INNERREGISTER", &[blob]);
    }
    answer_registrations(g, sender, COMMITTED, token, Ok(()));
}

/// Some shard could not: what was prepared here goes.
pub fn received_cancel(g: &'static Gears, sender: &str, token: &[u8]) {
    let key = format!("{sender}/{}", String::from_utf8_lossy(token));
    g.parked().remove(&key);
}

/// A shard's answer to registrations sent from here.
pub fn received_registered(g: &'static Gears, sender: &str, payload: &[u8]) {
    deliver_answer(g, sender, payload, 0);
}

/// A shard's answer after applying registrations sent from here.
pub fn received_committed(g: &'static Gears, sender: &str, payload: &[u8]) {
    deliver_answer(g, sender, payload, 1);
}

/// An answer about registrations, to the mailbox of their token: `step` 0
/// for the prepare, 1 for the commit.
fn deliver_answer(g: &Gears, sender: &str, mut payload: &[u8], step: usize) {
    let parsed = (|| -> Result<(String, String, bool), String> {
        Ok((
            text(&mut payload)?,
            text(&mut payload)?,
            take(&mut payload)? == [1],
        ))
    })();
    if let Ok((token, error, ok)) = parsed {
        let outcome = if ok { Ok(Vec::new()) } else { Err(error) };
        g.mailbox().deliver(&token, step, sender, outcome);
    }
}

/// An RG.UNREGISTER made on another shard.
pub fn received_unregister(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    match text(&mut payload).and_then(|id| Ok((id, take(&mut payload)? == [1]))) {
        Ok((id, abort)) => {
            crate::registry::unregister(g, &id, abort, true);
        }
        Err(e) => redis::log(
            "warning",
            &format!("an unregistration from shard {sender}: {e}"),
        ),
    }
}

/// Asks every other shard for its part of execution `id`; `None` off
/// cluster. The answer (call it off the main thread: it waits) is the
/// entries of the shards that have it, and an error entry for those that
/// did not answer.
pub fn ask_execution(
    g: &'static Gears,
    id: &str,
) -> Option<impl FnOnce() -> Vec<gears_core::Reply>> {
    let net = g.cluster_net()?;
    static ASKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let token = format!(
        "getexecution-{}",
        ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let shards = others(g);
    let mut m = Writer::default();
    m.bytes(token.as_bytes());
    m.bytes(id.as_bytes());
    for s in &shards {
        net.send(s, GET_EXECUTION, m.0.clone());
    }
    Some(move || {
        let answers = match g.mailbox().wait(&token, 0, &shards, ASK_TIMEOUT) {
            Ok(a) => a,
            Err(e) => return vec![gears_core::Reply::Error(e)],
        };
        g.mailbox().forget(&token);
        answers
            .into_iter()
            .filter_map(|(_, a)| match a {
                Ok(bytes) if bytes.is_empty() => None,
                Ok(bytes) => Some(
                    gears_core::Reply::decode(&mut bytes.as_slice())
                        .unwrap_or_else(gears_core::Reply::Error),
                ),
                Err(e) => Some(gears_core::Reply::Error(e)),
            })
            .collect()
    })
}

/// Another shard asks for this shard's part of an execution.
pub fn received_get_execution(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let Ok((token, id)) = text(&mut payload).and_then(|t| Ok((t, text(&mut payload)?))) else {
        return;
    };
    let mut answer = Vec::new();
    if let Some(e) = g.engine.executions.get(&id) {
        crate::plans::execution_entry(g, &e).encode(&mut answer);
    }
    let Some(net) = g.net() else { return };
    let mut m = Writer::default();
    m.bytes(token.as_bytes());
    m.bytes(&answer);
    net.send(sender, EXECUTION_ENTRY, m.0);
}

/// A shard's part of an execution this one asked for.
pub fn received_execution_entry(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    if let Ok((token, entry)) =
        text(&mut payload).and_then(|t| Ok((t, take(&mut payload)?.to_vec())))
    {
        g.mailbox().deliver(&token, 0, sender, Ok(entry));
    }
}

/// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS applied here, for every
/// other shard.
pub fn share_pause(g: &Gears, id: &str, pause: bool, db: i64) {
    let mut m = Writer::default();
    m.bytes(id.as_bytes());
    m.bytes(if pause {
        b"pause".as_slice()
    } else {
        b"unpause".as_slice()
    });
    m.bytes(db.to_string().as_bytes());
    to_others(g, PAUSE, &m.0);
}

/// Another shard paused or unpaused a stream registration.
pub fn received_pause(g: &'static Gears, sender: &str, mut payload: &[u8]) {
    let parsed = (|| -> Result<(String, bool, i64), String> {
        let id = text(&mut payload)?;
        let pause = text(&mut payload)? == "pause";
        let db = text(&mut payload)?.parse().map_err(|_| "bad message")?;
        Ok((id, pause, db))
    })();
    match parsed {
        Ok((id, pause, _db)) => {
            if let Some(reg) = g.engine.registrations.get(&id) {
                crate::streams::set_paused(g, &reg, pause);
            }
        }
        Err(e) => redis::log("warning", &format!("a pause from shard {sender}: {e}")),
    }
}
