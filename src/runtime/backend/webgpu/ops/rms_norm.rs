//! RMSNorm of each row, written or added into the destination (Gemma's post-norms feed
//! the residual stream directly); twin: `cpu::rms_norm`.

use super::SPLIT_BELOW;
use crate::error::Result;
use crate::runtime::backend::cpu;
use crate::runtime::backend::noise;
use crate::runtime::backend::webgpu::check::{compare, KernelCheck};
use crate::runtime::backend::webgpu::device::Gpu;
use crate::runtime::backend::webgpu::kernel::Kernel;
use crate::runtime::backend::webgpu::recorder::{Groups, Recorder};

/// A power of two: the split layout sums a row's parts in a halving tree.
const WORKGROUP: usize = 64;

pub struct RmsNorm;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    dim: u32,
    rows: u32,
    eps: f32,
    accumulate: u32,
    split: u32,
    _pad: [u32; 3],
}

impl Kernel for RmsNorm {
    const NAME: &'static str = "rms_norm";
    const SOURCE: &'static str = include_str!("rms_norm.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = &[("WORKGROUP", WORKGROUP as u32)];
    type Params = Params;
}

/// Records RMSNorm of `rows` rows of `dim` values from `src` into `dst` (added to it with
/// `accumulate`), scaled by `w`. Few rows (a decode step) get a workgroup each.
pub fn rms_norm(
    rec: &mut Recorder,
    (src, w, dst): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (rows, dim): (usize, usize),
    eps: f32,
    accumulate: bool,
) {
    let split = rows < SPLIT_BELOW;
    let p = Params {
        dim: dim as u32,
        rows: rows as u32,
        eps,
        accumulate: accumulate as u32,
        split: split as u32,
        _pad: [0; 3],
    };
    let groups = Groups::cover(rows, if split { 1 } else { WORKGROUP }, 1);
    rec.dispatch::<RmsNorm>(&p, &[src, w, dst], groups);
}

/// Plain and into the residual stream; few rows (a workgroup each) and many (an invocation each).
pub(super) async fn check(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let mut out = Vec::new();
    for (dim, rows) in [(100, 3), (640, 2), (32, 9), (48, 70)] {
        let (x, w) = (noise(dim * rows, 7, 3.0), noise(dim, 8, 1.0));
        let mut want = x.clone();
        cpu::rms_norm(&mut want, &w, 1e-6);
        let (xb, wb, y) = (gpu.upload(&x), gpu.upload(&w), gpu.zeros(x.len()));
        let mut rec = gpu.recorder();
        rms_norm(&mut rec, (&xb, &wb, &y), (rows, dim), 1e-6, false);
        let got = rec.read(&y, x.len()).await?;
        out.push(compare::<RmsNorm>(format!("{rows}×{dim}"), &got, &want));
        let base = noise(dim * rows, 9, 1.0);
        let mut summed = base.clone();
        cpu::add_in_place(&mut summed, &want);
        let yb = gpu.upload(&base);
        let mut rec = gpu.recorder();
        rms_norm(&mut rec, (&xb, &wb, &yb), (rows, dim), 1e-6, true);
        let got = rec.read(&yb, x.len()).await?;
        out.push(compare::<RmsNorm>(format!("{rows}×{dim} + residual"), &got, &summed));
    }
    Ok(out)
}
