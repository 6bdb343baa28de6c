//! `cargo xtask lint`: the architecture rules of the workspace, checked.
//!
//! 1. **Dependencies** (from `cargo metadata`): only `gears-module` may reach
//!    `redis-module`, and the pure crates (`gears-core`, `gears-config`,
//!    `gears-cluster`) may reach neither `redis-module` nor `pyo3`. Both are
//!    checked on the resolved graph through normal (not dev, not build)
//!    dependencies, so an indirect path counts. Only `gears-module` may be a
//!    `cdylib`.
//! 2. **Module cycles** inside each library crate, at the granularity of the
//!    crate's top-level modules (see [`module_edges`] for what makes an edge).
//! 3. **`unsafe_code`**: every workspace member that does no FFI opens its
//!    crate root with `#![forbid(unsafe_code)]`; the FFI crates
//!    (`gears-module`, `gears-python`) must not.
//!
//! The checks are pure functions over the metadata JSON and the file
//! contents ([`check`]); only [`lint`], [`metadata`] and [`read_sources`]
//! touch the disk or run commands.

use crate::Result;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

/// The only crate allowed to link Redis, and the only `cdylib`.
const MODULE_CRATE: &str = "gears-module";
/// Crates that must reach neither Redis nor Python.
const PURE_CRATES: &[&str] = &["gears-core", "gears-config", "gears-cluster"];
/// What the pure crates must not depend on, even indirectly.
const PURE_FORBIDDEN: &[&str] = &["redis-module", "pyo3"];
/// Library crates whose top-level modules must not form a cycle.
const LIB_CRATES: &[&str] = &[
    "gears-core",
    "gears-config",
    "gears-cluster",
    "gears-python",
    "gears-module",
];
/// The crates that do FFI: they may use `unsafe`, every other member forbids it.
const FFI_CRATES: &[&str] = &["gears-module", "gears-python"];
/// The one file of gears-module that may use the raw Redis module API
/// (`raw::`) and `unsafe`: the Redis layer.
const REDIS_LAYER: &str = "redis.rs";

/// The name of a crate's root module in cycle reports.
const ROOT: &str = "crate";

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
    pub cycles: Vec<String>,
    pub unsafe_code: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.dependencies.is_empty() && self.cycles.is_empty() && self.unsafe_code.is_empty()
    }

    /// `Ok` when clean, otherwise an error listing every violation.
    pub fn into_result(self) -> Result<()> {
        if self.is_clean() {
            return Ok(());
        }
        let total = self.dependencies.len() + self.cycles.len() + self.unsafe_code.len();
        let mut msg = format!("lint found {total} violation(s)");
        for (title, items) in [
            ("crate dependency rules", &self.dependencies),
            ("module cycles", &self.cycles),
            ("#![forbid(unsafe_code)] rules", &self.unsafe_code),
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
    check(&meta, &sources).into_result()?;
    println!("xtask lint: dependencies, module cycles and unsafe_code rules hold");
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

/// All the checks, over the metadata and the sources read for it.
pub fn check(meta: &Value, sources: &Sources) -> Report {
    let mut report = Report {
        dependencies: dependency_violations(meta),
        ..Report::default()
    };
    let members: Vec<&Value> = workspace_members(meta);
    let names: BTreeSet<&str> = members.iter().filter_map(|p| p["name"].as_str()).collect();
    for krate in LIB_CRATES {
        if !names.contains(krate) {
            report.cycles.push(format!(
                "{krate}: not a workspace member, can not be checked"
            ));
            continue;
        }
        let src = sources.get(*krate).map(|s| &s.src);
        match src {
            Some(files) if !files.is_empty() => report.cycles.extend(module_cycles(krate, files)),
            _ => report
                .cycles
                .push(format!("{krate}: no source files were read")),
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

/// Files of gears-module other than the Redis layer that use `raw::` or
/// `unsafe` (comments, strings and tests aside).
pub fn raw_outside_layer(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        if path == REDIS_LAYER {
            continue;
        }
        let stripped = strip_comments_and_strings(text);
        let code = without_tests(&stripped);
        let words: Vec<&str> = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .collect();
        if words.contains(&"unsafe") {
            out.push(format!(
                "{MODULE_CRATE}: {path} uses unsafe outside {REDIS_LAYER}"
            ));
        }
        if words
            .iter()
            .any(|w| w.starts_with("raw::") || w.contains("::raw::") || w.ends_with("::raw"))
        {
            out.push(format!(
                "{MODULE_CRATE}: {path} uses the raw module API outside {REDIS_LAYER}"
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Rule 1: dependencies.

fn workspace_members(meta: &Value) -> Vec<&Value> {
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

/// The shortest path `from -> ... -> to` through `graph`, not entering `avoid`.
fn path_to(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    avoid: &[&str],
) -> Option<Vec<String>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![to.to_owned()];
            let mut cur = to;
            while let Some(p) = parent.get(cur) {
                path.push(p.to_string());
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(at).into_iter().flatten() {
            if avoid.contains(&next.as_str()) || !seen.insert(next) {
                continue;
            }
            parent.insert(next, at);
            queue.push_back(next);
        }
    }
    None
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

// ---------------------------------------------------------------------------
// Rule 2: module cycles.

/// Replaces comments, string literals and char literals with blanks, keeping
/// line breaks, so that the token scan sees only code. Handles nested block
/// comments, escapes, raw strings (`r#"..."#`, `br"..."`) and tells char
/// literals from lifetimes.
pub fn strip_comments_and_strings(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let (start, mut depth) = (i, 0usize);
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            push_newlines(&mut out, &c[start..i.min(c.len())]);
        } else if c[i] == '"' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
            push_newlines(&mut out, &c[start..i.min(c.len())]);
        } else if c[i] == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{1F600}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if at(i + 2) == '\'' {
                i += 3;
                out.push_str("' '");
            } else {
                // A lifetime or a label.
                out.push('\'');
                i += 1;
            }
        } else if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut hashes = 0;
            while at(i + hashes) == '#' {
                hashes += 1;
            }
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                // A raw string: ends at a quote followed by as many hashes.
                let start = i;
                i += hashes + 1;
                while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                    i += 1;
                }
                i += hashes + 1;
                out.push_str("\"\"");
                push_newlines(&mut out, &c[start..i.min(c.len())]);
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Keeps the line count of a literal or comment that was blanked out.
fn push_newlines(out: &mut String, blanked: &[char]) {
    out.extend(blanked.iter().filter(|&&ch| ch == '\n'));
}

/// Cuts a file at its unit tests: at a `#[cfg(test)]` line whose next
/// non-blank line declares `mod tests`. Expects stripped source.
pub fn without_tests(src: &str) -> &str {
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let mut offset = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]" {
            let next = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty());
            let next = next.unwrap_or("");
            let next = next
                .strip_prefix("pub(crate) ")
                .or_else(|| next.strip_prefix("pub "))
                .unwrap_or(next);
            if next.starts_with("mod tests") {
                return &src[..offset];
            }
        }
        offset += line.len();
    }
    src
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_whitespace() {
            i += 1;
        } else if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(c[start..i].iter().collect()));
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            out.push(Token::Punct(c[i]));
            i += 1;
        }
    }
    out
}

/// The top-level module a source file belongs to (`None` for files that are
/// not part of the library: `main.rs` and `bin/`).
fn module_of(path: &str) -> Option<String> {
    let first = path.split('/').next()?;
    if path == "lib.rs" {
        Some(ROOT.to_owned())
    } else if path == "main.rs" || first == "bin" || !path.ends_with(".rs") {
        None
    } else if path.contains('/') {
        Some(first.to_owned())
    } else {
        first.strip_suffix(".rs").map(str::to_owned)
    }
}

/// The first segments of the paths `crate::` (or `self::`, `super::`) leads
/// to, starting at `tokens[i]` (the token after the `::`): `crate::a::x`
/// gives `a`, `crate::{a::x, b}` gives `a` and `b`, `crate::*` and
/// `crate::{self}` give the root.
fn first_segments(tokens: &[Token], i: usize) -> Vec<Option<String>> {
    match tokens.get(i) {
        Some(Token::Ident(name)) => vec![Some(name.clone())],
        Some(Token::Punct('{')) => {
            let mut out = Vec::new();
            let mut depth = 0;
            let mut expect_item = true;
            for t in &tokens[i..] {
                match t {
                    Token::Punct('{') => {
                        depth += 1;
                        expect_item = depth == 1;
                    }
                    Token::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Token::Punct(',') if depth == 1 => expect_item = true,
                    Token::Ident(name) if expect_item => {
                        out.push((name != "self").then(|| name.clone()));
                        expect_item = false;
                    }
                    Token::Punct('*') if expect_item => {
                        out.push(None);
                        expect_item = false;
                    }
                    _ => expect_item = false,
                }
            }
            out
        }
        _ => vec![None],
    }
}

/// The names lib.rs imports from its own modules (`pub use record::Record;`,
/// `use self::a::{B, C as D};`), mapped to the module they come from: a path
/// `crate::Record` leads to that module, not to the root. Glob imports are
/// not followed. `toks` is lib.rs, stripped and tokenized.
fn root_imports(toks: &[Token], modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let ident = |k: usize| match toks.get(k) {
        Some(Token::Ident(w)) => Some(w.as_str()),
        _ => None,
    };
    for (start, t) in toks.iter().enumerate() {
        if *t != Token::Ident("use".into()) {
            continue;
        }
        let end = (start..toks.len())
            .find(|&k| toks[k] == Token::Punct(';'))
            .unwrap_or(toks.len());
        let mut i = start + 1;
        if toks.get(i) == Some(&Token::PathSep) {
            i += 1;
        }
        if matches!(ident(i), Some("crate" | "self")) && toks.get(i + 1) == Some(&Token::PathSep) {
            i += 2;
        }
        let Some(module) = ident(i).filter(|m| modules.contains(*m)) else {
            continue;
        };
        i += 1;
        while i < end {
            match ident(i) {
                Some(w) if w != "as" && w != "self" && toks.get(i + 1) != Some(&Token::PathSep) => {
                    let name = if ident(i + 1) == Some("as") {
                        i += 2;
                        ident(i).unwrap_or("_")
                    } else {
                        w
                    };
                    if name != "_" {
                        out.insert(name.to_owned(), module.to_owned());
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

/// The module dependency edges of one library crate, with the file that
/// makes each one: `files` maps paths relative to `src/` to contents.
///
/// Every file under `src/foo/` and `src/foo.rs` is module `foo`; `src/lib.rs`
/// is the root, `crate`. After comments, string and char literals and a
/// trailing `#[cfg(test)] mod tests` are dropped, an edge A -> B is:
///
/// - in any file, `crate::B` where B is a top-level module, including each
///   first segment of a group (`use crate::{B, C::x}`); `crate::x` where x is
///   not a module (an item of lib.rs) is an edge to the root, unless lib.rs
///   imports x from a module (`pub use record::Record;`): then the edge goes
///   to that module. In `foo.rs` and `foo/mod.rs`, `super::` means the same
///   as `crate::`;
/// - in lib.rs, also `B::...` at the start of a path (not after `::`), and
///   `self::B`. `mod B;` declarations are not edges.
///
/// Macros, `#[path]` attributes and inline `mod x { }` blocks are not
/// followed: names declared in lib.rs count as items of the root.
pub fn module_edges(files: &BTreeMap<String, String>) -> BTreeMap<(String, String), String> {
    let modules: BTreeSet<String> = files
        .keys()
        .filter_map(|p| module_of(p))
        .filter(|m| m != ROOT)
        .collect();
    let code = |text: &str| tokens(without_tests(&strip_comments_and_strings(text)));
    let imports = files
        .get("lib.rs")
        .map(|lib| root_imports(&code(lib), &modules))
        .unwrap_or_default();
    let target = |seg: Option<String>| match seg {
        Some(name) if modules.contains(&name) => name,
        Some(name) => imports
            .get(&name)
            .cloned()
            .unwrap_or_else(|| ROOT.to_owned()),
        None => ROOT.to_owned(),
    };
    let mut edges = BTreeMap::new();
    for (path, text) in files {
        let Some(from) = module_of(path) else {
            continue;
        };
        let is_root = from == ROOT;
        let top_level_file = !path.contains('/') || path.ends_with("/mod.rs");
        let toks = code(text);
        let mut found = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            let Token::Ident(word) = t else { continue };
            if toks.get(i + 1) != Some(&Token::PathSep) {
                continue;
            }
            let after_sep = i > 0 && toks[i - 1] == Token::PathSep;
            let leads_to_root = match word.as_str() {
                "crate" => true,
                "self" => is_root && !after_sep,
                "super" => !is_root && top_level_file && !after_sep,
                _ => false,
            };
            if leads_to_root {
                found.extend(first_segments(&toks, i + 2).into_iter().map(target));
            } else if is_root
                && modules.contains(word)
                && !after_sep
                && i.checked_sub(1).map(|k| &toks[k]) != Some(&Token::Punct('.'))
                && toks.get(i + 2) != Some(&Token::Punct('<'))
            {
                found.push(word.clone());
            }
        }
        for to in found {
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| path.clone());
            }
        }
    }
    edges
}

/// Root first, then by name: the order cycles are rotated to.
fn node_key(name: &str) -> (bool, &str) {
    (name != ROOT, name)
}

/// Rule 2 for one crate: each cycle among its top-level modules, as
/// `krate: a -> b -> a`.
///
/// Listing every elementary cycle can blow up, so for each edge that lies on
/// a cycle the shortest cycle through that edge is reported (rotated to start
/// at the root or the first module by name, duplicates dropped): every edge
/// that has to go is named at least once.
pub fn module_cycles(krate: &str, files: &BTreeMap<String, String>) -> Vec<String> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in module_edges(files).into_keys() {
        graph.entry(from).or_default().insert(to);
    }
    let mut cycles: BTreeSet<(usize, Vec<String>)> = BTreeSet::new();
    for (from, tos) in &graph {
        for to in tos {
            let Some(mut cycle) = path_to(&graph, to, from, &[]) else {
                continue;
            };
            cycle.insert(0, from.clone());
            cycle.pop();
            let start = (0..cycle.len())
                .min_by_key(|&k| node_key(&cycle[k]))
                .unwrap_or(0);
            cycle.rotate_left(start);
            cycles.insert((cycle.len(), cycle));
        }
    }
    cycles
        .into_iter()
        .map(|(_, mut cycle)| {
            cycle.push(cycle[0].clone());
            format!("{krate}: {}", cycle.join(" -> "))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Rule 3: #![forbid(unsafe_code)].

/// Whether the crate root opens with `#![forbid(unsafe_code)]`, possibly
/// among other inner attributes (`#![forbid(unsafe_code, ...)]` counts).
pub fn has_forbid_unsafe(root_source: &str) -> bool {
    let toks = tokens(&strip_comments_and_strings(root_source));
    let mut i = 0;
    while toks.get(i) == Some(&Token::Punct('#'))
        && toks.get(i + 1) == Some(&Token::Punct('!'))
        && toks.get(i + 2) == Some(&Token::Punct('['))
    {
        let start = i + 3;
        let mut depth = 1;
        let mut end = start;
        while end < toks.len() && depth > 0 {
            match toks[end] {
                Token::Punct('[') => depth += 1,
                Token::Punct(']') => depth -= 1,
                _ => {}
            }
            end += 1;
        }
        let attr = &toks[start..end.saturating_sub(1)];
        if attr.first() == Some(&Token::Ident("forbid".into()))
            && attr.get(1) == Some(&Token::Punct('('))
            && attr.contains(&Token::Ident("unsafe_code".into()))
        {
            return true;
        }
        i = end;
    }
    false
}

/// Rule 3 for one crate root.
pub fn forbid_violation(krate: &str, path: &str, source: &str, ffi: bool) -> Option<String> {
    match (ffi, has_forbid_unsafe(source)) {
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
    for package in workspace_members(meta) {
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

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    // -- Rule 1 -------------------------------------------------------------

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

    // -- Rule 2 -------------------------------------------------------------

    #[test]
    fn acyclic_modules_pass() {
        let f = files(&[
            (
                "lib.rs",
                "pub mod a;\npub mod b;\npub use a::A;\npub struct Root;",
            ),
            ("a.rs", "use crate::b::B;\npub struct A(B);"),
            ("b.rs", "pub struct B;"),
        ]);
        assert_eq!(module_cycles("k", &f), Vec::<String>::new());
        let edges: Vec<_> = module_edges(&f).into_keys().collect();
        assert_eq!(
            edges,
            vec![
                ("a".to_owned(), "b".to_owned()),
                ("crate".to_owned(), "a".to_owned())
            ]
        );
    }

    #[test]
    fn two_modules_importing_each_other_fail() {
        let f = files(&[
            ("lib.rs", "mod a;\nmod b;"),
            ("a.rs", "use crate::b::B;\npub struct A;"),
            ("b/mod.rs", "mod inner;"),
            ("b/inner.rs", "pub fn f() -> crate::a::A { crate::a::A }"),
        ]);
        assert_eq!(module_cycles("k", &f), vec!["k: a -> b -> a"]);
    }

    #[test]
    fn groups_root_items_and_lib_paths_make_edges() {
        // a -> {b, crate} by a group; crate -> a by a path in lib.rs.
        let f = files(&[
            (
                "lib.rs",
                "mod a;\nmod b;\npub fn helper() {}\nfn f() { a::run() }",
            ),
            ("a.rs", "use crate::{b::B, helper};\npub fn run() {}"),
            ("b.rs", "pub struct B;"),
        ]);
        assert_eq!(module_cycles("k", &f), vec!["k: crate -> a -> crate"]);
        // super:: in a top-level module means the root too.
        let f = files(&[
            ("lib.rs", "mod a;\nuse self::a::X;\npub struct Y;"),
            ("a.rs", "pub struct X(super::Y);"),
        ]);
        assert_eq!(module_cycles("k", &f), vec!["k: crate -> a -> crate"]);
    }

    #[test]
    fn items_lib_rs_imports_from_a_module_lead_to_that_module() {
        // crate::Record is record's; crate::helper is the root's.
        let lib = "mod plan;\nmod record;\nmod util;\npub use record::{Record, Kind as K};\n\
                   pub use self::plan::Plan;\npub use util::*;\npub fn helper() {}";
        let f = files(&[
            ("lib.rs", lib),
            ("record.rs", "pub struct Record; pub enum Kind {}"),
            (
                "plan.rs",
                "use crate::{Record, K};\npub struct Plan(Record);",
            ),
            // (A name that only a glob re-export provides counts as the root's.)
            ("util.rs", "use crate::Plan;\npub struct Glob;"),
        ]);
        assert_eq!(module_cycles("k", &f), Vec::<String>::new());
        let edges: Vec<_> = module_edges(&f).into_keys().collect();
        let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            edges,
            vec![
                edge("crate", "plan"),
                edge("crate", "record"),
                edge("crate", "util"),
                edge("plan", "record"),
                edge("util", "plan"),
            ]
        );
        // A module using a root item that lib.rs defines is a real cycle.
        let mut broken = f.clone();
        broken.insert("record.rs".into(), "use crate::helper;".into());
        assert_eq!(
            module_cycles("k", &broken),
            vec![
                "k: crate -> record -> crate",
                "k: crate -> plan -> record -> crate",
                "k: crate -> util -> plan -> record -> crate",
            ]
        );
    }

    #[test]
    fn comments_strings_and_unit_tests_are_ignored() {
        let f = files(&[
            ("lib.rs", "mod a;\nmod b;"),
            (
                "a.rs",
                "use crate::b::B;\nconst S: &str = \"crate::b\";\nconst C: char = '\"';",
            ),
            (
                "b.rs",
                "// use crate::a;\n/* crate::a /* nested */ crate::a */\n\
                 const R: &str = r#\"crate::a \"# ;\nfn f<'a>(x: &'a str) {}\n\
                 #[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\n",
            ),
        ]);
        assert_eq!(module_cycles("k", &f), Vec::<String>::new());
        // The same b.rs without its guards closes the cycle.
        let mut broken = f.clone();
        broken.insert("b.rs".into(), "use crate::a;".into());
        assert_eq!(module_cycles("k", &broken), vec!["k: a -> b -> a"]);
    }

    #[test]
    fn longer_cycles_are_reported_once_per_edge() {
        let f = files(&[
            ("lib.rs", ""),
            ("a.rs", "use crate::b::X;"),
            ("b.rs", "use crate::c::X;"),
            ("c.rs", "use crate::a::X; use crate::b::Y;"),
        ]);
        assert_eq!(
            module_cycles("k", &f),
            vec!["k: b -> c -> b", "k: a -> b -> c -> a"]
        );
    }

    // -- Rule 3 -------------------------------------------------------------

    #[test]
    fn forbid_unsafe_is_found_among_the_inner_attributes() {
        assert!(has_forbid_unsafe(
            "//! Docs.\n//! More.\n\n#![forbid(unsafe_code)]\n\npub mod a;"
        ));
        assert!(has_forbid_unsafe(
            "#![allow(dead_code)]\n#![forbid(missing_docs, unsafe_code)]\nfn main() {}"
        ));
        assert!(!has_forbid_unsafe("//! Docs.\npub mod a;"));
        assert!(!has_forbid_unsafe("// #![forbid(unsafe_code)]\npub mod a;"));
        assert!(!has_forbid_unsafe("#![deny(unsafe_code)]\npub mod a;"));
        // Only at the top: an item ends the crate's inner attributes.
        assert!(!has_forbid_unsafe("pub mod a;\n#![forbid(unsafe_code)]"));
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
    fn report_lists_every_violation() {
        let report = Report {
            dependencies: vec!["d1".into()],
            cycles: vec!["k: a -> b -> a".into(), "k: crate -> a -> crate".into()],
            unsafe_code: vec![],
        };
        assert_eq!(
            report.into_result().unwrap_err(),
            "lint found 3 violation(s)\ncrate dependency rules:\n  d1\n\
             module cycles:\n  k: a -> b -> a\n  k: crate -> a -> crate"
        );
        assert_eq!(Report::default().into_result(), Ok(()));
    }

    // -- The real workspace, and copies of it broken in memory ---------------

    /// Adds `line` to the file of module `m` (its `.rs` file or `mod.rs`).
    fn append_to_module(files: &mut BTreeMap<String, String>, m: &str, line: &str) {
        let key = [format!("{m}.rs"), format!("{m}/mod.rs")]
            .into_iter()
            .find(|k| files.contains_key(k))
            .unwrap_or_else(|| format!("{m}.rs"));
        let text = files.entry(key).or_default();
        // Before any unit tests, which the checker ignores.
        let cut = without_tests(text).len();
        text.insert_str(cut, &format!("\n{line}\n"));
    }

    #[test]
    fn the_real_workspace_broken_in_memory_fails_each_rule() {
        let meta = metadata().unwrap();
        let sources = read_sources(&meta).unwrap();
        let real = check(&meta, &sources);
        for krate in LIB_CRATES {
            assert!(
                sources[*krate].src.contains_key("lib.rs"),
                "{krate} src was read"
            );
        }

        // Rule 1: gears-core depends on pyo3 (and gears-config, indirectly,
        // through gears-python).
        let mut broken = meta.clone();
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
        let report = check(&broken, &sources);
        let mut new: Vec<_> = report
            .dependencies
            .iter()
            .filter(|v| !real.dependencies.contains(v))
            .collect();
        new.sort();
        assert_eq!(
            new,
            vec![
                "gears-config must not depend on pyo3: gears-config -> gears-python -> pyo3",
                "gears-core must not depend on pyo3: gears-core -> pyo3",
            ]
        );
        assert!(report.into_result().is_err());

        // Rule 2: in every library crate with two top-level modules that are
        // not yet on a cycle together, make them import each other.
        let mut broken_crates = 0;
        for krate in LIB_CRATES {
            let files = &sources[*krate].src;
            let modules: BTreeSet<String> = files
                .keys()
                .filter_map(|p| module_of(p))
                .filter(|m| m != ROOT)
                .collect();
            let real_cycles = module_cycles(krate, files);
            let pair = modules
                .iter()
                .flat_map(|a| modules.iter().map(move |b| (a, b)))
                .find(|(a, b)| {
                    a < b
                        && !real_cycles
                            .iter()
                            .any(|c| c.contains(&format!(" {a} ")) && c.contains(&format!(" {b} ")))
                });
            let Some((a, b)) = pair else { continue };
            let mut mutated = sources.clone();
            let src = &mut mutated.get_mut(*krate).unwrap().src;
            append_to_module(src, a, &format!("use crate::{b}::*;"));
            append_to_module(src, b, &format!("#[allow(unused)]\nuse crate::{{{a}::*}};"));
            let report = check(&meta, &mutated);
            let expected = format!("{krate}: {a} -> {b} -> {a}");
            assert!(
                report.cycles.contains(&expected),
                "{expected} not in {:?}",
                report.cycles
            );
            assert!(!real.cycles.contains(&expected));
            broken_crates += 1;
        }
        assert!(
            broken_crates >= 1,
            "no crate had two modules to tie together"
        );

        // Rule 3: gears-core without its forbid line, gears-python with one.
        let mut mutated = sources.clone();
        for (_, text) in &mut mutated.get_mut("gears-core").unwrap().roots {
            *text = text.replace("#![forbid(unsafe_code)]", "");
        }
        for (_, text) in &mut mutated.get_mut("gears-python").unwrap().roots {
            text.insert_str(0, "#![forbid(unsafe_code)]\n");
        }
        let report = check(&meta, &mutated);
        let new: Vec<_> = report
            .unsafe_code
            .iter()
            .filter(|v| !real.unsafe_code.contains(v))
            .collect();
        assert_eq!(
            new,
            vec![
                "gears-core (gears-core/src/lib.rs) does no FFI but lacks #![forbid(unsafe_code)] at the top",
                "gears-python (gears-python/src/lib.rs) is an FFI crate and must not have #![forbid(unsafe_code)]",
            ]
        );
    }

    #[test]
    fn the_raw_module_api_stays_in_the_redis_layer() {
        let mut files = BTreeMap::new();
        files.insert(
            "redis.rs".to_string(),
            "use redis_module::raw; unsafe { raw::RedisModule_Call() }".to_string(),
        );
        files.insert(
            "events.rs".to_string(),
            "// raw:: in a comment is fine\nfn f() { let s = \"unsafe raw::x\"; }".to_string(),
        );
        assert!(raw_outside_layer(&files).is_empty());
        files.insert(
            "hooks.rs".to_string(),
            "use redis_module::raw;\nfn f() { unsafe { raw::RedisModule_Call() } }".to_string(),
        );
        let found = raw_outside_layer(&files);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("hooks.rs uses unsafe"));
        assert!(found[1].contains("hooks.rs uses the raw module API"));
    }
}
