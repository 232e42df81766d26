//! `cargo xtask tune [--per-set N] [--diverse N] ADAPTER...`: the judge of candidates that
//! is not a dev set. Carves a split from the training sets out of what the last training
//! run (target/train) never showed the model (train/make_tune_split.py), scores each
//! adapter on it (strict micro-F1, recognizers on, one single-threaded run per core) and
//! writes the table to target/train/tune/scores.md.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::eval::{scores, single_threaded_eval};
use crate::train::python;
use crate::workspace::{cargo, on_every_core, run_step, target_dir};

pub fn run(root: &Path, adapters: &[String], per_set: usize, diverse: usize) -> Result<()> {
    if adapters.is_empty() {
        bail!("tune needs one or more adapters: a .safetensors file, `default` or `none`");
    }
    let work = target_dir(root).join("train");
    let log = std::fs::read_to_string(work.join("run/log.jsonl"))
        .context("tune carves its split from the last training run: target/train/run/log.jsonl")?;
    let last: Value = serde_json::from_str(log.lines().last().context("the run logged no step")?)?;
    let steps = last["step"].as_u64().context("a step number in the log")?;
    // Runs logged before the batch size was recorded used the default of 2.
    let batch = last["batch"].as_u64().unwrap_or(2);
    let split = work.join("tune");
    run_step(
        "tune: split",
        Command::new(python(root)?)
            .arg(root.join("train/make_tune_split.py"))
            .arg("--examples")
            .arg(work.join("examples.jsonl"))
            .arg("--sequences")
            .arg(work.join("sequences.jsonl"))
            .args(["--steps", &steps.to_string(), "--batch", &batch.to_string()])
            .args(["--per-set", &per_set.to_string(), "--diverse", &diverse.to_string()])
            .arg("--out")
            .arg(&split),
    )?;
    run_step(
        "tune: build",
        cargo().current_dir(root).args(["build", "--release", "--bin", "anote"]),
    )?;
    let bin = target_dir(root).join("release/anote");
    let mut sets: Vec<String> = std::fs::read_dir(&split)?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".schema.json")
                .map(str::to_string)
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        bail!("make_tune_split.py wrote no set to {}", split.display());
    }
    let jobs: Vec<(&String, &String)> = adapters.iter().flat_map(|a| sets.iter().map(move |s| (a, s))).collect();
    let f1 = on_every_core(&jobs, |(adapter, set)| {
        println!("xtask: [tune] {adapter}: {set}");
        let mut cmd = single_threaded_eval(&bin, &split.join(format!("{set}.jsonl")), &["--adapter", adapter]);
        let out = scores(cmd.arg("--schema").arg(split.join(format!("{set}.schema.json"))))?;
        out["scores"]["strict"]["micro"]["f1"]
            .as_f64()
            .context("strict micro-F1 in the eval output")
    })?;
    // One run of scores per adapter, in the order of `sets`.
    let per_adapter: Vec<&[f64]> = f1.chunks(sets.len()).collect();
    let mut table = format!(
        "Strict micro-F1 on the tune split of target/train ({steps} steps of batch {batch}), per set\n\n| set |"
    );
    for a in adapters {
        write!(table, " {a} |")?;
    }
    table += &format!("\n|---|{}\n", "---|".repeat(adapters.len()));
    for (i, set) in sets.iter().enumerate() {
        write!(table, "| {set} |")?;
        for run in &per_adapter {
            write!(table, " {:.3} |", run[i])?;
        }
        table.push('\n');
    }
    table += "| **mean** |";
    for run in &per_adapter {
        write!(table, " **{:.3}** |", run.iter().sum::<f64>() / sets.len() as f64)?;
    }
    table.push('\n');
    std::fs::write(split.join("scores.md"), &table)?;
    print!("{table}");
    Ok(())
}
