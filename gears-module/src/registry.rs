//! Registrations on the Redis side: checking what a script registers,
//! applying it once the script succeeded, removing registrations, and
//! keeping the event tables in step with the registry.

use crate::errors::{Error, Hooking};
use crate::hooks::check_hookable;
use crate::prepared::Prepared;
use crate::redis;
use crate::state::Gears;
use crate::streams;
use crate::tables::Tables;
use gears_core::persist::{encode_registration, Saved};
use gears_core::registration::{Mode, ReaderArgs, Registration};
use gears_python::{PendingRegistration, ScriptScope};

/// Whether `reg` still counts for the checks of a script of `scope`.
fn stays(reg: &Registration, scope: &ScriptScope) -> bool {
    reg.session != scope.session && scope.replacing.as_deref() != Some(&reg.session)
}

/// The checks of a registration's hooked commands against this server
/// (they exist, may be hooked, have no movable keys when hooked by prefix):
/// every shard of a cluster makes them before it may take a registration,
/// as a command renamed away on one shard must fail it everywhere.
pub fn check_commands(args: &ReaderArgs) -> Result<(), Error> {
    match args {
        ReaderArgs::Hook {
            command, keyprefix, ..
        } => check_hookable(command, keyprefix.is_some(), Hooking::Override),
        ReaderArgs::Keys {
            commands: Some(commands),
            prefix,
            ..
        } => commands
            .iter()
            .try_for_each(|c| check_hookable(c, prefix.as_slice() != b"*", Hooking::Hook)),
        _ => Ok(()),
    }
}

/// The checks 1.2 makes when `register()` is called.
pub fn check(g: &Gears, args: &ReaderArgs, scope: &ScriptScope) -> Result<(), Error> {
    let regs = &g.engine.registrations;
    check_commands(args)?;
    match args {
        ReaderArgs::Trigger { name, .. }
            if regs.trigger(name).is_some_and(|r| stays(&r, scope)) =>
        {
            return Err(Error::TriggerTaken);
        }
        ReaderArgs::Hook { command, .. } => {
            if let Some(newest) = regs.hooks(command).first() {
                if newest.mode != Mode::Sync {
                    return Err(if newest.session == scope.session {
                        Error::OverrideNonSyncSameSession
                    } else {
                        Error::OverrideNonSync
                    });
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rebuilds the event tables after the registry changed.
fn refresh(g: &Gears) {
    // Kept encoded for a forked save, which must take no lock.
    redis::prepare_aux(
        redis::AuxPart::Registrations,
        gears_core::persist::encode_snapshot(&g.engine.registrations),
    );
    let all = g.engine.registrations.snapshot();
    g.set_tables(Tables::build(&all, |c| {
        redis::command_info(c).map(|i| (i.spec, i.flags.iter().any(|f| f == "write")))
    }));
}

/// Applies the registrations of a script that succeeded (sent by a client
/// of database `db`), after removing those of the session it replaces.
/// Each one reaches the AOF and the replicas as `RG.INNERREGISTER`, whose
/// argument (the saved form) is returned for the other shards.
pub fn apply(
    g: &'static Gears,
    db: i64,
    session: &str,
    desc: Option<String>,
    requirements: Vec<String>,
    replaced: Option<&str>,
    pending: Vec<PendingRegistration>,
) -> Vec<Vec<u8>> {
    let regs = &g.engine.registrations;
    if let Some(old) = replaced {
        unregister_session(g, old);
    }
    regs.open_session(session, desc, requirements);
    let opened = regs.session(session);
    let mut saved = Vec::with_capacity(pending.len());
    for p in &pending {
        regs.add(p.reg.clone());
        let blob = encode_registration(&p.reg, opened.as_ref());
        redis::replicate(c"RG.INNERREGISTER", &[&blob]);
        saved.push(blob);
    }
    refresh(g);
    let regs: Vec<_> = pending.iter().map(|p| p.reg.clone()).collect();
    streams::scan_existing(g, &regs, db);
    for p in &pending {
        p.on_registered();
    }
    saved
}

/// Removes every registration of `session` (replaced by an UPGRADE or
/// REPLACE_WITH), aborting their pending executions; propagated.
pub fn unregister_session(g: &Gears, session: &str) {
    let ids = g
        .engine
        .registrations
        .session(session)
        .map(|s| s.registrations)
        .unwrap_or_default();
    for id in ids {
        unregister(g, &id, true, true);
    }
}

/// Removes a registration; `false` if there is none with that id. With
/// `propagate`, the AOF and the replicas get `RG.INNERUNREGISTER`.
pub fn unregister(g: &Gears, id: &str, abort_pending: bool, propagate: bool) -> bool {
    let Some(session_ended) = remove(g, id, abort_pending, propagate) else {
        return false;
    };
    refresh(g);
    if session_ended {
        // Its functions and globals point to each other: the memory Redis
        // counts goes back now, not at the collector's next pass.
        gears_python::collect_garbage();
    }
    true
}

/// [`unregister`] without rebuilding the tables or collecting (the caller
/// does, once). `None` if there is no such registration; else whether its
/// session ended with it.
fn remove(g: &Gears, id: &str, abort_pending: bool, propagate: bool) -> Option<bool> {
    let reg = g.engine.registrations.remove(id)?;
    if propagate {
        let mut args: Vec<&[u8]> = vec![id.as_bytes()];
        if abort_pending {
            args.push(b"abortpending");
        }
        redis::replicate(c"RG.INNERUNREGISTER", &args);
    }
    if abort_pending {
        for e in reg.pending_executions() {
            e.abort();
        }
    }
    streams::forget(g, &reg);
    let session_ended = g.engine.registrations.session(&reg.session).is_none();
    if session_ended {
        gears_python::forget_restored_sessions(Some(&reg.session));
    }
    Some(session_ended)
}

/// Runs the `onRegistered` of every registration: a load ended on a
/// master, or a replica was promoted.
pub fn announce_all(g: &Gears) {
    for reg in g.engine.registrations.snapshot().iter() {
        reg.announce();
    }
}

/// Removes every registration (a load brings its own), propagating nothing.
pub fn clear(g: &Gears) {
    for reg in g.engine.registrations.snapshot().iter() {
        remove(g, &reg.id, true, false);
    }
    refresh(g);
    g.consumers().clear();
    gears_python::forget_restored_sessions(None);
    gears_python::collect_garbage();
}

/// Whether the registration saved as `blob` is here already, unchanged.
pub fn holds(g: &Gears, blob: &[u8]) -> bool {
    let Ok(saved) = gears_core::persist::decode_registration(blob) else {
        return false;
    };
    let regs = &g.engine.registrations;
    regs.get(&saved.id)
        .is_some_and(|reg| encode_registration(&reg, regs.session(&reg.session).as_ref()) == blob)
}

/// Applies a saved registration (RDB, AOF, replication) under its own id,
/// replacing one with the same id. A master starts consuming its streams.
pub fn restore(g: &'static Gears, saved: Saved, on_registered: bool) -> Result<(), Error> {
    restore_all(g, vec![saved], on_registered)
        .pop()
        .map_or(Ok(()), |(_, outcome)| outcome)
}

/// [`restore`] for many registrations (a load): the tables and the saved
/// form are rebuilt once, not once per registration. Returns each id's
/// outcome.
pub fn restore_all(
    g: &'static Gears,
    saved: Vec<Saved>,
    on_registered: bool,
) -> Vec<(String, Result<(), Error>)> {
    let mut outcomes = Vec::with_capacity(saved.len());
    let mut ready = Vec::with_capacity(saved.len());
    for one in saved {
        let id = one.id.clone();
        match prepare(one) {
            Ok(p) => {
                ready.push(p);
                outcomes.push((id, Ok(())));
            }
            Err(e) => outcomes.push((id, Err(e))),
        }
    }
    install(g, ready, on_registered);
    outcomes
}

/// Restores the callbacks of a saved registration (what can fail: they may
/// not unpickle here), without applying it.
pub fn prepare(saved: Saved) -> Result<Prepared, Error> {
    let session_desc = saved.session_desc.clone();
    let session_requirements = saved.session_requirements.clone();
    let pending = gears_python::restore(saved)?;
    Ok(Prepared {
        pending,
        session_desc,
        session_requirements,
    })
}

/// Applies prepared registrations under their own ids (replacing ones with
/// the same id); the tables are rebuilt once. A master starts consuming
/// their streams and, with `on_registered`, runs their `onRegistered`
/// (while loading, both wait for the end of the load; a replica runs it
/// once promoted: [`announce_all`]).
pub fn install(g: &'static Gears, ready: Vec<Prepared>, on_registered: bool) {
    let mut restored = Vec::with_capacity(ready.len());
    for p in ready {
        let reg = p.pending.reg.clone();
        remove(g, &reg.id, true, false);
        let regs = &g.engine.registrations;
        regs.open_session(&reg.session, p.session_desc, p.session_requirements);
        regs.add(reg.clone());
        g.engine.registration_ids.observe(&reg.id);
        restored.push(p.pending);
    }
    refresh(g);
    // While loading, consumers start once the load has ended.
    if redis::is_master() && !redis::is_loading() {
        let regs: Vec<_> = restored.iter().map(|p| p.reg.clone()).collect();
        streams::scan_every_db(g, &regs);
    }
    for pending in &restored {
        if on_registered && redis::is_master() && !redis::is_loading() {
            pending.on_registered();
        }
    }
}
