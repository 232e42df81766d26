//! The repository and the commands xtask runs in it: shared by every subcommand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The repository root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the repository")
        .to_path_buf()
}

/// Cargo's output directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Runs a command, naming `step` in the error.
pub fn run_step(step: &str, cmd: &mut Command) -> Result<()> {
    println!("xtask: [{step}] {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("[{step}] could not start {}", display(cmd)))?;
    if !status.success() {
        bail!("[{step}] failed ({status}): {}", display(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout, naming `step` in the error.
pub fn output(step: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("[{step}] could not start {}", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "[{step}] failed: {}\n{}",
            display(cmd),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The version of the `anote-ner` crate, which the wheel and the npm package carry.
pub fn crate_version(root: &Path) -> Result<String> {
    let id = output("version", cargo().current_dir(root).args(["pkgid", "-p", "anote-ner"]))?;
    Ok(id.trim().rsplit(['@', '#']).next().unwrap_or_default().to_string())
}
