//! Every WGSL kernel against its CPU twin, on pseudo-random inputs and odd shapes (rows
//! that are not multiples of the workgroup, matrices split into chunks, positions past
//! a 64-key tile, sliding windows, grouped-query heads). One implementation, run natively
//! by `tests/webgpu.rs` and in the browser by the page test (`Engine.checkKernels`), so
//! the same comparison holds on Vulkan and on the browser's WebGPU.

use super::{attention_parts_len, Gpu, GpuMatrix, Groups, Kernel};
use crate::error::Result;
use crate::runtime::backend::cpu::{self, rope_table, AttentionShape, KvRows};
use crate::runtime::backend::q8::Q8Rows;
use crate::runtime::backend::{max_rel_diff, noise};

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
const TOL: f32 = 1e-5;

fn compare(kernel: Kernel, case: String, gpu: &[f32], cpu: &[f32]) -> KernelCheck {
    KernelCheck {
        kernel: kernel.name(),
        case,
        max_rel_diff: max_rel_diff(gpu, cpu),
        tolerance: TOL,
    }
}

/// Runs one kernel over uploaded `inputs` and an output initialised to `out`.
async fn run(
    gpu: &Gpu,
    kernel: Kernel,
    params: &[u32],
    inputs: &[&[f32]],
    out: &[f32],
    groups: Groups,
) -> Result<Vec<f32>> {
    let bufs: Vec<wgpu::Buffer> = inputs.iter().map(|d| gpu.upload(d)).collect();
    let out_buf = gpu.upload(out);
    let mut refs: Vec<&wgpu::Buffer> = bufs.iter().collect();
    refs.push(&out_buf);
    let mut rec = gpu.recorder();
    rec.dispatch(kernel, params, &refs, groups);
    rec.read(&out_buf, out.len()).await
}

fn naive_matmul(w: &[f32], x: &[f32], rows: usize, cols: usize, tokens: usize) -> Vec<f32> {
    (0..tokens * rows)
        .map(|i| crate::runtime::backend::dot::dot(&w[(i % rows) * cols..][..cols], &x[(i / rows) * cols..][..cols]))
        .collect()
}

/// The merge's CPU twin: dequantize, add `B·A`, quantize as the CPU backend does.
fn merge_reference(base: &Q8Rows, (a, b, rank): (&[f32], &[f32], usize), cols: usize) -> Q8Rows {
    let mut w = base.dequantize();
    for (r, row) in w.chunks_exact_mut(cols).enumerate() {
        for (k, a) in a.chunks_exact(cols).enumerate().take(rank) {
            let bk = b[r * rank + k];
            for (v, a) in row.iter_mut().zip(a) {
                *v += bk * a;
            }
        }
    }
    Q8Rows::quantize(&w)
}

/// A matrix on the GPU, read back into the CPU's layout.
async fn read_matrix(gpu: &Gpu, m: &GpuMatrix) -> Result<Q8Rows> {
    let mut out = Q8Rows::with_capacity(m.rows * m.cols / 32);
    for c in &m.chunks {
        let blocks = c.rows * m.cols / 32;
        let qs = gpu.recorder().read(&c.qs, blocks * 8).await?;
        out.qs.extend(qs.iter().map(|v| v.to_bits()));
        out.scales.extend(gpu.recorder().read(&c.scales, blocks).await?);
    }
    Ok(out)
}

/// All the comparisons; the caller asserts (or reports) [`KernelCheck::passed`].
pub async fn check_kernels(gpu: &Gpu) -> Result<Vec<KernelCheck>> {
    let mut out = Vec::new();

    // Q8 matmul, both layouts: 37 rows in chunks of 10 (the last one short); five tokens
    // (prefill); one token over 34 blocks, which 16 invocations per row share unevenly
    // (decode); and the indexed rows of the constrained LM head, picked across chunks.
    for (cols, tokens) in [(96, 5), (1088, 1)] {
        let rows = 37;
        let q = Q8Rows::quantize(&noise(rows * cols, 1, 1.0));
        let x = noise(tokens * cols, 2, 1.0);
        let want = naive_matmul(&q.dequantize(), &x, rows, cols, tokens);
        let m = GpuMatrix::upload_in_chunks(gpu, &q, rows, cols, 10 * cols)?;
        let xb = gpu.upload(&x);
        let y = gpu.upload(&vec![0.5f32; tokens * rows]);
        let mut rec = gpu.recorder();
        m.matmul(&mut rec, (&xb, tokens), None, &y);
        let got = rec.read(&y, tokens * rows).await?;
        let case = format!("{rows}×{cols} in 4 chunks, tokens: {tokens}");
        out.push(compare(Kernel::MatmulQ8, case, &got, &want));
        if tokens > 1 {
            continue;
        }
        let ids = [36u32, 0, 11, 9, 10, 20];
        let (idb, picked_buf) = (gpu.upload(&ids), gpu.zeros(ids.len()));
        let mut rec = gpu.recorder();
        m.matmul(&mut rec, (&xb, 1), Some((&idb, ids.len())), &picked_buf);
        let got = rec.read(&picked_buf, ids.len()).await?;
        let picked: Vec<f32> = ids.iter().map(|&i| want[i as usize]).collect();
        out.push(compare(
            Kernel::MatmulQ8,
            "listed rows across chunks".into(),
            &got,
            &picked,
        ));
    }

    // Embedding rows from three chunks, times Gemma's scale.
    let (rows, cols) = (23, 64);
    let q = Q8Rows::quantize(&noise(rows * cols, 4, 1.0));
    let w = q.dequantize();
    let m = GpuMatrix::upload_in_chunks(gpu, &q, rows, cols, 8 * cols)?;
    let ids = [22u32, 0, 7, 8, 15, 16];
    let (idb, y) = (gpu.upload(&ids), gpu.zeros(ids.len() * cols));
    let mut rec = gpu.recorder();
    m.embed(&mut rec, &idb, ids.len(), 8.0, &y);
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| w[i as usize * cols..][..cols].iter().map(|v| v * 8.0))
        .collect();
    let got = rec.read(&y, want.len()).await?;
    out.push(compare(Kernel::EmbedQ8, "6 ids over 3 chunks".into(), &got, &want));

    // The LoRA merge, over chunks (each reads B from its own first row) and ranks that
    // are not powers of two. The values get one rounding step of tolerance: a sum in
    // another order can put a value on the other side of a .5; the scales are not rounded.
    for (rows, cols, rank, chunk_rows) in [(37, 96, 5, 10), (9, 64, 16, 9)] {
        let base = Q8Rows::quantize(&noise(rows * cols, 5, 1.0));
        let (a, b) = (noise(rank * cols, 6, 0.5), noise(rows * rank, 16, 0.5));
        let want = merge_reference(&base, (&a, &b, rank), cols);
        let m = GpuMatrix::upload_in_chunks(gpu, &base, rows, cols, chunk_rows * cols)?;
        let got = read_matrix(gpu, &m.merged(gpu, (&a, &b, rank))?).await?;
        let case = format!("{rows}×{cols} rank {rank}, {chunk_rows}-row chunks");
        out.push(compare(
            Kernel::MergeLora,
            format!("{case}, scales"),
            &got.scales,
            &want.scales,
        ));
        out.push(KernelCheck {
            tolerance: 1.0 / 127.0 + TOL,
            ..compare(
                Kernel::MergeLora,
                format!("{case}, values"),
                &got.dequantize(),
                &want.dequantize(),
            )
        });
    }

    // RMSNorm, plain and into the residual stream; few rows (a workgroup each) and many
    // (an invocation each).
    for (dim, rows) in [(100, 3), (640, 2), (32, 9), (48, 70)] {
        let (x, w) = (noise(dim * rows, 7, 3.0), noise(dim, 8, 1.0));
        let mut want = x.clone();
        cpu::rms_norm(&mut want, &w, 1e-6);
        let (xb, wb, y) = (gpu.upload(&x), gpu.upload(&w), gpu.zeros(x.len()));
        let mut rec = gpu.recorder();
        rec.rms_norm((&xb, &wb, &y), rows, dim, 1e-6, false);
        let got = rec.read(&y, x.len()).await?;
        out.push(compare(Kernel::RmsNorm, format!("{rows}×{dim}"), &got, &want));
        let base = noise(dim * rows, 9, 1.0);
        let mut summed = base.clone();
        cpu::add_in_place(&mut summed, &want);
        let yb = gpu.upload(&base);
        let mut rec = gpu.recorder();
        rec.rms_norm((&xb, &wb, &yb), rows, dim, 1e-6, true);
        let got = rec.read(&yb, x.len()).await?;
        out.push(compare(
            Kernel::RmsNorm,
            format!("{rows}×{dim} + residual"),
            &got,
            &summed,
        ));
    }

    // RoPE at a large position (the table is computed in f64 like the CPU's angles).
    let (heads, hd, tokens, first) = (3, 16, 4, 7000);
    let x = noise(tokens * heads * hd, 10, 1.0);
    let mut want = x.clone();
    cpu::rope(&mut want, heads, hd, first, 1_000_000.0);
    let table = rope_table(tokens, hd, first, 1_000_000.0);
    let params = [heads as u32, hd as u32, tokens as u32];
    let groups = Groups::cover(tokens * heads * hd / 2, 64, 1);
    let got = run(gpu, Kernel::Rope, &params, &[&table], &x, groups).await?;
    out.push(compare(Kernel::Rope, "positions 7000…7003".into(), &got, &want));

    // Attention: grouped-query heads, a head size that is no power of two, windows that
    // cut a tile. A few queries split their keys (75 positions: two splits of one tile);
    // 16 queries × 4 heads fill enough workgroups unsplit; one query at position 3000
    // splits them 24 ways, or 8 under a 500-key window.
    for (seq, first, windows) in [
        (5, 70, [None, Some(33), Some(1)]),
        (16, 59, [None, Some(33), Some(1)]),
        (1, 3000, [None, Some(500), Some(64)]),
    ] {
        let (heads, kv_heads, hd) = (4, 2, 40);
        let positions = first + seq;
        let q = noise(seq * heads * hd, 11, 1.0);
        let k = noise(positions * kv_heads * hd, 12, 1.0);
        let v = noise(positions * kv_heads * hd, 13, 1.0);
        let [qb, kb, vb] = [&q, &k, &v].map(|d| gpu.upload(d));
        for window in windows {
            let shape = AttentionShape {
                heads,
                kv_heads,
                head_dim: hd,
                window,
                scale: 0.3,
            };
            let row = kv_heads * hd;
            let want = cpu::attention(&q, KvRows::whole(&k, row), KvRows::whole(&v, row), first, &shape);
            let parts = gpu.zeros(attention_parts_len(&shape, seq));
            let out_buf = gpu.zeros(q.len());
            let mut rec = gpu.recorder();
            rec.attention((&qb, &kb, &vb, &parts, &out_buf), &shape, first, seq);
            let got = rec.read(&out_buf, q.len()).await?;
            out.push(compare(
                Kernel::Attention,
                format!("{seq} queries at {first}…, 4/2 heads, window {window:?}"),
                &got,
                &want,
            ));
        }
    }

    // GeGLU, including arguments where a naive tanh overflows.
    let mut gate = noise(1000, 14, 4.0);
    gate.extend([30.0, -30.0, 0.0]);
    let up = noise(gate.len(), 15, 1.0);
    let mut want = gate.clone();
    cpu::gelu_mul(&mut want, &up);
    let groups = Groups::cover(gate.len(), 64, 1);
    let got = run(gpu, Kernel::GeluMul, &[gate.len() as u32], &[&up], &gate, groups).await?;
    out.push(compare(Kernel::GeluMul, "1003 values".into(), &got, &want));
    Ok(out)
}
