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

/// `job` on every item, one item per core at a time (each job is a single-threaded
/// process, so per-document latencies stay 1-thread figures); the results in item order.
pub fn on_every_core<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        let r = job(item)?;
                        done.lock().expect("no panics while held").push((i, r));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a worker panicked"))
    })?;
    let mut done = done.into_inner().expect("no panics while held");
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}
