//! The token embedding: rows of a [`GpuMatrix`] by id, times a scale (Gemma's √hidden).

use crate::error::Result;
use crate::runtime::backend::noise;
use crate::runtime::backend::q8::Q8Rows;
use crate::runtime::backend::webgpu::check::{compare, KernelCheck};
use crate::runtime::backend::webgpu::device::Gpu;
use crate::runtime::backend::webgpu::kernel::Kernel;
use crate::runtime::backend::webgpu::matrix::GpuMatrix;
use crate::runtime::backend::webgpu::recorder::{Groups, Recorder};

const WORKGROUP: usize = 64;

pub struct EmbedQ8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    tokens: u32,
    cols: u32,
    row0: u32,
    rows: u32,
    scale: f32,
    _pad: [u32; 3],
}

impl Kernel for EmbedQ8 {
    const NAME: &'static str = "embed_q8";
    const SOURCE: &'static str = include_str!("embed_q8.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = &[("WORKGROUP", WORKGROUP as u32)];
    type Params = Params;
}

/// Records the rows of `ids` (`tokens` of them) of `w`, times `scale`, into `y`.
pub fn embed(rec: &mut Recorder, w: &GpuMatrix, ids: &wgpu::Buffer, tokens: usize, scale: f32, y: &wgpu::Buffer) {
    for c in &w.chunks {
        let p = Params {
            tokens: tokens as u32,
            cols: w.cols as u32,
            row0: c.row0 as u32,
            rows: c.rows as u32,
            scale,
            _pad: [0; 3],
        };
        let groups = Groups::cover(tokens * w.cols, WORKGROUP, 1);
        rec.dispatch::<EmbedQ8>(&p, &[&c.qs, &c.scales, ids, y], groups);
    }
}

/// Rows from three chunks, times Gemma's scale.
pub(super) async fn check(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let (rows, cols) = (23, 64);
    let q = Q8Rows::quantize(&noise(rows * cols, 4, 1.0));
    let w = q.dequantize();
    let m = GpuMatrix::upload_in_chunks(gpu, &q, rows, cols, 8 * cols)?;
    let ids = [22u32, 0, 7, 8, 15, 16];
    let (idb, y) = (gpu.upload(&ids), gpu.zeros(ids.len() * cols));
    let mut rec = gpu.recorder();
    embed(&mut rec, &m, &idb, ids.len(), 8.0, &y);
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| w[i as usize * cols..][..cols].iter().map(|v| v * 8.0))
        .collect();
    let got = rec.read(&y, want.len()).await?;
    Ok(vec![compare::<EmbedQ8>("6 ids over 3 chunks".into(), &got, &want)])
}
