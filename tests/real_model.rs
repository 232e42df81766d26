//! Parity with llama.cpp on the default model: tokenizer ids and greedy continuations
//! (references made by `tests/fixtures/make_reference.py`). Needs `cargo xtask setup`.

mod common;

use std::rc::Rc;

use anote_ner::ner::batch::Settings;
use anote_ner::ner::extract::Options;
use anote_ner::runtime::backend::webgpu::{Gpu, GpuOptions};
use anote_ner::runtime::engine::argmax;
use anote_ner::runtime::gguf::Gguf;
use anote_ner::runtime::tokenizer::{TokenKind, Tokenizer};
use anote_ner::Engine;
use pollster::block_on;
use serde_json::Value;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizer_ids_equal_llama_cpp() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap();
    let fixture = common::fixture("tokenizer_llamacpp.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 300);
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ours = tok.encode(text);
        assert!(
            ours.iter().all(|&t| tok.kind(t) != Some(TokenKind::Control)),
            "{text:?} produced a control token: {ours:?}"
        );
        if ours != ids(&case["ids"]) {
            mismatches.push(format!("{text:?}: ours {ours:?} llama.cpp {:?}", ids(&case["ids"])));
        }
    }
    println!(
        "tokenizer parity: {}/{} strings identical",
        cases.len() - mismatches.len(),
        cases.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Two engines agree on a greedy token unless the top two logits are closer than their
/// numerical noise; llama.cpp differs from itself by this much between its attention paths.
const NEAR_TIE: f32 = 0.5;

/// Runs the fixture's prompts of at most `max_tokens` tokens greedily on `engine`, checking
/// each step against llama.cpp: the same choice, or a near tie, at every step; at most one
/// step in ten a near tie; `min_identical` prompts the same throughout. Returns each
/// prompt and its step-1 logits.
fn greedy_parity(engine: &mut Engine, max_tokens: usize, min_identical: usize) -> Vec<(String, Vec<f32>)> {
    let fixture = common::fixture("greedy_llamacpp.json");
    let cases = fixture["cases"].as_array().unwrap();
    let (mut identical, mut steps, mut near_ties) = (0, 0, 0);
    let mut first_logits = Vec::new();
    for case in cases
        .iter()
        .filter(|c| c["prompt_ids"].as_array().unwrap().len() <= max_tokens)
    {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = engine.tokenizer.encode_prompt(prompt);
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]), "prompt tokens differ");
        let m = &mut engine.model;
        m.truncate(0);
        let mut logits = block_on(m.forward(&prompt_ids)).unwrap();
        first_logits.push((prompt.to_string(), logits.clone()));
        let max_delta = case["top_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (logits[p[0].as_u64().unwrap() as usize] - p[1].as_f64().unwrap() as f32).abs())
            .fold(0.0, f32::max);
        println!(
            "{}: prompt of {:>3} tokens: max |Δlogit| vs llama.cpp at step 1 = {max_delta:.3} (llama.cpp flash-attn on vs off: {:.3})",
            m.backend(),
            prompt_ids.len(),
            case["llama_cpp_flash_attn_spread"].as_f64().unwrap()
        );
        // Activations are rounded to 8 bits before every product, so a difference in the
        // last bits upstream (another order of summation) can move a value by a whole
        // rounding step, and some prompts amplify that more than others: llama.cpp's own
        // two attention paths differ by up to 0.8 here. The bound is twice that spread on
        // the prompt, or twice NEAR_TIE where that is smaller.
        let spread = case["llama_cpp_flash_attn_spread"].as_f64().unwrap() as f32;
        assert!(
            max_delta < 2.0 * spread.max(NEAR_TIE),
            "step-1 logits drift from llama.cpp by {max_delta}"
        );
        // Teacher-forced: after a near tie the reference token is fed anyway, so every
        // step compares the two engines on the same context.
        let reference = ids(&case["greedy"]);
        let mut ties = 0;
        for (step, &expected) in reference.iter().enumerate() {
            let ours = argmax(&logits);
            if ours != expected {
                let gap = logits[ours as usize] - logits[expected as usize];
                println!("  step {step}: llama.cpp's choice is {gap:.3} below ours (a near tie)");
                assert!(
                    gap < NEAR_TIE,
                    "differs at step {step} where the choice was clear (gap {gap})"
                );
                ties += 1;
            }
            logits = block_on(m.forward(&[expected])).unwrap();
        }
        steps += reference.len();
        near_ties += ties;
        identical += usize::from(ties == 0);
        println!(
            "  greedy: {}/{} tokens equal to llama.cpp",
            reference.len() - ties,
            reference.len()
        );
    }
    println!("{near_ties} near ties in {steps} steps; {identical} prompts identical throughout");
    assert!(
        near_ties * 10 <= steps && identical >= min_identical,
        "{near_ties} near ties in {steps} steps, {identical} prompts identical throughout"
    );
    first_logits
}

#[test]
fn greedy_tokens_equal_llama_cpp() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    greedy_parity(&mut Engine::load(&file).unwrap(), usize::MAX, 3);
}

/// The GPU backend (weights repacked to 8 bits) against llama.cpp's greedy tokens and our
/// CPU backend's logits, on the three shortest prompts: the software Vulkan driver that
/// CI has runs a full-vocabulary decode step in about a second.
#[test]
fn greedy_tokens_on_webgpu_equal_llama_cpp_and_the_cpu() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let gpu = block_on(Gpu::new(GpuOptions {
        allow_software: true,
        ..Default::default()
    }))
    .expect("no WebGPU adapter (cargo xtask setup)");
    println!("adapter: {}", gpu.adapter);
    let on_gpu = greedy_parity(&mut Engine::load_webgpu(&file, Rc::new(gpu)).unwrap(), 24, 1);
    let mut cpu = Engine::load(&file).unwrap();
    for (prompt, g) in &on_gpu {
        let c = block_on(cpu.model.forward(&cpu.tokenizer.encode_prompt(prompt))).unwrap();
        cpu.model.truncate(0);
        gpu_close_to_cpu(g, &c, "");
    }
}

/// Asserts the GPU's logits are within a near tie of the CPU's over the candidates that
/// matter (as against llama.cpp: the CPU's top 20), and prints the largest differences.
fn gpu_close_to_cpu(g: &[f32], c: &[f32], what: &str) {
    let mut top: Vec<usize> = (0..c.len()).collect();
    top.sort_by(|&a, &b| c[b].total_cmp(&c[a]));
    let d = top[..20].iter().map(|&i| (g[i] - c[i]).abs()).fold(0.0, f32::max);
    println!(
        "webgpu vs cpu{what}: max |Δlogit| at step 1 = {d:.3} over the top 20 ({:.3} over all {})",
        common::max_diff(g, c),
        c.len()
    );
    assert!(d < 2.0 * NEAR_TIE, "the GPU's logits drift from the CPU's by {d}");
}

/// Strict micro-F1 of `x` on a gold JSONL fixture with `schema`.
fn fixture_f1(x: &mut anote_ner::Extractor, name: &str, schema: &anote_ner::Schema) -> f64 {
    use anote_ner::ner::spans::{OffsetMap, Unit};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let mut scorer = anote_ner::ner::eval::Scorer::default();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let doc: Value = serde_json::from_str(line).unwrap();
        let text = doc["text"].as_str().unwrap();
        let map = OffsetMap::new(text);
        let gold = common::gold_spans(&doc);
        let pred: Vec<anote_ner::ner::eval::Span> = block_on(x.extract(text, schema, &Options::default(), |_| {}))
            .unwrap()
            .entities
            .iter()
            .map(|e| {
                let (s, t) = map.span(e.start, e.end, Unit::CodePoints);
                (s, t, e.label.clone())
            })
            .collect();
        scorer.add(&gold, &pred);
    }
    scorer.finish().strict.micro.f1
}

/// The shipped adapter's bytes and the sha256 the manifest gives for them.
fn shipped_adapter() -> (Vec<u8>, String) {
    let (file, sha256) = anote_ner::default_adapter().expect("models/manifest.json lists the adapter");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
    (std::fs::read(&path).unwrap(), sha256)
}

/// The real model with the shipped adapter, as the product runs it.
fn tuned_extractor() -> anote_ner::Extractor {
    let (bytes, sha256) = shipped_adapter();
    let adapter = anote_ner::runtime::model::Adapter::from_bytes(&bytes, Some(&sha256)).unwrap();
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let mut x = anote_ner::Extractor::new(Engine::load(&file).unwrap());
    x.engine.set_adapter(Some(&adapter)).unwrap();
    x
}

#[test]
fn the_shipped_adapter_is_verified_and_improves_extraction() {
    use anote_ner::runtime::model::Adapter;
    let (bytes, sha256) = shipped_adapter();
    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(
        Adapter::from_bytes(&corrupt, Some(&sha256)).err().unwrap().code(),
        "bad_adapter"
    );
    let adapter = Adapter::from_bytes(&bytes, Some(&sha256)).unwrap();

    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let mut x = anote_ner::Extractor::new(Engine::load(&file).unwrap());
    let schema = anote_ner::Schema::preset("conll").unwrap();
    let base = fixture_f1(&mut x, "adapter_direction.jsonl", &schema);
    x.engine.set_adapter(Some(&adapter)).unwrap();
    let tuned = fixture_f1(&mut x, "adapter_direction.jsonl", &schema);
    println!("strict micro-F1 on tests/fixtures/adapter_direction.jsonl: base {base:.3}, fine-tuned {tuned:.3}");
    assert!(
        tuned >= base + 0.2,
        "the adapter did not help: base {base:.3}, fine-tuned {tuned:.3}"
    );
}

/// A multi-paragraph e-mail, the shipped adapter on: the model finds the entities of every
/// paragraph. Read in one window, it listed the greeting's and the signature's and skipped
/// the body.
#[test]
fn every_paragraph_of_an_e_mail_is_read() {
    let mut x = tuned_extractor();
    let text = "Hi Dr. Okafor,\n\nFollowing up on ticket #48213: my new card is 4111 1111 1111 1111 and the \
refund should go to IBAN GB82 WEST 1234 5698 7654 32. I moved last month to 14 Rue des Lilas, 69003 Lyon, \
France. You can reach me at +33 6 12 34 56 78 or amelie.durand@example.fr.\n\nThanks,\nAmélie Durand\n\
Senior Data Analyst, Northwind Traders\n";
    let r = block_on(x.extract(
        text,
        &anote_ner::Schema::preset("pii").unwrap(),
        &Options::default(),
        |_| {},
    ))
    .unwrap();
    let by_model: Vec<(&str, &str)> = r
        .entities
        .iter()
        .filter(|e| e.source == anote_ner::ner::spans::Source::Model)
        .map(|e| (e.label.as_str(), e.text.as_str()))
        .collect();
    println!("{by_model:?}");
    for (label, part) in [
        ("PERSON", "Okafor"),
        ("STREET_ADDRESS", "Rue des Lilas"),
        ("PERSON", "Amélie Durand"),
    ] {
        assert!(
            by_model.iter().any(|&(l, t)| l == label && t.contains(part)),
            "the model found no {label} with {part:?}"
        );
    }
}

/// The extraction engine on the GPU finds the CPU's entities on PII documents, their windows
/// decoded together (the shipped adapter on, as the product runs).
#[test]
fn extraction_on_webgpu_finds_the_cpus_entities() {
    use anote_ner::runtime::model::Adapter;
    let (bytes, sha256) = shipped_adapter();
    let adapter = Adapter::from_bytes(&bytes, Some(&sha256)).unwrap();
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let gpu = block_on(Gpu::new(GpuOptions {
        allow_software: true,
        ..Default::default()
    }))
    .expect("no WebGPU adapter (cargo xtask setup)");
    let mut engines = [
        Engine::load(&file).unwrap(),
        Engine::load_webgpu(&file, Rc::new(gpu)).unwrap(),
    ];
    // The CPU runs the adapter beside the base weights, the GPU merges it into its 8-bit copy.
    let prompt = engines[0]
        .tokenizer
        .encode_prompt("PERSON: Call Ahmed Khan about the Lisbon office.");
    let [cpu, gpu] = engines.each_mut().map(|e| {
        e.set_adapter(Some(&adapter)).unwrap();
        let logits = block_on(e.model.forward(&prompt)).unwrap();
        e.model.truncate(0);
        logits
    });
    gpu_close_to_cpu(&gpu, &cpu, " with the adapter");
    let mut engines = engines.map(anote_ner::Extractor::new);
    let schema = anote_ner::Schema::preset("pii").unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gold_small.jsonl");
    // The documents' windows decode together, one batch on each engine.
    let docs: Vec<Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok()) // the fixture's deliberately broken line
        .collect();
    let texts: Vec<&str> = docs.iter().map(|d| d["text"].as_str().unwrap()).collect();
    let [cpu, gpu] = engines.each_mut().map(|x| {
        let found = block_on(x.extract_many(&texts, &schema, &Options::default(), |_, _| {})).unwrap();
        found
            .into_iter()
            .map(|r| {
                let r = r.unwrap();
                let spans: Vec<(String, usize, usize)> =
                    r.entities.iter().map(|e| (e.label.clone(), e.start, e.end)).collect();
                spans
            })
            .collect::<Vec<_>>()
    });
    let mut found = 0;
    for ((text, cpu), gpu) in texts.iter().zip(&cpu).zip(&gpu) {
        println!("{} entities: cpu {cpu:?}", cpu.len());
        assert_eq!(gpu, cpu, "the GPU found other entities in {text:?}");
        found += cpu.len();
    }
    assert!(found >= 5, "too few entities to compare ({found})");
}

/// Windows decoded together (within a document and across documents) find exactly the
/// entities, with the same scores, that decoding them one at a time finds, on a 4 KB
/// e-mail thread.
#[test]
fn batched_windows_find_what_one_window_at_a_time_finds() {
    let mut x = tuned_extractor();
    let schema = anote_ner::Schema::preset("pii").unwrap();
    let thread = include_str!("../bench/documents/email-thread.txt");
    // Scores to four decimals: the kernels' sums may round differently in the last bits.
    let spans = |r: &anote_ner::ner::extract::Extraction| -> Vec<(String, usize, usize, i32)> {
        let score = |s: f32| (s * 1e4).round() as i32;
        r.entities
            .iter()
            .map(|e| (e.label.clone(), e.start, e.end, score(e.score)))
            .collect()
    };
    let batch = |batch| Options {
        decoding: Settings {
            batch,
            ..Settings::default()
        },
        ..Options::default()
    };
    let alone = block_on(x.extract(thread, &schema, &batch(1), |_| {})).unwrap();
    let together = block_on(x.extract(thread, &schema, &batch(8), |_| {})).unwrap();
    assert!(alone.entities.len() > 40, "{} entities", alone.entities.len());
    assert_eq!(spans(&together), spans(&alone));
    assert_eq!(together.decoded_tokens, alone.decoded_tokens);

    // Across documents: each text's entities as when it is extracted alone, entities
    // streamed text by text, and a text too large to read fails alone.
    let paragraphs: Vec<&str> = thread.split("\n\n").take(6).collect();
    let too_large = "x".repeat(anote_ner::ner::extract::MAX_TEXT_BYTES + 1);
    let mut texts = paragraphs.clone();
    texts.insert(2, &too_large);
    let mut order = Vec::new();
    let many = block_on(x.extract_many(&texts, &schema, &Options::default(), |i, _| order.push(i))).unwrap();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "entities of text {order:?}");
    assert_eq!(many[2].as_ref().unwrap_err().code(), "input_too_large");
    for (text, got) in texts.iter().zip(&many).filter(|(t, _)| t.len() < 10_000) {
        let want = block_on(x.extract(text, &schema, &batch(1), |_| {})).unwrap();
        assert_eq!(spans(got.as_ref().unwrap()), spans(&want), "{text}");
    }
}

/// Labels as people write them ("date of birth", "Person Name") through the CLI with the
/// default model and adapter: the schema file, the prompt, the grammar and the JSON out
/// carry them unchanged, beside a recognizer under a natural label.
#[test]
fn the_cli_extracts_under_natural_language_labels() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("anote-natural-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"{"labels": [{"label": "date of birth", "description": "the day a person was born"},
                       {"label": "Person Name", "description": "a person's name"},
                       {"label": "e-mail address", "recognizer": "email"}]}"#,
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_anote"))
        .arg("--model")
        .arg(common::real_model_path())
        .args(["--quiet", "extract", "--schema"])
        .arg(&schema)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = "Maria Lopez was born on 12 March 1984; write to maria.lopez@example.com.";
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pairs: Vec<(&str, &str)> = found["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["label"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    assert!(pairs.contains(&("Person Name", "Maria Lopez")), "{pairs:?}");
    assert!(
        pairs.contains(&("e-mail address", "maria.lopez@example.com")),
        "{pairs:?}"
    );
    let labels = ["date of birth", "Person Name", "e-mail address"];
    assert!(pairs.iter().all(|(l, _)| labels.contains(l)), "{pairs:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
