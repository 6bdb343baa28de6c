//! What the lint reads in Rust source, through `syn`: which top-level
//! module a file belongs to, which modules it imports, where it uses
//! `unsafe` or the raw Redis module API, and the crate's inner attributes.
//!
//! Comments and literals are the parser's business. `#[cfg(test)]` items
//! are left out: unit tests may reach anything. Macro bodies are token
//! streams to `syn`, so paths inside them are found by scanning their
//! tokens. Nothing here reads the disk.

use std::collections::{BTreeMap, BTreeSet};
use syn::visit::Visit;

/// The name of a crate's root module (`lib.rs`) in reports.
pub const ROOT: &str = "crate";

/// The top-level module a source file belongs to (`None` for files that are
/// not part of the library: `main.rs` and `bin/`). `lib.rs` is [`ROOT`].
pub fn module_of(path: &str) -> Option<String> {
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

/// The top-level modules of a crate's files, without the root.
pub fn modules(files: &BTreeMap<String, String>) -> BTreeSet<String> {
    files
        .keys()
        .filter_map(|p| module_of(p))
        .filter(|m| m != ROOT)
        .collect()
}

/// A file parsed, without its `#[cfg(test)]` items.
pub fn parse(text: &str) -> Result<syn::File, String> {
    let mut file = syn::parse_file(text).map_err(|e| e.to_string())?;
    strip_tests(&mut file.items);
    Ok(file)
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string().trim() == "test")
    })
}

fn attrs_of(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item;
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn strip_tests(items: &mut Vec<syn::Item>) {
    items.retain(|i| !is_cfg_test(attrs_of(i)));
    for item in items {
        if let syn::Item::Mod(m) = item {
            if let Some((_, inner)) = &mut m.content {
                strip_tests(inner);
            }
        }
    }
}

/// One path a `use` item names, flattened out of its tree: its segments
/// (`*` for a glob) and the name it is imported as, if renamed.
struct UsePath {
    segments: Vec<String>,
    alias: Option<String>,
}

/// The paths of a `use` tree; `None` when it starts with `::` (another
/// crate).
fn flatten_use(item: &syn::ItemUse) -> Vec<UsePath> {
    fn walk(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<UsePath>) {
        use syn::UseTree;
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, out);
                prefix.pop();
            }
            UseTree::Name(n) => {
                let mut segments = prefix.clone();
                if n.ident != "self" {
                    segments.push(n.ident.to_string());
                }
                out.push(UsePath {
                    segments,
                    alias: None,
                });
            }
            UseTree::Rename(r) => {
                let mut segments = prefix.clone();
                if r.ident != "self" {
                    segments.push(r.ident.to_string());
                }
                out.push(UsePath {
                    segments,
                    alias: Some(r.rename.to_string()),
                });
            }
            UseTree::Glob(_) => {
                let mut segments = prefix.clone();
                segments.push("*".into());
                out.push(UsePath {
                    segments,
                    alias: None,
                });
            }
            UseTree::Group(g) => {
                for t in &g.items {
                    walk(t, prefix, out);
                }
            }
        }
    }
    if item.leading_colon.is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    walk(&item.tree, &mut Vec::new(), &mut out);
    out
}

/// The paths written in a macro's tokens: runs of identifiers joined by
/// `::` (in nested groups too).
fn macro_paths(tokens: proc_macro2::TokenStream, out: &mut Vec<Vec<String>>) {
    use proc_macro2::{Spacing, TokenTree};
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut current: Vec<String> = Vec::new();
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Ident(id) => {
                current.push(id.to_string());
                let sep = matches!(
                    (trees.get(i + 1), trees.get(i + 2)),
                    (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                        if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
                );
                if sep {
                    i += 3;
                    continue;
                }
                out.push(std::mem::take(&mut current));
            }
            TokenTree::Group(g) => {
                current.clear();
                macro_paths(g.stream(), out);
            }
            _ => current.clear(),
        }
        i += 1;
    }
    if !current.is_empty() {
        out.push(current);
    }
}

/// Where a path written in one file leads inside its crate.
struct Resolver<'a> {
    is_root: bool,
    /// How many `super::` reach the root from this file (0 for lib.rs).
    depth: usize,
    modules: &'a BTreeSet<String>,
}

impl Resolver<'_> {
    fn for_file<'m>(path: &str, modules: &'m BTreeSet<String>) -> Resolver<'m> {
        let slashes = path.matches('/').count();
        let depth = if path == "lib.rs" {
            0
        } else if path.ends_with("/mod.rs") {
            slashes
        } else {
            slashes + 1
        };
        Resolver {
            is_root: path == "lib.rs",
            depth,
            modules,
        }
    }

    /// The segments after the crate root a path names, if it names an item
    /// of this crate by an absolute (or root-relative) path.
    fn after_root<'p>(&self, segs: &'p [String]) -> Option<&'p [String]> {
        let first = segs.first()?;
        if first == "crate" || (first == "self" && self.is_root) {
            return Some(&segs[1..]);
        }
        let supers = segs.iter().take_while(|s| *s == "super").count();
        if self.depth > 0 && supers == self.depth {
            return Some(&segs[supers..]);
        }
        if self.is_root && segs.len() > 1 && self.modules.contains(first) {
            return Some(segs);
        }
        None
    }
}

/// The first segments (after the root) of every crate path in a file:
/// `Some(name)` for `crate::name...`, `None` for the root itself
/// (`crate::*`, `use crate::{self}`).
struct Collector<'a> {
    resolver: Resolver<'a>,
    found: Vec<Option<String>>,
}

impl Collector<'_> {
    fn path(&mut self, segs: &[String]) {
        if let Some(after) = self.resolver.after_root(segs) {
            self.found
                .push(after.first().filter(|s| *s != "*").cloned());
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    /// `pub(crate)` and `pub(in crate::a)` say who may see an item, not
    /// what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        for p in flatten_use(u) {
            self.path(&p.segments);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.path(&segs);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let mut paths = Vec::new();
        macro_paths(m.tokens.clone(), &mut paths);
        for p in paths {
            self.path(&p);
        }
        syn::visit::visit_macro(self, m);
    }
}

/// The names lib.rs imports from its own modules (`pub use record::Record;`,
/// `use self::a::{B, C as D};`), mapped to the module they come from: a path
/// `crate::Record` leads to that module, not to the root. Glob imports are
/// not followed.
fn root_imports(lib: &syn::File, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let resolver = Resolver {
        is_root: true,
        depth: 0,
        modules,
    };
    let mut out = BTreeMap::new();
    for item in &lib.items {
        let syn::Item::Use(u) = item else { continue };
        for p in flatten_use(u) {
            let Some(after) = resolver.after_root(&p.segments) else {
                continue;
            };
            let (Some(module), Some(last)) = (after.first(), after.last()) else {
                continue;
            };
            if after.len() < 2 || !modules.contains(module) || last == "*" {
                continue;
            }
            out.insert(p.alias.unwrap_or_else(|| last.clone()), module.clone());
        }
    }
    out
}

/// The module dependency edges of one library crate, with the file that
/// makes each one: `files` maps paths relative to `src/` to contents.
/// Files that do not parse are returned apart, with the parser's error.
///
/// Every file under `src/foo/` and `src/foo.rs` is module `foo`; `src/lib.rs`
/// is the root, `crate`. An edge A -> B is a path in a file of A (a `use`
/// item, a path in code, or a path in a macro's tokens) that leads to B:
///
/// - `crate::B...`, or `super::B...` with as many `super`s as reach the
///   root from that file, or in lib.rs `self::B...` and `B::...`;
/// - `crate::x` where x is not a module (an item of lib.rs) leads to the
///   root, unless lib.rs imports x from a module (`pub use record::Record;`):
///   then it leads to that module.
///
/// `mod B;` declarations are not edges, and neither is anything under
/// `#[cfg(test)]`.
pub fn module_edges(
    files: &BTreeMap<String, String>,
) -> (BTreeMap<(String, String), String>, Vec<String>) {
    let modules = modules(files);
    let mut unparsed = Vec::new();
    let mut parsed = BTreeMap::new();
    for (path, text) in files {
        match parse(text) {
            Ok(f) => {
                parsed.insert(path.clone(), f);
            }
            Err(e) => unparsed.push(format!("{path} does not parse: {e}")),
        }
    }
    let imports = parsed
        .get("lib.rs")
        .map(|lib| root_imports(lib, &modules))
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
    for (path, file) in &parsed {
        let Some(from) = module_of(path) else {
            continue;
        };
        let mut c = Collector {
            resolver: Resolver::for_file(path, &modules),
            found: Vec::new(),
        };
        c.visit_file(file);
        for to in c.found.into_iter().map(target) {
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| path.clone());
            }
        }
    }
    (edges, unparsed)
}

/// Whether the crate root opens with `#![forbid(unsafe_code)]` (possibly
/// among other lints: `#![forbid(missing_docs, unsafe_code)]`).
pub fn has_forbid_unsafe(root_source: &str) -> bool {
    let Ok(file) = syn::parse_file(root_source) else {
        return false;
    };
    file.attrs.iter().any(|a| {
        matches!(a.style, syn::AttrStyle::Inner(_))
            && a.path().is_ident("forbid")
            && a.meta.require_list().is_ok_and(|l| {
                l.tokens
                    .clone()
                    .into_iter()
                    .any(|t| t.to_string() == "unsafe_code")
            })
    })
}

/// What a file does that only the Redis layer may do.
#[derive(Debug, Default, PartialEq)]
pub struct LowLevel {
    /// An `unsafe` block, function, impl, trait or function pointer type.
    pub unsafe_code: bool,
    /// A path through `redis_module::raw` (or `raw::` after importing it).
    pub raw_api: bool,
}

impl<'ast> Visit<'ast> for LowLevel {
    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        self.unsafe_code = true;
        syn::visit::visit_expr_unsafe(self, e);
    }
    fn visit_signature(&mut self, s: &'ast syn::Signature) {
        self.unsafe_code |= s.unsafety.is_some();
        syn::visit::visit_signature(self, s);
    }
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        self.unsafe_code |= i.unsafety.is_some();
        syn::visit::visit_item_impl(self, i);
    }
    fn visit_item_trait(&mut self, i: &'ast syn::ItemTrait) {
        self.unsafe_code |= i.unsafety.is_some();
        syn::visit::visit_item_trait(self, i);
    }
    fn visit_type_bare_fn(&mut self, t: &'ast syn::TypeBareFn) {
        self.unsafe_code |= t.unsafety.is_some();
        syn::visit::visit_type_bare_fn(self, t);
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        for p in flatten_use(u) {
            self.raw_api |= is_raw(&p.segments);
        }
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.raw_api |= is_raw(&segs);
        syn::visit::visit_path(self, p);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let mut paths = Vec::new();
        macro_paths(m.tokens.clone(), &mut paths);
        for p in &paths {
            self.raw_api |= is_raw(p);
            self.unsafe_code |= p.iter().any(|s| s == "unsafe");
        }
        syn::visit::visit_macro(self, m);
    }
}

fn is_raw(segs: &[String]) -> bool {
    segs.iter()
        .position(|s| s == "raw")
        .is_some_and(|i| i > 0 || segs.len() > 1)
}

/// What `text` does that only the Redis layer may do (tests aside).
pub fn low_level(text: &str) -> Result<LowLevel, String> {
    let file = parse(text)?;
    let mut found = LowLevel::default();
    found.visit_file(&file);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    fn cycles_of(f: &BTreeMap<String, String>) -> Vec<String> {
        let (edges, unparsed) = module_edges(f);
        assert_eq!(unparsed, Vec::<String>::new());
        crate::lint::layers::cycles("k", &edges)
    }

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
        assert_eq!(cycles_of(&f), Vec::<String>::new());
        let edges: Vec<_> = module_edges(&f).0.into_keys().collect();
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
        assert_eq!(cycles_of(&f), vec!["k: a -> b -> a"]);
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
        assert_eq!(cycles_of(&f), vec!["k: crate -> a -> crate"]);
        // super:: in a top-level module means the root too.
        let f = files(&[
            ("lib.rs", "mod a;\nuse self::a::X;\npub struct Y;"),
            ("a.rs", "pub struct X(super::Y);"),
        ]);
        assert_eq!(cycles_of(&f), vec!["k: crate -> a -> crate"]);
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
        assert_eq!(cycles_of(&f), Vec::<String>::new());
        let edges: Vec<_> = module_edges(&f).0.into_keys().collect();
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
            cycles_of(&broken),
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
        assert_eq!(cycles_of(&f), Vec::<String>::new());
        // The same b.rs without its guards closes the cycle.
        let mut broken = f.clone();
        broken.insert("b.rs".into(), "use crate::a;".into());
        assert_eq!(cycles_of(&broken), vec!["k: a -> b -> a"]);
    }

    #[test]
    fn longer_cycles_are_reported_once_per_edge() {
        let f = files(&[
            ("lib.rs", ""),
            ("a.rs", "use crate::b::X;"),
            ("b.rs", "use crate::c::X;"),
            ("c.rs", "use crate::a::X; use crate::b::Y;"),
        ]);
        assert_eq!(cycles_of(&f), vec!["k: b -> c -> b", "k: a -> b -> c -> a"]);
    }

    #[test]
    fn paths_in_macros_and_nested_files_count() {
        let f = files(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;"),
            ("a.rs", "fn f() { println!(\"{}\", crate::b::NAME) }"),
            ("b/mod.rs", "mod deep;"),
            // Two supers reach the root from b/deep.rs; one stays in b.
            ("b/deep.rs", "use super::super::c::C; use super::other::X;"),
            ("c.rs", "pub struct C;"),
        ]);
        let edges: Vec<_> = module_edges(&f).0.into_keys().collect();
        let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(edges, vec![edge("a", "b"), edge("b", "c")]);
    }

    #[test]
    fn a_file_that_does_not_parse_is_reported() {
        let f = files(&[("lib.rs", "mod a;"), ("a.rs", "fn f( {")]);
        let (_, unparsed) = module_edges(&f);
        assert_eq!(unparsed.len(), 1);
        assert!(
            unparsed[0].starts_with("a.rs does not parse"),
            "{unparsed:?}"
        );
    }

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
}
