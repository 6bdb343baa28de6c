//! `cargo xtask lint`: the architecture rules of the workspace, checked.
//!
//! 1. **Dependencies** (`deps`, from `cargo metadata`): only `gears-module`
//!    may reach `redis-module`, and the pure crates (`gears-core`,
//!    `gears-config`, `gears-cluster`) may reach neither `redis-module` nor
//!    `pyo3`, through normal dependencies, indirectly too. Only
//!    `gears-module` may be a `cdylib`.
//! 2. **Layers** (`layers`, from ARCHITECTURE.md's tables): every top-level
//!    module of a library crate sits in a layer, imports go to the same layer
//!    or below, and modules form no cycle.
//! 3. **`unsafe`**: every workspace member that does no FFI opens its crate
//!    root with `#![forbid(unsafe_code)]`; the FFI crates (`gears-module`,
//!    `gears-python`) must not; in gears-module only the Redis layer (the
//!    `redis` module) uses `unsafe` or `redis_module::raw`.
//!
//! Rust source is read with `syn` (`source`). The checks are pure functions
//! over the metadata, ARCHITECTURE.md and the file contents ([`check`]);
//! only [`lint`], [`metadata`] and [`read_sources`] touch the disk or run
//! commands.

mod deps;
mod layers;
mod source;

use crate::Result;
use serde_json::Value;
use source::module_of;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The only crate allowed to link Redis, and the only `cdylib`.
const MODULE_CRATE: &str = "gears-module";
/// Crates that must reach neither Redis nor Python.
const PURE_CRATES: &[&str] = &["gears-core", "gears-config", "gears-cluster"];
/// What the pure crates must not depend on, even indirectly.
const PURE_FORBIDDEN: &[&str] = &["redis-module", "pyo3"];
/// Library crates whose modules are checked against their layer table.
const LIB_CRATES: &[&str] = &[
    "gears-core",
    "gears-config",
    "gears-cluster",
    "gears-python",
    "gears-module",
];
/// The crates that do FFI: they may use `unsafe`, every other member forbids it.
const FFI_CRATES: &[&str] = &["gears-module", "gears-python"];
/// The one module of gears-module that may use the raw Redis module API
/// (`raw::`) and `unsafe`: the Redis layer.
const REDIS_LAYER: &str = "redis";
/// Where the layer tables are, relative to the workspace root.
const ARCHITECTURE: &str = "ARCHITECTURE.md";

/// The source files the checks read, by package name.
#[derive(Clone, Debug, Default)]
pub struct PackageSources {
    /// Crate roots of the lib and bin targets: (path shown in reports, contents).
    pub roots: Vec<(String, String)>,
    /// For library crates, every `.rs` file under the lib target's directory,
    /// keyed by its path relative to that directory with `/` separators
    /// (`lib.rs`, `plan.rs`, `host/mod.rs`, ...).
    pub src: BTreeMap<String, String>,
}

pub type Sources = BTreeMap<String, PackageSources>;

/// What the checks found, by rule.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub dependencies: Vec<String>,
    pub layers: Vec<String>,
    pub unsafe_code: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.dependencies.is_empty() && self.layers.is_empty() && self.unsafe_code.is_empty()
    }

    /// `Ok` when clean, otherwise an error listing every violation.
    pub fn into_result(self) -> Result<()> {
        if self.is_clean() {
            return Ok(());
        }
        let total = self.dependencies.len() + self.layers.len() + self.unsafe_code.len();
        let mut msg = format!("lint found {total} violation(s)");
        for (title, items) in [
            ("crate dependency rules", &self.dependencies),
            ("module layers (ARCHITECTURE.md)", &self.layers),
            ("unsafe code rules", &self.unsafe_code),
        ] {
            if !items.is_empty() {
                msg.push_str(&format!("\n{title}:"));
                for item in items {
                    msg.push_str(&format!("\n  {item}"));
                }
            }
        }
        Err(msg)
    }
}

/// Runs every check on the real workspace.
pub fn lint() -> Result<()> {
    let meta = metadata()?;
    let sources = read_sources(&meta)?;
    let architecture = read(&crate::root().join(ARCHITECTURE))?;
    check(&meta, &sources, &architecture).into_result()?;
    println!("xtask lint: dependencies, layers, module cycles and unsafe rules hold");
    Ok(())
}

/// `cargo metadata --format-version 1` of the workspace, parsed.
pub fn metadata() -> Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(crate::root())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))
}

/// All the checks, over the metadata, the sources read for it and the text
/// of ARCHITECTURE.md.
pub fn check(meta: &Value, sources: &Sources, architecture: &str) -> Report {
    let mut report = Report {
        dependencies: deps::dependency_violations(meta),
        ..Report::default()
    };
    let tables = layers::tables(architecture).unwrap_or_else(|e| {
        report.layers.push(format!("{ARCHITECTURE}: {e}"));
        BTreeMap::new()
    });
    let members = deps::workspace_members(meta);
    let names: Vec<&str> = members.iter().filter_map(|p| p["name"].as_str()).collect();
    for krate in LIB_CRATES {
        if !names.contains(krate) {
            report.layers.push(format!(
                "{krate}: not a workspace member, can not be checked"
            ));
            continue;
        }
        let files = match sources.get(*krate).map(|s| &s.src) {
            Some(files) if !files.is_empty() => files,
            _ => {
                report
                    .layers
                    .push(format!("{krate}: no source files were read"));
                continue;
            }
        };
        match tables.get(*krate) {
            Some(t) => report.layers.extend(layers::violations(krate, t, files)),
            // A crate that is one file has no layers to keep.
            None if source::modules(files).is_empty() => {}
            None => report.layers.push(format!(
                "{krate}: ARCHITECTURE.md has no layer table for it"
            )),
        }
    }
    if let Some(module) = sources.get(MODULE_CRATE) {
        report.unsafe_code.extend(raw_outside_layer(&module.src));
    }
    for name in names {
        let ffi = FFI_CRATES.contains(&name);
        let roots = sources.get(name).map(|s| &s.roots[..]).unwrap_or(&[]);
        if roots.is_empty() {
            report
                .unsafe_code
                .push(format!("{name}: no crate root was read"));
        }
        for (path, text) in roots {
            report
                .unsafe_code
                .extend(forbid_violation(name, path, text, ffi));
        }
    }
    report
}

/// Files of gears-module outside the Redis layer that use `raw::` or
/// `unsafe` (tests aside).
pub fn raw_outside_layer(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        if module_of(path).as_deref() == Some(REDIS_LAYER) {
            continue;
        }
        let found = match source::low_level(text) {
            Ok(found) => found,
            Err(e) => {
                out.push(format!("{MODULE_CRATE}: {path} does not parse: {e}"));
                continue;
            }
        };
        if found.unsafe_code {
            out.push(format!(
                "{MODULE_CRATE}: {path} uses unsafe outside the {REDIS_LAYER} layer"
            ));
        }
        if found.raw_api {
            out.push(format!(
                "{MODULE_CRATE}: {path} uses the raw module API outside the {REDIS_LAYER} layer"
            ));
        }
    }
    out
}

/// Rule 3 for one crate root.
pub fn forbid_violation(krate: &str, path: &str, source: &str, ffi: bool) -> Option<String> {
    match (ffi, source::has_forbid_unsafe(source)) {
        (false, false) => Some(format!(
            "{krate} ({path}) does no FFI but lacks #![forbid(unsafe_code)] at the top"
        )),
        (true, true) => Some(format!(
            "{krate} ({path}) is an FFI crate and must not have #![forbid(unsafe_code)]"
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Reading the workspace.

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_rs_tree(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel_name = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        if path.is_dir() {
            read_rs_tree(&path, &rel_name, out)?;
        } else if name.ends_with(".rs") {
            out.insert(rel_name, read(&path)?);
        }
    }
    Ok(())
}

/// Reads the crate roots of every workspace member and the `src` trees of the
/// library crates, as the metadata locates them.
pub fn read_sources(meta: &Value) -> Result<Sources> {
    const ROOT_KINDS: &[&str] = &[
        "lib",
        "rlib",
        "cdylib",
        "dylib",
        "staticlib",
        "proc-macro",
        "bin",
    ];
    let root = crate::root();
    let mut sources = Sources::new();
    for package in deps::workspace_members(meta) {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        let mut pkg = PackageSources::default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some(src_path) = target["src_path"].as_str().map(Path::new) else {
                continue;
            };
            if !kinds.iter().any(|k| ROOT_KINDS.contains(k)) {
                continue;
            }
            let shown = src_path.strip_prefix(&root).unwrap_or(src_path);
            pkg.roots
                .push((shown.display().to_string(), read(src_path)?));
            let is_lib = kinds.iter().any(|k| *k != "bin");
            if is_lib && LIB_CRATES.contains(&name) {
                if let Some(dir) = src_path.parent() {
                    read_rs_tree(dir, "", &mut pkg.src)?;
                }
            }
        }
        sources.insert(name.to_owned(), pkg);
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_lists_every_violation() {
        let report = Report {
            dependencies: vec!["d1".into()],
            layers: vec!["k: a -> b -> a".into(), "k: crate -> a -> crate".into()],
            unsafe_code: vec![],
        };
        assert_eq!(
            report.into_result().unwrap_err(),
            "lint found 3 violation(s)\ncrate dependency rules:\n  d1\n\
             module layers (ARCHITECTURE.md):\n  k: a -> b -> a\n  k: crate -> a -> crate"
        );
        assert_eq!(Report::default().into_result(), Ok(()));
    }

    // -- The real workspace, and copies of it broken in memory ---------------

    /// Adds `line` at the end of the file of module `m` (its `.rs` file or
    /// `mod.rs`).
    fn append_to_module(files: &mut BTreeMap<String, String>, m: &str, line: &str) {
        let key = [format!("{m}.rs"), format!("{m}/mod.rs")]
            .into_iter()
            .find(|k| files.contains_key(k))
            .unwrap_or_else(|| format!("{m}.rs"));
        files
            .entry(key)
            .or_default()
            .push_str(&format!("\n{line}\n"));
    }

    struct Workspace {
        meta: Value,
        sources: Sources,
        architecture: String,
    }

    impl Workspace {
        fn read() -> Workspace {
            let meta = metadata().unwrap();
            let sources = read_sources(&meta).unwrap();
            let architecture = read(&crate::root().join(ARCHITECTURE)).unwrap();
            Workspace {
                meta,
                sources,
                architecture,
            }
        }

        fn check(&self) -> Report {
            check(&self.meta, &self.sources, &self.architecture)
        }
    }

    /// What `broken` reports that the real workspace does not.
    fn new_in(real: &[String], broken: &[String]) -> Vec<String> {
        let mut new: Vec<String> = broken
            .iter()
            .filter(|v| !real.contains(v))
            .cloned()
            .collect();
        new.sort();
        new
    }

    #[test]
    fn the_real_workspace_holds_every_rule() {
        let ws = Workspace::read();
        for krate in LIB_CRATES {
            assert!(
                ws.sources[*krate].src.contains_key("lib.rs"),
                "{krate} src was read"
            );
        }
        assert_eq!(ws.check(), Report::default());
    }

    #[test]
    fn a_dependency_on_pyo3_from_a_pure_crate_fails() {
        let ws = Workspace::read();
        let real = ws.check();
        // gears-core depends on pyo3 (and gears-config, indirectly, through
        // gears-python).
        let mut broken = ws.meta.clone();
        let ids: BTreeMap<String, String> = broken["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for node in broken["resolve"]["nodes"].as_array_mut().unwrap() {
            let dep = if node["id"] == ids["gears-core"].as_str() {
                "pyo3"
            } else if node["id"] == ids["gears-config"].as_str() {
                "gears-python"
            } else {
                continue;
            };
            node["deps"].as_array_mut().unwrap().push(json!({
                "name": dep, "pkg": ids[dep], "dep_kinds": [{"kind": null, "target": null}]
            }));
        }
        let report = check(&broken, &ws.sources, &ws.architecture);
        assert_eq!(
            new_in(&real.dependencies, &report.dependencies),
            vec![
                "gears-config must not depend on pyo3: gears-config -> gears-python -> pyo3",
                "gears-core must not depend on pyo3: gears-core -> pyo3",
            ]
        );
        assert!(report.into_result().is_err());
    }

    /// The layer table of `krate` in the real ARCHITECTURE.md.
    fn table(ws: &Workspace, krate: &str) -> layers::Layers {
        layers::tables(&ws.architecture)
            .unwrap()
            .remove(krate)
            .unwrap_or_else(|| panic!("{krate} has a layer table"))
    }

    /// A module of the lowest and one of the highest layer (with files of
    /// their own, not the root).
    fn lowest_and_highest(t: &layers::Layers) -> (String, String) {
        let mut modules: Vec<(usize, &String)> =
            t.of.iter()
                .filter(|(m, _)| *m != source::ROOT)
                .map(|(m, l)| (*l, m))
                .collect();
        modules.sort();
        let (first, last) = (modules.first().unwrap(), modules.last().unwrap());
        assert!(first.0 < last.0, "two layers with modules");
        (first.1.clone(), last.1.clone())
    }

    #[test]
    fn an_import_up_a_layer_fails_in_every_layered_crate() {
        let ws = Workspace::read();
        for krate in ["gears-core", "gears-python", "gears-module"] {
            let t = table(&ws, krate);
            let (low, high) = lowest_and_highest(&t);
            let mut sources = ws.sources.clone();
            let src = &mut sources.get_mut(krate).unwrap().src;
            append_to_module(src, &low, &format!("use crate::{high}::*;"));
            let report = check(&ws.meta, &sources, &ws.architecture);
            let new = new_in(&[], &report.layers);
            assert!(
                new.iter()
                    .any(|v| v.starts_with(&format!("{krate}: {low} ("))
                        && v.contains(&format!("imports {high} ("))
                        && v.contains("a layer above it")),
                "{krate}: {new:?}"
            );
        }
    }

    #[test]
    fn a_cycle_inside_one_layer_fails() {
        let ws = Workspace::read();
        let t = table(&ws, "gears-module");
        // Two modules of one layer, made to import each other.
        let (a, b) = (0..t.labels.len())
            .find_map(|layer| {
                let mut in_layer =
                    t.of.iter()
                        .filter(|(m, l)| **l == layer && *m != source::ROOT)
                        .map(|(m, _)| m.clone());
                Some((in_layer.next()?, in_layer.next()?))
            })
            .expect("a layer with two modules");
        let mut sources = ws.sources.clone();
        let src = &mut sources.get_mut("gears-module").unwrap().src;
        append_to_module(src, &a, &format!("use crate::{b}::*;"));
        append_to_module(
            src,
            &b,
            &format!("#[allow(unused)]\nuse crate::{{{a}::*}};"),
        );
        let report = check(&ws.meta, &sources, &ws.architecture);
        let expected = format!("gears-module: {a} -> {b} -> {a}");
        assert!(report.layers.contains(&expected), "{:?}", report.layers);
    }

    #[test]
    fn a_module_outside_the_tables_or_a_table_entry_without_a_module_fails() {
        let ws = Workspace::read();
        let mut sources = ws.sources.clone();
        let src = &mut sources.get_mut("gears-python").unwrap().src;
        src.insert("stray.rs".into(), "pub fn f() {}".into());
        let architecture = ws
            .architecture
            .replacen("`runtime`", "`runtime`, `ghost`", 1);
        let report = check(&ws.meta, &sources, &architecture);
        assert_eq!(
            report.layers,
            vec![
                "gears-python: module stray is in no layer of ARCHITECTURE.md",
                "gears-python: ARCHITECTURE.md lists module ghost, which does not exist",
            ]
        );
        // A crate with modules and no table at all.
        let architecture = ws
            .architecture
            .replace("### Layers of gears-core", "### Not layers of gears-core");
        let report = check(&ws.meta, &ws.sources, &architecture);
        assert_eq!(
            report.layers,
            vec!["gears-core: ARCHITECTURE.md has no layer table for it"]
        );
    }

    #[test]
    fn forbid_unsafe_code_is_required_outside_the_ffi_crates() {
        let ws = Workspace::read();
        let real = ws.check();
        // gears-core without its forbid line, gears-python with one.
        let mut sources = ws.sources.clone();
        for (_, text) in &mut sources.get_mut("gears-core").unwrap().roots {
            *text = text.replace("#![forbid(unsafe_code)]", "");
        }
        for (_, text) in &mut sources.get_mut("gears-python").unwrap().roots {
            text.insert_str(0, "#![forbid(unsafe_code)]\n");
        }
        let report = check(&ws.meta, &sources, &ws.architecture);
        assert_eq!(
            new_in(&real.unsafe_code, &report.unsafe_code),
            vec![
                "gears-core (gears-core/src/lib.rs) does no FFI but lacks #![forbid(unsafe_code)] at the top",
                "gears-python (gears-python/src/lib.rs) is an FFI crate and must not have #![forbid(unsafe_code)]",
            ]
        );
    }

    #[test]
    fn missing_or_misplaced_forbid_fails() {
        let good = "//! Docs.\n\n#![forbid(unsafe_code)]\n";
        let bare = "//! Docs.\n\npub mod a;\n";
        assert_eq!(forbid_violation("gears-core", "lib.rs", good, false), None);
        assert_eq!(forbid_violation("gears-python", "lib.rs", bare, true), None);
        assert_eq!(
            forbid_violation("gears-core", "gears-core/src/lib.rs", bare, false).unwrap(),
            "gears-core (gears-core/src/lib.rs) does no FFI but lacks #![forbid(unsafe_code)] at the top"
        );
        assert_eq!(
            forbid_violation("gears-module", "gears-module/src/lib.rs", good, true).unwrap(),
            "gears-module (gears-module/src/lib.rs) is an FFI crate and must not have #![forbid(unsafe_code)]"
        );
    }

    #[test]
    fn the_raw_module_api_stays_in_the_redis_layer() {
        let mut files = BTreeMap::new();
        files.insert(
            "redis/call.rs".to_string(),
            "use redis_module::raw; fn f() { unsafe { raw::RedisModule_Call() } }".to_string(),
        );
        files.insert(
            "events.rs".to_string(),
            "// raw:: in a comment is fine\nfn f() { let s = \"unsafe raw::x\"; }\n\
             #[cfg(test)]\nmod tests { fn g() { unsafe { redis_module::raw::X() } } }"
                .to_string(),
        );
        assert_eq!(raw_outside_layer(&files), Vec::<String>::new());
        files.insert(
            "hooks.rs".to_string(),
            "use redis_module::raw;\nfn f() { unsafe { raw::RedisModule_Call() } }".to_string(),
        );
        files.insert(
            "keys.rs".to_string(),
            "fn f() { log!(\"{}\", redis_module::raw::X) }".to_string(),
        );
        files.insert(
            "linked.rs".to_string(),
            "type F = unsafe extern \"C\" fn();".to_string(),
        );
        assert_eq!(
            raw_outside_layer(&files),
            vec![
                "gears-module: hooks.rs uses unsafe outside the redis layer",
                "gears-module: hooks.rs uses the raw module API outside the redis layer",
                "gears-module: keys.rs uses the raw module API outside the redis layer",
                "gears-module: linked.rs uses unsafe outside the redis layer",
            ]
        );
    }
}
#[cfg(test)]
mod tmp_dump {
    #[test]
    fn dump_edges() {
        let meta = super::metadata().unwrap();
        let sources = super::read_sources(&meta).unwrap();
        for k in ["gears-core", "gears-python", "gears-module"] {
            let (edges, bad) = super::source::module_edges(&sources[k].src);
            println!("== {k} {bad:?}");
            let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (a, b) in edges.keys() {
                by.entry(a.clone()).or_default().push(b.clone());
            }
            for (a, bs) in by {
                println!("{a}: {}", bs.join(" "));
            }
        }
    }
}
