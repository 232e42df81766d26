//! `y = x · Wᵀ` for a [`GpuMatrix`], over all its rows or only listed ones (the constrained
//! LM head); twin: the Q8 dot products of `backend::q8`.

use crate::error::Result;
use crate::runtime::backend::noise;
use crate::runtime::backend::q8::Q8Rows;
use crate::runtime::backend::webgpu::check::{compare, KernelCheck};
use crate::runtime::backend::webgpu::device::Gpu;
use crate::runtime::backend::webgpu::kernel::Kernel;
use crate::runtime::backend::webgpu::matrix::GpuMatrix;
use crate::runtime::backend::webgpu::recorder::{Groups, Recorder};

const WORKGROUP: usize = 64;
/// Tokens one invocation serves (each weight is read once per this many tokens); up to
/// this many, a step runs in the decode layout.
const TOKENS: usize = 8;
/// Decode: invocations that share a row.
const SLICES: usize = 16;

pub struct MatmulQ8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows in this chunk, and the first of them in the whole matrix.
    rows: u32,
    cols: u32,
    row0: u32,
    /// Outputs per token: all rows, or the number of ids.
    outputs: u32,
    indexed: u32,
    _pad: u32,
    /// The first output this dispatch covers (a chunk's row0 without ids).
    first: u32,
    tokens: u32,
}

impl Kernel for MatmulQ8 {
    const NAME: &'static str = "matmul_q8";
    const SOURCE: &'static str = include_str!("matmul_q8.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = &[
        ("WORKGROUP", WORKGROUP as u32),
        ("TOKENS", TOKENS as u32),
        ("SLICES", SLICES as u32),
    ];
    type Params = Params;
}

/// Records `y = x · Wᵀ` for `tokens` rows of `x`; with `ids`, only those rows of W (`y` is
/// then `tokens × ids.len()`).
pub fn matmul(
    rec: &mut Recorder,
    w: &GpuMatrix,
    (x, tokens): (&wgpu::Buffer, usize),
    ids: Option<(&wgpu::Buffer, usize)>,
    y: &wgpu::Buffer,
) {
    let (id_buf, outputs, indexed) = match ids {
        Some((b, n)) => (b, n, true),
        None => (&rec.gpu.no_ids, w.rows, false),
    };
    for c in &w.chunks {
        // Without ids a chunk's outputs are its own rows; with ids every chunk scans them all.
        let (first, count) = match indexed {
            true => (0, outputs),
            false => (c.row0, c.rows),
        };
        let p = Params {
            rows: c.rows as u32,
            cols: w.cols as u32,
            row0: c.row0 as u32,
            outputs: outputs as u32,
            indexed: indexed as u32,
            _pad: 0,
            first: first as u32,
            tokens: tokens as u32,
        };
        let groups = match tokens <= TOKENS {
            true => Groups::cover(count, WORKGROUP / SLICES, 1),
            false => Groups::cover(count, WORKGROUP, tokens.div_ceil(TOKENS)),
        };
        rec.dispatch::<MatmulQ8>(&p, &[&c.qs, &c.scales, x, id_buf, y], groups);
    }
}

fn naive_matmul(w: &[f32], x: &[f32], rows: usize, cols: usize, tokens: usize) -> Vec<f32> {
    (0..tokens * rows)
        .map(|i| crate::runtime::backend::dot::dot(&w[(i % rows) * cols..][..cols], &x[(i / rows) * cols..][..cols]))
        .collect()
}

/// Both layouts: 37 rows in chunks of 10 (the last one short); eleven tokens (prefill, two
/// groups of tokens, the second short); one token and three (a batch's step) over 34
/// blocks, which the invocations of a row share unevenly (decode); and the listed rows of
/// the constrained LM head, picked across chunks.
pub(super) async fn check(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let mut out = Vec::new();
    for (cols, tokens) in [(96, 11), (1088, 3), (1088, 1)] {
        let rows = 37;
        let q = Q8Rows::quantize(&noise(rows * cols, 1, 1.0));
        let x = noise(tokens * cols, 2, 1.0);
        let want = naive_matmul(&q.dequantize(), &x, rows, cols, tokens);
        let m = GpuMatrix::upload_in_chunks(gpu, &q, rows, cols, 10 * cols)?;
        let xb = gpu.upload(&x);
        let y = gpu.upload(&vec![0.5f32; tokens * rows]);
        let mut rec = gpu.recorder();
        matmul(&mut rec, &m, (&xb, tokens), None, &y);
        let got = rec.read(&y, tokens * rows).await?;
        let case = format!("{rows}×{cols} in 4 chunks, tokens: {tokens}");
        out.push(compare::<MatmulQ8>(case, &got, &want));
        if tokens > TOKENS {
            continue;
        }
        let ids = [36u32, 0, 11, 9, 10, 20];
        let (idb, picked_buf) = (gpu.upload(&ids), gpu.zeros(tokens * ids.len()));
        let mut rec = gpu.recorder();
        matmul(&mut rec, &m, (&xb, tokens), Some((&idb, ids.len())), &picked_buf);
        let got = rec.read(&picked_buf, tokens * ids.len()).await?;
        let picked: Vec<f32> = (0..tokens)
            .flat_map(|t| ids.iter().map(move |&i| t * rows + i as usize))
            .map(|i| want[i])
            .collect();
        let case = format!("listed rows across chunks, tokens: {tokens}");
        out.push(compare::<MatmulQ8>(case, &got, &picked));
    }
    Ok(out)
}
