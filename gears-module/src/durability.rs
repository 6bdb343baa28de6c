//! Registrations that outlive the process: saved as RDB aux data, cleared
//! before every load (RDB, AOF, full sync) so nothing is duplicated, and
//! following the server's role (stream consumers run only on a master).

use crate::errors::Error;
use crate::redis;
use crate::registry;
use crate::requirements;
use crate::state::{self, Gears};
use crate::streams;
use gears_core::persist::{decode_snapshot, encode_registration, encode_snapshot};

/// The RDB aux data: every session and registration.
pub fn aux_save() -> Vec<u8> {
    state::get()
        .map(|g| encode_snapshot(&g.engine.registrations))
        .unwrap_or_default()
}

/// The id counters: later ids never reuse one handed out before a save.
pub fn aux_counters() -> Vec<u8> {
    let Some(g) = state::get() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&g.engine.execution_ids.current().to_le_bytes());
    out.extend_from_slice(&g.engine.registration_ids.current().to_le_bytes());
    out
}

/// Applies what the aux save wrote. A format this build does not know fails
/// the load; a registration whose callbacks can not be restored is logged
/// and left out.
pub fn aux_load(aux: redis::Aux<'_>) -> Result<(), Error> {
    let g = state::get().ok_or_else(|| Error::Load("the module is not initialized".into()))?;
    if let Some(c) = aux.counters.filter(|c| !c.is_empty()) {
        let (Some(e), Some(r)) = (c.get(0..8), c.get(8..16)) else {
            return Err(Error::Load("id counters of an unknown layout".into()));
        };
        let number = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        g.engine.execution_ids.raise_to(number(e));
        g.engine.registration_ids.raise_to(number(r));
    }
    // Installed first: restored callbacks may import them.
    if !aux.requirements.is_empty() {
        requirements::load(g, aux.requirements)?;
    }
    let snap = decode_snapshot(aux.registrations)?;
    for (id, desc, reqs) in &snap.sessions {
        g.engine
            .registrations
            .open_session(id, desc.clone(), reqs.clone());
    }
    let total = snap.registrations.len();
    let mut restored = 0;
    for (id, outcome) in registry::restore_all(g, snap.registrations, true) {
        match outcome {
            Ok(()) => restored += 1,
            Err(e) => redis::log(
                "warning",
                &format!("registration {id} could not be restored and is left out: {e}"),
            ),
        }
    }
    redis::log(
        "notice",
        &format!("restored {restored} of {total} registrations"),
    );
    Ok(())
}

/// An AOF rewrite without RDB preamble was forked: its base file will hold
/// keys only, so the new incremental file (opened before the fork) starts
/// with every requirement and registration as the commands that replay
/// them. Replicas get them too, and keep registrations they already hold.
pub fn aof_rewrite() {
    let Some(g) = state::get() else { return };
    if let Some(reqs) = g.requirements_if_any() {
        let names: Vec<String> = reqs.list().iter().map(|r| r.name.clone()).collect();
        requirements::replicate(reqs, &names);
    }
    let regs = &g.engine.registrations;
    for reg in regs.snapshot().iter() {
        let blob = encode_registration(reg, regs.session(&reg.session).as_ref());
        redis::replicate(c"RG.INNERREGISTER", &[&blob]);
    }
}

/// A load starts (everything goes: the load brings its own) or ended (a
/// master runs the `onRegistered` of what it loaded and resumes its stream
/// consumers).
pub fn loading(started: bool) {
    let Some(g) = state::get() else { return };
    if started {
        registry::clear(g);
    } else if redis::is_master() {
        registry::announce_all(g);
        resume_streams(g);
    }
}

/// A replica promoted runs the `onRegistered` of its registrations and
/// resumes its stream consumers from the group's pending entries; a master
/// demoted stops its own.
pub fn role_changed(master: bool) {
    let Some(g) = state::get() else { return };
    if master {
        registry::announce_all(g);
        resume_streams(g);
    } else {
        g.consumers().clear();
    }
}

fn resume_streams(g: &'static Gears) {
    redis::with_lock(|_| streams::scan_every_db(g, &g.engine.registrations.snapshot()));
}
