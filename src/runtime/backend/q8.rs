//! One 8-bit weight layout for our own kernels: int8 values four to a `u32` (little end
//! first) and one f32 scale per 32 values — Q8_0 with the scale widened. The WebGPU
//! kernels read it, and in WebAssembly so does the CPU matrix product below: candle's
//! simd128 Q8_0 dot product widens two f16 scales per 32-value block in software (wasm has
//! no f16 instructions), which costs about as much as the block's integer work.
//!
//! [`Q8Rows::matmul`] is a simd128 kernel in wasm and plain Rust elsewhere; [`self_check`]
//! compares whichever is compiled with an f32 reference (natively in `tests/`, in the
//! browser through `Engine.checkCpuKernels`).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::Result;
use crate::runtime::backend::dot::dot;
use crate::runtime::backend::{max_rel_diff, noise, threads};

/// Values per block, each block with one scale.
pub const BLOCK: usize = 32;
/// Bytes of one GGUF Q8_0 block: an f16 scale, then 32 int8 values.
pub const Q8_0_BLOCK_BYTES: usize = 2 + BLOCK;

/// A row-major matrix in the Q8 layout.
pub struct Q8Rows {
    pub qs: Vec<u32>,
    pub scales: Vec<f32>,
}

impl Q8Rows {
    /// Q8_0 blocks are taken exactly (f16 scale widened); other types are dequantized and
    /// quantized to 8 bits per 32 values, as ggml's `quantize_row_q8_0` does.
    pub fn from_qtensor(q: &QTensor) -> Result<Q8Rows> {
        if q.dtype() == GgmlDType::Q8_0 {
            let raw = q.data()?;
            let mut out = Q8Rows::with_capacity(raw.len() / Q8_0_BLOCK_BYTES);
            out.extend_q8_0(&raw);
            return Ok(out);
        }
        let dense = q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Q8Rows::quantize(&dense))
    }

    pub fn with_capacity(blocks: usize) -> Q8Rows {
        Q8Rows {
            qs: Vec::with_capacity(blocks * BLOCK / 4),
            scales: Vec::with_capacity(blocks),
        }
    }

    /// Appends raw Q8_0 blocks.
    pub fn extend_q8_0(&mut self, raw: &[u8]) {
        for b in raw.chunks_exact(Q8_0_BLOCK_BYTES) {
            self.scales.push(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
            self.qs.extend(
                b[2..]
                    .chunks_exact(4)
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
            );
        }
    }

    pub fn quantize(values: &[f32]) -> Q8Rows {
        let mut out = Q8Rows::with_capacity(values.len() / BLOCK);
        for block in values.chunks_exact(BLOCK) {
            let (d, q) = quantize_block(block);
            out.scales.push(d);
            out.qs.extend(
                q.chunks_exact(4)
                    .map(|w| u32::from_le_bytes([0, 1, 2, 3].map(|i| w[i] as u8))),
            );
        }
        out
    }

    /// The values these rows hold (the CPU twin of the kernels' dequantization).
    pub fn dequantize(&self) -> Vec<f32> {
        let (w, d) = (self.values(), &self.scales);
        w.iter().enumerate().map(|(i, v)| *v as f32 * d[i / BLOCK]).collect()
    }

    /// Rows `ids` of a matrix `cols` wide, dequantized.
    pub fn dequantize_rows(&self, cols: usize, ids: impl Iterator<Item = usize>) -> Vec<f32> {
        let (w, d) = (self.values(), &self.scales);
        ids.flat_map(|r| (r * cols..(r + 1) * cols).map(|i| w[i] as f32 * d[i / BLOCK]))
            .collect()
    }

    /// The int8 values, in order.
    fn values(&self) -> &[i8] {
        bytemuck::cast_slice(&self.qs)
    }

    /// `y[t, r] = x[t] · W[r]` for every `cols`-wide row `x[t]` of `x`: the
    /// activations are quantized to 8 bits per block as candle quantizes them for its
    /// Q8_0 kernels (so both paths compute the same integer sums), then each block's
    /// integer dot product is scaled by both scales.
    pub fn matmul(&self, x: &[f32], cols: usize) -> Vec<f32> {
        let tokens = x.len() / cols;
        let (xq, xd) = quantize_activations(x);
        let blocks = cols / BLOCK;
        let w = self.values();
        let n = self.scales.len() / blocks;
        // Weight row outermost: it stays in cache while every token reads it. (Two or four
        // rows per activation load measured no faster in Chromium, or slower.) The threads
        // take runs of weight rows, so the products come out transposed.
        let mut yt = vec![0f32; n * tokens];
        threads::rows_mut(&mut yt, tokens, |r, out| {
            let (wq, wd) = (&w[r * cols..(r + 1) * cols], &self.scales[r * blocks..(r + 1) * blocks]);
            for (t, y) in out.iter_mut().enumerate() {
                let (xq, xd) = (&xq[t * cols..(t + 1) * cols], &xd[t * blocks..(t + 1) * blocks]);
                *y = dot_q8(wq, wd, xq, xd);
            }
        });
        match tokens {
            1 => yt,
            _ => (0..tokens * n).map(|i| yt[(i % n) * tokens + i / n]).collect(),
        }
    }
}

/// One block's scale and values: `d = max|v| / 127`, `q = round(v / d)`.
fn quantize_block(block: &[f32]) -> (f32, [i8; BLOCK]) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    (d, std::array::from_fn(|i| (block[i] * inv).round() as i8))
}

/// Activations in blocks of 32: the values rounded with the f32 scale, the scale kept as
/// f16 (exactly what candle's `BlockQ8_0::from_float` stores).
fn quantize_activations(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut qs = Vec::with_capacity(x.len());
    let mut ds = Vec::with_capacity(x.len() / BLOCK);
    for block in x.chunks_exact(BLOCK) {
        let (d, q) = quantize_block(block);
        ds.push(half::f16::from_f32(d).to_f32());
        qs.extend(q);
    }
    (qs, ds)
}

/// `Σ_blocks (Σ w·x) · dw · dx` over one row pair.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot_q8(w: &[i8], wd: &[f32], x: &[i8], xd: &[f32]) -> f32 {
    let mut acc = 0f32;
    for ((wb, xb), d) in w.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(wd.iter().zip(xd)) {
        let s: i32 = wb.iter().zip(xb).map(|(a, b)| *a as i32 * *b as i32).sum();
        acc += s as f32 * (d.0 * d.1);
    }
    acc
}

/// The same with simd128: per block, 16-lane int8 products widened to i16 (|w·x| ≤ 16384
/// fits), pairwise-added into i32 lanes, then scaled in four f32 lanes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot_q8(w: &[i8], wd: &[f32], x: &[i8], xd: &[f32]) -> f32 {
    use core::arch::wasm32::*;
    assert!(w.len() == x.len() && w.len() == wd.len() * BLOCK && xd.len() == wd.len());
    let mut acc = f32x4_splat(0.0);
    for b in 0..wd.len() {
        // SAFETY: block b spans bytes 32b..32b+32 of w and x, inside both (asserted above).
        let (w0, w1, x0, x1) = unsafe {
            let (pw, px) = (
                w.as_ptr().add(b * BLOCK) as *const v128,
                x.as_ptr().add(b * BLOCK) as *const v128,
            );
            (v128_load(pw), v128_load(pw.add(1)), v128_load(px), v128_load(px.add(1)))
        };
        let s = i32x4_add(
            i32x4_add(
                i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(w0, x0)),
                i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(w0, x0)),
            ),
            i32x4_add(
                i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(w1, x1)),
                i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(w1, x1)),
            ),
        );
        acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(s), f32x4_splat(wd[b] * xd[b])));
    }
    f32x4_extract_lane::<0>(acc)
        + f32x4_extract_lane::<1>(acc)
        + f32x4_extract_lane::<2>(acc)
        + f32x4_extract_lane::<3>(acc)
}

/// [`Q8Rows::matmul`] against f32 products of the same quantized values, on odd shapes:
/// `(case, largest difference relative to the largest value)`. The sums differ only in
/// f32 rounding order, so anything above 1e-5 is a wrong index or a lost term.
pub fn self_check() -> Vec<(String, f32)> {
    [(1, 64, 3), (5, 640, 17), (9, 96, 40)]
        .into_iter()
        .map(|(tokens, cols, rows)| {
            let w = Q8Rows::quantize(&noise(rows * cols, 11, 1.0));
            let x = noise(tokens * cols, 12, 3.0);
            let got = w.matmul(&x, cols);
            let (xq, xd) = quantize_activations(&x);
            let xs: Vec<f32> = xq.iter().enumerate().map(|(i, v)| *v as f32 * xd[i / BLOCK]).collect();
            let ws = w.dequantize();
            let want: Vec<f32> = (0..tokens * rows)
                .map(|i| (i / rows, i % rows))
                .map(|(t, r)| dot(&ws[r * cols..(r + 1) * cols], &xs[t * cols..(t + 1) * cols]))
                .collect();
            let rel = max_rel_diff(&got, &want);
            (format!("{tokens} tokens × {rows}×{cols}"), rel)
        })
        .collect()
}
