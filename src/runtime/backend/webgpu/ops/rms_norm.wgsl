// RMSNorm of each `dim`-wide row: dst = src / rms(src) · w, or dst += that (Gemma's
// post-norms feed the residual stream directly). Two layouts, picked by the host:
// - `split == 0`: one invocation per row, no barriers. Prefill has rows enough to fill
//   the GPU, and software adapters run barrier-free kernels many times faster.
// - `split == 1`: one workgroup per row, its WORKGROUP invocations sharing the sums. A decode
//   step has one row, and one invocation walking it twice is a long serial wait on a GPU.

struct Params {
    dim: u32,
    rows: u32,
    eps: f32,
    accumulate: u32,
    split: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

var<workgroup> partial: array<f32, WORKGROUP>;

fn put(i: u32, v: f32) {
    if (p.accumulate == 1u) {
        dst[i] += v;
    } else {
        dst[i] = v;
    }
}

fn inv_rms(sum_sq: f32) -> f32 {
    return 1.0 / sqrt(sum_sq / f32(p.dim) + p.eps);
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    if (p.split == 1u) {
        let row = wid.x + wid.y * nwg.x;
        let base = row * p.dim;
        var s = 0.0;
        if (row < p.rows) {
            for (var i = lid.x; i < p.dim; i += WORKGROUP) {
                let v = src[base + i];
                s += v * v;
            }
        }
        partial[lid.x] = s;
        workgroupBarrier();
        for (var half = WORKGROUP / 2u; half > 0u; half >>= 1u) {
            if (lid.x < half) {
                partial[lid.x] += partial[lid.x + half];
            }
            workgroupBarrier();
        }
        if (row < p.rows) {
            let inv = inv_rms(partial[0]);
            for (var i = lid.x; i < p.dim; i += WORKGROUP) {
                put(base + i, src[base + i] * inv * w[i]);
            }
        }
        return;
    }
    let row = (wid.x + wid.y * nwg.x) * WORKGROUP + lid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.dim;
    var s = 0.0;
    for (var i = 0u; i < p.dim; i++) {
        let v = src[base + i];
        s += v * v;
    }
    let inv = inv_rms(s);
    for (var i = 0u; i < p.dim; i++) {
        put(base + i, src[base + i] * inv * w[i]);
    }
}
