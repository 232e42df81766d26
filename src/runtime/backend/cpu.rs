//! CPU ops over row-major `f32` slices. The matrix products go through candle's quantized
//! kernels (AVX2/AVX-512/NEON natively, simd128 in wasm), except Q8_0 ones in wasm and on
//! x86, which use ours ([`crate::runtime::backend::q8`]), and Q4_K/Q6_K ones in wasm
//! ([`crate::runtime::backend::kquant`]); everything else is small enough
//! that plain loops, written so that LLVM vectorises them, are as fast and far clearer.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};

use crate::error::{Error, Result};
use crate::runtime::backend::dot::dot;
use crate::runtime::backend::heads;
use crate::runtime::backend::kquant::KRows;
use crate::runtime::backend::low_rank::LowRank;
use crate::runtime::backend::q8::Q8Rows;
use crate::runtime::backend::threads;

/// A quantized weight matrix `[out, in]`, applied as `x · Wᵀ`, plus an optional low-rank
/// adapter beside it.
pub struct Linear {
    weight: Weight,
    pub lora: Option<Arc<LowRank>>,
    pub out_dim: usize,
    pub in_dim: usize,
}

/// Whose kernels multiply: candle's, or ours: on the Q8 layout, which take Q8_0 in wasm and
/// on x86 (see [`crate::runtime::backend::q8`] for why), and on Q4_K/Q6_K blocks in wasm
/// ([`crate::runtime::backend::kquant`]); candle's take the rest.
enum Weight {
    /// Runs of rows, in order: one natively (candle threads inside its kernels), one per
    /// Web Worker in the threaded browser build (candle's kernels run on one thread there).
    Candle(Vec<RowRun>),
    Q8(Q8Rows),
    K(KRows),
}

/// Rows `first..first + rows` of a weight, as a matrix of their own.
struct RowRun {
    matmul: QMatMul,
    tensor: Arc<QTensor>,
    first: usize,
    rows: usize,
}

impl RowRun {
    fn new(tensor: Arc<QTensor>, first: usize) -> Result<RowRun> {
        Ok(RowRun {
            matmul: QMatMul::from_arc(tensor.clone())?,
            rows: tensor.shape().dims2()?.0,
            tensor,
            first,
        })
    }

    /// `rows × in` → `rows × self.rows`.
    fn forward(&self, x: &[f32], rows: usize, in_dim: usize) -> Result<Vec<f32>> {
        // Natively candle multiplies one Q6_K row with another kernel than several (its
        // repacked tiles start at two rows), whose sums round differently: a lone row goes
        // twice, as a batch would take it. In wasm both take the same kernel.
        if LONE_Q6K_DIFFERS && rows == 1 && self.tensor.dtype() == GgmlDType::Q6K {
            let xt = Tensor::from_slice(&[x, x].concat(), (2, in_dim), &Device::Cpu)?;
            let mut y = self.matmul.forward(&xt)?.flatten_all()?.to_vec1::<f32>()?;
            y.truncate(self.rows);
            return Ok(y);
        }
        let xt = Tensor::from_slice(x, (rows, in_dim), &Device::Cpu)?;
        Ok(self.matmul.forward(&xt)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Whether candle's Q6_K product of one row differs from its product of several (see
/// [`RowRun::forward`]).
const LONE_Q6K_DIFFERS: bool = !cfg!(target_arch = "wasm32");

/// Whether Q8_0 products run on our kernel ([`Linear::from_q8`]) rather than candle's: in
/// wasm, and on x86 with AVX2 (with AVX-512 VNNI where the CPU has it; see
/// [`crate::runtime::backend::q8`]).
pub const OWN_Q8_KERNEL: bool =
    cfg!(target_arch = "wasm32") || cfg!(all(target_arch = "x86_64", target_feature = "avx2"));

/// Whether Q4_K and Q6_K products run on our kernel ([`Linear::from_k`]): in wasm, where
/// candle's unpack every weight row again for every token.
pub const OWN_K_KERNEL: bool = cfg!(target_arch = "wasm32");

impl Linear {
    /// A weight on candle's kernels; in the threaded browser build cut into one run of rows
    /// per thread, each multiplied on its own thread.
    pub fn new(q: Arc<QTensor>) -> Result<Linear> {
        let (out_dim, in_dim) = q.shape().dims2()?;
        let per = out_dim.div_ceil(threads::count());
        let runs = match threads::WEB_WORKERS && per < out_dim {
            false => vec![RowRun::new(q, 0)?],
            true => {
                let (data, row_bytes) = (q.data()?, q.storage_size_in_bytes() / out_dim);
                (0..out_dim)
                    .step_by(per)
                    .map(|first| {
                        let rows = per.min(out_dim - first);
                        let bytes = &data[first * row_bytes..(first + rows) * row_bytes];
                        let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, q.dtype())?;
                        RowRun::new(Arc::new(QTensor::new(storage, (rows, in_dim))?), first)
                    })
                    .collect::<Result<_>>()?
            }
        };
        Ok(Linear {
            weight: Weight::Candle(runs),
            lora: None,
            out_dim,
            in_dim,
        })
    }

    pub fn from_q8(q: Q8Rows, out_dim: usize, in_dim: usize) -> Linear {
        Linear {
            weight: Weight::Q8(q.for_cpu(in_dim)),
            lora: None,
            out_dim,
            in_dim,
        }
    }

    pub fn from_k(k: KRows, out_dim: usize, in_dim: usize) -> Linear {
        Linear {
            weight: Weight::K(k),
            lora: None,
            out_dim,
            in_dim,
        }
    }

    /// Rows `ids` of W, dequantized: an embedding lookup when W is the embedding table.
    pub fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_rows(ids)?;
        match &self.weight {
            Weight::Candle(runs) => {
                let run_of = |id: &u32| runs.partition_point(|r| r.first <= *id as usize) - 1;
                let mut out = Vec::with_capacity(ids.len() * self.in_dim);
                // Consecutive ids in one run are looked up together.
                for group in ids.chunk_by(|a, b| run_of(a) == run_of(b)) {
                    let run = &runs[run_of(&group[0])];
                    let local: Vec<u32> = group.iter().map(|&i| i - run.first as u32).collect();
                    let idx = Tensor::from_slice(&local, local.len(), &Device::Cpu)?;
                    out.extend(run.tensor.embedding(&idx)?.flatten_all()?.to_vec1::<f32>()?);
                }
                Ok(out)
            }
            Weight::Q8(q) => Ok(q.dequantize_rows(self.in_dim, ids.iter().map(|&i| i as usize))),
            Weight::K(k) => Ok(k.dequantize_rows(ids.iter().map(|&i| i as usize))),
        }
    }

    /// `x · W[id]ᵀ` for the listed output rows only, for one input row: what constrained
    /// decoding needs from the 262k-row LM head (a few hundred rows instead of all). In
    /// f32 over the dequantized rows: as cheap at this size, and the same on every path.
    pub fn forward_rows(&self, x: &[f32], ids: &[u32]) -> Result<Vec<f32>> {
        let w = self.rows(ids)?;
        Ok(w.chunks_exact(self.in_dim).map(|row| dot(row, x)).collect())
    }

    /// `rows × in` → `rows × out`. Each row's result is the same whatever the other rows
    /// (sequences decoded together get what each gets alone), and whatever the threads.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let [y] = Linear::forward_each([self], x, rows)?;
        Ok(y)
    }

    /// [`Linear::forward`] of projections that read the same input (a layer's K, V and Q;
    /// its gate and up), each the same as alone. Where all are on the Q8 kernel, they are
    /// one product ([`Q8Rows::matmul_each`]).
    pub fn forward_each<const N: usize>(ls: [&Linear; N], x: &[f32], rows: usize) -> Result<[Vec<f32>; N]> {
        let q8 = ls.map(|l| match &l.weight {
            Weight::Q8(q) if l.in_dim == ls[0].in_dim => Some(q),
            _ => None,
        });
        let mut ys = match q8.iter().all(Option::is_some) {
            true => Q8Rows::matmul_each(q8.map(|q| q.expect("all on the Q8 kernel")), x, ls[0].in_dim),
            false => {
                let mut ys = std::array::from_fn(|_| Vec::new());
                for (y, l) in ys.iter_mut().zip(ls) {
                    *y = l.product(x, rows)?;
                }
                ys
            }
        };
        for (y, l) in ys.iter_mut().zip(ls) {
            if let Some(lora) = &l.lora {
                lora.add_to(x, y);
            }
        }
        Ok(ys)
    }

    /// `x · Wᵀ`, without the adapter.
    fn product(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        Ok(match &self.weight {
            Weight::Candle(runs) if runs.len() == 1 => runs[0].forward(x, rows, self.in_dim)?,
            Weight::Candle(runs) => {
                let parts: Vec<Mutex<Result<Vec<f32>>>> = runs.iter().map(|_| Mutex::new(Ok(Vec::new()))).collect();
                threads::run(runs.len(), |i| {
                    *parts[i].lock().expect("each part is written by one task") = runs[i].forward(x, rows, self.in_dim);
                });
                let mut y = vec![0f32; rows * self.out_dim];
                for (run, part) in runs.iter().zip(parts) {
                    let part = part.into_inner().expect("the tasks are done")?;
                    for (t, p) in part.chunks_exact(run.rows).enumerate() {
                        y[t * self.out_dim + run.first..][..run.rows].copy_from_slice(p);
                    }
                }
                y
            }
            Weight::Q8(q) => q.matmul(x, self.in_dim),
            Weight::K(k) => k.matmul(x),
        })
    }

    fn check_rows(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&i| i as usize >= self.out_dim) {
            Some(bad) => Err(Error::Compute(format!(
                "row {bad} is outside a {}-row matrix",
                self.out_dim
            ))),
            None => Ok(()),
        }
    }
}

/// Types that candle has no SIMD dot product for, on any target. Q8_0 holds their values
/// almost exactly, and its kernels are several times faster (5× prefill measured on
/// Gemma 3 270M, whose Q/K/gate/up projections are Q5_0).
pub fn needs_repack(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q4_1)
}

pub fn repack_q8_0(q: QTensor) -> Result<QTensor> {
    let dense = q.dequantize(&Device::Cpu)?;
    Ok(QTensor::quantize(&dense, GgmlDType::Q8_0)?)
}

/// RMSNorm of each `w.len()`-wide row of `x`, in place: `x / rms(x) · w`.
/// (GGUF exporters already fold Gemma's `1 + w` into the stored weights.)
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let mean_sq = dot(row, row) / w.len() as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v *= inv * g;
        }
    }
}

/// `(cos, sin)` for every position in `first..first+tokens` and every rotated pair
/// (`tokens × head_dim/2` pairs), computed in f64: f32 angles drift at large positions.
/// [`rope`] applies it here; the GPU's RoPE kernel reads it uploaded.
pub fn rope_table(tokens: usize, head_dim: usize, first: usize, base: f32) -> Vec<f32> {
    let inv_freq: Vec<f64> = (0..head_dim / 2)
        .map(|i| (base as f64).powf(-2.0 * i as f64 / head_dim as f64))
        .collect();
    let mut out = Vec::with_capacity(tokens * inv_freq.len() * 2);
    for t in 0..tokens {
        for f in &inv_freq {
            let (s, c) = ((first + t) as f64 * f).sin_cos();
            out.extend([c as f32, s as f32]);
        }
    }
    out
}

/// Rotary position embedding, NeoX layout (the two halves of each head rotate together).
/// `x` is `tokens × heads × head_dim`, and `table` their [`rope_table`] (made once per
/// forward: every layer of a base turns the same positions).
pub fn rope(x: &mut [f32], heads: usize, head_dim: usize, table: &[f32]) {
    let half = head_dim / 2;
    for (row, cs) in x.chunks_exact_mut(heads * head_dim).zip(table.chunks_exact(half * 2)) {
        for head in row.chunks_exact_mut(head_dim) {
            let (lo, hi) = head.split_at_mut(half);
            for (i, pair) in cs.chunks_exact(2).enumerate() {
                let (a, b, cos, sin) = (lo[i], hi[i], pair[0], pair[1]);
                lo[i] = a * cos - b * sin;
                hi[i] = a * sin + b * cos;
            }
        }
    }
}

/// `gate ← gelu_tanh(gate) · up` (Gemma's GeGLU feed-forward), shared out among the threads
/// in runs of 256 values.
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const RUN: usize = 256;
    assert_eq!(gate.len(), up.len());
    let whole = gate.len() / RUN * RUN;
    let (runs, rest) = gate.split_at_mut(whole);
    let gelu = |gate: &mut [f32], up: &[f32]| {
        for (g, u) in gate.iter_mut().zip(up) {
            let x = *g;
            let y = 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)));
            *g = y * u;
        }
    };
    threads::rows_mut(runs, RUN, |i, run| gelu(run, &up[i * RUN..]));
    gelu(rest, &up[whole..]);
}

/// `tanh` in plain f32 arithmetic, which LLVM vectorises (the library's is a call per
/// value, and was a tenth of a forward pass in GeLU): `1 − 2 / (e^{2|u|} + 1)` with the sign
/// of `u`, within 3e-7 of the exact value, and the same on every target.
fn tanh(u: f32) -> f32 {
    let e = exp(2.0 * u.abs().min(10.0)); // tanh(10) is 1 in f32
    (1.0 - 2.0 / (e + 1.0)).copysign(u)
}

/// `e^x` for `x ≤ 20` in plain f32 arithmetic that vectorises: `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `e^r` by its Taylor series to `r⁷/7!` (relative error below 1e-8
/// there), `2^n` written into the exponent. Below −87 (where `e^x` leaves the normal
/// range) it gives e^−87 ≈ 1.6e-38: nothing beside a term of 1 in a softmax.
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding and subtracting it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4; // ln 2 split so that n · LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 + r / 7.0;
    for k in [6.0, 5.0, 4.0, 3.0, 2.0, 1.0] {
        p = 1.0 + r / k * p;
    }
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

pub fn add_in_place(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

pub fn scale_in_place(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// Shape of one attention call.
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Keys further back than this many positions are invisible (sliding-window layers).
    pub window: Option<usize>,
    pub scale: f32,
}

/// Keys or values of positions `0..`: the rows of a shared prefix, then a sequence's own.
#[derive(Clone, Copy)]
pub struct KvRows<'a> {
    head: &'a [f32],
    tail: &'a [f32],
    width: usize,
    split: usize,
}

impl<'a> KvRows<'a> {
    /// `head` then `tail`, each a whole number of `width`-wide rows.
    pub fn new(head: &'a [f32], tail: &'a [f32], width: usize) -> KvRows<'a> {
        KvRows {
            head,
            tail,
            width,
            split: head.len() / width,
        }
    }

    /// One contiguous run of rows.
    pub fn whole(rows: &'a [f32], width: usize) -> KvRows<'a> {
        KvRows::new(rows, &[], width)
    }

    pub fn row(&self, j: usize) -> &'a [f32] {
        match j.checked_sub(self.split) {
            None => &self.head[j * self.width..][..self.width],
            Some(t) => &self.tail[t * self.width..][..self.width],
        }
    }
}

/// Causal attention of `q` (`seq × heads × head_dim`, at absolute positions
/// `first_pos..first_pos+seq`) over a KV cache holding positions `0..first_pos+seq`
/// (`k`, `v`: rows of `kv_heads × head_dim`). Grouped-query: query head `h` reads
/// KV head `h / (heads / kv_heads)`.
pub fn attention(q: &[f32], k: KvRows, v: KvRows, first_pos: usize, s: &AttentionShape) -> Vec<f32> {
    let seq = q.len() / (s.heads * s.head_dim);
    attention_batch(
        q,
        &[Sequence {
            k,
            v,
            first_pos,
            tokens: seq,
        }],
        s,
    )
}

/// One sequence of a batched attention: its cache and its queries' place in it.
pub struct Sequence<'a> {
    pub k: KvRows<'a>,
    pub v: KvRows<'a>,
    pub first_pos: usize,
    /// How many rows of the batch's queries are this sequence's (in order).
    pub tokens: usize,
}

/// [`attention`] of several sequences whose queries are stacked in `q`, each over its own
/// cache. Query rows are shared out among the threads by the keys each reads: with many
/// short sequences, attention is too large a part of a step to leave on one core, and a
/// prompt's later rows read more keys than its first.
pub fn attention_batch(q: &[f32], seqs: &[Sequence], s: &AttentionShape) -> Vec<f32> {
    let row = s.heads * s.head_dim;
    // The sequence and position of every query row.
    let rows: Vec<(&Sequence, usize)> = seqs
        .iter()
        .flat_map(|seq| (0..seq.tokens).map(move |t| (seq, seq.first_pos + t)))
        .collect();
    let mut out = vec![0f32; q.len()];
    let keys = |i: usize| {
        let (_, pos) = rows[i];
        s.window.map_or(pos + 1, |w| (pos + 1).min(w))
    };
    threads::rows_mut_by_cost(&mut out, row, keys, |i, o| {
        let (seq, pos) = rows[i];
        attend(&q[i * row..][..row], seq, pos, s, o, &mut Vec::new());
    });
    out
}

/// One query row at position `pos`, all heads, into `out`. The query heads that share a
/// KV head go together ([`heads`]): they read each key and value row once between them,
/// and every sum is still what one head alone gives.
fn attend(q: &[f32], seq: &Sequence, pos: usize, s: &AttentionShape, out: &mut [f32], scores: &mut Vec<f32>) {
    let hd = s.head_dim;
    let group = s.heads / s.kv_heads;
    let lo = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let span = pos + 1 - lo;
    for kvh in 0..s.kv_heads {
        let qs = &q[kvh * group * hd..][..group * hd];
        scores.clear();
        scores.resize(group * span, 0.0);
        let key = |j: usize| &seq.k.row(lo + j)[kvh * hd..][..hd];
        heads::scores(qs, hd, span, key, |h, j, x| scores[h * span + j] = x * s.scale);
        scores.chunks_exact_mut(span).for_each(softmax_in_place);
        let value = |j: usize| &seq.v.row(lo + j)[kvh * hd..][..hd];
        heads::weighted_sums(scores, span, value, &mut out[kvh * group * hd..][..group * hd]);
    }
}

/// `x ← softmax(x)`, with [`exp`]: the library's is a call per value, and was a third of
/// attention's time.
pub fn softmax_in_place(x: &mut [f32]) {
    // A compare and select: `f32::max` is a call into the maths library in wasm.
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    // Eight running sums, so that the additions vectorise.
    let mut sums = [0f32; 8];
    let runs = x.chunks_exact(8);
    let rest: f32 = runs.remainder().iter().sum();
    for run in runs {
        for (s, v) in sums.iter_mut().zip(run) {
            *s += v;
        }
    }
    let sum = sums.iter().sum::<f32>() + rest;
    for v in x.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let x: Vec<f32> = (0..2 * 3 * 8).map(|i| i as f32 * 0.1 - 1.0).collect();
        let mut y = x.clone();
        rope(&mut y[..3 * 8], 3, 8, &rope_table(1, 8, 0, 10_000.0));
        assert_eq!(&y[..24], &x[..24]);
        let mut z = x.clone();
        rope(&mut z, 3, 8, &rope_table(2, 8, 5, 10_000.0));
        for (a, b) in x.chunks(8).zip(z.chunks(8)) {
            assert!((dot(a, a) - dot(b, b)).abs() < 1e-4);
        }
    }

    #[test]
    fn tanh_is_within_3e7_of_the_library_one() {
        for i in -20_000..=20_000 {
            let u = i as f32 * 1e-3;
            let (ours, lib) = (tanh(u), u.tanh());
            assert!((ours - lib).abs() <= 3e-7, "tanh({u}) = {ours}, not {lib}");
        }
        assert_eq!((tanh(1e4), tanh(-1e4), tanh(0.0)), (1.0, -1.0, 0.0));
    }

    #[test]
    fn attention_single_key_returns_its_value_and_window_hides_old_keys() {
        let shape = AttentionShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
            window: None,
            scale: 1.0,
        };
        let q = [1.0, 0.0, 0.0, 1.0];
        let out = attention(
            &q,
            KvRows::whole(&[0.5, 0.5], 2),
            KvRows::whole(&[3.0, -1.0], 2),
            0,
            &shape,
        );
        assert_eq!(out, vec![3.0, -1.0, 3.0, -1.0]);
        // Three cached positions, window 1: the query at position 2 sees only itself.
        let shape = AttentionShape {
            window: Some(1),
            ..shape
        };
        let k = [9.0, 9.0, 9.0, 9.0, 0.1, 0.1];
        let v = [100.0, 100.0, 100.0, 100.0, 1.0, 2.0];
        let out = attention(&q, KvRows::whole(&k, 2), KvRows::whole(&v, 2), 2, &shape);
        assert_eq!(out, vec![1.0, 2.0, 1.0, 2.0]);
        // The same rows split between a shared prefix and a sequence's own.
        let split = attention(
            &q,
            KvRows::new(&k[..4], &k[4..], 2),
            KvRows::new(&v[..2], &v[2..], 2),
            2,
            &shape,
        );
        assert_eq!(split, out);
    }
}
