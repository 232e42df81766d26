//! The operations a forward pass is made of. `cpu` is the reference and the SIMD CPU path
//! (candle's quantized kernels for the matrix products, plain Rust for the rest); `webgpu`
//! implements the same ops as WGSL kernels, each tested against its CPU twin.

pub mod cpu;
pub mod webgpu;
