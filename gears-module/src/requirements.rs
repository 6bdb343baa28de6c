//! REQUIREMENTS as the server keeps them: installed off the main thread,
//! saved (wheels included) in the RDB aux data, sent to replicas and the
//! AOF as `RG.PYIMPORTREQ UPGRADE <data>`, and shown, exported and imported
//! by the RG.PY*REQ commands.

use crate::errors::Error;
use crate::redis;
use crate::state::Gears;
use gears_core::Reply;
use gears_python::requirements::{Requirement, Requirements, FORMAT_VERSION};

/// Installs `names` with pip (network: call without the Redis lock), then
/// records them. A failure is logged with pip's output; the error is 1.2's
/// text.
pub fn install(g: &Gears, names: &[String], error_text: Error) -> Result<(), Error> {
    let reqs = g.requirements().map_err(|e| {
        redis::log("warning", &format!("REQUIREMENTS: {e}"));
        error_text.clone()
    })?;
    reqs.install(names).map_err(|e| {
        redis::log(
            "warning",
            &format!(
                "could not install the requirement {}: {}",
                e.requirement, e.detail
            ),
        );
        error_text
    })?;
    redis::with_lock(|_| changed(reqs, names));
    Ok(())
}

/// The requirements' aux data is encoded again for the next save (Redis
/// lock held).
pub fn save(reqs: &Requirements) {
    match reqs.encode() {
        Ok(blob) => redis::prepare_aux(redis::AuxPart::Requirements, blob),
        Err(e) => redis::log(
            "warning",
            &format!("the requirements can not be saved: {e}"),
        ),
    }
}

/// After `names` were installed (Redis lock held): saved, and replicas and
/// the AOF get each requirement.
pub fn changed(reqs: &Requirements, names: &[String]) {
    save(reqs);
    replicate(reqs, names);
}

/// Sends each of `names`, wheels included, to the AOF and the replicas as
/// `RG.PYIMPORTREQ UPGRADE` (Redis lock held).
pub fn replicate(reqs: &Requirements, names: &[String]) {
    for name in names {
        if let Some(Ok(blob)) = reqs.export(name) {
            redis::replicate(c"RG.PYIMPORTREQ", &[b"UPGRADE", &blob]);
        }
    }
}

/// Installs the requirements of the RDB being loaded, offline, before the
/// registrations that may import them.
pub fn load(g: &Gears, bytes: &[u8]) -> Result<(), Error> {
    let reqs = g.requirements()?;
    reqs.import(bytes, true)
        .map_err(|e| Error::Load(format!("could not install the saved requirements: {e}")))?;
    save(reqs);
    Ok(())
}

/// The build the wheels were made for, as RG.PYDUMPREQS shows it.
fn compiled_os() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

fn yes(b: bool) -> Reply {
    Reply::bulk(if b { "yes" } else { "no" })
}

/// A requirement as RG.PYDUMPREQS shows it (used by sessions too).
pub fn metadata(g: &Gears, r: &Requirement) -> Reply {
    let ref_count = g
        .engine
        .registrations
        .sessions()
        .iter()
        .filter(|s| s.requirements.contains(&r.name))
        .count();
    Reply::map([
        ("GearReqVersion", Reply::Int(FORMAT_VERSION as i64)),
        ("Name", Reply::bulk(r.name.as_bytes())),
        ("IsDownloaded", yes(true)),
        ("IsInstalled", yes(r.installed)),
        ("CompiledOs", Reply::bulk(compiled_os())),
        (
            "Wheels",
            Reply::Array(r.wheels.iter().map(|w| Reply::bulk(w.as_bytes())).collect()),
        ),
        ("Path", Reply::bulk(r.dir.to_string_lossy().as_bytes())),
        ("RefCount", Reply::Int(ref_count as i64)),
        ("IsInReqDictionary", yes(true)),
    ])
}
