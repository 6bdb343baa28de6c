//! Rule 1, on `cargo metadata --format-version 1` output: only
//! `gears-module` may reach `redis-module`, the pure crates reach neither
//! `redis-module` nor `pyo3` (through normal dependencies, indirectly too),
//! and only `gears-module` is a `cdylib`.

use super::layers::path_to;
use super::{MODULE_CRATE, PURE_CRATES, PURE_FORBIDDEN};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub fn workspace_members(meta: &Value) -> Vec<&Value> {
    let ids: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"].as_str().is_some_and(|id| ids.contains(id)))
        .collect()
}

/// The normal-dependency graph of the resolve section, by package name.
/// (Package ids are opaque: names come from the `packages` list.)
fn normal_graph(meta: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let name_of = |id: &str| {
        names
            .get(id)
            .map_or_else(|| id.to_owned(), |n| n.to_string())
    };
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().into_iter().flatten() {
        let Some(id) = node["id"].as_str() else {
            continue;
        };
        let deps: &mut BTreeSet<String> = graph.entry(name_of(id)).or_default();
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if let (true, Some(pkg)) = (normal, dep["pkg"].as_str()) {
                deps.insert(name_of(pkg));
            }
        }
    }
    graph
}

/// Rule 1 on `cargo metadata --format-version 1` output.
///
/// `redis-module` is checked for every member but `gears-module` (the walk
/// does not go through `gears-module`: depending on the module crate is not
/// depending on Redis directly); the pure crates are also checked for `pyo3`.
/// Note that the resolve section unifies features across the workspace.
pub fn dependency_violations(meta: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if meta["resolve"]["nodes"].as_array().is_none() {
        out.push("cargo metadata has no resolve section".to_owned());
    }
    let graph = normal_graph(meta);
    for package in workspace_members(meta) {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        let mut forbidden: Vec<&str> = Vec::new();
        if name != MODULE_CRATE {
            forbidden.push("redis-module");
        }
        if PURE_CRATES.contains(&name) {
            for f in PURE_FORBIDDEN {
                if !forbidden.contains(f) {
                    forbidden.push(f);
                }
            }
        }
        for target in forbidden {
            if let Some(path) = path_to(&graph, name, target, &[MODULE_CRATE]) {
                out.push(format!(
                    "{name} must not depend on {target}: {}",
                    path.join(" -> ")
                ));
            }
        }
        let cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["crate_types"].as_array().into_iter().flatten())
            .any(|c| c == "cdylib");
        if cdylib && name != MODULE_CRATE {
            out.push(format!(
                "{name} is a cdylib: only {MODULE_CRATE} may be one"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A metadata document: `packages` are (name, crate types); `deps` are
    /// (from, to, kind) with kind `None` for a normal dependency.
    fn meta(packages: &[(&str, &[&str])], deps: &[(&str, &str, Option<&str>)]) -> Value {
        let id = |n: &str| format!("path+file:///ws/{n}#0.1.0");
        let members: Vec<&str> = packages
            .iter()
            .map(|p| p.0)
            .filter(|n| n.starts_with("gears-"))
            .collect();
        let nodes: Vec<Value> = packages
            .iter()
            .map(|(name, _)| {
                let deps: Vec<Value> = deps
                    .iter()
                    .filter(|d| d.0 == *name)
                    .map(|(_, to, kind)| {
                        json!({"name": to.replace('-', "_"), "pkg": id(to),
                               "dep_kinds": [{"kind": kind, "target": null}]})
                    })
                    .collect();
                json!({"id": id(name), "deps": deps})
            })
            .collect();
        json!({
            "packages": packages.iter().map(|(name, types)| json!({
                "name": name, "id": id(name),
                "targets": [{"kind": types, "crate_types": types,
                             "src_path": format!("/ws/{name}/src/lib.rs")}],
            })).collect::<Vec<_>>(),
            "workspace_members": members.iter().map(|n| id(n)).collect::<Vec<_>>(),
            "resolve": {"nodes": nodes, "root": null},
        })
    }

    const GOOD_PACKAGES: &[(&str, &[&str])] = &[
        ("gears-core", &["lib"]),
        ("gears-config", &["lib"]),
        ("gears-cluster", &["lib"]),
        ("gears-python", &["lib"]),
        ("gears-module", &["cdylib", "rlib"]),
        ("pyo3", &["lib"]),
        ("redis-module", &["lib"]),
        ("helper", &["lib"]),
    ];
    const GOOD_DEPS: &[(&str, &str, Option<&str>)] = &[
        ("gears-python", "gears-core", None),
        ("gears-python", "pyo3", None),
        ("gears-module", "gears-core", None),
        ("gears-module", "gears-python", None),
        ("gears-module", "redis-module", None),
        ("gears-core", "helper", None),
        // Dev and build dependencies do not count.
        ("gears-core", "pyo3", Some("dev")),
        ("gears-config", "redis-module", Some("build")),
    ];

    #[test]
    fn good_dependencies_pass() {
        assert_eq!(
            dependency_violations(&meta(GOOD_PACKAGES, GOOD_DEPS)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn pure_crate_depending_on_pyo3_fails() {
        let mut deps = GOOD_DEPS.to_vec();
        deps.push(("gears-core", "pyo3", None));
        assert_eq!(
            dependency_violations(&meta(GOOD_PACKAGES, &deps)),
            vec!["gears-core must not depend on pyo3: gears-core -> pyo3"]
        );
    }

    #[test]
    fn indirect_dependency_fails_with_its_path() {
        let mut deps = GOOD_DEPS.to_vec();
        deps.push(("helper", "redis-module", None));
        assert_eq!(
            dependency_violations(&meta(GOOD_PACKAGES, &deps)),
            vec![
                "gears-core must not depend on redis-module: gears-core -> helper -> redis-module",
                // gears-python, through gears-core, is caught too.
                "gears-python must not depend on redis-module: \
                 gears-python -> gears-core -> helper -> redis-module",
            ]
        );
        let mut deps = GOOD_DEPS.to_vec();
        deps.push(("gears-cluster", "gears-python", None));
        assert_eq!(
            dependency_violations(&meta(GOOD_PACKAGES, &deps)),
            vec!["gears-cluster must not depend on pyo3: gears-cluster -> gears-python -> pyo3"]
        );
    }

    #[test]
    fn redis_module_outside_gears_module_fails() {
        let mut deps = GOOD_DEPS.to_vec();
        deps.push(("gears-python", "redis-module", None));
        assert_eq!(
            dependency_violations(&meta(GOOD_PACKAGES, &deps)),
            vec!["gears-python must not depend on redis-module: gears-python -> redis-module"]
        );
    }

    #[test]
    fn second_cdylib_fails() {
        let mut packages = GOOD_PACKAGES.to_vec();
        packages[3] = ("gears-python", &["cdylib"]);
        assert_eq!(
            dependency_violations(&meta(&packages, GOOD_DEPS)),
            vec!["gears-python is a cdylib: only gears-module may be one"]
        );
    }
}
