//! The module's part of `INFO` (sections `rg`, `rg_regisrations` (1.2's
//! spelling), `rg_plugins`, `rg_python_stats`, `rg_python_requirements`,
//! `rg_python_sessions`) and RG.PYSTATS.

use crate::redis::{InfoSection, InfoValue};
use crate::state;
use gears_core::Reply;

fn int(n: u64) -> InfoValue {
    InfoValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn text(t: impl Into<String>) -> InfoValue {
    InfoValue::Text(t.into())
}

/// Python's memory, as RG.PYSTATS and INFO show it (plain atomics: safe in
/// a crash report).
fn python_stats() -> Vec<(String, InfoValue)> {
    let s = gears_python::alloc::stats();
    vec![
        ("TotalAllocated".into(), int(s.total)),
        ("PeakAllocated".into(), int(s.peak)),
        ("CurrAllocated".into(), int(s.current)),
    ]
}

/// RG.PYSTATS: `[TotalAllocated, n, PeakAllocated, n, CurrAllocated, n]`.
pub fn pystats_reply() -> Reply {
    let mut out = Vec::new();
    for (name, value) in python_stats() {
        out.push(Reply::bulk(name.as_bytes()));
        out.push(match value {
            InfoValue::Int(i) => Reply::Int(i),
            _ => Reply::Int(0),
        });
    }
    Reply::Array(out)
}

pub fn sections(for_crash_report: bool) -> Vec<InfoSection> {
    let Some(g) = state::get() else {
        return Vec::new();
    };
    let plugins = InfoSection {
        name: "plugins",
        fields: vec![(
            "GearsPythonPlugin".into(),
            InfoValue::Dict(vec![("version".into(), InfoValue::Int(10000))]),
        )],
    };
    let stats = InfoSection {
        name: "python_stats",
        fields: python_stats(),
    };
    if for_crash_report {
        // No locks here: the crashing thread may hold any of them.
        return vec![plugins, stats];
    }
    let registrations = g.engine.registrations.snapshot();
    let general = InfoSection {
        name: "",
        fields: vec![
            ("nexecutions".into(), int(g.engine.executions.len() as u64)),
            ("nregistrations".into(), int(registrations.len() as u64)),
        ],
    };
    let regs = InfoSection {
        name: "regisrations",
        fields: registrations
            .iter()
            .map(|r| {
                let s = r.stats();
                let dict = vec![
                    ("reader".into(), text(r.reader_name())),
                    ("desc".into(), text(r.desc.clone().unwrap_or_default())),
                    ("mode".into(), text(r.mode.name())),
                    ("numTriggered".into(), int(s.triggered)),
                    ("numSuccess".into(), int(s.success)),
                    ("numFailures".into(), int(s.failures)),
                    ("numAborted".into(), int(s.aborted)),
                    ("lastError".into(), text(s.last_error.unwrap_or_default())),
                    ("session".into(), text(r.session.clone())),
                ];
                (r.id.clone(), InfoValue::Dict(dict))
            })
            .collect(),
    };
    let sessions = g.engine.registrations.sessions();
    let requirements = InfoSection {
        name: "python_requirements",
        fields: g
            .requirements_if_any()
            .map(|reqs| reqs.list())
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let used = sessions
                    .iter()
                    .filter(|s| s.requirements.contains(&r.name))
                    .count();
                let dict = vec![
                    (
                        "GearReqVersion".into(),
                        int(gears_python::requirements::FORMAT_VERSION),
                    ),
                    ("IsDownloaded".into(), text("yes")),
                    (
                        "IsInstalled".into(),
                        text(if r.installed { "yes" } else { "no" }),
                    ),
                    ("Wheels".into(), text(r.wheels.join(" "))),
                    ("RefCount".into(), int(used as u64)),
                ];
                (r.name.clone(), InfoValue::Dict(dict))
            })
            .collect(),
    };
    let sessions = InfoSection {
        name: "python_sessions",
        fields: sessions
            .iter()
            .map(|s| {
                let dict = vec![
                    (
                        "sessionDescription".into(),
                        text(s.desc.clone().unwrap_or_default()),
                    ),
                    ("refCount".into(), int(s.registrations.len() as u64)),
                    ("linked".into(), text("primary")),
                    ("dead".into(), text("false")),
                    ("requirementInstallationNeeded".into(), InfoValue::Int(0)),
                    ("requirements".into(), text(s.requirements.join(" "))),
                ];
                (s.id.clone(), InfoValue::Dict(dict))
            })
            .collect(),
    };
    vec![general, regs, plugins, stats, requirements, sessions]
}
