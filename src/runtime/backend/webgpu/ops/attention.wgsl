// Causal grouped-query attention over the KV cache, one workgroup per (head, query token),
// keys in tiles of TILE with an online softmax, so any context length fits in workgroup
// memory. Sliding-window layers see only the last `window` positions (0: all).
// WORKGROUP invocations: four share each key's dot product (in vec4s; head_dim is a multiple
// of 4), and invocation d owns output dim d (head_dim ≤ WORKGROUP). A decode step runs only
// `heads` workgroups, so its time is the length of each invocation's serial work, which
// this layout cuts to about a quarter of one invocation per key with four dims each.
// Split (`splits` > 1, when heads × tokens are too few workgroups to fill a GPU): workgroup
// z takes only keys `chunk·z …` of the token's range and leaves its running max, sum and
// unnormalised output for attention_combine.wgsl; a decode step's serial work is then one
// chunk instead of the whole context.

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    first_pos: u32,
    window: u32,
    scale: f32,
    /// Keys per split (a multiple of TILE) and the number of splits.
    chunk: u32,
    splits: u32,
    /// The first query's row in `q` and `out`: a batch's sequences share those buffers.
    q_first: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// WORKGROUP (the largest head_dim) and TILE (WORKGROUP / 4 keys) come from attention.rs.
const NEG: f32 = -3.0e38;
var<workgroup> partial: array<f32, WORKGROUP>;
var<workgroup> probs: array<f32, TILE>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let hd4 = hd / 4u;
    let kvh = h / (p.heads / p.kv_heads);
    let kv_row = p.kv_heads * hd;
    let pos = p.first_pos + t;
    var lo = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        lo = pos + 1u - p.window;
    }
    // This workgroup's keys, lo..=end (none when a short range leaves a split empty).
    var end = pos;
    if (p.splits > 1u) {
        lo += wid.z * p.chunk;
        end = min(pos, lo + p.chunk - 1u);
    }
    let q0 = ((p.q_first + t) * p.heads + h) * hd4;
    let key = lid.x / 4u;
    let quarter = lid.x % 4u;
    let dim = lid.x;
    var acc = 0.0;
    var m = NEG;
    var l = 0.0;
    for (var tile = lo; tile <= end; tile += TILE) {
        // Scores: a quarter of a dot product per invocation, summed by the key's first.
        let j = tile + key;
        var d = 0.0;
        if (j <= end) {
            let k0 = (j * kv_row + kvh * hd) / 4u;
            for (var i = quarter; i < hd4; i += 4u) {
                d += dot(q[q0 + i], k[k0 + i]);
            }
        }
        partial[lid.x] = d;
        workgroupBarrier();
        if (lid.x < TILE) {
            var s = NEG;
            if (tile + lid.x <= end) {
                let b = lid.x * 4u;
                s = (partial[b] + partial[b + 1u] + partial[b + 2u] + partial[b + 3u]) * p.scale;
            }
            probs[lid.x] = s;
        }
        workgroupBarrier();
        var tile_max = NEG;
        for (var i = 0u; i < TILE; i++) {
            tile_max = max(tile_max, probs[i]);
        }
        let m_new = max(m, tile_max);
        let corr = exp(m - m_new);
        workgroupBarrier();
        if (lid.x < TILE) {
            var e = 0.0;
            if (tile + lid.x <= end) {
                e = exp(probs[lid.x] - m_new);
            }
            probs[lid.x] = e;
        }
        workgroupBarrier();
        let count = min(TILE, end + 1u - tile);
        var tile_sum = 0.0;
        var a = acc * corr;
        for (var jj = 0u; jj < count; jj++) {
            let pj = probs[jj];
            tile_sum += pj;
            if (dim < hd) {
                a += pj * v[(tile + jj) * kv_row + kvh * hd + dim];
            }
        }
        acc = a;
        l = l * corr + tile_sum;
        m = m_new;
        workgroupBarrier();
    }
    if (p.splits == 1u) {
        if (dim < hd) {
            out[((p.q_first + t) * p.heads + h) * hd + dim] = acc / l;
        }
        return;
    }
    let row = t * p.heads + h;
    // A split's part: [max, sum, output × head_dim].
    let part = (row * p.splits + wid.z) * (hd + 2u);
    if (dim < hd) {
        out[part + 2u + dim] = acc;
    }
    if (lid.x == 0u) {
        out[part] = m;
        out[part + 1u] = l;
    }
}
