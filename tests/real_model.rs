//! Parity with llama.cpp on the default model: tokenizer ids and greedy continuations
//! (references made by `tests/fixtures/make_reference.py`). Needs `cargo xtask setup`.

mod common;

use anote_ner::engine::argmax;
use anote_ner::gguf::Gguf;
use anote_ner::tokenizer::{TokenKind, Tokenizer};
use anote_ner::Engine;
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

#[test]
fn greedy_tokens_equal_llama_cpp() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let mut engine = Engine::load(&file).unwrap();
    let fixture = common::fixture("greedy_llamacpp.json");
    let cases = fixture["cases"].as_array().unwrap();
    let mut identical = 0;
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = engine.tokenizer.encode_prompt(prompt);
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]), "prompt tokens differ");
        let m = &mut engine.model;
        m.truncate(0);
        let mut logits = m.forward(&prompt_ids).unwrap();
        let max_delta = case["top_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (logits[p[0].as_u64().unwrap() as usize] - p[1].as_f64().unwrap() as f32).abs())
            .fold(0.0, f32::max);
        println!(
            "prompt of {:>3} tokens: max |Δlogit| at step 1 = {max_delta:.3} (llama.cpp flash-attn on vs off: {:.3})",
            prompt_ids.len(),
            case["llama_cpp_flash_attn_spread"].as_f64().unwrap()
        );
        assert!(
            max_delta < 2.0 * NEAR_TIE,
            "step-1 logits drift from llama.cpp by {max_delta}"
        );
        let reference = ids(&case["greedy"]);
        let mut same = 0;
        for &expected in &reference {
            let ours = argmax(&logits);
            if ours != expected {
                let gap = logits[ours as usize] - logits[expected as usize];
                println!("  diverges at token {same}: llama.cpp's choice is {gap:.3} below ours (a near tie)");
                assert!(
                    gap < NEAR_TIE,
                    "diverged at token {same} where the choice was clear (gap {gap})"
                );
                break;
            }
            same += 1;
            logits = m.forward(&[expected]).unwrap();
        }
        identical += usize::from(same == reference.len());
        println!("  greedy: {same}/{} tokens equal to llama.cpp", reference.len());
    }
    assert!(
        identical >= 3,
        "only {identical} prompts gave llama.cpp's 32 greedy tokens"
    );
}

/// Strict micro-F1 of `x` on a gold JSONL fixture with `schema`.
fn fixture_f1(x: &mut anote_ner::Extractor, name: &str, schema: &anote_ner::Schema) -> f64 {
    use anote_ner::spans::{OffsetMap, Unit};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let mut scorer = anote_ner::eval::Scorer::default();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let doc: Value = serde_json::from_str(line).unwrap();
        let text = doc["text"].as_str().unwrap();
        let map = OffsetMap::new(text);
        let gold = common::gold_spans(&doc);
        let pred: Vec<anote_ner::eval::Span> = x
            .extract(text, schema, |_| {})
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

#[test]
fn the_shipped_adapter_is_verified_and_improves_extraction() {
    use anote_ner::model::Adapter;
    let (file, sha256) = anote_ner::default_adapter().expect("models/manifest.json lists the adapter");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
    let bytes = std::fs::read(&path).unwrap();
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
