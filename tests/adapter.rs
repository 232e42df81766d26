//! Fine-tuning adapters on the tiny model: a zero adapter changes nothing, a real one
//! changes the output and comes off again, and every kind of wrong file is a typed error.
//! (The shipped adapter on the real model is tested in `real_model.rs`.)

mod common;

use std::collections::HashMap;

use anote_ner::model::Adapter;
use anote_ner::{Engine, Error};
use common::{noise, TinyGemma, FFN, H, HEADS, HEAD_DIM};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

const RANK: usize = 4;

/// `(stem, out, in)` of every projection the adapter format covers.
fn projections(layers: usize) -> Vec<(String, usize, usize)> {
    let q = HEADS * HEAD_DIM;
    let mut v = Vec::new();
    for i in 0..layers {
        for (stem, out, inp) in [
            ("attn_q", q, H),
            ("attn_k", HEAD_DIM, H),
            ("attn_v", HEAD_DIM, H),
            ("attn_output", H, q),
            ("ffn_gate", FFN, H),
            ("ffn_up", FFN, H),
            ("ffn_down", H, FFN),
        ] {
            v.push((format!("blk.{i}.{stem}"), out, inp));
        }
    }
    v
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()
}

/// An adapter file as `train/train.py` writes it.
fn adapter_file(fingerprint: &str, pairs: &[(String, usize, usize)], b_scale: f32) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, (stem, out, inp)) in pairs.iter().enumerate() {
        let a = f16_bytes(&noise(RANK * inp, 100 + k as u64, 0.5));
        let b = f16_bytes(&noise(out * RANK, 900 + k as u64, b_scale));
        data.push((format!("{stem}.lora_a"), vec![RANK, *inp], a));
        data.push((format!("{stem}.lora_b"), vec![*out, RANK], b));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, shape, bytes)| (n.clone(), TensorView::new(Dtype::F16, shape.clone(), bytes).unwrap()))
        .collect();
    let meta = HashMap::from([
        ("format".to_string(), "anote-lora-v1".to_string()),
        ("base_fingerprint".to_string(), fingerprint.to_string()),
    ]);
    safetensors::tensor::serialize(views, Some(meta)).unwrap()
}

fn tiny() -> Engine {
    Engine::load(TinyGemma::default().bytes().as_slice()).unwrap()
}

fn logits(e: &mut Engine) -> Vec<f32> {
    e.model.truncate(0);
    e.model.forward(&[2, 270, 271, 272]).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn a_zero_adapter_changes_nothing_a_real_one_changes_the_output_and_comes_off() {
    let mut e = tiny();
    let base = logits(&mut e);
    let pairs = projections(6);
    let zero = Adapter::from_bytes(&adapter_file(&e.fingerprint, &pairs, 0.0), None).unwrap();
    e.set_adapter(Some(&zero)).unwrap();
    assert!(max_diff(&base, &logits(&mut e)) < 1e-5);
    let real = Adapter::from_bytes(&adapter_file(&e.fingerprint, &pairs, 0.5), None).unwrap();
    assert_eq!(real.rank, RANK);
    e.set_adapter(Some(&real)).unwrap();
    assert_eq!(e.adapter.as_deref(), Some(real.sha256.as_str()));
    let tuned = logits(&mut e);
    assert!(max_diff(&base, &tuned) > 0.1, "the adapter did not change the logits");
    // Prefill and token-by-token decoding take the same path through the adapter.
    e.model.truncate(0);
    e.model.forward(&[2, 270, 271]).unwrap();
    let stepped = e.model.forward(&[272]).unwrap();
    assert!(max_diff(&tuned, &stepped) < 1e-3);
    e.set_adapter(None).unwrap();
    assert_eq!(e.adapter, None);
    assert!(max_diff(&base, &logits(&mut e)) < 1e-5);
}

#[test]
fn wrong_adapters_are_typed_errors_and_leave_the_model_as_it_was() {
    let mut e = tiny();
    let base = logits(&mut e);
    let pairs = projections(6);
    let good = adapter_file(&e.fingerprint, &pairs, 0.5);
    let code = |r: Result<(), Error>| r.unwrap_err().code();

    let foreign = Adapter::from_bytes(&adapter_file(&"0".repeat(64), &pairs, 0.5), None).unwrap();
    assert_eq!(code(e.set_adapter(Some(&foreign))), "bad_adapter");

    let wrong_sha = Adapter::from_bytes(&good, Some(&"f".repeat(64)));
    assert_eq!(wrong_sha.err().unwrap().code(), "bad_adapter");
    let truncated = Adapter::from_bytes(&good[..good.len() / 2], None);
    assert_eq!(truncated.err().unwrap().code(), "bad_adapter");
    assert_eq!(
        Adapter::from_bytes(b"GGUF....", None).err().unwrap().code(),
        "bad_adapter"
    );

    let mut shapes = pairs.clone();
    shapes[0].2 += 1;
    let misshapen = Adapter::from_bytes(&adapter_file(&e.fingerprint, &shapes, 0.5), None).unwrap();
    assert_eq!(code(e.set_adapter(Some(&misshapen))), "bad_adapter");

    let mut stray = pairs.clone();
    stray.push(("blk.9.attn_q".into(), HEADS * HEAD_DIM, H));
    let stray = Adapter::from_bytes(&adapter_file(&e.fingerprint, &stray, 0.5), None).unwrap();
    assert_eq!(code(e.set_adapter(Some(&stray))), "bad_adapter");

    assert_eq!(e.adapter, None);
    assert!(
        max_diff(&base, &logits(&mut e)) < 1e-5,
        "a refused adapter changed the model"
    );
}
