//! Rotary position embedding, NeoX layout, from a cos/sin table computed on the CPU in f64
//! (twin: `cpu::rope`).

use crate::error::Result;
use crate::runtime::backend::cpu::{self, rope_table};
use crate::runtime::backend::noise;
use crate::runtime::backend::webgpu::check::{compare, run, KernelCheck};
use crate::runtime::backend::webgpu::device::Gpu;
use crate::runtime::backend::webgpu::kernel::Kernel;
use crate::runtime::backend::webgpu::recorder::{Groups, Recorder};

const WORKGROUP: usize = 64;

pub struct Rope;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    heads: u32,
    head_dim: u32,
    tokens: u32,
    _pad: u32,
}

impl Kernel for Rope {
    const NAME: &'static str = "rope";
    const SOURCE: &'static str = include_str!("rope.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = &[("WORKGROUP", WORKGROUP as u32)];
    type Params = Params;
}

fn params(heads: usize, head_dim: usize, tokens: usize) -> (Params, Groups) {
    let p = Params {
        heads: heads as u32,
        head_dim: head_dim as u32,
        tokens: tokens as u32,
        _pad: 0,
    };
    (p, Groups::cover(tokens * heads * head_dim / 2, WORKGROUP, 1))
}

/// Records RoPE in place on `x` (`tokens × heads × head_dim`) with `table`, the
/// [`rope_table`] of those tokens.
pub fn rope(
    rec: &mut Recorder,
    (table, x): (&wgpu::Buffer, &wgpu::Buffer),
    heads: usize,
    head_dim: usize,
    tokens: usize,
) {
    let (p, groups) = params(heads, head_dim, tokens);
    rec.dispatch::<Rope>(&p, &[table, x], groups);
}

/// At a large position, where f32 angles would drift.
pub(super) async fn check(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let (heads, hd, tokens, first) = (3, 16, 4, 7000);
    let x = noise(tokens * heads * hd, 10, 1.0);
    let table = rope_table(tokens, hd, first, 1_000_000.0);
    let mut want = x.clone();
    cpu::rope(&mut want, heads, hd, &table);
    let (p, groups) = params(heads, hd, tokens);
    let got = run::<Rope>(gpu, &p, &[&table], &x, groups).await?;
    Ok(vec![compare::<Rope>("positions 7000…7003".into(), &got, &want)])
}
