//! `cargo xtask pack`: the npm package `anote-ner`, as `npm pack` writes it, into
//! `target/npm/`: the widget and its API (`index.js`, types in `anote.d.ts`), the engine's
//! worker and wasm, the built-in presets and the shipped adapter. Not the GGUF: the package
//! README says how to host it. Every file is found from its module's own URL, so the package
//! works from `node_modules` with a bundler and without one (an import map).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::workspace::{crate_version, output, target_dir};

/// The page's modules the package needs (`www/`), the single-threaded wasm build
/// (`www/pkg/`); the threaded build (`www/pkg-threads/`) goes whole, its snippets included.
const WWW: &[&str] = &[
    "anote.js",
    "anote.d.ts",
    "config.js",
    "view.js",
    "widget.css",
    "widget.js",
    "worker.js",
];
const PKG: &[&str] = &["anote_ner.js", "anote_ner_bg.wasm"];
const PRESETS: &[&str] = &["pii.json", "conll.json"];

/// Writes the package folder and its tarball; returns the tarball. `www/pkg` must be built.
pub fn pack(root: &Path) -> Result<PathBuf> {
    let version = crate_version(root)?;
    let out = target_dir(root).join("npm");
    let dir = out.join("anote-ner");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    for sub in ["pkg", "presets", "models"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let copy = |from: PathBuf, to: PathBuf| {
        std::fs::copy(&from, &to)
            .map(drop)
            .with_context(|| format!("copying {}", from.display()))
    };
    for f in WWW {
        copy(root.join("www").join(f), dir.join(f))?;
    }
    for f in PKG {
        copy(root.join("www/pkg").join(f), dir.join("pkg").join(f))?;
    }
    copy_tree(&root.join("www/pkg-threads"), &dir.join("pkg-threads"))?;
    for f in PRESETS {
        copy(root.join("presets").join(f), dir.join("presets").join(f))?;
    }
    let adapter = adapter_file(root)?;
    copy(root.join("models").join(&adapter), dir.join("models").join(&adapter))?;
    copy(root.join("www/npm/README.md"), dir.join("README.md"))?;
    std::fs::write(
        dir.join("index.js"),
        "// The package entry: the Anote API and the <anote-extractor> element (widget.js).\n\
         export * from './widget.js';\n",
    )?;
    let package = serde_json::json!({
        "name": "anote-ner",
        "version": version,
        "description": "Private named-entity and PII extraction and redaction in the browser: a small GGUF LLM in WebAssembly or WebGPU, in a Web Worker",
        "license": "Apache-2.0",
        "type": "module",
        "module": "./index.js",
        "types": "./anote.d.ts",
        "exports": {
            ".": { "types": "./anote.d.ts", "default": "./index.js" },
            "./presets/*": "./presets/*",
            "./widget.css": "./widget.css"
        },
        // index.js defines the custom element when it is imported.
        "sideEffects": ["./index.js", "./widget.js"],
        "keywords": ["ner", "pii", "redaction", "webassembly", "webgpu", "llm", "gguf", "privacy"]
    });
    std::fs::write(dir.join("package.json"), serde_json::to_string_pretty(&package)? + "\n")?;
    let name = output(
        "pack: npm pack",
        Command::new("npm")
            .current_dir(&dir)
            .args(["pack", "--silent", "--pack-destination"])
            .arg(&out),
    )?;
    let tarball = out.join(name.trim());
    println!("xtask: [pack] {}", tarball.display());
    Ok(tarball)
}

/// `from` into `to`, folders included, without TypeScript declarations (the package's
/// types are `anote.d.ts`).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (path, name) = (entry.path(), entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name))?;
        } else if !name.to_string_lossy().ends_with(".d.ts") {
            std::fs::copy(&path, to.join(&name)).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// The shipped adapter's file name, from `models/manifest.json`.
fn adapter_file(root: &Path) -> Result<String> {
    crate::setup::read_manifest(root)?["adapter"]["file"]
        .as_str()
        .map(str::to_string)
        .context("models/manifest.json names no adapter file")
}
