//! Weight matrices on the GPU in the kernels' Q8 layout.

use super::device::Gpu;
use crate::error::{Error, Result};
use crate::runtime::backend::q8::Q8Rows;

/// A weight matrix `[rows, cols]` on the GPU in the kernels' Q8 layout, in row chunks
/// that each fit one storage binding.
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    pub(super) chunks: Vec<Chunk>,
}

/// Rows `row0…row0 + rows`: int8 values four to a u32, and one f32 scale per 32 values.
pub(super) struct Chunk {
    pub row0: usize,
    pub rows: usize,
    pub qs: wgpu::Buffer,
    pub scales: wgpu::Buffer,
}

impl GpuMatrix {
    pub fn upload(gpu: &Gpu, q: &Q8Rows, rows: usize, cols: usize) -> Result<GpuMatrix> {
        GpuMatrix::upload_in_chunks(gpu, q, rows, cols, gpu.max_binding as usize)
    }

    /// As [`Self::upload`], with chunks of at most `max_bytes` of int8 values (the tests
    /// use small chunks to cover the split that the 262k-row embedding needs).
    pub fn upload_in_chunks(gpu: &Gpu, q: &Q8Rows, rows: usize, cols: usize, max_bytes: usize) -> Result<GpuMatrix> {
        if !cols.is_multiple_of(32) || q.qs.len() * 4 != rows * cols {
            return Err(Error::Gpu(format!("a {rows}×{cols} matrix does not fit the Q8 layout")));
        }
        let per_chunk = (max_bytes / cols).clamp(1, rows.max(1));
        let chunks = (0..rows)
            .step_by(per_chunk)
            .map(|row0| {
                let n = per_chunk.min(rows - row0);
                Chunk {
                    row0,
                    rows: n,
                    qs: gpu.upload(&q.qs[row0 * cols / 4..(row0 + n) * cols / 4]),
                    scales: gpu.upload(&q.scales[row0 * cols / 32..(row0 + n) * cols / 32]),
                }
            })
            .collect();
        Ok(GpuMatrix { rows, cols, chunks })
    }
}
