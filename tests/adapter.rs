//! Fine-tuning adapters on the tiny model: a zero adapter changes nothing, a real one
//! changes the output and comes off again, and every kind of wrong file is a typed error.
//! (The shipped adapter on the real model is tested in `real_model.rs`.)

mod common;

use pollster::block_on;

use anote_ner::runtime::model::Adapter;
use anote_ner::{Engine, Error};
use common::{adapter_file, max_diff, projections, TinyGemma, H, HEADS, HEAD_DIM, RANK};

fn tiny() -> Engine {
    Engine::load(TinyGemma::default().bytes().as_slice()).unwrap()
}

fn logits(e: &mut Engine) -> Vec<f32> {
    e.model.truncate(0);
    block_on(e.model.forward(&[2, 270, 271, 272])).unwrap()
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
    block_on(e.model.forward(&[2, 270, 271])).unwrap();
    let stepped = block_on(e.model.forward(&[272])).unwrap();
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
    assert_eq!(code(e.set_adapter(Some(&foreign))), "foreign_adapter");

    let wrong_sha = Adapter::from_bytes(&good, Some(&"f".repeat(64)));
    assert_eq!(wrong_sha.err().unwrap().code(), "bad_adapter");
    let truncated = Adapter::from_bytes(&good[..good.len() / 2], None);
    assert_eq!(truncated.err().unwrap().code(), "bad_adapter");
    assert_eq!(
        Adapter::from_bytes(b"GGUF....", None).err().unwrap().code(),
        "bad_adapter"
    );

    // NaN or infinite weights loaded and silently switched the model off.
    for poison in [f32::NAN, f32::INFINITY] {
        let e = Adapter::from_bytes(&adapter_file(&e.fingerprint, &pairs, poison), None)
            .err()
            .unwrap();
        assert_eq!(e.code(), "bad_adapter");
        assert!(e.to_string().contains("element"), "{e}");
    }

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
