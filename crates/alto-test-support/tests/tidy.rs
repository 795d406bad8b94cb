//! Tidy checks over the workspace's files, in the spirit of rust-analyzer's `xtask/src/tidy.rs`:
//! the crate layering of `ARCHITECTURE.md` (its `tidy:layers` table) holds in every
//! `crates/*/Cargo.toml`, every source file under `crates/*/src` starts with a `//!` module
//! doc, and every crate root (`lib.rs`, `main.rs`) says what the crate must never do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod sources;
use sources::{rs_files, workspace};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every crate directory under `crates/` (those with a `Cargo.toml`), by directory name.
fn crates() -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(workspace().join("crates")).expect("crates directory") {
        let dir = e.expect("directory entry").path();
        if dir.join("Cargo.toml").is_file() {
            let name = dir.file_name().expect("a name").to_string_lossy().into_owned();
            out.insert(name, dir);
        }
    }
    out
}

/// One row of the layer table.
#[derive(Debug)]
struct Row {
    layer: u32,
    deps: BTreeSet<String>,
    dev_deps: BTreeSet<String>,
}

/// Parses the table between `<!-- tidy:layers -->` and `<!-- /tidy:layers -->`.
fn layer_table(architecture: &str) -> BTreeMap<String, Row> {
    let start = architecture.find("<!-- tidy:layers -->").expect("ARCHITECTURE.md: tidy:layers");
    let end = architecture.find("<!-- /tidy:layers -->").expect("ARCHITECTURE.md: /tidy:layers");
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split([',', ' '])
            .map(|s| s.trim().trim_matches('`'))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut rows = BTreeMap::new();
    for line in architecture[start..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<u32>() else {
            continue; // The header and the separator.
        };
        assert_eq!(cells.len(), 4, "ARCHITECTURE.md layer row needs 4 cells: {line}");
        let name = cells[1].trim_matches('`').to_owned();
        let row = Row { layer, deps: names(cells[2]), dev_deps: names(cells[3]) };
        assert!(rows.insert(name.clone(), row).is_none(), "{name} has two rows");
    }
    rows
}

/// The Alto crates a manifest depends on: `(normal or build, dev)`, including
/// `[target.'cfg(…)'.*]` tables and renamed (`package = "alto-…"`) entries.
fn alto_deps(manifest: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let doc: toml::Table = read(manifest).parse().expect("Cargo.toml parses");
    let (mut normal, mut dev) = (BTreeSet::new(), BTreeSet::new());
    let targets = doc.get("target").and_then(|t| t.as_table());
    let tables = std::iter::once(&doc)
        .chain(targets.into_iter().flat_map(|t| t.values().filter_map(|v| v.as_table())));
    for table in tables {
        for (key, is_dev) in
            [("dependencies", false), ("build-dependencies", false), ("dev-dependencies", true)]
        {
            let Some(deps) = table.get(key).and_then(|v| v.as_table()) else {
                continue;
            };
            for (name, spec) in deps {
                let real = spec.get("package").and_then(|p| p.as_str()).unwrap_or(name);
                if real.starts_with("alto-") {
                    if is_dev { &mut dev } else { &mut normal }.insert(real.to_owned());
                }
            }
        }
    }
    (normal, dev)
}

#[test]
fn tidy_crate_dependencies_follow_the_layers() {
    let table = layer_table(&read(&workspace().join("ARCHITECTURE.md")));
    let mut problems = Vec::new();
    for name in table.keys() {
        if !crates().contains_key(name) {
            problems.push(format!("ARCHITECTURE.md lists {name}, which is not a crate"));
        }
    }
    for (name, dir) in crates() {
        let Some(row) = table.get(&name) else {
            problems.push(format!("{name} has no row in ARCHITECTURE.md's layer table"));
            continue;
        };
        let (normal, dev) = alto_deps(&dir.join("Cargo.toml"));
        for dep in &normal {
            if dep == &name {
                continue;
            }
            if !row.deps.contains(dep) {
                problems
                    .push(format!("{name} depends on {dep}, which its layer row does not allow"));
            }
            match table.get(dep) {
                Some(d) if d.layer < row.layer => {}
                Some(d) => problems.push(format!(
                    "{name} (layer {}) depends on {dep} (layer {}): not a lower layer",
                    row.layer, d.layer
                )),
                None => problems.push(format!("{name} depends on {dep}, which has no row")),
            }
        }
        for dep in dev.iter().filter(|d| !normal.contains(*d)) {
            if !row.deps.contains(dep) && !row.dev_deps.contains(dep) {
                problems.push(format!(
                    "{name} has the dev-dependency {dep}, which its layer row does not allow"
                ));
            }
        }
        for dep in row.deps.iter().chain(&row.dev_deps) {
            if !table.contains_key(dep) {
                problems.push(format!("{name}'s row names {dep}, which has no row"));
            }
        }
        for dep in &row.deps {
            if table.get(dep).is_some_and(|d| d.layer >= row.layer) {
                problems.push(format!("{name}'s row allows {dep}, which is not a lower layer"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering (ARCHITECTURE.md, \"Layers\"):\n{}",
        problems.join("\n")
    );
}

/// The `//!` lines at the top of a file (blank lines before them allowed).
fn module_doc(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.trim_start().starts_with("//!") || l.trim().is_empty())
        .filter(|l| !l.trim().is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[test]
fn tidy_every_source_file_has_a_module_doc() {
    let mut missing = Vec::new();
    for dir in crates().values() {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rs_files(&src, &mut files);
        for f in files {
            if module_doc(&read(&f)).is_none() {
                missing.push(f.strip_prefix(workspace()).unwrap_or(&f).display().to_string());
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "files without a `//!` module doc at the top:\n{}",
        missing.join("\n")
    );
}

#[test]
fn tidy_every_crate_root_says_what_it_must_never_do() {
    let mut missing = Vec::new();
    for (name, dir) in crates() {
        for root in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(root);
            if !path.is_file() {
                continue;
            }
            let doc = module_doc(&read(&path)).unwrap_or_default();
            if !doc.to_lowercase().contains("must never") {
                missing.push(format!("{name}/{root}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "crate roots whose `//!` doc has no \"must never\" statement:\n{}",
        missing.join("\n")
    );
}

#[test]
fn tidy_layer_table_parses() {
    let t = layer_table(
        "x\n<!-- tidy:layers -->\n| layer | crate | dependencies | dev |\n|---|---|---|---|\n\
         | 0 | a | | |\n| 1 | `b` | a, `c` | d |\n<!-- /tidy:layers -->\n",
    );
    assert_eq!(t.len(), 2);
    assert_eq!(t["b"].layer, 1);
    assert_eq!(t["b"].deps, BTreeSet::from(["a".to_owned(), "c".to_owned()]));
    assert_eq!(t["b"].dev_deps, BTreeSet::from(["d".to_owned()]));
    assert!(t["a"].deps.is_empty());
}
