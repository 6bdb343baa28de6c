//! Registrations in a cluster: a script's registrations in two phases
//! (PREPARE on every shard, each answers REGISTERED, then COMMIT or CANCEL;
//! each answers a COMMIT with COMMITTED before the client gets OK);
//! registrations and unregistrations made on one shard (REGISTER,
//! UNREGISTER), pauses (PAUSE), and everything sent to a shard that joins.

use super::*;
use crate::errors::Error;

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
    let mut m = Encoder::default();
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
        let errors = shard_errors(g.mailbox().wait(&token, 0, &shards, idle), |shard, e| {
            format!("ERR shard-{shard}: {e}")
        });
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
            let unapplied = shard_errors(g.mailbox().wait(&token, 1, &shards, idle), |shard, e| {
                format!("shard {shard}: {e}")
            });
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
    let mut m = Encoder::default();
    m.bytes(id.as_bytes());
    m.bytes(&[abort_pending as u8]);
    to_others(g, UNREGISTER, &m.0);
}

/// A registration made on another shard: applied here, saved and sent to
/// this shard's replicas and AOF like any other.
pub fn received_registration(g: &'static Gears, sender: &str, payload: &[u8]) {
    let outcome = gears_core::persist::decode_registration(payload)
        .map_err(Error::from)
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
    let parsed = (|| -> Result<Batch, Error> {
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
        .map(|b| {
            let saved = gears_core::persist::decode_registration(b)?;
            crate::registry::check_commands(&saved.args)?;
            crate::registry::prepare(saved)
        })
        .collect::<Result<Vec<_>, _>>();
    let answer = match outcome {
        Ok(ready) => {
            let waiting = AwaitingDecision {
                replaced,
                ready,
                blobs,
            };
            let key = format!("{sender}/{token}");
            redis::log(
                "notice",
                &format!("registrations prepared for {key}, waiting for its decision"),
            );
            g.awaiting_decision().insert(key.clone(), waiting);
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

/// The errors among the shards' answers, each worded by `word` (shard,
/// error), or the wait's own error when the answers did not all come.
fn shard_errors(
    answers: Result<Vec<(String, crate::mailbox::Outcome)>, Error>,
    word: impl Fn(&str, &Error) -> String,
) -> Vec<String> {
    match answers {
        Ok(answers) => answers
            .iter()
            .filter_map(|(shard, a)| a.as_ref().err().map(|e| word(shard, e)))
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

/// Answers `sender` about the registrations of `token` (`receiver`: after
/// the prepare, or after the commit).
pub(super) fn answer_registrations(
    g: &Gears,
    sender: &str,
    receiver: &str,
    token: &[u8],
    answer: Result<(), Error>,
) {
    let Some(net) = g.net() else { return };
    let mut m = Encoder::default();
    m.bytes(token);
    match &answer {
        Ok(()) => m.bytes(b""),
        Err(e) => m.bytes(e.to_string().as_bytes()),
    }
    m.bytes(&[answer.is_ok() as u8]);
    net.send(sender, receiver, m.0);
}

/// How long registrations prepared here wait for the decision of the shard
/// that sent them: that shard waits at most `PythonInstallReqMaxIdleTime`
/// for every answer, then decides; past three times as long it is gone
/// (killed, partitioned) and will never decide.
pub(super) fn decision_deadline(g: &Gears) -> Duration {
    let idle = g.config().settings().pythoninstallreqmaxidletime.max(1) as u64;
    Duration::from_millis(idle.saturating_mul(3))
}

/// Drops the registrations prepared under `key` if no decision came by the
/// deadline, with a log line: nothing stays prepared forever.
pub(super) fn expire_prepared(g: &'static Gears, key: String) {
    let deadline = decision_deadline(g);
    g.timer.after(deadline, move || {
        if g.awaiting_decision().remove(&key).is_some() {
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
    let Some(waiting) = g.awaiting_decision().remove(&key) else {
        let missing = Err(Error::Shard(
            "nothing was prepared here (expired?)".to_string(),
        ));
        answer_registrations(g, sender, COMMITTED, token, missing);
        return;
    };
    let AwaitingDecision {
        replaced,
        ready,
        blobs,
    } = waiting;
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
    g.awaiting_decision().remove(&key);
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
pub(super) fn deliver_answer(g: &Gears, sender: &str, mut payload: &[u8], step: usize) {
    let parsed = (|| -> Result<(String, String, bool), Error> {
        Ok((
            text(&mut payload)?,
            text(&mut payload)?,
            take(&mut payload)? == [1],
        ))
    })();
    if let Ok((token, error, ok)) = parsed {
        let outcome = if ok {
            Ok(Vec::new())
        } else {
            Err(Error::Shard(error))
        };
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

/// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS applied here, for every
/// other shard.
pub fn share_pause(g: &Gears, id: &str, pause: bool, db: i64) {
    let mut m = Encoder::default();
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
    let parsed = (|| -> Result<(String, bool, i64), Error> {
        let id = text(&mut payload)?;
        let pause = text(&mut payload)? == "pause";
        let db = text(&mut payload)?.parse().map_err(|_| Error::BadMessage)?;
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
