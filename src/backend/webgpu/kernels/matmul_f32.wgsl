// y[t, o] (+)= Σ_i x[t, i] · W[o, i] for a small f32 matrix W: the two halves of a LoRA
// side path (rank 16), where a plain thread-per-output loop is fast enough.

struct Params {
    rows: u32,  // outputs per token
    cols: u32,
    tokens: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.tokens) {
        return;
    }
    let t = i / p.rows;
    let o = i % p.rows;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += w[o * p.cols + c] * x[t * p.cols + c];
    }
    if (p.accumulate == 1u) {
        y[i] += s;
    } else {
        y[i] = s;
    }
}
