//! Q4_K and Q6_K matrix products for the browser. candle's simd128 kernels take one weight
//! row and one token at a time and unpack the row's 4- and 6-bit values again for every
//! token; in the page that made Gemma 3 270M's attention-output and down projections (its
//! K-quant tensors) take more time than its other five projections together. Here each
//! 256-value super-block of a row is unpacked once into `i16` values already multiplied by
//! their group's integer scale, then dotted with every token, four tokens per weight load
//! and two weight rows per token load. Q4_K's mins are summed in the same registers.
//!
//! The activations are quantized as candle quantizes them for these types (Q8_K: one f32
//! scale per 256 values), so each super-block's integer sum is exactly candle's; only the
//! f32 sum over super-blocks rounds in an order of its own, a fixed one, so a token's
//! products do not depend on the other tokens or the threads.
//!
//! The dot products are simd128 in wasm and plain Rust elsewhere; natively the model keeps
//! candle's kernels (AVX-512 and AMX there), and `tests/kquant_kernel.rs` checks this one
//! against them.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{Error, Result};
use crate::runtime::backend::{
    max_rel_diff, noise, quantization_cases, quantizations_differing, round, threads, transposed,
};

/// Values per super-block.
const QK: usize = 256;
/// Tokens that share each load of a weight super-block.
const TILE: usize = 4;
/// Weight rows that share each load of a token's values.
const ROWS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Per 256: f16 `d` and `dmin`, 6-bit scales and mins per 32, 4-bit values;
    /// `w = d·scale·q − dmin·min`.
    Q4K,
    /// Per 256: 4 + 2-bit values in −32..31, an i8 scale per 16, f16 `d`; `w = d·scale·q`.
    Q6K,
}

impl Kind {
    pub fn of(dtype: GgmlDType) -> Option<Kind> {
        match dtype {
            GgmlDType::Q4K => Some(Kind::Q4K),
            GgmlDType::Q6K => Some(Kind::Q6K),
            _ => None,
        }
    }

    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4K => 144,
            Kind::Q6K => 210,
        }
    }

    /// One super-block, unpacked into `u` (where it lies: a copy per block and row was a
    /// tenth of a Q6_K product of a few tokens).
    fn unpack(self, b: &[u8], u: &mut Unpacked) {
        match self {
            Kind::Q4K => unpack_q4k(b, u),
            Kind::Q6K => unpack_q6k(b, u),
        }
    }
}

/// A super-block's values times their group's integer scale, and what turns the integer
/// dot product into the real one: `Σ w·x = d·Σ v·q − dmin·Σ_j mins[j]·(Σ q over group j)`
/// (Q4_K's mins per 32 values; zero for Q6_K).
struct Unpacked {
    v: [i16; QK],
    d: f32,
    dmin: f32,
    mins: [i16; QK / 32],
}

impl Unpacked {
    fn zero() -> Unpacked {
        Unpacked {
            v: [0; QK],
            d: 0.0,
            dmin: 0.0,
            mins: [0; QK / 32],
        }
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn unpack_q4k(b: &[u8], u: &mut Unpacked) {
    let (scales, qs) = (&b[4..16], &b[16..144]);
    // Eight 6-bit scales and eight 6-bit mins in 12 bytes (ggml's `get_scale_min_k4`).
    let scale_min = |j: usize| -> (u8, u8) {
        match j < 4 {
            true => (scales[j] & 63, scales[j + 4] & 63),
            false => (
                (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4),
                (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
            ),
        }
    };
    (u.d, u.dmin) = (f16_at(b, 0), f16_at(b, 2));
    // 64 values per 32 bytes: the low nibbles are group 2c, the high ones group 2c + 1.
    for c in 0..4 {
        let ((lo, m_lo), (hi, m_hi)) = (scale_min(2 * c), scale_min(2 * c + 1));
        (u.mins[2 * c], u.mins[2 * c + 1]) = (m_lo as i16, m_hi as i16);
        for half in 0..2 {
            let q = &qs[32 * c + 16 * half..][..16];
            let v = &mut u.v[64 * c + 16 * half..];
            times(|i| q[i] & 0xF, lo as i16, &mut v[..16]);
            times(|i| q[i] >> 4, hi as i16, &mut v[32..48]);
        }
    }
}

/// Q6_K has no mins: `u.dmin` and `u.mins` stay 0.
fn unpack_q6k(b: &[u8], u: &mut Unpacked) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    u.d = f16_at(b, 208);
    // Per 128 values: 64 bytes of low nibbles and 32 of high bit pairs; value i of the
    // super-block takes scale i / 16. (This form measured faster in the page than loops of
    // 16 values with the shifts and the scale fixed, and than explicit simd128 steps.)
    for n in 0..2 {
        let (ql, qh) = (&ql[64 * n..64 * n + 64], &qh[32 * n..32 * n + 32]);
        let v = &mut u.v[128 * n..128 * n + 128];
        for l in 0..32 {
            let q = [
                (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, q) in q.into_iter().enumerate() {
                let i = 32 * k + l;
                v[i] = (q as i16 - 32) * scales[8 * n + i / 16] as i8 as i16;
            }
        }
    }
}

/// `v[i] = q(i) · scale` for 16 values `q(i)`.
#[inline(always)]
fn times(q: impl Fn(usize) -> u8, scale: i16, v: &mut [i16]) {
    let q: [u8; 16] = std::array::from_fn(q);
    for (v, q) in v[..16].iter_mut().zip(q) {
        *v = q as i16 * scale;
    }
}

/// One super-block's scale and values (see [`Activations`]).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn quantize_block(block: &[f32]) -> (f32, [i16; QK]) {
    quantize_block_plain(block)
}

fn quantize_block_plain(block: &[f32]) -> (f32, [i16; QK]) {
    let m = block.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let (iscale, d) = scales(m);
    (
        d,
        std::array::from_fn(|i| round(iscale * block[i]).clamp(-128.0, 127.0) as i16),
    )
}

/// `(−127 / m, m / −127)`, both 0 for `m = 0`.
fn scales(m: f32) -> (f32, f32) {
    match m == 0.0 {
        true => (0.0, 0.0),
        false => (-127.0 / m, 1.0 / (-127.0 / m)),
    }
}

/// The same in simd128 registers (the plain loop's selects and conversions stayed scalar:
/// 5 % of reading a prompt in the page). `m` is the plain loop's: the first value of the
/// largest magnitude.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn quantize_block(block: &[f32]) -> (f32, [i16; QK]) {
    use crate::runtime::backend::{max_magnitude, round_f32x4};
    use core::arch::wasm32::*;
    let block: &[f32; QK] = block.try_into().expect("a super-block");
    // SAFETY: load `i` reads values 4i..4i+4 of the block.
    let at = |i: usize| unsafe { v128_load(block[4 * i..].as_ptr() as *const v128) };
    let amax = max_magnitude((0..QK / 4).map(at));
    let m = block
        .iter()
        .copied()
        .find(|v| amax > 0.0 && v.abs() == amax)
        .unwrap_or(0.0);
    let (iscale, d) = scales(m);
    let iscale = f32x4_splat(iscale);
    let mut q = [0i16; QK];
    for (i, q) in q.chunks_exact_mut(8).enumerate() {
        // `round`, then `clamp` (a NaN stays one) and `as i16` (a NaN to 0).
        let [lo, hi] = [2 * i, 2 * i + 1].map(|j| {
            let r = round_f32x4(f32x4_mul(iscale, at(j)));
            let r = f32x4_pmin(f32x4_pmax(r, f32x4_splat(-128.0)), f32x4_splat(127.0));
            i32x4_trunc_sat_f32x4(r)
        });
        // SAFETY: eight i16 values of `q`.
        unsafe { v128_store(q.as_mut_ptr() as *mut v128, i16x8_narrow_i32x4(lo, hi)) };
    }
    (d, q)
}

/// Tokens quantized per 256 values as candle's `BlockQ8K::from_float`: `q = round(x · −127 / m)`,
/// where `m` is the value of largest magnitude, and `d = m / −127`; with the sum of each
/// 32 values for Q4_K's mins (at most 32 · 128 in magnitude: an `i16`).
struct Activations {
    q: Vec<i16>,
    d: Vec<f32>,
    sums: Vec<i16>,
}

impl Activations {
    fn new(x: &[f32]) -> Activations {
        let mut a = Activations {
            q: Vec::with_capacity(x.len()),
            d: Vec::with_capacity(x.len() / QK),
            sums: Vec::with_capacity(x.len() / 32),
        };
        for block in x.chunks_exact(QK) {
            let (d, q) = quantize_block(block);
            a.q.extend_from_slice(&q);
            a.sums.extend(q.chunks_exact(32).map(|g| g.iter().sum::<i16>()));
            a.d.push(d);
        }
        a
    }

    /// Super-block `b`'s values and group sums.
    fn block(&self, b: usize) -> (&[i16; QK], &[i16; QK / 32]) {
        let q = self.q[b * QK..][..QK].try_into().expect("a super-block");
        (q, self.sums[b * 8..][..8].try_into().expect("a super-block's groups"))
    }
}

/// A row-major `[rows, cols]` matrix of Q4_K or Q6_K super-blocks, as stored in the GGUF.
pub struct KRows {
    kind: Kind,
    blocks: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl KRows {
    pub fn new(kind: Kind, blocks: Vec<u8>, rows: usize, cols: usize) -> Result<KRows> {
        if !cols.is_multiple_of(QK) || blocks.len() != rows * cols / QK * kind.block_bytes() {
            return Err(Error::Malformed(format!(
                "{kind:?}: {} bytes do not hold {rows} rows of {cols} values",
                blocks.len()
            )));
        }
        Ok(KRows {
            kind,
            blocks,
            rows,
            cols,
        })
    }

    pub fn from_qtensor(q: &QTensor) -> Result<KRows> {
        let kind = Kind::of(q.dtype()).ok_or_else(|| Error::Compute(format!("{:?} is no K-quant", q.dtype())))?;
        let (rows, cols) = q.shape().dims2()?;
        KRows::new(kind, q.data()?.into_owned(), rows, cols)
    }

    fn block(&self, row: usize, b: usize, u: &mut Unpacked) {
        let bytes = self.kind.block_bytes();
        let at = (row * self.cols / QK + b) * bytes;
        self.kind.unpack(&self.blocks[at..at + bytes], u)
    }

    /// Rows `ids`, dequantized.
    pub fn dequantize_rows(&self, ids: impl Iterator<Item = usize>) -> Vec<f32> {
        let (mut out, mut u) = (Vec::new(), Unpacked::zero());
        for r in ids {
            for b in 0..self.cols / QK {
                self.block(r, b, &mut u);
                out.extend((0..QK).map(|i| u.d * u.v[i] as f32 - u.dmin * u.mins[i / 32] as f32));
            }
        }
        out
    }

    /// `y[t, r] = x[t] · W[r]` for every `cols`-wide row `x[t]` of `x`, the threads taking
    /// runs of weight rows.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let tokens = x.len() / self.cols;
        // Token by token among the threads: on one, the others would wait.
        let a = threads::map(tokens, |t| Activations::new(&x[t * self.cols..(t + 1) * self.cols]));
        let mut yt = vec![0f32; self.rows * tokens];
        self.row_tiles(&a, &mut yt);
        transposed(yt, tokens)
    }

    /// `yt[r · tokens + t] = W[r] · x[t]`, the threads taking runs of weight rows, [`ROWS`]
    /// rows at a time (a run's last rows one by one).
    fn row_tiles(&self, a: &[Activations], yt: &mut [f32]) {
        let tokens = a.len();
        threads::row_runs_mut(yt, tokens, |first, run| {
            let done = first + run.len() / tokens / ROWS * ROWS;
            let mut tiles = run.chunks_exact_mut(ROWS * tokens);
            for (i, out) in (&mut tiles).enumerate() {
                self.row_products::<ROWS>(first + ROWS * i, a, out);
            }
            for (i, out) in tiles.into_remainder().chunks_exact_mut(tokens).enumerate() {
                self.row_products::<1>(done + i, a, out);
            }
        });
    }

    /// `out[k · tokens + t] = W[r + k] · x[t]` for `R` rows, super-block by super-block, each
    /// unpacked once for all tokens; a token's sum is the same whatever is beside it.
    fn row_products<const R: usize>(&self, r: usize, a: &[Activations], out: &mut [f32]) {
        let (per_row, tokens) = (self.cols / QK, a.len());
        let tiled = tokens / TILE * TILE;
        let mut u: [Unpacked; R] = std::array::from_fn(|_| Unpacked::zero());
        for b in 0..per_row {
            for (k, u) in u.iter_mut().enumerate() {
                self.block(r + k, b, u);
            }
            let v = u
                .each_ref()
                .map(|u| (&u.v, (self.kind == Kind::Q4K).then_some(&u.mins)));
            let mut add = |t: usize, sums: [(i32, i32); R]| {
                for (k, (u, (sum, mins))) in u.iter().zip(sums).enumerate() {
                    out[k * tokens + t] += a[t].d[b] * (u.d * sum as f32 - u.dmin * mins as f32);
                }
            };
            for t0 in (0..tiled).step_by(TILE) {
                let sums = dots::<R, TILE>(v, std::array::from_fn(|i| a[t0 + i].block(b)));
                (0..TILE).for_each(|i| add(t0 + i, sums.map(|s| s[i])));
            }
            for (t, a) in a.iter().enumerate().skip(tiled) {
                add(t, dots::<R, 1>(v, [a.block(b)]).map(|s| s[0]));
            }
        }
    }
}

/// `(Σ v·q, Σ mins·sums)` of each of `R` unpacked weight super-blocks `(v, mins)` with each of
/// `N` tokens' super-blocks `(q, sums)`: the integer sums [`KRows::row_products`] scales.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dots<const R: usize, const N: usize>(
    w: [(&[i16; QK], Option<&[i16; QK / 32]>); R],
    x: [(&[i16; QK], &[i16; QK / 32]); N],
) -> [[(i32, i32); N]; R] {
    let dot = |a: &[i16], b: &[i16]| a.iter().zip(b).map(|(&a, &b)| a as i32 * b as i32).sum();
    w.map(|(v, mins)| x.map(|(q, sums)| (dot(v, q), mins.map_or(0, |m| dot(m, sums)))))
}

/// The same with simd128: `i32x4.dot_i16x8_s` multiplies eight pairs and adds neighbours;
/// each token's load serves `R` rows and each row's `N` tokens. No sum can overflow:
/// |v| ≤ 63·15 (Q4_K) or 128·32 (Q6_K), |q| ≤ 127, and a lane adds 64 products.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dots<const R: usize, const N: usize>(
    w: [(&[i16; QK], Option<&[i16; QK / 32]>); R],
    x: [(&[i16; QK], &[i16; QK / 32]); N],
) -> [[(i32, i32); N]; R] {
    use core::arch::wasm32::*;
    // SAFETY: every load reads 8 values at an offset below the array's length less 7.
    let load = |p: &[i16], i: usize| unsafe { v128_load(p.as_ptr().add(i) as *const v128) };
    let mut acc = [[i32x4_splat(0); N]; R];
    for i in (0..QK).step_by(8) {
        let v = w.map(|(v, _)| load(v, i));
        for (t, (q, _)) in x.iter().enumerate() {
            let q = load(*q, i);
            for (acc, v) in acc.iter_mut().zip(v) {
                acc[t] = i32x4_add(acc[t], i32x4_dot_i16x8(v, q));
            }
        }
    }
    std::array::from_fn(|k| {
        std::array::from_fn(|t| {
            let m = match w[k].1 {
                Some(mins) => i32x4_dot_i16x8(load(mins, 0), load(x[t].1, 0)),
                None => i32x4_splat(0),
            };
            // Both sums at once: [s0 + s2, s1 + s3, m0 + m2, m1 + m3], then pairs.
            let s = acc[k][t];
            let halves = i32x4_shuffle::<0, 1, 4, 5>(
                i32x4_add(s, i32x4_shuffle::<2, 3, 0, 1>(s, s)),
                i32x4_add(m, i32x4_shuffle::<2, 3, 0, 1>(m, m)),
            );
            let both = i32x4_add(halves, i32x4_shuffle::<1, 0, 3, 2>(halves, halves));
            (i32x4_extract_lane::<0>(both), i32x4_extract_lane::<2>(both))
        })
    })
}

/// [`KRows::matmul`] against f32 products of candle's dequantized weights and the
/// dequantized activations, on odd token counts: `(case, largest difference relative to
/// the largest value)`; anything above 1e-5 is a wrong index or a lost term. First, how
/// many super-blocks this build quantizes otherwise than the plain loop (any is a bug):
/// values of every magnitude, halves, ties of magnitude, zeros, a NaN and infinities.
pub fn self_check() -> Result<Vec<(String, f32)>> {
    let cols = 2 * QK;
    let mut blocks = quantization_cases(QK);
    blocks.push((0..QK).map(|i| (i as f32 - 128.0) * 0.5).collect());
    blocks.push((0..QK).map(|i| if i % 2 == 0 { 3.0 } else { -3.0 }).collect());
    let differ = quantizations_differing(&blocks, quantize_block, quantize_block_plain);
    let mut out = vec![("Q8_K quantization against the plain loop".to_string(), differ as f32)];
    for (dtype, tokens, rows) in [
        (GgmlDType::Q4K, 1, 5),
        (GgmlDType::Q6K, 6, 3),
        (GgmlDType::Q4K, 9, 7),
        // Rows in pairs with a last one alone, tokens in tiles with a last one alone.
        (GgmlDType::Q6K, 17, 5),
    ] {
        let w = candle_core::Tensor::from_vec(noise(rows * cols, 21, 1.0), (rows, cols), &Device::Cpu)?;
        let q = QTensor::quantize(&w, dtype)?;
        let w = q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let x = noise(tokens * cols, 22, 3.0);
        let a = Activations::new(&x);
        let xs: Vec<f32> = a.q.iter().enumerate().map(|(i, &q)| q as f32 * a.d[i / QK]).collect();
        let want: Vec<f32> = (0..tokens * rows)
            .map(|i| (&w[i % rows * cols..][..cols], &xs[i / rows * cols..][..cols]))
            .map(|(w, x)| w.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect();
        let got = KRows::from_qtensor(&q)?.matmul(&x);
        out.push((
            format!("{dtype:?}, {tokens} tokens × {rows}×{cols}"),
            max_rel_diff(&got, &want),
        ));
    }
    Ok(out)
}
