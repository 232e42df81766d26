// RMSNorm of each `dim`-wide row: dst = src / rms(src) · w, or dst += that (Gemma's
// post-norms feed the residual stream directly). One invocation per row, no barriers:
// rows are at most a few thousand values, and software adapters run barrier-free kernels
// many times faster.

struct Params {
    dim: u32,
    rows: u32,
    eps: f32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 64u;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.dim;
    var s = 0.0;
    for (var i = 0u; i < p.dim; i++) {
        let v = src[base + i];
        s += v * v;
    }
    let inv = 1.0 / sqrt(s / f32(p.dim) + p.eps);
    for (var i = 0u; i < p.dim; i++) {
        let v = src[base + i] * inv * w[i];
        if (p.accumulate == 1u) {
            dst[base + i] += v;
        } else {
            dst[base + i] = v;
        }
    }
}
