// Causal grouped-query attention over the KV cache, one workgroup per (head, query token),
// keys in tiles of 64 with an online softmax, so any context length fits in workgroup
// memory. Sliding-window layers see only the last `window` positions (0: all).
// Thread l owns output dims l, l+64, … (head_dim ≤ 256).

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    first_pos: u32,
    window: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const NEG: f32 = -3.0e38;
var<workgroup> probs: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let kvh = h / (p.heads / p.kv_heads);
    let kv_row = p.kv_heads * hd;
    let pos = p.first_pos + t;
    var lo = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        lo = pos + 1u - p.window;
    }
    let q0 = (t * p.heads + h) * hd;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var m = NEG;
    var l = 0.0;
    for (var tile = lo; tile <= pos; tile += 64u) {
        let j = tile + lid.x;
        var s = NEG;
        if (j <= pos) {
            let k0 = j * kv_row + kvh * hd;
            var d = 0.0;
            for (var i = 0u; i < hd; i++) {
                d += q[q0 + i] * k[k0 + i];
            }
            s = d * p.scale;
        }
        probs[lid.x] = s;
        workgroupBarrier();
        var tile_max = NEG;
        for (var i = 0u; i < 64u; i++) {
            tile_max = max(tile_max, probs[i]);
        }
        let m_new = max(m, tile_max);
        let corr = exp(m - m_new);
        workgroupBarrier();
        var pj = 0.0;
        if (j <= pos) {
            pj = exp(s - m_new);
        }
        probs[lid.x] = pj;
        workgroupBarrier();
        var tile_sum = 0.0;
        let count = min(64u, pos + 1u - tile);
        for (var c = 0u; c < 4u; c++) {
            let dim = lid.x + c * 64u;
            if (dim < hd) {
                var a = acc[c] * corr;
                for (var jj = 0u; jj < count; jj++) {
                    a += probs[jj] * v[(tile + jj) * kv_row + kvh * hd + dim];
                }
                acc[c] = a;
            }
        }
        for (var jj = 0u; jj < count; jj++) {
            tile_sum += probs[jj];
        }
        l = l * corr + tile_sum;
        m = m_new;
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let dim = lid.x + c * 64u;
        if (dim < hd) {
            out[q0 + dim] = acc[c] / l;
        }
    }
}
