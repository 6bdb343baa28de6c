//! The layer tables of `ARCHITECTURE.md`, read and checked against the
//! imports: a module no table lists, a listed module that does not exist,
//! an import that goes up a layer, and a cycle among a crate's modules are
//! each a violation. The tables are the input; nothing here reads the disk.
//!
//! A table belongs to the crate its heading names (`### Layers of
//! gears-module`); its rows go from the lowest layer to the highest, and the
//! second cell of a row lists the row's modules in backticks (`lib.rs` is
//! the crate root). A module may import from its own layer or any lower one.

use super::source::{module_edges, module_of, ROOT};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One crate's layers: the layer of each module (0 is the lowest) and each
/// layer's label (the row's first cell).
#[derive(Debug, Default, PartialEq)]
pub struct Layers {
    pub of: BTreeMap<String, usize>,
    pub labels: Vec<String>,
}

const HEADING: &str = "### Layers of ";

/// Every layer table of `markdown`, by crate name.
pub fn tables(markdown: &str) -> Result<BTreeMap<String, Layers>, String> {
    let mut out: BTreeMap<String, Layers> = BTreeMap::new();
    let mut current: Option<(String, Layers, usize)> = None;
    let mut finish = |c: Option<(String, Layers, usize)>| -> Result<(), String> {
        if let Some((krate, layers, _)) = c {
            if layers.labels.is_empty() {
                return Err(format!("the layer table of {krate} has no rows"));
            }
            if out.insert(krate.clone(), layers).is_some() {
                return Err(format!("{krate} has two layer tables"));
            }
        }
        Ok(())
    };
    for line in markdown.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(HEADING) {
            finish(current.take())?;
            let krate = rest.trim().trim_matches('`').to_owned();
            current = Some((krate, Layers::default(), 0));
            continue;
        }
        if line.starts_with('#') {
            finish(current.take())?;
            continue;
        }
        let Some((krate, layers, rows)) = current.as_mut() else {
            continue;
        };
        if !line.starts_with('|') {
            continue;
        }
        *rows += 1;
        // The header row and the separator row.
        if *rows <= 2 {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let (Some(label), Some(names)) = (cells.first(), cells.get(1)) else {
            return Err(format!("{krate}: a layer row without modules: {line}"));
        };
        let layer = layers.labels.len();
        layers.labels.push((*label).to_owned());
        for name in names.split('`').skip(1).step_by(2) {
            let module = if name == "lib.rs" { ROOT } else { name };
            if layers.of.insert(module.to_owned(), layer).is_some() {
                return Err(format!("{krate}: {name} is in two layers"));
            }
        }
    }
    finish(current.take())?;
    Ok(out)
}

/// The layer rules for one crate's files: every module in a layer, every
/// listed module real, no import going up a layer, no cycle.
pub fn violations(krate: &str, layers: &Layers, files: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let real: BTreeSet<String> = files.keys().filter_map(|p| module_of(p)).collect();
    for m in &real {
        if !layers.of.contains_key(m) {
            out.push(format!(
                "{krate}: module {m} is in no layer of ARCHITECTURE.md"
            ));
        }
    }
    for m in layers.of.keys() {
        if !real.contains(m) {
            out.push(format!(
                "{krate}: ARCHITECTURE.md lists module {m}, which does not exist"
            ));
        }
    }
    let (edges, unparsed) = module_edges(files);
    out.extend(unparsed.into_iter().map(|e| format!("{krate}: {e}")));
    for ((from, to), path) in &edges {
        let (Some(&a), Some(&b)) = (layers.of.get(from), layers.of.get(to)) else {
            continue;
        };
        if b > a {
            out.push(format!(
                "{krate}: {from} ({}) imports {to} ({}), a layer above it, in {path}",
                layers.labels[a], layers.labels[b]
            ));
        }
    }
    out.extend(cycles(krate, &edges));
    out
}

/// Root first, then by name: the order cycles are rotated to.
fn node_key(name: &str) -> (bool, &str) {
    (name != ROOT, name)
}

/// The shortest path `from -> ... -> to` through `graph`.
pub fn path_to(
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

/// Each cycle among a crate's top-level modules, as `krate: a -> b -> a`.
///
/// Listing every elementary cycle can blow up, so for each edge that lies on
/// a cycle the shortest cycle through that edge is reported (rotated to start
/// at the root or the first module by name, duplicates dropped): every edge
/// that has to go is named at least once.
pub fn cycles(krate: &str, edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().insert(to.clone());
    }
    let mut found: BTreeSet<(usize, Vec<String>)> = BTreeSet::new();
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
            found.insert((cycle.len(), cycle));
        }
    }
    found
        .into_iter()
        .map(|(_, mut cycle)| {
            cycle.push(cycle[0].clone());
            format!("{krate}: {}", cycle.join(" -> "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Architecture\n\n### Layers of gears-x\n\nLowest first.\n\n\
        | Layer | Modules | Job |\n|---|---|---|\n\
        | base | `errors`, `util` | texts |\n\
        | services | `engine` | work |\n\
        | top | `lib.rs`, `commands` | handlers |\n\n## Invariants\n\n| not | a | table |\n";

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn a_table_gives_each_module_its_layer_lowest_first() {
        let t = tables(DOC).unwrap();
        assert_eq!(t.len(), 1);
        let l = &t["gears-x"];
        assert_eq!(l.labels, vec!["base", "services", "top"]);
        let of: Vec<(&str, usize)> = l.of.iter().map(|(m, n)| (m.as_str(), *n)).collect();
        assert_eq!(
            of,
            vec![
                ("commands", 2),
                ("crate", 2),
                ("engine", 1),
                ("errors", 0),
                ("util", 0)
            ]
        );
    }

    #[test]
    fn a_malformed_table_is_an_error() {
        let twice = DOC.replace("`engine`", "`engine`, `util`");
        assert_eq!(
            tables(&twice).unwrap_err(),
            "gears-x: util is in two layers"
        );
        let empty = "### Layers of gears-y\n\nnothing\n";
        assert_eq!(
            tables(empty).unwrap_err(),
            "the layer table of gears-y has no rows"
        );
    }

    #[test]
    fn imports_go_down_or_sideways_only() {
        let t = &tables(DOC).unwrap()["gears-x"];
        let good = files(&[
            ("lib.rs", "mod commands; mod engine; mod errors; mod util;"),
            (
                "commands/mod.rs",
                "use crate::engine::run; use crate::errors::E;",
            ),
            ("engine.rs", "use crate::util::u; pub fn run() {}"),
            ("errors.rs", "use crate::util::u; pub struct E;"),
            ("util.rs", "pub fn u() {}"),
        ]);
        assert_eq!(violations("gears-x", t, &good), Vec::<String>::new());
        let mut up = good.clone();
        up.insert(
            "util.rs".into(),
            "pub fn u() { crate::engine::run() }".into(),
        );
        assert_eq!(
            violations("gears-x", t, &up),
            vec![
                "gears-x: util (base) imports engine (services), a layer above it, in util.rs",
                "gears-x: engine -> util -> engine",
            ]
        );
        let mut sideways = good.clone();
        sideways.insert("util.rs".into(), "use crate::errors::E;".into());
        assert_eq!(
            violations("gears-x", t, &sideways),
            vec!["gears-x: errors -> util -> errors"]
        );
    }
}
