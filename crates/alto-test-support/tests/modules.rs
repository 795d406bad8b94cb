//! The module graph inside a crate has no cycles where the architecture says it must not:
//! the server's execution path (`execution`, `link::*`, `http::execution`, `state`,
//! `principal`, `audit`) and the agent's tier path (`tier*`, `job`, `api`, `link`, `journal`,
//! `targets`). Reads the sources: a module depends on another when it names it through
//! `crate::…` or `super::…` (test modules excluded), resolved to the longest existing module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod sources;
use sources::{rs_files, workspace};

/// The module path of a source file (`link/mod.rs` → `link`, `link/session.rs` →
/// `link::session`); `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).expect("a file below src").with_extension("");
    let mut parts: Vec<String> =
        rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return None;
    }
    Some(parts)
}

/// Drops comments and everything from the first `#[cfg(test)]` on (test modules sit at the
/// end of a file by convention here).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path named after `crate::` or `super::`, with `use` groups (`a::{b, c::d}`) expanded.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(is_ident) {
            continue;
        }
        expand(rest, Vec::new(), &mut out);
    }
    out
}

/// Reads `seg::seg::{…}` at the start of `s`, pushing each full path (prefix + segments).
fn expand(s: &str, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut s = s.trim_start();
    loop {
        if let Some(body) = s.strip_prefix('{') {
            // A group: split at top-level commas up to the matching brace.
            let (mut depth, mut start) = (0usize, 0usize);
            for (i, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        expand(&body[start..i], prefix.clone(), out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&body[start..i], prefix.clone(), out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
        if end == 0 {
            break;
        }
        prefix.push(s[..end].to_owned());
        s = &s[end..];
        match s.strip_prefix("::") {
            Some(r) => s = r.trim_start(),
            None => break,
        }
    }
    if !prefix.is_empty() {
        out.push(prefix);
    }
}

/// The crate's module graph: module → modules it names.
fn graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join("crates").join(krate).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mods: BTreeMap<Vec<String>, PathBuf> =
        files.iter().filter_map(|f| Some((module_of(&src, f)?, f.clone()))).collect();
    let mut g = BTreeMap::new();
    for (m, file) in &mods {
        let code = code_of(&std::fs::read_to_string(file).expect("source file"));
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        let parent: Vec<String> =
            if is_mod_rs { m.clone() } else { m[..m.len().saturating_sub(1)].to_vec() };
        let mut named: Vec<Vec<String>> = paths_after(&code, "crate::");
        for p in paths_after(&code, "super::") {
            let mut base = parent.clone();
            base.pop();
            base.extend(p);
            named.push(base);
        }
        let mut deps = BTreeSet::new();
        for full in named {
            let target =
                (1..=full.len()).rev().map(|k| full[..k].to_vec()).find(|c| mods.contains_key(c));
            if let Some(t) = target.filter(|t| t != m) {
                deps.insert(t.join("::"));
            }
        }
        g.insert(m.join("::"), deps);
    }
    g
}

/// The cycles (strongly connected components of more than one module) of a graph.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    // Kosaraju: order by finish time, then walk the reversed graph.
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(v.to_owned()) {
            return;
        }
        for w in g.get(v).into_iter().flatten() {
            visit(w, g, seen, order);
        }
        order.push(v.to_owned());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for v in g.keys() {
        visit(v, g, &mut seen, &mut order);
    }
    let mut rev: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (v, ws) in g {
        for w in ws {
            rev.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for v in order.iter().rev() {
        let mut comp = Vec::new();
        visit(v, &rev, &mut assigned, &mut comp);
        if comp.len() > 1 {
            out.push(comp.into_iter().collect());
        }
    }
    out
}

fn assert_no_cycle_touching(krate: &str, path: &[&str]) {
    let g = graph(krate);
    for m in path {
        assert!(
            g.keys().any(|k| k == m || k.starts_with(&format!("{m}::"))),
            "{krate}: module {m} does not exist (update this test with the architecture)"
        );
    }
    let bad: Vec<_> = cycles(&g)
        .into_iter()
        .filter(|c| {
            c.iter().any(|m| path.iter().any(|p| m == p || m.starts_with(&format!("{p}::"))))
        })
        .collect();
    assert!(bad.is_empty(), "{krate}: module cycles on the path {path:?}: {bad:?}");
}

#[test]
fn the_reader_finds_groups_supers_and_cycles() {
    let code = "use crate::a::{b::C, d};\nuse super::e;\nfn f() { crate::g::h(); }\n// crate::x\n";
    let code = code_of(code);
    let named = paths_after(&code, "crate::");
    assert_eq!(named, vec![vec!["a", "b", "C"], vec!["a", "d"], vec!["g", "h"]]);
    assert_eq!(paths_after(&code, "super::"), vec![vec!["e".to_owned()]]);
    let g: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
    let c = cycles(&g);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0], ["a", "b", "c"].into_iter().map(str::to_owned).collect());
}

#[test]
fn the_server_has_no_module_cycles() {
    assert_no_cycle_touching(
        "alto-server",
        &["execution", "link", "http::execution", "state", "principal", "audit"],
    );
    // Nor anywhere else in the server.
    let g = graph("alto-server");
    let all = cycles(&g);
    assert!(all.is_empty(), "alto-server: module cycles {all:?}");
    // The link's registry is plain state: it must not reach back into the application.
    let reg = &g["link::registry"];
    assert!(
        !reg.contains("state") && !reg.iter().any(|d| d.starts_with("http")),
        "link::registry depends on {reg:?}"
    );
    assert!(!g["audit"].contains("state"), "audit needs a time, not the state");
}

#[test]
fn the_agent_has_no_module_cycles_and_tiering_knows_no_transport() {
    assert_no_cycle_touching(
        "alto-agent",
        &["tier", "tier::exec", "tier::poll", "tier::file", "job", "api", "link", "journal"],
    );
    let g = graph("alto-agent");
    let all = cycles(&g);
    assert!(all.is_empty(), "alto-agent: module cycles {all:?}");
    // Tiering talks to a `Reporter`/`JobSource` (job.rs), never to REST or the link.
    for (m, deps) in g.iter().filter(|(m, _)| m.as_str() == "tier" || m.starts_with("tier::")) {
        assert!(
            !deps.contains("api") && !deps.contains("link"),
            "{m} depends on a transport: {deps:?}"
        );
    }
    assert!(g["job"].is_empty(), "job.rs is vocabulary only: {:?}", g["job"]);
}
