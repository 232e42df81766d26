// y[t, o] = Σ_i x[t, i] · W[o, i] for a Q8_0 matrix W (one chunk of its rows).
// W is stored GPU-friendly: int8 values packed four to a u32, row-major, and one f32
// scale per 32-value block. Two layouts, by the number of tokens:
// - Prefill: one invocation computes one output row for up to TOKENS tokens, so one
//   unpacked weight feeds several products (each weight is read once per TOKENS tokens).
//   No workgroup memory and no barriers: software adapters (SwiftShader, lavapipe) run
//   barrier-free kernels many times faster.
// - Decode (up to TOKENS tokens: one sequence's step, or a batch's): SLICES invocations
//   share a row, each taking every SLICES-th block against every token, so neighbours read
//   neighbouring blocks, a row is SLICES short loops, not one long one, and each block is
//   read once per step; one barrier, then one invocation per row sums it for each token.
//   One invocation per row left a 640-row projection 10 workgroups on a GPU, each walking
//   its row alone.
// Indexed mode computes only the rows listed in `ids` (the constrained LM head): output k
// is row ids[k], written by the chunk that holds that row.

struct Params {
    rows: u32,      // rows in this chunk
    cols: u32,      // input width (a multiple of 32)
    row0: u32,      // first row of this chunk in the whole matrix
    outputs: u32,   // outputs per token: all rows, or the number of ids
    indexed: u32,
    _pad: u32,
    first: u32,     // first output this dispatch covers (a chunk's row0 without ids)
    tokens: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// WORKGROUP, TOKENS and SLICES (decode: invocations per row, WORKGROUP / SLICES rows per
// workgroup) come from matmul_q8.rs.

var<workgroup> partial: array<f32, WORKGROUP * TOKENS>;

fn unpack(word: u32) -> vec4<f32> {
    let w = bitcast<i32>(word);
    return vec4<f32>(f32((w << 24u) >> 24u), f32((w << 16u) >> 24u), f32((w << 8u) >> 24u), f32(w >> 24u));
}

// Output k's row of W, if this chunk holds it (else p.rows).
fn chunk_row(k: u32) -> u32 {
    if (k >= p.outputs) {
        return p.rows;
    }
    var row = k;
    if (p.indexed == 1u) {
        row = ids[k];
    }
    if (row < p.row0 || row >= p.row0 + p.rows) {
        return p.rows;
    }
    return row - p.row0;
}

// The 32 weights of block b of row r, unpacked.
fn block(r: u32, b: u32) -> array<vec4<f32>, 8> {
    let q0 = (r * (p.cols / 32u) + b) * 2u; // two vec4<u32> (32 int8) per block
    let lo = qs[q0];
    let hi = qs[q0 + 1u];
    return array<vec4<f32>, 8>(unpack(lo.x), unpack(lo.y), unpack(lo.z), unpack(lo.w),
                               unpack(hi.x), unpack(hi.y), unpack(hi.z), unpack(hi.w));
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = wid.x + wid.y * nwg.x;
    if (p.tokens <= TOKENS) {
        decode(group, lid.x);
        return;
    }
    let k = p.first + group * WORKGROUP + lid.x;
    let r = chunk_row(k);
    if (r == p.rows) {
        return;
    }
    let t0 = wid.z * TOKENS;
    let n = min(TOKENS, p.tokens - t0);
    let blocks = p.cols / 32u;
    let xrow = p.cols / 4u; // vec4s per token
    var sum: array<f32, TOKENS>;
    for (var b = 0u; b < blocks; b++) {
        let w = block(r, b);
        let d = scales[r * blocks + b];
        for (var tt = 0u; tt < n; tt++) {
            let x0 = (t0 + tt) * xrow + b * 8u;
            var acc = 0.0;
            for (var j = 0u; j < 8u; j++) {
                acc += dot(w[j], x[x0 + j]);
            }
            sum[tt] += acc * d;
        }
    }
    for (var tt = 0u; tt < n; tt++) {
        y[(t0 + tt) * p.outputs + k] = sum[tt];
    }
}

fn decode(group: u32, lane: u32) {
    let k = p.first + group * (WORKGROUP / SLICES) + lane / SLICES;
    let r = chunk_row(k);
    let blocks = p.cols / 32u;
    let xrow = p.cols / 4u; // vec4s per token
    var sum: array<f32, TOKENS>;
    if (r < p.rows) {
        for (var b = lane % SLICES; b < blocks; b += SLICES) {
            let w = block(r, b);
            let d = scales[r * blocks + b];
            for (var t = 0u; t < p.tokens; t++) {
                let x0 = t * xrow + b * 8u;
                var acc = 0.0;
                for (var j = 0u; j < 8u; j++) {
                    acc += dot(w[j], x[x0 + j]);
                }
                sum[t] += acc * d;
            }
        }
    }
    for (var t = 0u; t < p.tokens; t++) {
        partial[t * WORKGROUP + lane] = sum[t];
    }
    workgroupBarrier();
    if (r < p.rows && lane % SLICES == 0u) {
        for (var t = 0u; t < p.tokens; t++) {
            var total = 0.0;
            for (var j = 0u; j < SLICES; j++) {
                total += partial[t * WORKGROUP + lane + j];
            }
            y[t * p.outputs + k] = total;
        }
    }
}
