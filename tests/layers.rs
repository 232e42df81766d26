//! The crate's module graph, read from its sources: dependencies run one way (API edges →
//! extraction pipeline → runtime) and no two modules use each other, directly or around a
//! cycle. A module's references to its own ancestors or descendants are the tree, not a
//! dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`runtime::backend::webgpu`) → its source, for every module of the library.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix("src").unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if parts[0] == "bin" {
                    continue;
                }
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                    parts.pop();
                }
                out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new("src"), &mut out);
    out
}

/// The modules `module` names through `crate::`, `super::` or `self::` paths, outside comments.
fn uses(module: &str, source: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let here: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
    let mut out = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
            .chain(code.match_indices("self::"))
        {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: Vec<&str> = code[i..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap()
                .split("::")
                .filter(|p| !p.is_empty())
                .collect();
            let (mut base, mut rest) = match path[0] {
                "crate" => (Vec::new(), &path[1..]),
                "self" => (here.clone(), &path[1..]),
                _ => (here[..here.len().saturating_sub(1)].to_vec(), &path[1..]),
            };
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
            let mut candidate: Vec<&str> = base.into_iter().chain(rest.iter().copied()).collect();
            while !candidate.is_empty() {
                let name = candidate.join("::");
                if known.contains(&name) {
                    let related = name == module
                        || module.starts_with(&format!("{name}::"))
                        || name.starts_with(&format!("{module}::"));
                    if !related {
                        out.insert(name);
                    }
                    break;
                }
                candidate.pop();
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, src)| (m.clone(), uses(m, src, &known)))
        .collect()
}

#[test]
fn layers_depend_one_way() {
    let graph = graph();
    assert!(
        graph.contains_key("runtime::backend::webgpu::ops::matmul_q8"),
        "the sources were not read"
    );
    for (module, uses) in &graph {
        let layer = module.split("::").next().unwrap();
        let forbidden: &[&str] = match layer {
            "runtime" => &["ner", "api"],
            "ner" => &["api"],
            _ => &[],
        };
        for used in uses {
            let used_layer = used.split("::").next().unwrap();
            assert!(!forbidden.contains(&used_layer), "{module} (layer {layer}) uses {used}");
        }
    }
}

#[test]
fn no_module_cycles() {
    let graph = graph();
    // Depth-first search from each module for a path back to it.
    for start in graph.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for next in &graph[&m] {
                assert!(next != start, "a cycle: {} → {start}", path.join(" → "));
                if seen.insert(next.clone()) {
                    stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
                }
            }
        }
    }
}
