//! `W + B·A` for a [`GpuMatrix`] and a low-rank pair, quantized back to the same layout on
//! the GPU: an adapter merged once when it is set (twin: dequantize, add, quantize as the
//! CPU backend does).

use crate::error::{Error, Result};
use crate::runtime::backend::noise;
use crate::runtime::backend::q8::Q8Rows;
use crate::runtime::backend::webgpu::check::{compare, KernelCheck, TOL};
use crate::runtime::backend::webgpu::device::Gpu;
use crate::runtime::backend::webgpu::kernel::Kernel;
use crate::runtime::backend::webgpu::matrix::{Chunk, GpuMatrix};
use crate::runtime::backend::webgpu::recorder::Groups;

const WORKGROUP: usize = 64;

pub struct MergeLora;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows in this chunk, and the first of them in the whole matrix (B's row).
    rows: u32,
    cols: u32,
    row0: u32,
    rank: u32,
}

impl Kernel for MergeLora {
    const NAME: &'static str = "merge_lora";
    const SOURCE: &'static str = include_str!("merge_lora.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = &[("WORKGROUP", WORKGROUP as u32)];
    type Params = Params;
}

/// A new matrix `W + B·A` in the same layout and chunks, for a low-rank pair `A` `[rank,
/// cols]` and `B` `[rows, rank]` (row-major f32). `w` is kept: removing the adapter goes
/// back to it exactly.
pub fn merged(gpu: &Gpu, w: &GpuMatrix, (a, b, rank): (&[f32], &[f32], usize)) -> Result<GpuMatrix> {
    if a.len() != rank * w.cols || b.len() != w.rows * rank {
        return Err(Error::Gpu(format!(
            "a rank-{rank} pair does not fit a {}×{} matrix",
            w.rows, w.cols
        )));
    }
    let (a, b) = (gpu.upload(a), gpu.upload(b));
    let mut rec = gpu.recorder();
    let chunks = w
        .chunks
        .iter()
        .map(|c| {
            let blocks = c.rows * w.cols / 32;
            let out = Chunk {
                row0: c.row0,
                rows: c.rows,
                qs: gpu.zeros(blocks * 8),
                scales: gpu.zeros(blocks),
            };
            let p = Params {
                rows: c.rows as u32,
                cols: w.cols as u32,
                row0: c.row0 as u32,
                rank: rank as u32,
            };
            let buffers = [&c.qs, &c.scales, &a, &b, &out.qs, &out.scales];
            rec.dispatch::<MergeLora>(&p, &buffers, Groups::cover(blocks, WORKGROUP, 1));
            out
        })
        .collect();
    rec.submit();
    Ok(GpuMatrix {
        rows: w.rows,
        cols: w.cols,
        chunks,
    })
}

/// The merge's CPU twin: dequantize, add `B·A`, quantize as the CPU backend does.
fn merge_reference(base: &Q8Rows, (a, b, rank): (&[f32], &[f32], usize), cols: usize) -> Q8Rows {
    let mut w = base.dequantize();
    for (r, row) in w.chunks_exact_mut(cols).enumerate() {
        for (k, a) in a.chunks_exact(cols).enumerate().take(rank) {
            let bk = b[r * rank + k];
            for (v, a) in row.iter_mut().zip(a) {
                *v += bk * a;
            }
        }
    }
    Q8Rows::quantize(&w)
}

/// A matrix on the GPU, read back into the CPU's layout.
async fn read_matrix(gpu: &Gpu, m: &GpuMatrix) -> Result<Q8Rows> {
    let mut out = Q8Rows::with_capacity(m.rows * m.cols / 32);
    for c in &m.chunks {
        let blocks = c.rows * m.cols / 32;
        let qs = gpu.recorder().read(&c.qs, blocks * 8).await?;
        out.qs.extend(qs.iter().map(|v| v.to_bits()));
        out.scales.extend(gpu.recorder().read(&c.scales, blocks).await?);
    }
    Ok(out)
}

/// Over chunks (each reads B from its own first row) and ranks that are not powers of two.
/// The values get one rounding step of tolerance: a sum in another order can put a value on
/// the other side of a .5; the scales are not rounded.
pub(super) async fn check(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let mut out = Vec::new();
    for (rows, cols, rank, chunk_rows) in [(37, 96, 5, 10), (9, 64, 16, 9)] {
        let base = Q8Rows::quantize(&noise(rows * cols, 5, 1.0));
        let (a, b) = (noise(rank * cols, 6, 0.5), noise(rows * rank, 16, 0.5));
        let want = merge_reference(&base, (&a, &b, rank), cols);
        let m = GpuMatrix::upload_in_chunks(gpu, &base, rows, cols, chunk_rows * cols)?;
        let got = read_matrix(gpu, &merged(gpu, &m, (&a, &b, rank))?).await?;
        let case = format!("{rows}×{cols} rank {rank}, {chunk_rows}-row chunks");
        out.push(compare::<MergeLora>(
            format!("{case}, scales"),
            &got.scales,
            &want.scales,
        ));
        out.push(KernelCheck {
            tolerance: 1.0 / 127.0 + TOL,
            ..compare::<MergeLora>(format!("{case}, values"), &got.dequantize(), &want.dequantize())
        });
    }
    Ok(out)
}
