//! The GPU backend natively: every WGSL kernel against its CPU twin
//! ([`anote_ner::runtime::backend::webgpu::ops::check_kernels`], which the browser test runs too), the load-time
//! repack, a kernel that does not compile, and whole models on the GPU against the CPU.
//!
//! These run on whatever adapter wgpu finds; `cargo xtask setup` installs Mesa's lavapipe
//! (software Vulkan) so that one always exists.

mod common;

use std::rc::Rc;

use anote_ner::runtime::backend::q8::Q8Rows;
use anote_ner::runtime::backend::webgpu::ops::check_kernels;
use anote_ner::runtime::backend::webgpu::{ops, Gpu, GpuOptions};
use anote_ner::runtime::engine::argmax;
use anote_ner::runtime::model::Adapter;
use anote_ner::Engine;
use common::{adapter_file, max_diff, noise, projections, TinyGemma};
use pollster::block_on;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions {
        allow_software: true,
        ..Default::default()
    }))
    .expect("no WebGPU adapter: `cargo xtask setup` installs Mesa's software Vulkan driver")
}

#[test]
fn every_kernel_matches_its_cpu_twin() {
    let g = gpu();
    println!("adapter: {}", g.adapter);
    let checks = block_on(check_kernels(&g)).unwrap();
    for c in &checks {
        println!(
            "{:<11} {:<32} max rel Δ {:.2e} (tolerance {:.0e})",
            c.kernel, c.case, c.max_rel_diff, c.tolerance
        );
    }
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed()).collect();
    assert!(failed.is_empty(), "kernels differ from their CPU twins: {failed:?}");
    assert_eq!(checks.len(), 31);
    // Every compiled kernel is checked (attention_combine inside attention's split cases).
    for k in ops::ALL {
        assert!(
            checks.iter().any(|c| k.name.starts_with(c.kernel)),
            "{} is never checked",
            k.name
        );
    }
}

#[test]
fn q8_repack_keeps_q8_0_exact_and_q4_k_close() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let v = noise(4 * 256, 3, 1.0);
    let t = Tensor::from_slice(&v, (4, 256), &Device::Cpu).unwrap();
    // Q4_K → Q8: the 8-bit grid is finer than the 4-bit one it re-encodes.
    for (dtype, tol) in [(GgmlDType::Q8_0, 0.0), (GgmlDType::Q4K, 0.01)] {
        let q = QTensor::quantize(&t, dtype).unwrap();
        let reference = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let ours = Q8Rows::from_qtensor(&q).unwrap().dequantize();
        let d = max_diff(&ours, &reference);
        assert!(d <= tol, "{dtype:?}: max |Δ| {d}");
    }
}

#[test]
fn a_kernel_that_does_not_compile_is_a_typed_error() {
    let err = block_on(Gpu::new(GpuOptions {
        allow_software: true,
        broken_kernel: true,
        ..Default::default()
    }))
    .err()
    .expect("a broken kernel compiled");
    assert_eq!(err.code(), "gpu", "{err}");
}

/// Whole-model outputs agree to `tol` of their largest magnitude. The kernels match their
/// twins to 1e-7; what remains is the CPU backend's own rounding: candle quantizes each
/// activation row to 8 bits before a quantized matmul, the GPU keeps it in f32.
fn close(gpu: &[f32], cpu: &[f32], tol: f32, what: &str) {
    let scale = cpu.iter().fold(1f32, |m, v| m.max(v.abs()));
    let d = max_diff(gpu, cpu) / scale;
    println!("{what}: max |Δ| = {d:.1e} of the largest value");
    assert!(d <= tol, "{what}: max |Δ| {d} > {tol} of the largest value {scale}");
}

#[test]
fn tiny_model_on_the_gpu_matches_the_cpu_through_prefill_decode_and_restore() {
    let bytes = TinyGemma::default().bytes();
    let mut cpu_e = Engine::load(bytes.as_slice()).unwrap();
    let mut gpu_e = Engine::load_webgpu(bytes.as_slice(), Rc::new(gpu())).unwrap();
    assert_eq!(gpu_e.model.backend(), "webgpu");
    let prompt = [2u32, 270, 271, 272, 273, 274, 275, 276];
    let a = block_on(cpu_e.model.forward(&prompt)).unwrap();
    let b = block_on(gpu_e.model.forward(&prompt)).unwrap();
    close(&b, &a, 0.05, "prefill logits");
    assert_eq!(argmax(&b), argmax(&a), "greedy token after the prompt");
    let snap = gpu_e.model.snapshot();
    let a = block_on(cpu_e.model.forward(&[277])).unwrap();
    let b = block_on(gpu_e.model.forward(&[277])).unwrap();
    close(&b, &a, 0.05, "decode logits");
    block_on(gpu_e.model.forward(&[280, 281])).unwrap();
    gpu_e.model.restore(&snap).unwrap();
    let c = block_on(gpu_e.model.forward(&[277])).unwrap();
    close(&c, &b, 1e-6, "after restore");
    let hidden = block_on(gpu_e.model.forward_hidden(&[278])).unwrap();
    let ids = [5u32, 250, 1];
    let rows = block_on(gpu_e.model.logits_for(&hidden, &ids)).unwrap();
    let all = block_on(gpu_e.model.logits(&hidden)).unwrap();
    close(&rows, &ids.map(|i| all[i as usize]), 1e-5, "logits for ids");
    // A decode step in one submission: the forward and the listed rows of the head.
    gpu_e.model.restore(&snap).unwrap();
    let step = block_on(gpu_e.model.forward_logits_for(&[277], &ids)).unwrap();
    close(
        &step,
        &ids.map(|i| b[i as usize]),
        1e-6,
        "forward and listed logits in one step",
    );
    assert_eq!(gpu_e.model.position(), snap.len() + 1);
    // A snapshot from the CPU model is refused, not misread.
    assert_eq!(
        gpu_e.model.restore(&cpu_e.model.snapshot()).unwrap_err().code(),
        "bad_snapshot"
    );
}

/// Sequences forwarded together on the GPU, each in its own cache slot over one prefix,
/// get the CPU's batched logits: each row its own listed ids (the head runs once over their
/// union), then a ragged step where one row asks for every logit.
#[test]
fn tiny_model_forwards_a_batch_on_the_gpu_as_the_cpu_does() {
    use anote_ner::runtime::model::{BatchRow, Logits};
    let bytes = TinyGemma::default().bytes();
    let mut cpu_e = Engine::load(bytes.as_slice()).unwrap();
    let mut gpu_e = Engine::load_webgpu(bytes.as_slice(), Rc::new(gpu())).unwrap();
    assert!(gpu_e.model.max_batch() >= 8);
    let prefix: Vec<u32> = (0..9).map(|i| 265 + (i * 5) % 20).collect();
    let docs: [&[u32]; 3] = [&[270, 271, 272], &[280], &[266, 267]];
    let ids: [&[u32]; 3] = [&[265, 270, 283], &[5, 250], &[270, 1, 265]];
    let mut runs = Vec::new();
    for m in [&mut cpu_e.model, &mut gpu_e.model] {
        block_on(m.forward(&prefix)).unwrap();
        let snap = m.snapshot();
        for slot in 0..3 {
            m.begin(slot, &snap).unwrap();
        }
        let first: Vec<BatchRow> = (0..3)
            .map(|slot| BatchRow {
                slot,
                tokens: docs[slot],
                logits: Logits::Of(ids[slot]),
            })
            .collect();
        let first = block_on(m.forward_batch(&first)).unwrap();
        let next = [
            BatchRow {
                slot: 2,
                tokens: &[277],
                logits: Logits::Of(ids[0]),
            },
            BatchRow {
                slot: 0,
                tokens: &[278, 279],
                logits: Logits::All,
            },
        ];
        let next = block_on(m.forward_batch(&next)).unwrap();
        runs.push([first, next].concat());
    }
    for (i, (g, c)) in runs[1].iter().zip(&runs[0]).enumerate() {
        close(g, c, 0.05, &format!("batch row {i}"));
    }
    // A slot twice is refused and moves no cache.
    let twice = [0, 0].map(|slot| BatchRow {
        slot,
        tokens: &[270],
        logits: Logits::All,
    });
    let m = &mut gpu_e.model;
    assert_eq!(block_on(m.forward_batch(&twice)).unwrap_err().code(), "compute");
    let again = block_on(m.forward_batch(&[BatchRow {
        slot: 1,
        tokens: &[277],
        logits: Logits::All,
    }]))
    .unwrap();
    let m = &mut cpu_e.model;
    let want = block_on(m.forward_batch(&[BatchRow {
        slot: 1,
        tokens: &[277],
        logits: Logits::All,
    }]))
    .unwrap();
    close(&again[0], &want[0], 0.05, "slot 1 after a refused batch");
}

#[test]
fn tiny_model_decodes_on_the_gpu_after_a_prefill_too_long_to_split() {
    // 40 tokens × 2 heads fill enough workgroups unsplit; the decode steps after them split
    // their keys, in buffers sized for the prefill.
    let bytes = TinyGemma::default().bytes();
    let mut cpu_e = Engine::load(bytes.as_slice()).unwrap();
    let mut gpu_e = Engine::load_webgpu(bytes.as_slice(), Rc::new(gpu())).unwrap();
    let prompt: Vec<u32> = (0..40).map(|i| 2 + (i * 37) % 250).collect();
    block_on(cpu_e.model.forward(&prompt)).unwrap();
    block_on(gpu_e.model.forward(&prompt)).unwrap();
    for id in [277, 9] {
        let a = block_on(cpu_e.model.forward(&[id])).unwrap();
        let b = block_on(gpu_e.model.forward(&[id])).unwrap();
        close(&b, &a, 0.05, "decode logits after a long prefill");
    }
}

#[test]
fn tiny_model_with_an_adapter_on_the_gpu_matches_the_cpu() {
    let bytes = TinyGemma::default().bytes();
    let mut cpu_e = Engine::load(bytes.as_slice()).unwrap();
    let mut gpu_e = Engine::load_webgpu(bytes.as_slice(), Rc::new(gpu())).unwrap();
    let file = adapter_file(&cpu_e.fingerprint, &projections(TinyGemma::default().layers), 0.5);
    let adapter = Adapter::from_bytes(&file, None).unwrap();
    cpu_e.set_adapter(Some(&adapter)).unwrap();
    gpu_e.set_adapter(Some(&adapter)).unwrap();
    let prompt = [2u32, 270, 271, 272, 273];
    let a = block_on(cpu_e.model.forward(&prompt)).unwrap();
    let b = block_on(gpu_e.model.forward(&prompt)).unwrap();
    close(&b, &a, 0.05, "logits with the adapter");
    gpu_e.set_adapter(None).unwrap();
    let base = block_on(gpu_e.model.forward(&prompt)).unwrap();
    assert!(max_diff(&base, &a) > 0.1, "removing the adapter changed nothing");
}

#[test]
fn profiling_times_every_kernel_of_a_forward() {
    let profiled = Rc::new(
        block_on(Gpu::new(GpuOptions {
            allow_software: true,
            profile: true,
            ..Default::default()
        }))
        .unwrap(),
    );
    let bytes = TinyGemma::default().bytes();
    let mut e = Engine::load_webgpu(bytes.as_slice(), profiled.clone()).unwrap();
    block_on(e.model.forward(&[2, 270, 271])).unwrap();
    let report = profiled.profile_report().unwrap();
    println!("{report}");
    assert!(report.contains("(0 untimed)"), "{report}");
    for kernel in ["embed_q8", "rms_norm", "matmul_q8", "rope", "attention", "gelu_mul"] {
        assert!(
            report.contains(&format!("| {kernel} |")),
            "{kernel} missing from\n{report}"
        );
    }
    assert!(gpu().profile_report().is_none());
}

#[test]
fn automatic_selection_refuses_a_software_adapter() {
    let any = gpu();
    let auto = block_on(Gpu::new(GpuOptions::default()));
    match any.adapter.contains("software") {
        true => assert_eq!(auto.err().expect("a software adapter was chosen").code(), "gpu"),
        false => assert!(auto.is_ok(), "a hardware adapter was refused"),
    }
}
