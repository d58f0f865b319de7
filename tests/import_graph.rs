//! No import circle in `src/`: modules depend on each other one way, so
//! each layer can be read (and changed) knowing only the layers below.
//!
//! Every `.rs` file under `src/` is a module; an arrow goes from a module
//! to each module its `use` items and inline `crate::`/`super::` paths
//! name (the longest prefix that is a module). A module using its own
//! ancestors (`super::X`, the folder's `mod.rs`) is containment, not an
//! arrow; so is a `#[cfg(test)]` part (cut from its first line to the end
//! of the file, where the test modules live). The test fails on any
//! circle and names its files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        m.pop();
    }
    m
}

/// `a::{b::{C, D}, e}` → `a::b::C`, `a::b::D`, `a::e`.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or("").trim();
        if !path.is_empty() {
            out.push(format!("{prefix}{path}"));
        }
        return;
    };
    let head = &tree[..open];
    let inner = tree[open + 1..].trim_end().trim_end_matches('}');
    let mut depth = 0;
    let mut start = 0;
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&inner[start..i], &format!("{prefix}{head}"), out);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand(&inner[start..], &format!("{prefix}{head}"), out);
}

/// The paths a file names: its `use` trees, and `crate::`/`super::` paths
/// written inline. Comments and the `#[cfg(test)]` part left out.
fn paths(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" //").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        if tree
            .chars()
            .all(|c| c.is_alphanumeric() || "_:{}, *".contains(c))
            || tree.contains(" as ")
        {
            expand(&tree, "", &mut out);
        }
        rest = &rest[end..];
    }
    for anchor in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(anchor) {
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            out.push(tail[..len].trim_end_matches(':').to_string());
            rest = &rest[at + anchor.len()..];
        }
    }
    out
}

/// The module a path names, from `from`; `None` outside the crate.
fn resolve(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Module = match segs.first().copied() {
        Some("crate") => {
            segs.remove(0);
            Vec::new()
        }
        Some("self") => {
            segs.remove(0);
            from.clone()
        }
        Some("super") => {
            let mut b = from.clone();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                b.pop();
            }
            b
        }
        Some(first) => {
            let mut child = from.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            from.clone()
        }
        None => return None,
    };
    for s in segs {
        let mut next = base.clone();
        next.push(s.to_string());
        if !modules.contains(&next) {
            break;
        }
        base = next;
    }
    Some(base)
}

#[test]
fn src_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut list = Vec::new();
    files(&src, &mut list);
    let modules: BTreeMap<Module, PathBuf> = list
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let names: BTreeSet<Module> = modules.keys().cloned().collect();
    let mut arrows: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let to = arrows.entry(m.clone()).or_default();
        for p in paths(&text) {
            if let Some(t) = resolve(m, &p, &names)
                // Itself or an ancestor: containment.
                && !m.starts_with(&t)
            {
                to.insert(t);
            }
        }
    }
    // The arrows must be read: a broken parser would find no circle.
    let module = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    let transaction = &arrows[&module("pipeline::transaction")];
    assert!(
        transaction.contains(&module("pipeline::cluster")),
        "{transaction:?}"
    );
    assert!(transaction.contains(&module("greylist")), "{transaction:?}");
    assert!(arrows.values().map(BTreeSet::len).sum::<usize>() > 150);

    // Depth-first search; a back edge closes a circle.
    fn visit(
        m: &Module,
        arrows: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
        circles: &mut Vec<String>,
    ) {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for t in arrows.get(m).into_iter().flatten() {
            match state.get(t).copied().unwrap_or(0) {
                0 => visit(t, arrows, state, stack, circles),
                1 => {
                    let from = stack.iter().position(|s| s == t).unwrap_or(0);
                    let ring: Vec<String> = stack[from..]
                        .iter()
                        .chain(std::iter::once(t))
                        .map(|s| format!("crate::{}", s.join("::")))
                        .collect();
                    circles.push(ring.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut circles = Vec::new();
    for m in arrows.keys() {
        if !state.contains_key(m) {
            visit(m, &arrows, &mut state, &mut Vec::new(), &mut circles);
        }
    }
    assert!(
        circles.is_empty(),
        "import circles in src/:\n{}",
        circles.join("\n")
    );
}

#[test]
fn use_trees_and_inline_paths_are_read_and_test_parts_skipped() {
    let modules: BTreeSet<Module> = [vec!["a".to_string()], vec!["b".to_string()]].into();
    let a = vec!["a".to_string()];
    let mut found = Vec::new();
    for p in
        paths("use crate::b::{X, y::Z};\nfn f() { crate::b::g(); }\n#[cfg(test)]\nuse crate::c;")
    {
        found.push(resolve(&a, &p, &modules));
    }
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        found.iter().all(|f| f == &Some(vec!["b".to_string()])),
        "{found:?}"
    );
}
