//! `cargo xtask eval [--limit N] [--adapter default|none|patterns|both|formats]`: the extraction pipeline on
//! every dev set in `../shared/eval`, scored, with per-document latency. Each run's scores
//! are stored in docs/eval/<engine>.json (with the command that made them), and docs/eval.md
//! is regenerated from every stored run, so the base and the fine-tuned model can be
//! measured at different times and still share one table. Sets run in parallel, one
//! single-threaded `anote eval` per core; predictions are kept in target/eval/<engine>/.
//! `--adapter formats` compares answer formats (lines, JSON, inline tags) on the same documents.
//! `--adapter long` reads the first documents of three sets one by one and joined into longer
//! texts (docs/eval/long.json): what reading several documents at once costs the model.
//! `--set NAME` runs one set and merges it into the stored run made by the same command: after
//! a change that can only move that set (say, one that reads whitespace differently, where only
//! one set has more than single spaces), the stored command still reproduces every number.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::report;
use crate::setup;
use crate::workspace::{cargo, on_every_core, output, run_step, target_dir};

/// Engines a run can measure: name in the table, `anote` flags.
const ENGINES: [(&str, &str, &[&str]); 3] = [
    ("tuned", "fine-tuned adapter + recognizers", &["--adapter", "default"]),
    ("base", "base model + recognizers", &["--adapter", "none"]),
    ("patterns", "recognizers only", &["--patterns-only"]),
];

/// The answer-format comparison: each format asked for in the prompt and decoded freely
/// (grounded afterwards), beside the product's constrained lines, on the same documents.
const FORMATS: [(&str, &str, &[&str]); 6] = [
    (
        "formats-base",
        "base model, lines, constrained (the product's decoding)",
        &["--adapter", "none"],
    ),
    (
        "formats-base-lines",
        "base model, lines, free",
        &["--adapter", "none", "--unconstrained", "lines"],
    ),
    (
        "formats-base-json",
        "base model, JSON, free",
        &["--adapter", "none", "--unconstrained", "json"],
    ),
    (
        "formats-base-tags",
        "base model, inline tags, free",
        &["--adapter", "none", "--unconstrained", "tags"],
    ),
    (
        "formats-tuned",
        "fine-tuned, lines, constrained (the product)",
        &["--adapter", "default"],
    ),
    (
        "formats-tuned-lines",
        "fine-tuned, lines, free",
        &["--adapter", "default", "--unconstrained", "lines"],
    ),
];

/// The long-text comparison: set, documents joined per text, what joins them (one sentence or
/// tweet per line; PII documents as paragraphs), on the first [`LONG_DOCS`] of each set.
const LONG: [(&str, usize, &str); 3] = [("conll2003", 10, "\n"), ("wnut17", 6, "\n"), (PII, 6, "\n\n")];
const LONG_DOCS: usize = 120;

/// The PII dev set, the one scored with the `pii` preset.
const PII: &str = "presidio_synth_v2";

pub fn run(root: &Path, limit: Option<usize>, which: &str, only: Option<&str>) -> Result<()> {
    let engines: Vec<&str> = match which {
        "long" => vec![],
        "both" => vec!["tuned", "base", "patterns"],
        "default" => vec!["tuned"],
        "none" => vec!["base"],
        "patterns" => vec!["patterns"],
        "formats" => FORMATS.iter().map(|f| f.0).collect(),
        other => bail!("--adapter takes default, none, patterns, both, formats or long, not {other}"),
    };
    run_step(
        "eval: build",
        cargo().current_dir(root).args(["build", "--release", "--bin", "anote"]),
    )?;
    let bin = target_dir(root).join("release/anote");
    let shared = root.join("../shared/eval");
    if which == "long" {
        return long_texts(root, &bin, &shared);
    }
    let mut sets: Vec<String> = std::fs::read_dir(&shared)
        .with_context(|| format!("reading {}", shared.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("dev.jsonl").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    sets.sort();
    if let Some(only) = only {
        if !sets.iter().any(|s| s == only) {
            bail!(
                "--set {only}: no such set in {} ({})",
                shared.display(),
                sets.join(", ")
            );
        }
    }
    std::fs::create_dir_all(root.join("docs/eval"))?;
    let this_run = format!(
        "cargo xtask eval{} --adapter {which}",
        limit.map(|n| format!(" --limit {n}")).unwrap_or_default()
    );
    for engine in engines {
        let (_, _, flags) = ENGINES
            .iter()
            .chain(&FORMATS)
            .find(|e| e.0 == engine)
            .expect("known engine");
        // Recognizers alone only mean something on the PII set.
        let todo: Vec<&String> = sets
            .iter()
            .filter(|set| engine != "patterns" || *set == PII)
            .filter(|set| only.is_none_or(|o| o == set.as_str()))
            .collect();
        let file = root.join(format!("docs/eval/{engine}.json"));
        // One set joins the stored results of the same command, measured with the same adapter
        // where the engine uses it.
        let mut results = serde_json::Map::new();
        if only.is_some() {
            let stored: Value = serde_json::from_str(
                &std::fs::read_to_string(&file)
                    .with_context(|| format!("--set needs a stored run: {}", file.display()))?,
            )?;
            let uses_adapter = flags.contains(&"default");
            if stored["command"] != this_run.as_str()
                || (uses_adapter && stored["adapter_sha256"] != adapter_sha256(root))
            {
                bail!(
                    "--set: {} was made by `{}` with adapter {}; run `{this_run}` on every set instead",
                    file.display(),
                    stored["command"].as_str().unwrap_or("?"),
                    stored["adapter_sha256"].as_str().unwrap_or("?")
                );
            }
            results = stored["results"].as_object().cloned().unwrap_or_default();
        }
        // Predictions stay in target/eval/<engine>/ for error analysis.
        let predictions = target_dir(root).join("eval").join(engine);
        std::fs::create_dir_all(&predictions)?;
        let command = |set: &str| {
            let mut cmd = eval_command(&bin, &shared, set, &shared.join(set).join("dev.jsonl"), flags, limit);
            cmd.arg("--out").arg(predictions.join(format!("{set}.jsonl")));
            cmd
        };
        let scored = on_every_core(&todo, |set| {
            println!("xtask: [eval] {engine}: {set}");
            Ok((set.to_string(), scores(&mut command(set))?))
        })?;
        results.extend(scored);
        if let Some(pii) = results.get_mut(PII).filter(|_| todo.iter().any(|s| *s == PII)) {
            let dev = std::fs::read_to_string(shared.join(PII).join("dev.jsonl"))?;
            pii["by_address_convention"] =
                by_address_convention(&bin, &shared, &dev, limit, &predictions.join(format!("{PII}.jsonl")))?;
        }
        let record = json!({
            "command": this_run,
            "adapter_sha256": adapter_sha256(root),
            "results": results,
        });
        std::fs::write(&file, serde_json::to_string_pretty(&record)? + "\n")?;
        println!("xtask: [eval] wrote {}", file.display());
    }
    write_markdown(root)
}

/// `--adapter long`: each [`LONG`] set's first documents scored one by one and joined, by the
/// shipped adapter, into docs/eval/long.json.
fn long_texts(root: &Path, bin: &Path, shared: &Path) -> Result<()> {
    let dir = target_dir(root).join("eval/long");
    std::fs::create_dir_all(&dir)?;
    let mut results = serde_json::Map::new();
    for (set, per_text, joint) in LONG {
        let dev = shared.join(set).join("dev.jsonl");
        let joined = dir.join(format!("{set}.jsonl"));
        std::fs::write(
            &joined,
            join_documents(&std::fs::read_to_string(&dev)?, per_text, joint)?,
        )?;
        println!("xtask: [eval] long: {set}, alone and {per_text} to a text");
        let runs = [(&dev, Some(LONG_DOCS)), (&joined, None)];
        let [alone, together] = <[Value; 2]>::try_from(on_every_core(&runs, |(data, limit)| {
            scores(&mut eval_command(
                bin,
                shared,
                set,
                data,
                &["--adapter", "default"],
                *limit,
            ))
        })?)
        .expect("one result per run");
        results.insert(
            set.to_string(),
            json!({"per_text": per_text, "joint": joint, "alone": alone, "joined": together}),
        );
    }
    let record = json!({
        "command": "cargo xtask eval --adapter long",
        "adapter_sha256": adapter_sha256(root),
        "results": results,
    });
    let file = root.join("docs/eval/long.json");
    std::fs::write(&file, serde_json::to_string_pretty(&record)? + "\n")?;
    println!("xtask: [eval] wrote {}", file.display());
    write_markdown(root)
}

/// The PII dev set annotates addresses two ways: most as one span (street, city and postcode
/// together, as every training document does), but some documents part by part (building
/// number, street, suite and postcode each a STREET_ADDRESS, city and country GPE). Scores of
/// the stored predictions on each kind of document, so the table shows what the convention costs.
fn by_address_convention(
    bin: &Path,
    shared: &Path,
    dev: &str,
    limit: Option<usize>,
    predictions: &Path,
) -> Result<Value> {
    let (mut part_by_part, mut whole) = (String::new(), String::new());
    for line in dev
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit.unwrap_or(usize::MAX))
    {
        let doc: Value = serde_json::from_str(line)?;
        let text: Vec<char> = doc["text"]
            .as_str()
            .context("a document without text")?
            .chars()
            .collect();
        let mut addresses: Vec<(usize, usize)> = doc["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["label"] == "STREET_ADDRESS")
            .filter_map(|e| Some((e["start"].as_u64()? as usize, e["end"].as_u64()? as usize)))
            .collect();
        addresses.sort();
        let split = addresses.windows(2).any(|w| {
            text.get(w[0].1..w[1].0)
                .is_some_and(|gap| gap.iter().all(|c| c.is_whitespace() || matches!(c, '>' | ',')))
        });
        let kind = if split { &mut part_by_part } else { &mut whole };
        writeln!(kind, "{line}")?;
    }
    let dir = predictions.parent().context("predictions in a folder")?;
    let stored = predictions.to_str().context("a UTF-8 path")?;
    let mut out = serde_json::Map::new();
    for (kind, gold) in [("part_by_part", part_by_part), ("whole", whole)] {
        let data = dir.join(format!("{PII}.{kind}.jsonl"));
        std::fs::write(&data, gold)?;
        let mut cmd = eval_command(bin, shared, PII, &data, &["--predictions", stored], None);
        out.insert(kind.into(), scores(&mut cmd)?);
    }
    Ok(out.into())
}

/// The first [`LONG_DOCS`] documents of a gold JSONL, `per_text` to a text, joined by
/// `joint`, with the gold spans moved along (offsets in code points).
fn join_documents(dev: &str, per_text: usize, joint: &str) -> Result<String> {
    let docs: Vec<Value> = dev
        .lines()
        .take(LONG_DOCS)
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let mut out = String::new();
    for (i, group) in docs.chunks(per_text).enumerate() {
        let mut text = String::new();
        let mut entities = Vec::new();
        for d in group {
            if !text.is_empty() {
                text.push_str(joint);
            }
            let shift = text.chars().count() as u64;
            for e in d["entities"].as_array().into_iter().flatten() {
                let at = |k: &str| e[k].as_u64().map(|v| v + shift);
                entities.push(json!({"start": at("start"), "end": at("end"), "label": e["label"], "text": e["text"]}));
            }
            text.push_str(d["text"].as_str().context("a document without text")?);
        }
        writeln!(
            out,
            "{}",
            json!({"id": format!("joined-{i}"), "text": text, "entities": entities})
        )?;
    }
    Ok(out)
}

/// The long-text section of docs/eval.md (empty until `--adapter long` has run).
fn long_table(root: &Path) -> Result<String> {
    let Ok(t) = std::fs::read_to_string(root.join("docs/eval/long.json")) else {
        return Ok(String::new());
    };
    let run: Value = serde_json::from_str(&t)?;
    let f1 = |v: &Value| v["scores"]["strict"]["micro"]["f1"].as_f64().unwrap_or(0.0);
    let recall = |v: &Value| v["scores"]["strict"]["micro"]["recall"].as_f64().unwrap_or(0.0);
    let mut rows = String::new();
    for (set, r) in run["results"].as_object().into_iter().flatten() {
        writeln!(
            rows,
            "| {set} | {} | {} | {} | {:.3} | **{:.3}** | {:.3} | {:.3} |",
            r["alone"]["scores"]["documents"],
            r["per_text"],
            r["joint"].as_str().unwrap_or("").escape_debug(),
            f1(&r["alone"]),
            f1(&r["joined"]),
            recall(&r["alone"]),
            recall(&r["joined"]),
        )?;
    }
    let sha = run["adapter_sha256"].as_str().unwrap_or("");
    report::fill(
        include_str!("../templates/eval-long.md"),
        &[
            ("command", run["command"].as_str().unwrap_or("").to_string()),
            ("adapter", sha[..sha.len().min(12)].to_string()),
            ("documents", LONG_DOCS.to_string()),
            ("rows", rows),
        ],
    )
}

/// The answer-format section of docs/eval.md (empty until `--adapter formats` has run).
fn formats_table(runs: &BTreeMap<&str, Value>, sets: &[String]) -> Result<String> {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut rows = String::new();
    let mut command = "";
    let mut docs = Value::Null;
    for (engine, name, _) in FORMATS {
        let Some(run) = runs.get(engine) else { continue };
        command = run["command"].as_str().unwrap_or("");
        let results: Vec<&Value> = sets
            .iter()
            .map(|s| &run["results"][s])
            .filter(|v| !v.is_null())
            .collect();
        let mean =
            |key: &dyn Fn(&Value) -> f64| results.iter().map(|r| key(r)).sum::<f64>() / results.len().max(1) as f64;
        let f1s: Vec<String> = results
            .iter()
            .map(|r| format!("{:.3}", f(&r["scores"]["strict"]["micro"]["f1"])))
            .collect();
        docs = results
            .first()
            .map_or(Value::Null, |r| r["scores"]["documents"].clone());
        writeln!(
            rows,
            "| {name} | {} | **{:.3}** | {:.0} | {:.0} | {:.0} |",
            f1s.join(" | "),
            mean(&|r| f(&r["scores"]["strict"]["micro"]["f1"])),
            mean(&|r| f(&r["prefix_tokens"])),
            mean(&|r| f(&r["answer_tokens"]["mean"])),
            mean(&|r| f(&r["latency_ms"]["mean"])),
        )?;
    }
    if rows.is_empty() {
        return Ok(String::new());
    }
    let names: Vec<&str> = sets.iter().map(|s| s.trim_start_matches("crossner_")).collect();
    // The comparison is not rerun with every new adapter: name the one it measured.
    let adapter = runs
        .get("formats-tuned")
        .and_then(|r| r["adapter_sha256"].as_str())
        .map(|sha| {
            format!(
                " The fine-tuned rows used the adapter with sha256 `{}…`.",
                &sha[..sha.len().min(12)]
            )
        })
        .unwrap_or_default();
    report::fill(
        include_str!("../templates/eval-formats.md"),
        &[
            ("command", command.to_string()),
            ("documents", docs.to_string()),
            ("adapter", adapter),
            ("sets", names.join(" | ")),
            ("set_rules", "---|".repeat(names.len())),
            ("rows", rows),
        ],
    )
}

/// One single-threaded `anote eval --json` of `data` with `set`'s schema: its own, except the
/// PII set's, which is the `pii` preset (the same 17 labels, with the recognizers declared).
fn eval_command(bin: &Path, shared: &Path, set: &str, data: &Path, flags: &[&str], limit: Option<usize>) -> Command {
    let mut cmd = single_threaded_eval(bin, data, flags);
    if set == PII {
        cmd.args(["--preset", "pii"]);
    } else {
        cmd.arg("--schema").arg(shared.join(set).join("schema.json"));
    }
    if let Some(n) = limit {
        cmd.args(["--limit", &n.to_string()]);
    }
    cmd
}

/// `anote eval --json --threads 1 FLAGS --data DATA`, the schema left to the caller: how every
/// score of xtask is measured (per-document latency stays a 1-thread figure).
pub fn single_threaded_eval(bin: &Path, data: &Path, flags: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["eval", "--json", "--threads", "1"])
        .args(flags)
        .arg("--data")
        .arg(data);
    cmd
}

/// What an `anote eval --json` run prints, parsed.
pub fn scores(cmd: &mut Command) -> Result<Value> {
    Ok(serde_json::from_str(output("eval", cmd)?.trim())?)
}

fn adapter_sha256(root: &Path) -> Value {
    setup::read_manifest(root).unwrap_or(Value::Null)["adapter"]["sha256"].clone()
}

fn write_markdown(root: &Path) -> Result<()> {
    std::fs::write(root.join("docs/eval.md"), markdown(root)?)?;
    println!("xtask: [eval] wrote docs/eval.md");
    Ok(())
}

/// docs/eval.md from the stored runs.
fn markdown(root: &Path) -> Result<String> {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut runs = BTreeMap::new();
    for (engine, ..) in ENGINES.iter().chain(&FORMATS) {
        if let Ok(t) = std::fs::read_to_string(root.join(format!("docs/eval/{engine}.json"))) {
            runs.insert(*engine, serde_json::from_str::<Value>(&t)?);
        }
    }
    let sets: Vec<String> = runs
        .values()
        .flat_map(|r| r["results"].as_object().into_iter().flat_map(|m| m.keys().cloned()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows = String::new();
    let mut per_label = String::new();
    let mut commands = String::new();
    for (engine, name, _) in ENGINES {
        let Some(run) = runs.get(engine) else { continue };
        writeln!(commands, "- {name}: `{}`", run["command"].as_str().unwrap_or(""))?;
    }
    for set in &sets {
        for (engine, name, _) in ENGINES {
            let Some(out) = runs.get(engine).map(|r| &r["results"][set]).filter(|v| !v.is_null()) else {
                continue;
            };
            let s = &out["scores"];
            writeln!(
                rows,
                "| {set} | {name} | {} | {:.3} | {:.3} | **{:.3}** | {:.3} | {:.3} | {:.0} | {:.0} |",
                s["documents"],
                f(&s["strict"]["micro"]["precision"]),
                f(&s["strict"]["micro"]["recall"]),
                f(&s["strict"]["micro"]["f1"]),
                f(&s["partial"]["micro"]["f1"]),
                f(&s["strict"]["macro_f1"]),
                f(&out["latency_ms"]["mean"]),
                f(&out["latency_ms"]["p95"]),
            )?;
            if engine != "patterns" {
                let labels: Vec<String> = s["strict"]["per_label"]
                    .as_object()
                    .map(|m| m.iter().map(|(l, v)| format!("{l} {:.2}", f(&v["f1"]))).collect())
                    .unwrap_or_default();
                writeln!(per_label, "- **{set}**, {name}: {}", labels.join(", "))?;
            }
        }
        if set == PII {
            writeln!(
                rows,
                "| {set} | Microsoft Presidio, out of the box (anchor, all 300 docs) | 300 | | | 0.418 | | | | |"
            )?;
        }
    }
    let mut conventions = String::new();
    for (engine, name, _) in ENGINES {
        let Some(by) = runs.get(engine).map(|r| &r["results"][PII]["by_address_convention"]) else {
            continue;
        };
        for (kind, what) in [("whole", "one span per address"), ("part_by_part", "part by part")] {
            let Some(s) = by[kind]["scores"].as_object() else {
                continue;
            };
            let micro = &s["strict"]["micro"];
            writeln!(
                conventions,
                "| {name} | {what} | {} | {} | {:.3} | {:.3} | **{:.3}** | {:.3} |",
                s["documents"],
                micro["n_gold"],
                f(&micro["precision"]),
                f(&micro["recall"]),
                f(&micro["f1"]),
                f(&by[kind]["scores"]["strict"]["per_label"]["STREET_ADDRESS"]["f1"]),
            )?;
        }
    }
    let mut crossner = String::new();
    for (engine, name, _) in ENGINES {
        let Some(run) = runs.get(engine) else { continue };
        let f1s: Vec<f64> = sets
            .iter()
            .filter(|s| s.starts_with("crossner_"))
            .map(|s| f(&run["results"][s]["scores"]["strict"]["micro"]["f1"]))
            .collect();
        if !f1s.is_empty() && engine != "patterns" {
            let mean = f1s.iter().sum::<f64>() / f1s.len() as f64;
            writeln!(crossner, "| {name} | {mean:.3} |")?;
        }
    }
    let formats = formats_table(&runs, &sets)?;
    let long = long_table(root)?;
    report::fill(
        include_str!("../templates/eval.md"),
        &[
            ("commands", commands),
            ("rows", rows),
            ("crossner", crossner),
            ("per_label", per_label),
            ("conventions", conventions),
            ("long", long),
            ("formats", formats),
        ],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_eval_md_is_what_the_stored_runs_give() {
        let root = crate::workspace::root();
        let committed = std::fs::read_to_string(root.join("docs/eval.md")).unwrap();
        assert!(
            super::markdown(&root).unwrap() == committed,
            "docs/eval.md differs from what docs/eval/*.json and xtask/templates give"
        );
    }
}
