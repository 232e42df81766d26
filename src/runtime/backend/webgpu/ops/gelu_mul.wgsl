// gate ← gelu_tanh(gate) · up: Gemma's GeGLU feed-forward.

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> gate: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WORKGROUP;
    if (i >= p.len) {
        return;
    }
    let x = gate[i];
    let inner = 0.7978846 * (x + 0.044715 * x * x * x);
    // tanh through exp, clamped: some drivers' tanh returns NaN for large arguments.
    let e = exp(-2.0 * clamp(inner, -15.0, 15.0));
    let th = (1.0 - e) / (1.0 + e);
    gate[i] = 0.5 * x * (1.0 + th) * up[i];
}
