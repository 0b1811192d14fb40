//! The server's modules form layers: no module imports one that imports
//! it back (directly or through others), and nothing but the crate root
//! imports from `api/`. Read from the source, so a new `use` that breaks
//! the layering fails here, naming the cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name → modules it refers to (`crate::x…`), test code left out.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let module_of = |path: &Path| -> String {
        let rel = path.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let name = first.as_os_str().to_string_lossy().to_string();
        name.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(file);
        let text = std::fs::read_to_string(file).expect("read a source file");
        let code = without_tests_and_comments(&text);
        let entry = graph.entry(from.clone()).or_default();
        for to in references(&code) {
            // `crate::Name` of an item rather than a module is the root's.
            let to = if modules.contains(&to) {
                to
            } else {
                "lib".to_string()
            };
            if to != from {
                entry.insert(to);
            }
        }
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file before its `#[cfg(test)]` module, comments dropped.
fn without_tests_and_comments(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::…` path, `use crate::{a, b::c}`
/// included.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `kumo_crate::` and the like are not this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = segment(item.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = segment(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn segment(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let here = path.last().expect("a path").clone();
    for next in graph.get(&here).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(cycle) = cycle_from(graph, start, path) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    assert!(
        graph.len() > 20,
        "the source was not read: {:?}",
        graph.keys()
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module, &mut vec![module.clone()]) {
            panic!("module import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn only_the_root_imports_the_api() {
    for (module, uses) in graph() {
        assert!(
            module == "lib" || module == "api" || !uses.contains("api"),
            "{module} imports from api/; what both need belongs in a module below it"
        );
    }
}

#[test]
fn the_reader_finds_references_and_cycles() {
    let code = "use crate::{access, error::ApiError};\nlet x = crate::deploy::run();\n// crate::comment\nkumo_crate::not_this();";
    let found = references(&without_tests_and_comments(code));
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["access", "deploy", "error"]
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_from(&graph, "a", &mut vec!["a".to_string()]),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.insert("c".to_string(), BTreeSet::new());
    assert_eq!(cycle_from(&graph, "a", &mut vec!["a".to_string()]), None);
}
