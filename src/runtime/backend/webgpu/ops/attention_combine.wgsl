// Merges the splits of a split attention (attention.wgsl with `splits` > 1). Split s left
// its max score m_s, its sum of exponentials l_s and its unnormalised output o_s; with
// M = max m_s the result is Σ e^(m_s - M) o_s / Σ e^(m_s - M) l_s. An empty split
// (m_s = -3e38, l_s = 0) weighs nothing. One workgroup per (head, token), invocation d
// owns output dim d.

struct Params {
    heads: u32,
    head_dim: u32,
    splits: u32,
    /// The first query's row in `out` (as in attention.wgsl); parts count from the dispatch's first.
    q_first: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let d = lid.x;
    if (d >= p.head_dim) {
        return;
    }
    let row = wid.y * p.heads + wid.x;
    let stride = p.head_dim + 2u;
    let first = row * p.splits * stride;
    var m = -3.0e38;
    for (var s = 0u; s < p.splits; s++) {
        m = max(m, parts[first + s * stride]);
    }
    var l = 0.0;
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let part = first + s * stride;
        let w = exp(parts[part] - m);
        l += w * parts[part + 1u];
        acc += w * parts[part + 2u + d];
    }
    out[((p.q_first + wid.y) * p.heads + wid.x) * p.head_dim + d] = acc / l;
}
