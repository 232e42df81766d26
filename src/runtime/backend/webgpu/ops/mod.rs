//! The WGSL kernels, one module per op: its WGSL file, the numbers it shares with the host,
//! its parameter struct (binding 0, field for field), the recording of its dispatch and its
//! check against its CPU twin (the CPU backend's own op, `backend::cpu`).

mod attention;
mod embed_q8;
mod gelu_mul;
mod matmul_q8;
mod merge_lora;
mod rms_norm;
mod rope;

pub use attention::{attention, parts_len as attention_parts_len, MAX_HEAD_DIM};
pub use embed_q8::embed;
pub use gelu_mul::gelu_mul;
pub use matmul_q8::matmul;
pub use merge_lora::merged;
pub use rms_norm::rms_norm;
pub use rope::rope;

use super::check::KernelCheck;
use super::device::Gpu;
use super::kernel::KernelSource;
use crate::error::Result;

/// Below this many workgroups an op splits its work finer (RMSNorm a row per workgroup,
/// attention a query's keys over several): a decode step's few rows would leave most of a
/// GPU idle and each row waiting on one long loop.
const SPLIT_BELOW: usize = 64;

/// Every kernel, compiled when the GPU is opened.
pub const ALL: [KernelSource; 8] = [
    KernelSource::of::<gelu_mul::GeluMul>(),
    KernelSource::of::<embed_q8::EmbedQ8>(),
    KernelSource::of::<matmul_q8::MatmulQ8>(),
    KernelSource::of::<merge_lora::MergeLora>(),
    KernelSource::of::<rms_norm::RmsNorm>(),
    KernelSource::of::<rope::Rope>(),
    KernelSource::of::<attention::Attention>(),
    KernelSource::of::<attention::AttentionCombine>(),
];

/// Every op against its CPU twin (see [`super::check`]); the caller asserts (or reports)
/// [`KernelCheck::passed`].
pub async fn check_kernels(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let mut out = matmul_q8::check(gpu).await?;
    out.extend(embed_q8::check(gpu).await?);
    out.extend(merge_lora::check(gpu).await?);
    out.extend(rms_norm::check(gpu).await?);
    out.extend(rope::check(gpu).await?);
    out.extend(attention::check(gpu).await?);
    out.extend(gelu_mul::check(gpu).await?);
    Ok(out)
}
