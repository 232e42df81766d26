//! Q4_K and Q6_K matrix products for the browser. candle's simd128 kernels take one weight
//! row and one token at a time and unpack the row's 4- and 6-bit values again for every
//! token; in the page that made Gemma 3 270M's attention-output and down projections (its
//! K-quant tensors) take more time than its other five projections together. Here each
//! 256-value super-block of a row is unpacked once into `i16` values already multiplied by
//! their group's integer scale, then dotted with every token, four tokens per weight load.
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
use crate::runtime::backend::{max_rel_diff, noise, round, threads, transposed};

/// Values per super-block.
const QK: usize = 256;
/// Tokens that share each load of a weight super-block.
const TILE: usize = 4;

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

    /// One super-block, unpacked.
    fn unpack(self, b: &[u8]) -> Unpacked {
        match self {
            Kind::Q4K => unpack_q4k(b),
            Kind::Q6K => unpack_q6k(b),
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
    mins: [i32; QK / 32],
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn unpack_q4k(b: &[u8]) -> Unpacked {
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
    let mut u = Unpacked {
        v: [0; QK],
        d: f16_at(b, 0),
        dmin: f16_at(b, 2),
        mins: [0; QK / 32],
    };
    // 64 values per 32 bytes: the low nibbles are group 2c, the high ones group 2c + 1.
    for c in 0..4 {
        let ((lo, m_lo), (hi, m_hi)) = (scale_min(2 * c), scale_min(2 * c + 1));
        (u.mins[2 * c], u.mins[2 * c + 1]) = (m_lo as i32, m_hi as i32);
        for half in 0..2 {
            let q = &qs[32 * c + 16 * half..][..16];
            let v = &mut u.v[64 * c + 16 * half..];
            times(|i| q[i] & 0xF, lo as i16, &mut v[..16]);
            times(|i| q[i] >> 4, hi as i16, &mut v[32..48]);
        }
    }
    u
}

fn unpack_q6k(b: &[u8]) -> Unpacked {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let mut u = Unpacked {
        v: [0; QK],
        d: f16_at(b, 208),
        dmin: 0.0,
        mins: [0; QK / 32],
    };
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
    u
}

/// `v[i] = q(i) · scale` for 16 values `q(i)`.
#[inline(always)]
fn times(q: impl Fn(usize) -> u8, scale: i16, v: &mut [i16]) {
    let q: [u8; 16] = std::array::from_fn(q);
    for (v, q) in v[..16].iter_mut().zip(q) {
        *v = q as i16 * scale;
    }
}

/// Tokens quantized per 256 values as candle's `BlockQ8K::from_float`: `q = round(x · −127 / m)`,
/// where `m` is the value of largest magnitude, and `d = m / −127`; with the sum of each
/// 32 values for Q4_K's mins.
struct Activations {
    q: Vec<i16>,
    d: Vec<f32>,
    sums: Vec<i32>,
}

impl Activations {
    fn new(x: &[f32]) -> Activations {
        let mut a = Activations {
            q: Vec::with_capacity(x.len()),
            d: Vec::with_capacity(x.len() / QK),
            sums: Vec::with_capacity(x.len() / 32),
        };
        for block in x.chunks_exact(QK) {
            let m = block.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let (iscale, d) = match m == 0.0 {
                true => (0.0, 0.0),
                false => (-127.0 / m, 1.0 / (-127.0 / m)),
            };
            let start = a.q.len();
            a.q.extend(block.iter().map(|&v| round(iscale * v).clamp(-128.0, 127.0) as i16));
            a.sums.extend(
                a.q[start..]
                    .chunks_exact(32)
                    .map(|g| g.iter().map(|&q| q as i32).sum::<i32>()),
            );
            a.d.push(d);
        }
        a
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

    fn block(&self, row: usize, b: usize) -> Unpacked {
        let bytes = self.kind.block_bytes();
        let at = (row * self.cols / QK + b) * bytes;
        self.kind.unpack(&self.blocks[at..at + bytes])
    }

    /// Rows `ids`, dequantized.
    pub fn dequantize_rows(&self, ids: impl Iterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for r in ids {
            for b in 0..self.cols / QK {
                let u = self.block(r, b);
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
        threads::rows_mut(&mut yt, tokens, |r, out| self.row_products(r, &a, out));
        transposed(yt, tokens)
    }

    /// `out[t] = W[r] · x[t]`, super-block by super-block, each unpacked once for all tokens.
    fn row_products(&self, r: usize, a: &[Activations], out: &mut [f32]) {
        let (per_row, tokens) = (self.cols / QK, out.len());
        let tiled = tokens / TILE * TILE;
        for b in 0..per_row {
            let u = self.block(r, b);
            let x = |t: usize| &a[t].q[b * QK..][..QK];
            let mut add = |t: usize, sum: i32| {
                let mins: i32 = match self.kind {
                    Kind::Q4K => u.mins.iter().zip(&a[t].sums[b * 8..]).map(|(m, s)| m * s).sum(),
                    Kind::Q6K => 0,
                };
                out[t] += a[t].d[b] * (u.d * sum as f32 - u.dmin * mins as f32);
            };
            for t0 in (0..tiled).step_by(TILE) {
                let sums = dots::<TILE>(&u.v, std::array::from_fn(|i| x(t0 + i)));
                sums.into_iter().enumerate().for_each(|(i, s)| add(t0 + i, s));
            }
            for t in tiled..tokens {
                add(t, dots(&u.v, [x(t)])[0]);
            }
        }
    }
}

/// `Σ v·x[k]` for each of `N` tokens' 256 values.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dots<const N: usize>(v: &[i16; QK], x: [&[i16]; N]) -> [i32; N] {
    x.map(|x| v.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum())
}

/// The same with simd128: `i32x4.dot_i16x8_s` multiplies eight pairs and adds neighbours.
/// No sum can overflow: |v| ≤ 63·15 (Q4_K) or 128·32 (Q6_K), |x| ≤ 127, and a lane adds
/// 64 products.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dots<const N: usize>(v: &[i16; QK], x: [&[i16]; N]) -> [i32; N] {
    use core::arch::wasm32::*;
    assert!(x.iter().all(|x| x.len() >= QK));
    let mut acc = [i32x4_splat(0); N];
    for i in (0..QK).step_by(8) {
        // SAFETY: i + 8 ≤ QK, inside `v` and (asserted) every `x`.
        let w = unsafe { v128_load(v.as_ptr().add(i) as *const v128) };
        for (acc, x) in acc.iter_mut().zip(&x) {
            let x = unsafe { v128_load(x.as_ptr().add(i) as *const v128) };
            *acc = i32x4_add(*acc, i32x4_dot_i16x8(w, x));
        }
    }
    acc.map(|a| {
        i32x4_extract_lane::<0>(a)
            + i32x4_extract_lane::<1>(a)
            + i32x4_extract_lane::<2>(a)
            + i32x4_extract_lane::<3>(a)
    })
}

/// [`KRows::matmul`] against f32 products of candle's dequantized weights and the
/// dequantized activations, on odd token counts: `(case, largest difference relative to
/// the largest value)`; anything above 1e-5 is a wrong index or a lost term.
pub fn self_check() -> Result<Vec<(String, f32)>> {
    let cols = 2 * QK;
    let mut out = Vec::new();
    for (dtype, tokens, rows) in [(GgmlDType::Q4K, 1, 5), (GgmlDType::Q6K, 6, 3), (GgmlDType::Q4K, 9, 7)] {
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
