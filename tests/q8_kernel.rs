//! Our Q8 CPU kernel (the wasm and x86 path for Q8_0 weights) against candle's Q8_0 kernel
//! on the same matrix: both quantize the activations the same way, so they differ only in
//! f32 rounding order. In the browser the simd128 build of the same kernel is checked by the
//! page test (`Engine.checkCpuKernels`, i.e. `q8::self_check`).

use std::sync::Arc;

use anote_ner::runtime::backend::cpu::Linear;
use anote_ner::runtime::backend::q8::{self, Q8Rows};
use anote_ner::runtime::backend::{max_rel_diff, noise};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

fn q8_0(rows: usize, cols: usize, seed: u64) -> QTensor {
    let w = Tensor::from_vec(noise(rows * cols, seed, 1.0), (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()
}

#[test]
fn q8_kernel_matches_candles_q8_0_kernel() {
    for (tokens, rows, cols) in [(1, 7, 64), (13, 40, 640), (3, 300, 96)] {
        let q = q8_0(rows, cols, rows as u64);
        let ours = Linear::from_q8(Q8Rows::from_qtensor(&q).unwrap(), rows, cols);
        let candle = Linear::new(Arc::new(q)).unwrap();
        let x = noise(tokens * cols, 99, 2.0);
        let d = max_rel_diff(&ours.forward(&x, tokens).unwrap(), &candle.forward(&x, tokens).unwrap());
        assert!(d < 1e-5, "{tokens}×{cols} · {rows}×{cols}ᵀ: relative difference {d}");

        let ids = [rows as u32 - 1, 0, 2];
        assert_eq!(ours.rows(&ids).unwrap(), candle.rows(&ids).unwrap());
        let one = &x[..cols];
        assert_eq!(
            ours.forward_rows(one, &ids).unwrap(),
            candle.forward_rows(one, &ids).unwrap()
        );
        assert!(
            ours.forward_rows(one, &[rows as u32]).is_err(),
            "a row past the end is an error"
        );
    }
}

#[test]
fn q8_self_check_passes() {
    for (case, d) in q8::self_check() {
        assert!(d < 1e-5, "{case}: relative difference {d}");
    }
}

/// Many tokens are shared out among the threads by tokens, few by weight rows: a token's
/// products are the same bits either way (sequences decoded together get what each gets
/// alone).
#[test]
fn a_token_gets_the_same_products_alone_and_among_many() {
    let (tokens, rows, cols) = (41, 67, 640);
    let w = Linear::from_q8(Q8Rows::from_qtensor(&q8_0(rows, cols, 5)).unwrap(), rows, cols);
    let x = noise(tokens * cols, 6, 2.0);
    let together = w.forward(&x, tokens).unwrap();
    for (t, y) in together.chunks_exact(rows).enumerate() {
        assert_eq!(y, w.forward(&x[t * cols..][..cols], 1).unwrap(), "token {t}");
    }
}

/// Projections that read the same input are one product (`Linear::forward_each`): each
/// result is the same bits as the projection's own, for few tokens (shared out by weight
/// rows) and many (by tokens), and a projection on another kernel goes its own way.
#[test]
fn projections_of_one_input_together_give_what_each_gives_alone() {
    let cols = 640;
    let [k, v, q] = [(256, 7), (256, 8), (1024, 9)]
        .map(|(rows, seed)| Linear::from_q8(Q8Rows::from_qtensor(&q8_0(rows, cols, seed)).unwrap(), rows, cols));
    let candle = Linear::new(Arc::new(q8_0(96, cols, 10))).unwrap();
    for tokens in [1, 5, 41] {
        let x = noise(tokens * cols, 11, 2.0);
        let together = Linear::forward_each([&k, &v, &q], &x, tokens).unwrap();
        for (got, w) in together.iter().zip([&k, &v, &q]) {
            assert_eq!(got, &w.forward(&x, tokens).unwrap(), "{tokens} tokens");
        }
        let [a, b] = Linear::forward_each([&k, &candle], &x, tokens).unwrap();
        assert_eq!(a, k.forward(&x, tokens).unwrap());
        assert_eq!(b, candle.forward(&x, tokens).unwrap());
    }
}
