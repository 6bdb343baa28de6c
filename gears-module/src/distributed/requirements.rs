//! A session's requirement (REQUIREMENT), sent with its wheels to every
//! shard ahead of the registrations that need it.

use super::*;

/// Sends `session`'s requirements (with their wheels) to every other
/// shard, so that registrations importing them can be restored there.
pub(super) fn share_requirements(g: &Gears, names: &[String]) {
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
