//! GeGLU: `gate ← gelu_tanh(gate) · up` (twin: `cpu::gelu_mul`).

use crate::error::Result;
use crate::runtime::backend::cpu;
use crate::runtime::backend::noise;
use crate::runtime::backend::webgpu::check::{compare, run, KernelCheck};
use crate::runtime::backend::webgpu::device::Gpu;
use crate::runtime::backend::webgpu::kernel::Kernel;
use crate::runtime::backend::webgpu::recorder::{Groups, Recorder};

const WORKGROUP: usize = 64;

pub struct GeluMul;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    len: u32,
    _pad: [u32; 3],
}

impl Kernel for GeluMul {
    const NAME: &'static str = "gelu_mul";
    const SOURCE: &'static str = include_str!("gelu_mul.wgsl");
    const CONSTANTS: &'static [(&'static str, u32)] = &[("WORKGROUP", WORKGROUP as u32)];
    type Params = Params;
}

fn params(len: usize) -> (Params, Groups) {
    let p = Params {
        len: len as u32,
        _pad: [0; 3],
    };
    (p, Groups::cover(len, WORKGROUP, 1))
}

/// Records `gate ← gelu_tanh(gate) · up` over `len` values.
pub fn gelu_mul(rec: &mut Recorder, (up, gate): (&wgpu::Buffer, &wgpu::Buffer), len: usize) {
    let (p, groups) = params(len);
    rec.dispatch::<GeluMul>(&p, &[up, gate], groups);
}

/// Arguments where a naive tanh overflows included.
pub(super) async fn check(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let mut gate = noise(1000, 14, 4.0);
    gate.extend([30.0, -30.0, 0.0]);
    let up = noise(gate.len(), 15, 1.0);
    let mut want = gate.clone();
    cpu::gelu_mul(&mut want, &up);
    let (p, groups) = params(gate.len());
    let got = run::<GeluMul>(gpu, &p, &[&up], &gate, groups).await?;
    Ok(vec![compare::<GeluMul>("1003 values".into(), &got, &want)])
}
