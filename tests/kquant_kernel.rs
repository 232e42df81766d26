//! Our Q4_K/Q6_K CPU kernel (the wasm path for K-quant weights) against candle's kernels on
//! the same matrix: both quantize the activations to Q8_K, so they differ only in f32
//! rounding order. In the browser the simd128 build is checked by the page test
//! (`Engine.checkCpuKernels`, which runs `kquant::self_check`).

use std::sync::Arc;

use anote_ner::runtime::backend::cpu::Linear;
use anote_ner::runtime::backend::kquant::{self, KRows};
use anote_ner::runtime::backend::{max_rel_diff, noise};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

fn quantized(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> QTensor {
    let w = Tensor::from_vec(noise(rows * cols, seed, 1.0), (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&w, dtype).unwrap()
}

#[test]
fn kquant_kernel_matches_candles_kernels() {
    for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
        for (tokens, rows, cols) in [(1, 7, 256), (13, 40, 1024), (5, 300, 512), (17, 9, 512)] {
            let q = quantized(dtype, rows, cols, rows as u64);
            let ours = Linear::from_k(KRows::from_qtensor(&q).unwrap(), rows, cols);
            let candle = Linear::new(Arc::new(q)).unwrap();
            let x = noise(tokens * cols, 99, 2.0);
            let d = max_rel_diff(&ours.forward(&x, tokens).unwrap(), &candle.forward(&x, tokens).unwrap());
            assert!(
                d < 1e-5,
                "{dtype:?} {tokens}×{cols} · {rows}×{cols}ᵀ: relative difference {d}"
            );

            let ids = [rows as u32 - 1, 0, 2];
            assert_eq!(ours.rows(&ids).unwrap(), candle.rows(&ids).unwrap(), "{dtype:?} rows");
        }
    }
}

#[test]
fn kquant_self_check_passes() {
    for (case, d) in kquant::self_check().unwrap() {
        assert!(d < 1e-5, "{case}: relative difference {d}");
    }
}

/// Tokens are tiled four at a time; a token's products are the same bits in a tile, in the
/// remainder and alone (sequences decoded together get what each gets alone).
#[test]
fn a_token_gets_the_same_kquant_products_alone_and_among_many() {
    let (tokens, rows, cols) = (11, 9, 512);
    for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
        let w = KRows::from_qtensor(&quantized(dtype, rows, cols, 5)).unwrap();
        let x = noise(tokens * cols, 6, 2.0);
        let together = w.matmul(&x);
        for (t, y) in together.chunks_exact(rows).enumerate() {
            assert_eq!(y, w.matmul(&x[t * cols..][..cols]), "{dtype:?} token {t}");
        }
    }
}

#[test]
fn a_short_kquant_matrix_is_refused() {
    assert!(KRows::new(kquant::Kind::Q4K, vec![0; 100], 1, 256).is_err());
    assert!(
        KRows::new(kquant::Kind::Q6K, vec![0; 210], 1, 200).is_err(),
        "rows not a multiple of 256"
    );
}
