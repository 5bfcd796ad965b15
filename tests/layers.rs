//! Arrows run one way (issue 14): every module refers only to modules in layers below its own, and
//! the files of one module do not import each other in a circle.
//!
//! The check reads the sources under `src/`: every `crate::X`, `use crate::{X, …}` and
//! `super::…::X` that reaches the crate root names a top-level module X (comments and string
//! literals are skipped; inline `mod tests { … }` blocks count as the file they are in, test code
//! included: a test that needs a module above its own is an arrow upwards too). A failure prints
//! every offending reference with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may refer to modules in lower layers only; modules of one
/// layer are independent of each other. `src/lib.rs` (the crate root: `blocking`, the `Error`
/// re-export) is below them all. A new top-level module must be placed here.
const LAYERS: &[&[&str]] = &[
    // Error classes and exit codes: used by everything.
    &["error", "sasl"],
    // Cores with no I/O policy of their own: secrets, the memory budget, message parsing, IMAP's
    // modified UTF-7, the POP3 client protocol, private files, the notices' sender.
    &["secret", "memory", "mime", "mutf7", "pop3", "files", "notice"],
    // The validated config model (and the only TOML reader/writer).
    &["config"],
    // The SQLite store; mail-client settings (autoconfig XML, from the config alone).
    &["store", "autoconfig"],
    // Sockets, TLS, the POP3 driver, the listeners' accept loop and throttle.
    &["net"],
    // OAuth 2 sign-in and tokens (its token endpoint over net's TLS configuration).
    &["oauth"],
    // The three services, independent of each other.
    &["fetch", "imap", "smtp"],
    // The daemon's control socket (runs fetches).
    &["control"],
    // The composition root of `popbridge run`.
    &["app"],
    // `popbridge demo` (runs the app against a built-in POP3 server).
    &["demo"],
    // Finding an address's servers and explaining provider quirks (the command line's helper).
    &["setup"],
    // The command line.
    &["cli"],
];

/// Known arrows against the order: (from, to). Each still present is allowed (none is left).
const PENDING: &[(&str, &str)] = &[];

/// Known circles among the files of one module (module, the files in the circle), allowed until
/// they are removed.
const PENDING_CYCLES: &[(&str, &[&str])] = &[
    // The one left: imap::session's loop dispatches to imap::cmd, whose handlers take the
    // `Session` (state, output) defined in imap::session. Breaking it means moving `Session`'s
    // state into a file of its own that both use.
    ("imap", &["cmd", "session"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// One reference found in the source: the path it names, where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The module path it names, from the crate root (`["store", "accounts"]` for
    /// `crate::store::accounts::Health`; only the first segments that can be modules matter).
    target: Vec<String>,
    line: usize,
}

/// Source text with comments, string and char literals blanked out (newlines kept, so lines still
/// count), as a list of tokens: identifiers, `::`, and single punctuation characters.
fn tokens(src: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
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
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == 'r' && (at(i + 1) == '"' || (at(i + 1) == '#' && (at(i + 2) == '"' || at(i + 2) == '#'))) {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| at(j + 1 + h) == '#') {
                    j += 1 + hashes;
                    break;
                }
                line += usize::from(c[j] == '\n');
                j += 1;
            }
            i = j;
        } else if ch == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                if c[j] == '\\' {
                    j += 1;
                }
                line += usize::from(at(j) == '\n');
                j += 1;
            }
            i = j + 1;
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[s..i].iter().collect();
            // b"…", b'…', br"…": the prefix is not an identifier.
            if matches!(word.as_str(), "b" | "br" | "c" | "cr") && matches!(at(i), '"' | '\'' | '#') {
                if word.ends_with('r') {
                    i -= 1;
                }
                continue;
            }
            out.push((word, line));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(("::".to_string(), line));
            i += 2;
        } else {
            out.push((ch.to_string(), line));
            i += 1;
        }
    }
    out
}

/// The references from the file whose module path is `module` (`["fetch", "health"]` for
/// `src/fetch/health.rs`, `["fetch"]` for `src/fetch/mod.rs`) to paths from the crate root:
/// `crate::a::b`, the first segment of each item of `crate::{a::b, c}`, and `super::…` chains
/// (resolved through inline `mod x { … }` blocks).
fn references(module: &[String], src: &str) -> Vec<Reference> {
    let t = tokens(src);
    let tok = |i: usize| t.get(i).map(|(s, _)| s.as_str()).unwrap_or("");
    let mut out = Vec::new();
    // Inline modules open at the current brace depth: (name, depth of their `{`).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        let line = t[i].1;
        match tok(i) {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tok(i + 2) == "{" && tok(i + 1) != "::" => {
                inline.push((tok(i + 1).to_string(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "crate" | "super" if tok(i + 1) == "::" && tok(i.wrapping_sub(1)) != "::" => {
                // Where the path starts: the crate root, or the ancestor `super` chains reach.
                let mut base: Vec<String> = if tok(i) == "crate" {
                    Vec::new()
                } else {
                    module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect()
                };
                let mut j = i;
                if tok(i) == "crate" {
                    j += 2;
                } else {
                    while tok(j) == "super" && tok(j + 1) == "::" {
                        base.pop();
                        j += 2;
                    }
                }
                let mut rest = Vec::new();
                while tok(j).chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    rest.push(tok(j).to_string());
                    if tok(j + 1) != "::" {
                        break;
                    }
                    j += 2;
                }
                if tok(j) == "{" {
                    // A group: the first segment of each item at its own level, e.g.
                    // `crate::{config::{A, B}, store}` → config, store.
                    let mut level = 0;
                    let mut item_start = true;
                    while j < t.len() {
                        match tok(j) {
                            "{" => {
                                level += 1;
                                if level == 1 {
                                    item_start = true;
                                }
                            }
                            "}" => {
                                level -= 1;
                                if level == 0 {
                                    break;
                                }
                            }
                            "," if level == 1 => item_start = true,
                            w if level == 1 && item_start => {
                                item_start = false;
                                if w != "self" {
                                    let mut target = base.clone();
                                    target.extend(rest.iter().cloned());
                                    target.push(w.to_string());
                                    out.push(Reference { target, line: t[j].1 });
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                } else {
                    let mut target = base;
                    target.extend(rest);
                    out.push(Reference { target, line });
                }
                i = j + 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Every `.rs` file under `dir`, with its module path (`src/fetch/mod.rs` → `["fetch"]`).
fn source_files(src: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read src/") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).expect("under src/");
                let mut module: Vec<String> =
                    rel.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if module.last().is_some_and(|m| m == "mod") {
                    module.pop();
                }
                out.push((p, module));
            }
        }
    }
    out.sort();
    out
}

/// The strongly connected components of more than one node (Tarjan's).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        let n = t.index.len();
        t.index.insert(v.to_string(), n);
        t.low.insert(v.to_string(), n);
        t.stack.push(v.to_string());
        t.on.insert(v.to_string());
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[v].min(t.low[w]);
                t.low.insert(v.to_string(), l);
            } else if t.on.contains(w) {
                let l = t.low[v].min(t.index[w]);
                t.low.insert(v.to_string(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn arrows_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files(&src);
    let tops: BTreeSet<String> = files.iter().filter_map(|(_, m)| m.first().cloned()).collect();
    let mut problems = Vec::new();
    for top in &tops {
        if top != "lib" && top != "main" && layer_of(top).is_none() {
            problems.push(format!("src/{top}: a top-level module missing from LAYERS in tests/layers.rs"));
        }
    }
    // Edges between top-level modules, and between the files of one module.
    let mut used_pending: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut inner: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (path, module) in &files {
        let Some(from) = module.first() else { continue };
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read a source file");
        let shown = path.strip_prefix(src.parent().expect("the package")).unwrap_or(path).display();
        for r in references(module, &text) {
            let Some(to) = r.target.first() else { continue };
            if !tops.contains(to) {
                continue; // an item of the crate root (`crate::blocking`, `crate::Error`)
            }
            if to == from {
                // Within one module: file → file (the module's own mod.rs is not a node).
                if let (Some(a), Some(b)) = (module.get(1), r.target.get(1))
                    && a != b
                    && files.iter().any(|(_, m)| m.len() == 2 && m[0] == *from && m[1] == *b)
                {
                    inner.entry(from.clone()).or_default().entry(a.clone()).or_default().insert(b.clone());
                }
                continue;
            }
            let (Some(lf), Some(lt)) = (layer_of(from), layer_of(to)) else { continue };
            if lt < lf {
                continue;
            }
            if let Some(p) = PENDING.iter().find(|(a, b)| a == from && b == to) {
                used_pending.insert(*p);
                continue;
            }
            let why = if lt == lf { "a module of the same layer" } else { "a module of a higher layer" };
            problems.push(format!("{shown}:{}: {from} → {to}: {why} (tests/layers.rs LAYERS)", r.line));
        }
    }
    for (top, edges) in &inner {
        for c in cycles(edges) {
            if PENDING_CYCLES.iter().any(|(m, files)| m == top && files.iter().eq(c.iter())) {
                continue;
            }
            let arrows: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a].iter().filter(|b| c.contains(b)).map(move |b| format!("{top}::{a} → {top}::{b}"))
                })
                .collect();
            problems.push(format!("src/{top}/: files in a circle: {}", arrows.join(", ")));
        }
    }
    for p in PENDING.iter().filter(|p| !used_pending.contains(p)) {
        println!("PENDING {} → {} is no longer needed: remove it from tests/layers.rs", p.0, p.1);
    }
    assert!(problems.is_empty(), "arrows against the layers (issue 14):\n{}\n", problems.join("\n"));
}

/// The scanner itself.
mod scanner {
    use super::*;

    fn targets(module: &[&str], src: &str) -> Vec<(String, usize)> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        references(&module, src).into_iter().map(|r| (r.target.join("::"), r.line)).collect()
    }

    #[test]
    fn paths_groups_and_super_chains() {
        let src = "use crate::store::Store;\nuse crate::{config::{self, Account}, error::Result, blocking};\n\
                   fn f() { super::super::net::tls::x(); super::keys::y(); }\n";
        assert_eq!(
            targets(&["fetch", "sink"], src),
            vec![
                ("store::Store".into(), 1),
                ("config".into(), 2),
                ("error".into(), 2),
                ("blocking".into(), 2),
                ("net::tls::x".into(), 3),
                ("fetch::keys::y".into(), 3),
            ]
        );
    }

    #[test]
    fn inline_modules_comments_and_literals() {
        let src = "// crate::app in a comment\n/* crate::cli /* nested */ crate::demo */\n\
                   const S: &str = \"crate::smtp\"; const R: &str = r#\"crate::imap \"q\"\"#;\n\
                   fn g<'a>(x: &'a str) -> char { '\"' }\n\
                   mod tests { use super::super::pop3::X; fn t() { let _ = b'\\''; crate::mime::y(); } }\n\
                   fn h() { super::store::z(); }\n";
        assert_eq!(
            targets(&["fetch", "sink"], src),
            vec![("fetch::pop3::X".into(), 5), ("mime::y".into(), 5), ("fetch::store::z".into(), 6)]
        );
    }

    #[test]
    fn circles_are_found() {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
            e.entry(a.into()).or_default().insert(b.into());
        }
        assert_eq!(cycles(&e), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    }
}
