//! The operations a forward pass is made of. `cpu` is the reference and the SIMD CPU path
//! (candle's quantized kernels for the matrix products, plain Rust for the rest); a WebGPU
//! backend will implement the same ops, each tested against its CPU twin.

pub mod cpu;
