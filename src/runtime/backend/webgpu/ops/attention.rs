//! Causal grouped-query attention over the KV cache, with sliding windows (twin:
//! `cpu::attention`). When heads × tokens are too few workgroups to fill a GPU (a decode
//! step), each query's keys are split over several workgroups and a second kernel,
//! `attention_combine`, merges their parts.

use super::SPLIT_BELOW;
use crate::error::Result;
use crate::runtime::backend::cpu::{self, AttentionShape, KvRows};
use crate::runtime::backend::noise;
use crate::runtime::backend::webgpu::check::{compare, KernelCheck};
use crate::runtime::backend::webgpu::device::Gpu;
use crate::runtime::backend::webgpu::kernel::Kernel;
use crate::runtime::backend::webgpu::recorder::{Groups, Recorder};

/// Largest head dimension: one output dim per invocation. It must also be a multiple of 4
/// (keys are read as vec4s).
pub const MAX_HEAD_DIM: usize = 256;
/// Keys per tile: four invocations share each key's dot product.
const TILE: usize = MAX_HEAD_DIM / 4;
/// Most splits of one (head, token)'s keys, which bounds the parts buffer.
const MAX_SPLITS: usize = 32;

const CONSTANTS: &[(&str, u32)] = &[("WORKGROUP", MAX_HEAD_DIM as u32), ("TILE", TILE as u32)];

pub struct Attention;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    first_pos: u32,
    window: u32,
    scale: f32,
    /// Keys per split (whole tiles) and the number of splits.
    chunk: u32,
    splits: u32,
    /// The first query's row in `q` and `out`.
    q_first: u32,
    _pad: [u32; 3],
}

impl Kernel for Attention {
    const NAME: &'static str = "attention";
    const SOURCE: &'static str = include_str!("attention.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = CONSTANTS;
    type Params = Params;
}

pub struct AttentionCombine;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CombineParams {
    heads: u32,
    head_dim: u32,
    splits: u32,
    q_first: u32,
}

impl Kernel for AttentionCombine {
    const NAME: &'static str = "attention_combine";
    const SOURCE: &'static str = include_str!("attention_combine.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = CONSTANTS;
    type Params = CombineParams;
}

/// Keys per split and splits: whole tiles, enough of them that the longest query's range
/// (its window, or every position up to it) fits.
fn splits(shape: &AttentionShape, first: usize, tokens: usize) -> (usize, usize) {
    if shape.heads * tokens >= SPLIT_BELOW {
        return (0, 1);
    }
    let span = shape.window.map_or(first + tokens, |w| w.min(first + tokens));
    let chunk = span.div_ceil(MAX_SPLITS).next_multiple_of(TILE);
    (chunk, span.div_ceil(chunk))
}

/// Floats the `parts` buffer of [`attention`] needs for up to `tokens` queries.
pub fn parts_len(shape: &AttentionShape, tokens: usize) -> usize {
    let split_tokens = tokens.min((SPLIT_BELOW - 1) / shape.heads);
    (shape.heads * split_tokens * MAX_SPLITS * (shape.head_dim + 2)).max(1)
}

/// Records attention of `tokens` queries, rows `q_first…` of `q` and `out`, at positions
/// `first…` over the KV cache (`q`, `k`, `v` as `cpu::attention` takes them); `parts` holds
/// [`parts_len`] floats.
pub fn attention(
    rec: &mut Recorder,
    (q, k, v, parts, out): (
        &wgpu::Buffer,
        &wgpu::Buffer,
        &wgpu::Buffer,
        &wgpu::Buffer,
        &wgpu::Buffer,
    ),
    shape: &AttentionShape,
    (q_first, first, tokens): (usize, usize, usize),
) {
    let (chunk, splits) = splits(shape, first, tokens);
    let (heads, head_dim) = (shape.heads as u32, shape.head_dim as u32);
    let p = Params {
        heads,
        kv_heads: shape.kv_heads as u32,
        head_dim,
        first_pos: first as u32,
        window: shape.window.unwrap_or(0) as u32,
        scale: shape.scale,
        chunk: chunk as u32,
        splits: splits as u32,
        q_first: q_first as u32,
        _pad: [0; 3],
    };
    let target = if splits > 1 { parts } else { out };
    let groups = Groups::Grid(heads, tokens as u32, splits as u32);
    rec.dispatch::<Attention>(&p, &[q, k, v, target], groups);
    if splits > 1 {
        let p = CombineParams {
            heads,
            head_dim,
            splits: splits as u32,
            q_first: q_first as u32,
        };
        rec.dispatch::<AttentionCombine>(&p, &[parts, out], Groups::Grid(heads, tokens as u32, 1));
    }
}

/// Grouped-query heads, a head size that is no power of two, windows that cut a tile. A
/// few queries split their keys (75 positions: two splits of one tile); 16 queries × 4
/// heads fill enough workgroups unsplit; one query at position 3000 splits them 24 ways,
/// or 8 under a 500-key window.
pub(super) async fn check(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let mut out = Vec::new();
    for (seq, first, windows) in [
        (5, 70, [None, Some(33), Some(1)]),
        (16, 59, [None, Some(33), Some(1)]),
        (1, 3000, [None, Some(500), Some(64)]),
    ] {
        let (heads, kv_heads, hd) = (4, 2, 40);
        let positions = first + seq;
        let q = noise(seq * heads * hd, 11, 1.0);
        let k = noise(positions * kv_heads * hd, 12, 1.0);
        let v = noise(positions * kv_heads * hd, 13, 1.0);
        let [qb, kb, vb] = [&q, &k, &v].map(|d| gpu.upload(d));
        for window in windows {
            let shape = AttentionShape {
                heads,
                kv_heads,
                head_dim: hd,
                window,
                scale: 0.3,
            };
            let row = kv_heads * hd;
            let want = cpu::attention(&q, KvRows::whole(&k, row), KvRows::whole(&v, row), first, &shape);
            let parts = gpu.zeros(parts_len(&shape, seq));
            let out_buf = gpu.zeros(q.len());
            let mut rec = gpu.recorder();
            attention(&mut rec, (&qb, &kb, &vb, &parts, &out_buf), &shape, (0, first, seq));
            let got = rec.read(&out_buf, q.len()).await?;
            out.push(compare::<Attention>(
                format!("{seq} queries at {first}…, 4/2 heads, window {window:?}"),
                &got,
                &want,
            ));
        }
        // The queries as a batch's later sequence: from row 3 of `q` and `out`, whose rows
        // before them stay as they were; split (one query) and not (16).
        if seq != 5 {
            let shape = AttentionShape {
                heads,
                kv_heads,
                head_dim: hd,
                window: None,
                scale: 0.3,
            };
            let row = kv_heads * hd;
            let mut want = vec![0.0; 3 * heads * hd];
            want.extend(cpu::attention(
                &q,
                KvRows::whole(&k, row),
                KvRows::whole(&v, row),
                first,
                &shape,
            ));
            let padded = [noise(3 * heads * hd, 17, 1.0), q.clone()].concat();
            let (qb, out_buf) = (gpu.upload(&padded), gpu.zeros(want.len()));
            let parts = gpu.zeros(parts_len(&shape, seq));
            let mut rec = gpu.recorder();
            attention(&mut rec, (&qb, &kb, &vb, &parts, &out_buf), &shape, (3, first, seq));
            let got = rec.read(&out_buf, want.len()).await?;
            out.push(compare::<Attention>(
                format!("{seq} queries at {first}… from row 3"),
                &got,
                &want,
            ));
        }
    }
    Ok(out)
}
