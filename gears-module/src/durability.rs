//! Registrations that outlive the process: saved as RDB aux data, cleared
//! before every load (RDB, AOF, full sync) so nothing is duplicated, and
//! following the server's role (stream consumers run only on a master).

use crate::redis;
use crate::registry;
use crate::state::{self, Gears};
use crate::streams;
use gears_core::persist::{decode_snapshot, encode_snapshot};
use gears_core::registration::ReaderArgs;

/// The RDB aux data: every session and registration.
pub fn aux_save() -> Vec<u8> {
    state::get()
        .map(|g| encode_snapshot(&g.engine.registrations))
        .unwrap_or_default()
}

/// Applies what [`aux_save`] wrote. A format this build does not know fails
/// the load; a registration whose callbacks can not be restored is logged
/// and left out.
pub fn aux_load(bytes: &[u8]) -> Result<(), String> {
    let g = state::get().ok_or("the module is not initialized")?;
    let snap = decode_snapshot(bytes)?;
    for (id, desc) in &snap.sessions {
        g.engine.registrations.open_session(id, desc.clone());
    }
    let total = snap.registrations.len();
    let mut restored = 0;
    for (id, outcome) in registry::restore_all(g, snap.registrations, false) {
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

/// A load starts (everything goes: the load brings its own) or ended (a
/// master resumes its stream consumers).
pub fn loading(started: bool) {
    let Some(g) = state::get() else { return };
    if started {
        registry::clear(g);
    } else if redis::is_master() {
        resume_streams(g);
    }
}

/// A replica promoted resumes its stream consumers from the group's pending
/// entries; a master demoted stops its own.
pub fn role_changed(master: bool) {
    let Some(g) = state::get() else { return };
    if master {
        resume_streams(g);
    } else {
        g.consumers().clear();
    }
}

fn resume_streams(g: &'static Gears) {
    redis::with_lock(|_| {
        for reg in g.engine.registrations.snapshot().iter() {
            if matches!(reg.args, ReaderArgs::Stream { .. }) {
                streams::scan_existing(g, reg, 0);
            }
        }
    });
}
