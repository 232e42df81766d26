//! WebGPU compute through wgpu: WebGPU in the browser, Vulkan/Metal/DX12 natively.
//!
//! [`device`] opens the GPU and compiles the kernels, [`recorder`] records a submission,
//! [`matrix`] holds the weights, and [`ops`] has one module per op: its WGSL kernel,
//! parameters, dispatch and the check against its CPU twin in `backend::cpu`
//! ([`ops::check_kernels`] runs them all: `tests/webgpu.rs` natively, the page's self-test in
//! the browser). Module dependencies run one way: `ops` → `check`, `matrix`, `recorder` →
//! `device` → `kernel`, `profile`.
//! Quantized weights are repacked once at load into one GPU-friendly format (int8 in u32
//! words plus an f32 scale per 32 values: Q8_0 with the scale widened), split into
//! chunks where a matrix exceeds the adapter's largest storage binding.

pub mod check;
mod device;
mod kernel;
mod matrix;
pub mod ops;
mod profile;
mod readback;
mod recorder;

pub use device::{Gpu, GpuOptions};
pub use matrix::GpuMatrix;
pub use recorder::{Groups, Recorder};

use crate::error::Result;

impl Gpu {
    /// The first high-performance adapter, with every kernel of [`ops`] compiled. Any
    /// failure (no WebGPU, no adapter, a kernel the driver rejects) is
    /// [`crate::error::Error::Gpu`], and the caller falls back to the CPU.
    pub async fn new(options: GpuOptions) -> Result<Gpu> {
        Gpu::open(options, &ops::ALL).await
    }
}
