// Token embedding lookup from a Q8_0 matrix chunk (layout as in matmul_q8.wgsl), times
// Gemma's √hidden scale. Each chunk writes the rows of the ids it holds.

struct Params {
    tokens: u32,
    cols: u32,
    row0: u32,
    rows: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WORKGROUP;
    if (i >= p.tokens * p.cols) {
        return;
    }
    let t = i / p.cols;
    let c = i % p.cols;
    let row = ids[t];
    if (row < p.row0 || row >= p.row0 + p.rows) {
        return;
    }
    let r = row - p.row0;
    let e = r * p.cols + c;
    let word = qs[e / 4u];
    let q = f32(bitcast<i32>(word << (24u - 8u * (e % 4u))) >> 24u);
    y[i] = q * scales[e / 32u] * p.scale;
}
