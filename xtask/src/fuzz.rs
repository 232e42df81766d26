//! `cargo xtask fuzz`: every cargo-fuzz target in `fuzz/` for N minutes each, from the
//! committed seed corpus, then `docs/fuzz.md` with what each run did. Needs the nightly
//! toolchain (libFuzzer's sanitizer flags); cargo-fuzz is installed when missing.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::workspace::{output, run_step, target_dir};

/// The targets, with what each one feeds the engine (the table in docs/fuzz.md).
const TARGETS: &[(&str, &str)] = &[
    ("gguf", "any bytes as a model file: parse, load, two greedy tokens"),
    (
        "tokenizer",
        "any vocabulary (pieces and token types) and any text: load, encode, decode",
    ),
    (
        "schema",
        "any text as a schema: parse, validate, render the prompt, JSON round trip",
    ),
    (
        "spans",
        "any text: offset conversions, windows, recognizers, span placement",
    ),
    (
        "redact",
        "any text and entity offsets: every operator, replacement offsets",
    ),
];

pub fn run(root: &Path, minutes: f64) -> Result<()> {
    install(root)?;
    let mut rows = Vec::new();
    for (name, what) in TARGETS {
        // Runs grow a working copy; the committed seeds stay as they are.
        let work = target_dir(root).join("fuzz-corpus").join(name);
        std::fs::create_dir_all(&work)?;
        let seconds = (minutes * 60.0).round().max(1.0) as u64;
        println!("xtask: [fuzz {name}] {seconds} s");
        let out = Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .args(["+nightly", "fuzz", "run", name])
            .arg(&work)
            .arg(root.join("fuzz/corpus").join(name))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096",
                "-timeout=60",
            ])
            .output()
            .with_context(|| format!("[fuzz {name}] could not start cargo +nightly fuzz"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let (runs, corpus) = final_stats(&log);
        println!("xtask: [fuzz {name}] {runs} executions, corpus {corpus}");
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "[fuzz {name}] found a failure (input under fuzz/artifacts/{name}/):\n{}",
                tail.join("\n")
            );
        }
        rows.push(format!("| `{name}` | {what} | {minutes} | {runs} | {corpus} | none |"));
    }
    let rustc = output(
        "fuzz: nightly version",
        Command::new("rustc").args(["+nightly", "--version"]),
    )?;
    let doc = format!(
        "# Fuzzing\n\n\
         Written by `cargo xtask fuzz --minutes {minutes}` (cargo-fuzz, libFuzzer, {}): each target in \
         `fuzz/fuzz_targets/` ran {minutes} minutes from the seeds in `fuzz/corpus/`. A crash, a hang \
         (60 s) or more than 4 GiB of memory would have stopped the run. What each class of hostile \
         input meets is in [reliability.md](reliability.md).\n\n\
         | target | input | minutes | executions | corpus (inputs) | failures |\n|---|---|---|---|---|---|\n{}\n",
        rustc.trim(),
        rows.join("\n")
    );
    std::fs::write(root.join("docs/fuzz.md"), doc)?;
    println!("xtask: [fuzz] wrote docs/fuzz.md");
    Ok(())
}

/// The nightly toolchain (libFuzzer needs its sanitizer flags) and cargo-fuzz, where missing.
fn install(root: &Path) -> Result<()> {
    let works = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    crate::setup::nightly()?;
    if !works(Command::new("cargo").current_dir(root).args(["fuzz", "--version"])) {
        run_step(
            "fuzz: install cargo-fuzz",
            Command::new("cargo").args(["install", "cargo-fuzz", "--version", "0.13.2"]),
        )?;
    }
    Ok(())
}

/// Executions and corpus size from libFuzzer's last status line (`#N DONE … corp: C/…`).
fn final_stats(log: &str) -> (String, String) {
    let last = log.lines().rev().find(|l| l.starts_with('#') && l.contains("corp:"));
    let Some(line) = last else {
        return ("?".into(), "?".into());
    };
    let runs = line[1..].split_whitespace().next().unwrap_or("?").to_string();
    let corpus = line
        .split("corp: ")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or("?")
        .to_string();
    (runs, corpus)
}
