//! The engine as it was before windows were decoded in batches and the page ran on threads
//! ([`REVISION`]), built beside today's so that `cargo xtask bench` times both on the same
//! document in one run: a speed-up as a ratio, which the machine's drift moves far less than
//! it moves either time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::workspace::{cargo, run_step, target_dir};

/// The last commit before batched decoding (the next one, c60a54a, brought it).
pub const REVISION: &str = "a4648d16786fd51ee99c21d1dc1ef2452f257288";

pub struct Anchor {
    /// Its source tree, with its page built into `www/pkg` and today's model in `models/`.
    pub root: PathBuf,
    /// Its CLI.
    pub bin: PathBuf,
}

/// [`REVISION`]'s source (from git), its CLI and its page (by its own `build-web`), under
/// `target/anchor/`, kept between runs.
pub fn build(root: &Path) -> Result<Anchor> {
    let dir = target_dir(root).join("anchor").join(&REVISION[..7]);
    if !dir.join("Cargo.toml").exists() {
        std::fs::create_dir_all(&dir)?;
        let mut archive = Command::new("git")
            .current_dir(root)
            .args(["archive", REVISION])
            .stdout(Stdio::piped())
            .spawn()
            .context("git archive")?;
        let tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&dir)
            .stdin(archive.stdout.take().expect("piped"))
            .status()?;
        if !archive.wait()?.success() || !tar.success() {
            std::fs::remove_dir_all(&dir)?;
            anyhow::bail!(
                "[anchor] git archive {REVISION} failed: the bench compares against that commit, \
                 so it needs the history (`git fetch --unshallow` in a shallow clone)"
            );
        }
    }
    // Its page checks the adapter it ships by hash, so it keeps its own; the model is today's.
    let model = dir.join("models/gemma-3-270m-q4_k_m.gguf");
    if !model.exists() {
        std::os::unix::fs::symlink(root.join("models/gemma-3-270m-q4_k_m.gguf"), &model)?;
    }
    let target = dir.join("target");
    run_step(
        "anchor: native",
        cargo()
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "--bin", "anote"]),
    )?;
    run_step(
        "anchor: build-web",
        cargo().current_dir(&dir).env("CARGO_TARGET_DIR", &target).args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "build-web",
        ]),
    )?;
    Ok(Anchor {
        bin: target.join("release/anote"),
        root: dir,
    })
}
