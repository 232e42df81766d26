//! `cargo xtask train [--minutes M] [--examples N] [--lr LR] [--batch B] [--device cpu|cuda] [--from CHECKPOINT|ADAPTER] [-- EXAMPLE OPTIONS [+ EXAMPLE OPTIONS]...]`:
//! the fine-tuning recipe, end to end, on CPU or a CUDA GPU. A pinned Python environment (train/requirements.txt) in target/train-venv; training
//! examples from ../shared/train (never the eval sets, never CrossNER) varied by
//! train/make_examples.py; token ids rendered by `anote render-training`, i.e. by the
//! extractor's own prompt code; LoRA training with checkpoints (an interrupted run resumes)
//! and a loss log; the adapter copied to models/ with its sha256 written to the manifest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::workspace::{cargo, run_step, target_dir};

pub struct Options {
    pub minutes: f64,
    pub examples: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Sequences per optimizer step.
    pub batch: usize,
    /// PyTorch device: `cpu` or `cuda`.
    pub device: String,
    /// A checkpoint.pt, or an exported adapter (.safetensors), whose LoRA weights the run starts from.
    pub init: Option<PathBuf>,
    /// Passed to train/make_examples.py; `+` separates groups, each one run of it with
    /// `examples` examples, all of them concatenated (a mix of seeds and variations).
    pub example_options: Vec<String>,
}

pub fn run(root: &Path, o: &Options) -> Result<()> {
    let work = work_dir(root)?;
    if o.init.is_some() && work.join("run/checkpoint.pt").exists() {
        bail!("target/train/run holds a checkpoint, which would resume instead of starting from --from: move it aside (e.g. to target/train/run-<name>)");
    }
    let python = python(root)?;
    let examples_file = work.join("examples.jsonl");
    let mut examples = Vec::new();
    for (i, group) in o.example_options.split(|a| a == "+").enumerate() {
        let part = work.join(format!("examples-{i}.jsonl"));
        run_step(
            "train: examples",
            Command::new(&python)
                .arg(root.join("train/make_examples.py"))
                .arg("--examples")
                .arg(o.examples.to_string())
                .arg("--out")
                .arg(&part)
                .args(group),
        )?;
        examples.extend(std::fs::read(&part)?);
    }
    std::fs::write(&examples_file, examples)?;
    run_step(
        "train: build anote",
        cargo().current_dir(root).args(["build", "--release", "--bin", "anote"]),
    )?;
    let model = root.join("models").join(setup::default_model_file(root)?);
    let sequences = work.join("sequences.jsonl");
    run_step(
        "train: render",
        Command::new(target_dir(root).join("release/anote"))
            .arg("--model")
            .arg(&model)
            .arg("render-training")
            .arg(&examples_file)
            .stdout(Stdio::from(std::fs::File::create(&sequences)?)),
    )?;
    let adapter = work.join("run/adapter.safetensors"); // main.rs's --ship-only reads it here
    run_step(
        "train: LoRA",
        Command::new(&python)
            .arg(root.join("train/train.py"))
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(&sequences)
            .arg("--out")
            .arg(work.join("run"))
            .arg("--adapter")
            .arg(&adapter)
            .args(["--minutes", &o.minutes.to_string(), "--lr", &o.lr.to_string()])
            .args(["--batch", &o.batch.to_string(), "--device", &o.device])
            .args(o.init.iter().flat_map(|p| [Path::new("--init"), p.as_path()]))
            // Passive OpenMP threads: spinning ones stall badly on a shared 2-core machine.
            .env("OMP_WAIT_POLICY", "PASSIVE"),
    )?;
    ship(root, &adapter)
}

/// Averages adapters (`FILE:WEIGHT` each) into one of rank `rank` (train/merge_adapters.py)
/// and ships it.
pub fn merge(root: &Path, specs: &[String], rank: usize) -> Result<()> {
    if specs.len() < 2 || specs.iter().any(|s| !s.contains(':')) {
        bail!("--merge takes two or more FILE:WEIGHT");
    }
    let python = python(root)?;
    let merged = work_dir(root)?.join("merged.safetensors");
    run_step(
        "train: merge",
        Command::new(&python)
            .arg(root.join("train/merge_adapters.py"))
            .args(["--rank", &rank.to_string(), "--out"])
            .arg(&merged)
            .args(specs),
    )?;
    ship(root, &merged)
}

/// target/train, created: a merge needs no training run before it.
fn work_dir(root: &Path) -> Result<PathBuf> {
    let work = target_dir(root).join("train");
    std::fs::create_dir_all(&work)?;
    Ok(work)
}

/// The pinned Python environment (train/requirements.txt) in target/train-venv.
pub fn python(root: &Path) -> Result<PathBuf> {
    let venv = target_dir(root).join("train-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run_step("train: venv", Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run_step(
        "train: python packages",
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("train/requirements.txt")),
    )?;
    Ok(python)
}

/// Copies the adapter into models/ and records its size and sha256 in the manifest.
pub fn ship(root: &Path, adapter: &Path) -> Result<()> {
    let file = "anote-ner-lora.safetensors";
    let dest = root.join("models").join(file);
    std::fs::copy(adapter, &dest).with_context(|| format!("copying {}", adapter.display()))?;
    let mut m = setup::read_manifest(root)?;
    m["adapter"] = serde_json::json!({
        "name": "Anote NER schema-following LoRA for Gemma 3 270M (see models/README.md)",
        "file": file,
        "size": std::fs::metadata(&dest)?.len(),
        "sha256": setup::sha256_file(&dest)?,
    });
    std::fs::write(
        root.join("models/manifest.json"),
        serde_json::to_string_pretty(&m)? + "\n",
    )?;
    println!("xtask: [train] wrote models/{file} and its sha256 to models/manifest.json");
    Ok(())
}
