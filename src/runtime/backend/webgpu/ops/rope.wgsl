// Rotary position embedding, NeoX layout, in place on `tokens × heads × head_dim`. The
// cos/sin table (`tokens × head_dim/2` pairs) is computed on the CPU in f64: WGSL has no
// f64, and f32 angles drift at large positions.

struct Params {
    heads: u32,
    head_dim: u32,
    tokens: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.head_dim / 2u;
    let i = gid.x + gid.y * nwg.x * WORKGROUP;
    if (i >= p.tokens * p.heads * half) {
        return;
    }
    let pair = i % half;
    let head_row = i / half; // token * heads + head
    let t = head_row / p.heads;
    let c = cs[(t * half + pair) * 2u];
    let s = cs[(t * half + pair) * 2u + 1u];
    let lo = head_row * p.head_dim + pair;
    let a = x[lo];
    let b = x[lo + half];
    x[lo] = a * c - b * s;
    x[lo + half] = a * s + b * c;
}
