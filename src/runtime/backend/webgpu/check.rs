//! Comparing a WGSL kernel with its CPU twin. Each op's module checks it on pseudo-random
//! inputs and odd shapes (rows that are not multiples of the workgroup, matrices split into
//! chunks, positions past a tile, sliding windows, grouped-query heads);
//! [`super::ops::check_kernels`] runs them all, natively in `tests/webgpu.rs` and in the
//! browser in the page test (`Engine.checkKernels`), so the same comparison holds on Vulkan
//! and on the browser's WebGPU.

use super::device::Gpu;
use super::kernel::Kernel;
use super::recorder::Groups;
use crate::error::Result;
use crate::runtime::backend::max_rel_diff;

/// One comparison: the largest difference, relative to the largest reference value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelCheck {
    pub kernel: &'static str,
    pub case: String,
    pub max_rel_diff: f32,
    pub tolerance: f32,
}

impl KernelCheck {
    pub fn passed(&self) -> bool {
        self.max_rel_diff <= self.tolerance
    }
}

/// f32 reductions in another order differ in the last bits; 1e-5 of the largest value is
/// far below anything a wrong index or a missed term would produce.
pub(super) const TOL: f32 = 1e-5;

/// Kernel `K`'s output against the CPU's, within [`TOL`].
pub(super) fn compare<K: Kernel>(case: String, gpu: &[f32], cpu: &[f32]) -> KernelCheck {
    KernelCheck {
        kernel: K::NAME,
        case,
        max_rel_diff: max_rel_diff(gpu, cpu),
        tolerance: TOL,
    }
}

/// Runs kernel `K` over uploaded `inputs` and an output initialised to `out`.
pub(super) async fn run<K: Kernel>(
    gpu: &Gpu,
    params: &K::Params,
    inputs: &[&[f32]],
    out: &[f32],
    groups: Groups,
) -> Result<Vec<f32>> {
    let bufs: Vec<wgpu::Buffer> = inputs.iter().map(|d| gpu.upload(d)).collect();
    let out_buf = gpu.upload(out);
    let mut refs: Vec<&wgpu::Buffer> = bufs.iter().collect();
    refs.push(&out_buf);
    let mut rec = gpu.recorder();
    rec.dispatch::<K>(params, &refs, groups);
    rec.read(&out_buf, out.len()).await
}
