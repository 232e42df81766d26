// W' = W + B·A for a Q8 matrix W (one chunk of its rows, layout as in matmul_q8.wgsl),
// quantized again to the same layout: a LoRA adapter merged once when it is set, so that
// a forward runs the plain matmuls and no side path (the side path cost two small
// dispatches per projection, over a quarter of a decode step on a data-centre GPU).
// One invocation per 32-value block; it rounds as the CPU's Q8 quantizer does:
// d = max|w| / 127, q = w / d rounded half away from zero.

struct Params {
    rows: u32,  // rows in this chunk
    cols: u32,  // a multiple of 32
    row0: u32,  // first row of this chunk in the whole matrix (B's row)
    rank: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> a: array<f32>;        // [rank, cols]
@group(0) @binding(4) var<storage, read> b: array<f32>;        // [all rows, rank]
@group(0) @binding(5) var<storage, read_write> qs_out: array<u32>;
@group(0) @binding(6) var<storage, read_write> scales_out: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let blocks = p.cols / 32u;
    let i = (wid.x + wid.y * nwg.x) * WORKGROUP + lid.x; // block index in the chunk
    if (i >= p.rows * blocks) {
        return;
    }
    let c0 = (i % blocks) * 32u;
    let brow = (p.row0 + i / blocks) * p.rank;
    let d = scales[i];
    var w: array<f32, 32>;
    for (var j = 0u; j < 32u; j++) {
        let word = bitcast<i32>(qs[i * 8u + j / 4u]);
        let shift = 24u - 8u * (j % 4u);
        w[j] = f32((word << shift) >> 24u) * d;
    }
    for (var k = 0u; k < p.rank; k++) {
        let bk = b[brow + k];
        let arow = k * p.cols + c0;
        for (var j = 0u; j < 32u; j++) {
            w[j] += bk * a[arow + j];
        }
    }
    var amax = 0.0;
    for (var j = 0u; j < 32u; j++) {
        amax = max(amax, abs(w[j]));
    }
    let dn = amax / 127.0;
    var inv = 0.0;
    if (dn > 0.0) {
        inv = 1.0 / dn;
    }
    for (var word = 0u; word < 8u; word++) {
        var packed = 0u;
        for (var byte = 0u; byte < 4u; byte++) {
            let v = w[word * 4u + byte] * inv;
            let q = i32(sign(v) * floor(abs(v) + 0.5));
            packed |= (bitcast<u32>(q) & 0xffu) << (8u * byte);
        }
        qs_out[i * 8u + word] = packed;
    }
    scales_out[i] = dn;
}
