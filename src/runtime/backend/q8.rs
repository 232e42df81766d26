//! One 8-bit weight layout for our own kernels: int8 values four to a `u32` (little end
//! first) and one f32 scale per 32 values — Q8_0 with the scale widened. The WebGPU
//! kernels read it, and so does the CPU matrix product below, in two places where candle's
//! Q8_0 product is slow: in WebAssembly its simd128 dot product widens two f16 scales per
//! 32-value block in software (wasm has no f16 instructions), which costs about as much as
//! the block's integer work; on x86 it takes one weight row and one token at a time when
//! the rows are not a multiple of 256 wide (see [`x86`]).
//!
//! [`Q8Rows::matmul`] is a simd128 kernel in wasm, an AVX2 (AVX-512 VNNI where compiled
//! for) kernel on x86 and plain Rust elsewhere; [`self_check`]
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
        let row = |r: usize| (&w[r * cols..(r + 1) * cols], &self.scales[r * blocks..(r + 1) * blocks]);
        // Weight rows outermost: they stay in cache while every token reads them. The
        // threads take runs of tiles of rows, so the products come out transposed; a last
        // tile short of rows repeats the last row, whose extra products are cut off.
        let mut yt = vec![0f32; n.div_ceil(ROW_TILE) * ROW_TILE * tokens];
        threads::rows_mut(&mut yt, ROW_TILE * tokens, |tile, out| {
            let rows = std::array::from_fn(|i| row((tile * ROW_TILE + i).min(n - 1)));
            products(rows, (&xq, &xd), out);
        });
        yt.truncate(n * tokens);
        if tokens == 1 {
            return yt;
        }
        // Sixteen rows at a time: each token's sixteen values fill one cache line of `y`.
        let mut y = vec![0f32; tokens * n];
        for r0 in (0..n).step_by(16) {
            let cols = &yt[r0 * tokens..(r0 + 16).min(n) * tokens];
            for (t, y) in y.chunks_exact_mut(n).enumerate() {
                for (i, y) in y[r0..(r0 + 16).min(n)].iter_mut().enumerate() {
                    *y = cols[i * tokens + t];
                }
            }
        }
        y
    }
}

/// Weight rows multiplied together: the x86 kernel reads each activation block once for
/// four rows. (In wasm, two or four rows per activation load measured no faster in
/// Chromium, or slower.)
const ROW_TILE: usize = if X86_KERNEL { 4 } else { 1 };

/// Whether [`Q8Rows::matmul`] runs on the AVX2 kernel ([`x86`]).
pub const X86_KERNEL: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
));

/// A weight row's int8 values and block scales.
type Row<'a> = (&'a [i8], &'a [f32]);

/// `out[r · tokens + t] = W[r] · x[t]` for the rows of one tile and every token of the
/// quantized activations `(values, block scales)`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
fn products(rows: [Row; ROW_TILE], (xq, xd): (&[i8], &[f32]), out: &mut [f32]) {
    let [(wq, wd)] = rows;
    let (cols, blocks) = (wq.len(), wd.len());
    for (t, y) in out.iter_mut().enumerate() {
        *y = dot_q8(wq, wd, &xq[t * cols..(t + 1) * cols], &xd[t * blocks..(t + 1) * blocks]);
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
use x86::products;

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
#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")
)))]
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

/// The native kernel on x86: four weight rows against up to four tokens at a time, each
/// pair summed exactly as candle's AVX Q8_0 dot product sums it (eight lanes of four
/// int8 products per block, `fma` with the product of the two f16 scales, the same final
/// horizontal sum), so its results are candle's to the last bit, only sooner: candle's
/// tiled kernels need `in` to be a multiple of 256, and Gemma 3 270M's 640-wide
/// projections take its one-pair-at-a-time path.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod x86 {
    use core::arch::x86_64::*;

    use super::{Row, BLOCK, ROW_TILE};

    pub fn products(rows: [Row; ROW_TILE], (xq, xd): (&[i8], &[f32]), out: &mut [f32]) {
        let (cols, blocks) = (rows[0].0.len(), rows[0].1.len());
        let tokens = out.len() / ROW_TILE;
        assert!(rows.iter().all(|(w, d)| w.len() == cols && d.len() == blocks));
        assert!(cols == blocks * BLOCK && xq.len() == tokens * cols && xd.len() == tokens * blocks);
        let mut t = 0;
        while t < tokens {
            let take = (tokens - t).min(4);
            // SAFETY: this module is compiled only for targets with the features `tile` enables.
            unsafe {
                match take {
                    4 => tile::<4>(rows, (xq, xd), t, out),
                    3 => tile::<3>(rows, (xq, xd), t, out),
                    2 => tile::<2>(rows, (xq, xd), t, out),
                    _ => tile::<1>(rows, (xq, xd), t, out),
                }
            }
            t += take;
        }
    }

    /// Tokens `t0..t0 + T` against the tile's rows, into `out` (lengths checked by the caller).
    #[target_feature(enable = "avx2,fma")]
    #[cfg_attr(
        all(target_feature = "avx512vnni", target_feature = "avx512vl"),
        target_feature(enable = "avx512vnni,avx512vl")
    )]
    fn tile<const T: usize>(rows: [Row; ROW_TILE], (xq, xd): (&[i8], &[f32]), t0: usize, out: &mut [f32]) {
        let (cols, blocks) = (rows[0].0.len(), rows[0].1.len());
        let tokens = out.len() / ROW_TILE;
        let mut acc = [[_mm256_setzero_ps(); T]; ROW_TILE];
        for b in 0..blocks {
            // SAFETY: block b spans bytes 32b..32b+32 of every row and of every token's values.
            let load = |v: &[i8]| unsafe { _mm256_loadu_si256(v.as_ptr().add(b * BLOCK) as *const __m256i) };
            let w = rows.map(|(w, _)| load(w));
            let abs_w = w.map(|w| _mm256_sign_epi8(w, w));
            for t in 0..T {
                let x = load(&xq[(t0 + t) * cols..]);
                let dx = xd[(t0 + t) * blocks + b];
                for r in 0..ROW_TILE {
                    let sums = _mm256_cvtepi32_ps(sums_of_four(abs_w[r], _mm256_sign_epi8(x, w[r])));
                    let d = _mm256_set1_ps(rows[r].1[b] * dx);
                    acc[r][t] = _mm256_fmadd_ps(d, sums, acc[r][t]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (t, a) in acc.iter().enumerate() {
                out[r * tokens + t0 + t] = hsum(*a);
            }
        }
    }

    /// Lane j: `Σ a[i]·b[i]` over bytes `4j..4j+4` (a unsigned, b signed; exact in i32).
    #[inline]
    #[target_feature(enable = "avx2")]
    #[cfg_attr(
        all(target_feature = "avx512vnni", target_feature = "avx512vl"),
        target_feature(enable = "avx512vnni,avx512vl")
    )]
    fn sums_of_four(a: __m256i, b: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
    }

    /// `(l0 + l4) + (l2 + l6) + ((l1 + l5) + (l3 + l7))`, candle's order.
    #[inline]
    #[target_feature(enable = "avx")]
    fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
    }
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
