//! One 8-bit weight layout for our own kernels: int8 values four to a `u32` (little end
//! first) and one f32 scale per 32 values — Q8_0 with the scale widened. The WebGPU
//! kernels read it, and so does the CPU matrix product below, in two places where candle's
//! Q8_0 product is slow: in WebAssembly its simd128 dot product widens two f16 scales per
//! 32-value block in software (wasm has no f16 instructions), which costs about as much as
//! the block's integer work; on x86 it takes one weight row and one token at a time when
//! the rows are not a multiple of 256 wide (see `x86`).
//!
//! [`Q8Rows::matmul`] is a simd128 kernel in wasm, an AVX-512 VNNI kernel on x86 where the
//! build targets it (as `cargo build` does here: `.cargo/config.toml` builds for the CPU it
//! runs on), the simd128 kernel's AVX2 twin on other x86 and plain Rust elsewhere; [`self_check`] compares whichever is compiled with
//! an f32 reference (natively in `tests/`, in the browser through `Engine.checkCpuKernels`).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::Result;
use crate::runtime::backend::dot::dot;
use crate::runtime::backend::{self, max_rel_diff, noise, quantizations_differing, threads, transposed};

/// Values per block, each block with one scale.
pub const BLOCK: usize = 32;
/// Bytes of one GGUF Q8_0 block: an f16 scale, then 32 int8 values.
pub const Q8_0_BLOCK_BYTES: usize = 2 + BLOCK;

/// A row-major matrix in the Q8 layout.
pub struct Q8Rows {
    pub qs: Vec<u32>,
    pub scales: Vec<f32>,
    /// The kernel's copy (module `x86` or [`lanes`]), made on the first product.
    packed: std::sync::OnceLock<kernel::Packed>,
}

impl Q8Rows {
    /// Q8_0 blocks are taken exactly (f16 scale widened); other types are dequantized and
    /// quantized to 8 bits per 32 values, as ggml's `quantize_row_q8_0` does.
    pub fn from_qtensor(q: &QTensor) -> Result<Q8Rows> {
        if q.dtype() == GgmlDType::Q8_0 {
            let raw = q.data()?;
            let mut out = Q8Rows::with_capacity(raw.len() / Q8_0_BLOCK_BYTES);
            out.extend_q8_0(&raw);
            return Ok(out);
        }
        let dense = q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Q8Rows::quantize(&dense))
    }

    pub fn with_capacity(blocks: usize) -> Q8Rows {
        Q8Rows {
            qs: Vec::with_capacity(blocks * BLOCK / 4),
            scales: Vec::with_capacity(blocks),
            packed: std::sync::OnceLock::new(),
        }
    }

    /// Appends raw Q8_0 blocks.
    pub fn extend_q8_0(&mut self, raw: &[u8]) {
        for b in raw.chunks_exact(Q8_0_BLOCK_BYTES) {
            self.scales.push(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
            self.qs.extend(
                b[2..]
                    .chunks_exact(4)
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
            );
        }
    }

    pub fn quantize(values: &[f32]) -> Q8Rows {
        let mut out = Q8Rows::with_capacity(values.len() / BLOCK);
        for block in values.chunks_exact(BLOCK) {
            let (d, q) = quantize_block(block);
            out.scales.push(d);
            out.qs.extend(
                q.chunks_exact(4)
                    .map(|w| u32::from_le_bytes([0, 1, 2, 3].map(|i| w[i] as u8))),
            );
        }
        out
    }

    /// `values` quantized as ggml's Q8_0 (f16 scales): the bits of candle's repacking to
    /// Q8_0, the blocks shared out among the threads (that repacking runs on one, and was
    /// a third of loading the model).
    pub fn quantize_q8_0(values: &[f32]) -> Q8Rows {
        let blocks = values.len() / BLOCK;
        let per = blocks.div_ceil(threads::count()).max(1);
        let parts = threads::map(blocks.div_ceil(per), |i| {
            quantize_activations(&values[i * per * BLOCK..(((i + 1) * per).min(blocks)) * BLOCK])
        });
        let mut out = Q8Rows::with_capacity(blocks);
        for (qs, scales) in parts {
            out.qs.extend(
                bytemuck::cast_slice::<i8, [u8; 4]>(&qs)
                    .iter()
                    .map(|w| u32::from_le_bytes(*w)),
            );
            out.scales.extend(scales);
        }
        out
    }

    /// The values these rows hold (the CPU twin of the kernels' dequantization).
    pub fn dequantize(&self) -> Vec<f32> {
        match self.packed.get() {
            Some(p) => p.dequantize(),
            // Every block as a row of its own.
            None => self.dequantize_rows(BLOCK, 0..self.scales.len()),
        }
    }

    /// Rows `ids` of a matrix `cols` wide, dequantized.
    pub fn dequantize_rows(&self, cols: usize, ids: impl Iterator<Item = usize>) -> Vec<f32> {
        if let Some(p) = self.packed.get() {
            return p.dequantize_rows(ids);
        }
        let (w, d) = (self.values(), &self.scales);
        ids.flat_map(|r| (r * cols..(r + 1) * cols).map(|i| w[i] as f32 * d[i / BLOCK]))
            .collect()
    }

    /// The int8 values, in order.
    fn values(&self) -> &[i8] {
        bytemuck::cast_slice(&self.qs)
    }

    /// `y[t, r] = x[t] · W[r]` for every `cols`-wide row `x[t]` of `x`: the
    /// activations are quantized to 8 bits per block as candle quantizes them for its
    /// Q8_0 kernels, then each block's integer dot product is scaled by both scales.
    pub fn matmul(&self, x: &[f32], cols: usize) -> Vec<f32> {
        let [y] = Q8Rows::matmul_each([self], x, cols);
        y
    }

    /// [`Q8Rows::matmul`] of matrices that read the same input (a layer's K, V and Q; its
    /// gate and up), each product the same bits as alone: the activations are quantized
    /// once, and the threads share out all the matrices' rows in one go rather than
    /// meeting once per matrix.
    pub fn matmul_each<const N: usize>(mats: [&Q8Rows; N], x: &[f32], cols: usize) -> [Vec<f32>; N] {
        let tokens = x.len() / cols;
        #[cfg(x86_kernel)]
        if tokens >= x86::by_tokens_from() * threads::count() {
            return x86::by_tokens(mats.map(|m| m.packed(cols)), x, cols);
        }
        kernel::products(mats.map(|m| m.packed(cols)), x, cols).map(|yt| transposed(yt, tokens))
    }

    fn packed(&self, cols: usize) -> &kernel::Packed {
        self.packed.get_or_init(|| kernel::Packed::new(self, cols))
    }

    /// Rows that only the CPU will read (a `Linear`'s weights): laid out for the kernel now
    /// and the plain copy dropped, so the matrix is held once.
    pub fn for_cpu(self, cols: usize) -> Q8Rows {
        Q8Rows {
            qs: Vec::new(),
            scales: Vec::new(),
            packed: kernel::Packed::from_rows(self, cols).into(),
        }
    }
}

/// Where each of matrices of `rows` rows (or tiles) ends when they are stacked one after another.
fn ends<const N: usize>(rows: [usize; N]) -> [usize; N] {
    let mut ends = rows;
    for m in 1..N {
        ends[m] += ends[m - 1];
    }
    ends
}

/// Which of matrices stacked one after another (`ends`: where each one's rows end) holds
/// stacked row `i`, and its row there.
fn locate(ends: &[usize], i: usize) -> (usize, usize) {
    let m = ends.partition_point(|&e| e <= i);
    (m, i - start(ends, m))
}

/// Where stacked matrix `m` starts (`ends`: where each one ends).
fn start(ends: &[usize], m: usize) -> usize {
    m.checked_sub(1).map_or(0, |p| ends[p])
}

/// `stacked` cut into `N` pieces, piece `m` the values `at(m)` (in order, not overlapping);
/// the first piece is `stacked` itself, truncated.
fn unstack<const N: usize>(mut stacked: Vec<f32>, at: impl Fn(usize) -> std::ops::Range<usize>) -> [Vec<f32>; N] {
    let mut pieces = std::array::from_fn(|_| Vec::new());
    for m in (0..N).rev() {
        let at = at(m);
        stacked.truncate(at.end);
        pieces[m] = stacked.split_off(at.start);
    }
    pieces
}

/// One block's scale and values: `d = max|v| / 127`, `q = round(v / d)`; on x86 the same
/// in AVX-512 registers (`x86::quantize_block`), whose twin this is there.
#[cfg(x86_kernel)]
fn quantize_block(block: &[f32]) -> (f32, [i8; BLOCK]) {
    // SAFETY: the x86 kernel is built only for targets with AVX-512.
    unsafe { x86::quantize_block(block) }
}

#[cfg(all(not(x86_kernel), not(all(target_arch = "wasm32", target_feature = "simd128"))))]
fn quantize_block(block: &[f32]) -> (f32, [i8; BLOCK]) {
    quantize_block_plain(block)
}

/// The same in simd128 registers: LLVM left the plain loop's conversions scalar, and it
/// was half of loading the model (whose Q5_0 weights are re-quantized) and 4 % of reading
/// a prompt.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn quantize_block(block: &[f32]) -> (f32, [i8; BLOCK]) {
    use crate::runtime::backend::{max_magnitude, round_f32x4};
    use core::arch::wasm32::*;
    let block: &[f32; BLOCK] = block.try_into().expect("a block");
    // SAFETY: each load reads 4 of the block's 32 values.
    let x: [v128; 8] = std::array::from_fn(|i| unsafe { v128_load(block[4 * i..].as_ptr() as *const v128) });
    let d = max_magnitude(x.into_iter()) / 127.0;
    let inv = f32x4_splat(if d > 0.0 { 1.0 / d } else { 0.0 });
    // `round`, then `as i8`: saturating, a NaN to 0.
    let q = x.map(|v| i32x4_trunc_sat_f32x4(round_f32x4(f32x4_mul(v, inv))));
    let h: [v128; 4] = std::array::from_fn(|i| i16x8_narrow_i32x4(q[2 * i], q[2 * i + 1]));
    let b = [i8x16_narrow_i16x8(h[0], h[1]), i8x16_narrow_i16x8(h[2], h[3])];
    let mut out = [0i8; BLOCK];
    // SAFETY: two stores of 16 bytes into the 32 of `out`.
    unsafe {
        v128_store(out.as_mut_ptr() as *mut v128, b[0]);
        v128_store(out.as_mut_ptr().add(16) as *mut v128, b[1]);
    }
    (d, out)
}

fn quantize_block_plain(block: &[f32]) -> (f32, [i8; BLOCK]) {
    use crate::runtime::backend::round;
    // A compare and select rather than `f32::max`, which wasm has only with NaN rules of
    // its own (a call into the maths library) and x86 not at all: in wasm this loop
    // vectorises (on x86 LLVM kept it scalar, hence `x86::quantize_block`).
    let amax = block
        .iter()
        .map(|v| v.abs())
        .fold(0f32, |m, a| if a > m { a } else { m });
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    (d, std::array::from_fn(|i| round(block[i] * inv) as i8))
}

/// Values in blocks of 32: rounded with the f32 scale, the scale kept as f16 (exactly what
/// candle's `BlockQ8_0::from_float` stores). Activations are quantized so for the kernels.
fn quantize_activations(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut qs = Vec::with_capacity(x.len());
    let mut ds = Vec::with_capacity(x.len() / BLOCK);
    for block in x.chunks_exact(BLOCK) {
        let (d, q) = quantize_block(block);
        ds.push(half::f16::from_f32(d).to_f32());
        qs.extend(q);
    }
    (qs, ds)
}

#[cfg(x86_kernel)]
mod amx;
#[cfg(x86_kernel)]
use x86 as kernel;

#[cfg(any(not(x86_kernel), test))]
mod lanes;
#[cfg(not(x86_kernel))]
use lanes as kernel;

/// The x86 kernel (AVX-512 VNNI). Weights and activations are laid out so that 32 bytes
/// hold four bytes of each of eight blocks: four 512-bit `vpdpbusd` (two such steps each,
/// whose halves are then added) sum eight whole blocks of a weight row against a token,
/// each block in a lane of its own, and the eight sums are scaled at once (candle's Q8_0
/// dot product sums and scales one block at a time; its tiled kernels need rows a multiple
/// of 256 wide, and Gemma 3 270M's projections are 640). The weights are stored plus 128
/// (`vpdpbusd` multiplies unsigned by signed bytes) and each block's sum is corrected by
/// 128 times its activations' sum.
/// A `Linear`'s rows are repacked when it is made and the plain copy dropped
/// ([`Q8Rows::for_cpu`]); other rows are repacked on their first product.
#[cfg(x86_kernel)]
mod x86 {
    use core::arch::x86_64::*;

    use std::sync::{Mutex, OnceLock};

    use super::{amx, ends, locate, start, threads, unstack, Q8Rows, BLOCK};

    /// Blocks in a group: one per i32 lane.
    pub const LANES: usize = 8;
    /// Bytes of a group: eight registers of 32.
    const GROUP: usize = LANES * BLOCK;
    /// Weight rows multiplied together, and tokens: each register loaded serves several
    /// products, and the sums fit the sixteen registers left.
    const ROWS: usize = 4;
    const TOKENS: usize = 2;

    /// Rows of blocks in groups of eight, interleaved: register `i` of group `g` holds bytes
    /// `4i..4i+4` of blocks `8g..8g+8`, one block per lane, and the group's eight scales.
    struct Groups<T> {
        values: Vec<T>,
        scales: Vec<f32>,
        groups: usize,
    }

    impl<T: Copy> Groups<T> {
        /// From `rows` rows of `blocks` blocks (`values`, `scales`), each value mapped by
        /// `f`; a group short of blocks is padded with `pad` and scale 0.
        fn new(values: &[i8], scales: &[f32], blocks: usize, pad: T, f: impl Fn(i8) -> T) -> Groups<T> {
            let mut out = Groups::empty(scales.len() / blocks, blocks, pad);
            for (b, (block, d)) in values.chunks_exact(BLOCK).zip(scales).enumerate() {
                out.put(b, blocks, *d, block, &f);
            }
            out
        }

        /// `rows` rows of `blocks` blocks, every value `pad` and every scale 0.
        fn empty(rows: usize, blocks: usize, pad: T) -> Groups<T> {
            let groups = blocks.div_ceil(LANES);
            Groups {
                values: vec![pad; rows * groups * GROUP],
                scales: vec![0.0; rows * groups * LANES],
                groups,
            }
        }

        /// Block `b` of the rows (row `b / blocks`, its block `b % blocks`), scale `d`, into
        /// its lane of its group, each value mapped by `f`; returns its index among the scales.
        fn put(&mut self, b: usize, blocks: usize, d: f32, block: &[i8], f: impl Fn(i8) -> T) -> usize {
            let (r, b) = (b / blocks, b % blocks);
            let (g, l) = (r * self.groups + b / LANES, b % LANES);
            self.scales[g * LANES + l] = d;
            for (i, four) in block.chunks_exact(4).enumerate() {
                for (k, v) in four.iter().enumerate() {
                    self.values[g * GROUP + i * 32 + l * 4 + k] = f(*v);
                }
            }
            g * LANES + l
        }

        fn row(&self, r: usize) -> (&[T], &[f32]) {
            let g = self.groups;
            (
                &self.values[r * g * GROUP..][..g * GROUP],
                &self.scales[r * g * LANES..][..g * LANES],
            )
        }
    }

    /// A weight matrix in the kernel's layout.
    pub struct Packed {
        weights: Groups<u8>,
        pub rows: usize,
        pub cols: usize,
        /// The AMX kernel's copy, made on its first product.
        amx: OnceLock<amx::Weights>,
    }

    impl Packed {
        pub fn from_rows(q: Q8Rows, cols: usize) -> Packed {
            Packed::new(&q, cols)
        }

        pub fn new(q: &Q8Rows, cols: usize) -> Packed {
            let blocks = cols / BLOCK;
            Packed {
                weights: Groups::new(q.values(), &q.scales, blocks, 128, |v| (v as u8) ^ 0x80),
                rows: q.scales.len() / blocks,
                cols,
                amx: OnceLock::new(),
            }
        }

        pub fn dequantize(&self) -> Vec<f32> {
            self.dequantize_rows(0..self.rows)
        }

        /// Rows `ids`, dequantized (what the plain layout's rows hold).
        pub fn dequantize_rows(&self, ids: impl Iterator<Item = usize>) -> Vec<f32> {
            let mut out = Vec::new();
            for r in ids {
                for b in 0..self.cols / BLOCK {
                    let (values, d) = self.block(r, b);
                    out.extend(values.iter().map(|&v| v as f32 * d));
                }
            }
            out
        }

        /// Block `b` of row `r`: its values and scale.
        pub fn block(&self, r: usize, b: usize) -> ([i8; BLOCK], f32) {
            let (values, scales) = self.weights.row(r);
            let (g, l) = (b / LANES, b % LANES);
            let values = std::array::from_fn(|i| (values[g * GROUP + i / 4 * 32 + l * 4 + i % 4] ^ 0x80) as i8);
            (values, scales[g * LANES + l])
        }

        fn amx(&self) -> &amx::Weights {
            self.amx.get_or_init(|| amx::Weights::new(self))
        }
    }

    /// Activations ready for [`tile`]: quantized, in groups, and each block's offset
    /// correction (128 · Σ of its values: what the weights' +128 adds to its sum).
    struct Activations {
        xs: Groups<i8>,
        offsets: Vec<i32>,
        tokens: usize,
    }

    impl Activations {
        /// Each block quantized as [`quantize_activations`] does, written straight into its
        /// lanes of its group, with its offset from its own sum.
        fn new(x: &[f32], cols: usize) -> Activations {
            let blocks = cols / BLOCK;
            let tokens = x.len() / cols;
            let mut xs = Groups::empty(tokens, blocks, 0i8);
            let mut offsets = vec![0i32; xs.scales.len()];
            for (b, block) in x.chunks_exact(BLOCK).enumerate() {
                let (d, q) = super::quantize_block(block);
                let at = xs.put(b, blocks, half::f16::from_f32(d).to_f32(), &q, |v| v);
                offsets[at] = 128 * q.iter().map(|&v| v as i32).sum::<i32>();
            }
            Activations { xs, offsets, tokens }
        }

        fn token(&self, t: usize) -> (&[i8], &[f32], &[i32]) {
            let (v, d) = self.xs.row(t);
            (
                v,
                d,
                &self.offsets[t * self.xs.groups * LANES..][..self.xs.groups * LANES],
            )
        }
    }

    /// `emit(r, t, W[first + r] · x[t])` for the `ROWS` weight rows from `first` (past the
    /// last row, the last row again) and every token, two tokens at a time, then one. A
    /// product is the same bits whichever tokens share its tile.
    fn row_tile(w: &Packed, first: usize, x: &Activations, mut emit: impl FnMut(usize, usize, f32)) {
        let rows: [_; ROWS] = std::array::from_fn(|i| w.weights.row((first + i).min(w.rows - 1)));
        for t0 in (0..x.tokens).step_by(TOKENS) {
            // SAFETY: this module is compiled only for targets with the features `tile` enables.
            match x.tokens - t0 {
                1 => {
                    let y = unsafe { tile(rows, [x.token(t0)], x.xs.groups) };
                    (0..ROWS).for_each(|r| emit(r, t0, y[r][0]));
                }
                _ => {
                    let y = unsafe { tile(rows, [x.token(t0), x.token(t0 + 1)], x.xs.groups) };
                    for (r, y) in y.iter().enumerate() {
                        (0..TOKENS).for_each(|t| emit(r, t0 + t, y[t]));
                    }
                }
            }
        }
    }

    /// Tokens per thread from which a product is shared out by tokens rather than by weight
    /// rows ([`by_tokens`]): on AMX, a whole span of its tiles.
    pub fn by_tokens_from() -> usize {
        match amx::available() {
            true => amx::SPAN,
            false => 8,
        }
    }

    /// `yt[r · tokens + t] = W[r] · x[t]` for each matrix; the threads take runs of tiles of
    /// rows of all the matrices (on AMX, from [`amx::FROM_TOKENS`] tokens, spans of them).
    pub fn products<const N: usize>(ws: [&Packed; N], x: &[f32], cols: usize) -> [Vec<f32>; N] {
        assert!(
            ws.iter().all(|w| w.cols == cols),
            "a product of another width than the matrix's"
        );
        let tokens = x.len() / cols;
        if tokens >= amx::FROM_TOKENS && amx::available() {
            let (tiled, x) = (ws.map(Packed::amx), amx::Tokens::new(x, cols));
            return by_row_tiles(ws, tokens, amx::SPAN, |m, r0, out| {
                let rows = amx::SPAN.min(ws[m].rows - r0);
                x.times_rows(tiled[m], r0, &mut out[..rows * tokens]);
            });
        }
        let x = Activations::new(x, cols);
        by_row_tiles(ws, tokens, ROWS, |m, r0, out| {
            row_tile(ws[m], r0, &x, |r, t, y| out[r * tokens + t] = y);
        })
    }

    /// `yt[r · tokens + t]` for each matrix, the threads taking runs of tiles of `tile` rows
    /// of all the matrices: `fill(m, r0, out)` writes rows `r0..r0 + tile` of matrix `m`
    /// (`out`: as `yt`, past its last row ignored).
    fn by_row_tiles<const N: usize>(
        ws: [&Packed; N],
        tokens: usize,
        tile: usize,
        fill: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) -> [Vec<f32>; N] {
        let ends = ends(ws.map(|w| w.rows.div_ceil(tile)));
        let mut yt = vec![0f32; ends[N - 1] * tile * tokens];
        threads::rows_mut(&mut yt, tile * tokens, |i, out| {
            let (m, t) = locate(&ends, i);
            fill(m, t * tile, out);
        });
        unstack(yt, |m| {
            let first = start(&ends, m) * tile * tokens;
            first..first + ws[m].rows * tokens
        })
    }

    /// `W[r] · x` for every row of `w`, one token on the VNNI kernel alone (what the AMX
    /// kernel's products are checked against).
    #[cfg(test)]
    pub fn rows_of(w: &Packed, x: &[f32], cols: usize) -> Vec<f32> {
        let x = Activations::new(x, cols);
        let mut y = vec![0f32; w.rows.next_multiple_of(ROWS)];
        for first in (0..w.rows).step_by(ROWS) {
            row_tile(w, first, &x, |r, _, v| y[first + r] = v);
        }
        y.truncate(w.rows);
        y
    }

    /// `y[t · rows + r] = W[r] · x[t]` for each matrix; the threads take runs of tokens, each
    /// quantizing its own once for all the matrices and writing its rows of each `y` in
    /// place. For many tokens: every thread reads all the weights (from the shared cache),
    /// and nothing is left for one thread to do alone before or after (the activations, the
    /// transpose of `yt`).
    pub fn by_tokens<const N: usize>(ws: [&Packed; N], x: &[f32], cols: usize) -> [Vec<f32>; N] {
        assert!(
            ws.iter().all(|w| w.cols == cols),
            "a product of another width than the matrix's"
        );
        let tokens = x.len() / cols;
        let per = tokens.div_ceil(threads::count()).max(1);
        let runs = tokens.div_ceil(per);
        // Whole runs; the last one's missing tokens are cut off after.
        let mut ys = ws.map(|w| vec![0f32; runs * per * w.rows]);
        let tiled = amx::available().then(|| ws.map(Packed::amx));
        {
            // Run k's rows of every `y`, taken once by the one task that writes them.
            let mut parts: Vec<Vec<&mut [f32]>> = (0..runs).map(|_| Vec::with_capacity(N)).collect();
            for (y, w) in ys.iter_mut().zip(ws) {
                for (part, run) in parts.iter_mut().zip(y.chunks_exact_mut(per * w.rows)) {
                    part.push(run);
                }
            }
            let parts: Vec<Mutex<Vec<&mut [f32]>>> = parts.into_iter().map(Mutex::new).collect();
            threads::run(runs, |run| {
                let mut ys = parts[run].lock().expect("each run is written by one task");
                let x = &x[run * per * cols..];
                let x = &x[..x.len().min(per * cols)];
                if let Some(tiled) = &tiled {
                    let x = amx::Tokens::new(x, cols);
                    for ((w, y), rows) in tiled.iter().zip(ys.iter_mut()).zip(ws.map(|w| w.rows)) {
                        x.times(w, &mut y[..x.len() * rows]);
                    }
                    return;
                }
                let x = Activations::new(x, cols);
                for (w, y) in ws.iter().zip(ys.iter_mut()) {
                    for first in (0..w.rows).step_by(ROWS) {
                        let n = ROWS.min(w.rows - first);
                        row_tile(w, first, &x, |r, t, v| {
                            if r < n {
                                y[t * w.rows + first + r] = v;
                            }
                        });
                    }
                }
            });
        }
        for (y, w) in ys.iter_mut().zip(ws) {
            y.truncate(tokens * w.rows);
        }
        ys
    }

    /// The products of a tile of weight rows with a pair of tokens (values, scales, offsets).
    #[target_feature(enable = "avx2,fma,avx512f,avx512vnni,avx512vl")]
    fn tile<const T: usize>(
        w: [(&[u8], &[f32]); ROWS],
        x: [(&[i8], &[f32], &[i32]); T],
        groups: usize,
    ) -> [[f32; T]; ROWS] {
        for (wv, wd) in w {
            assert!(wv.len() == groups * GROUP && wd.len() == groups * LANES);
        }
        for (xv, xd, xo) in x {
            assert!(xv.len() == groups * GROUP && xd.len() == groups * LANES && xo.len() == groups * LANES);
        }
        let mut acc = [[_mm256_setzero_ps(); T]; ROWS];
        for g in 0..groups {
            let mut wide = [[_mm512_setzero_si512(); T]; ROWS];
            for i in (0..LANES).step_by(2) {
                let at = g * GROUP + i * 32;
                // SAFETY: `at + 64 ≤ groups · GROUP`, the length of every row (asserted above).
                let wv = w.map(|(v, _)| unsafe { _mm512_loadu_si512(v.as_ptr().add(at) as *const __m512i) });
                for t in 0..T {
                    // SAFETY: as above.
                    let xv = unsafe { _mm512_loadu_si512(x[t].0.as_ptr().add(at) as *const __m512i) };
                    for r in 0..ROWS {
                        wide[r][t] = _mm512_dpbusd_epi32(wide[r][t], wv[r], xv);
                    }
                }
            }
            // Two 32-byte steps per instruction, half the `vpdpbusd`s; lanes l and l + 8 then
            // hold two halves of block l's sum.
            let sums =
                wide.map(|w| w.map(|v| _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))));
            let at = g * LANES;
            // SAFETY: `at + 8 ≤ groups · LANES`, the length of every scale and offset row.
            let load = |v: &[f32]| unsafe { _mm256_loadu_ps(v.as_ptr().add(at)) };
            for t in 0..T {
                // SAFETY: as above.
                let offset = unsafe { _mm256_loadu_si256(x[t].2.as_ptr().add(at) as *const __m256i) };
                let dx = load(x[t].1);
                for r in 0..ROWS {
                    let s = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums[r][t], offset));
                    acc[r][t] = _mm256_fmadd_ps(s, _mm256_mul_ps(load(w[r].1), dx), acc[r][t]);
                }
            }
        }
        acc.map(|a| a.map(|a| hsum(a)))
    }

    /// [`super::quantize_block`] on one block: the largest magnitude (a NaN passed over, as
    /// the plain loop's compare does), then each value times the inverse scale rounded half
    /// away from zero (`trunc`, plus one where the rest is half or more; a NaN to 0, as `as
    /// i8` takes it).
    #[target_feature(enable = "avx512f")]
    pub fn quantize_block(block: &[f32]) -> (f32, [i8; BLOCK]) {
        let block: &[f32; BLOCK] = block.try_into().expect("a block");
        // SAFETY: each load reads 16 of the block's 32 values.
        let x = [0, 16].map(|i| unsafe { _mm512_loadu_ps(block[i..].as_ptr()) });
        // `max` returns its second operand where either is NaN.
        let m = _mm512_max_ps(_mm512_abs_ps(x[0]), _mm512_setzero_ps());
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x[1]), m));
        let d = amax / 127.0;
        let inv = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let mut q = [0i8; BLOCK];
        for (x, q) in x.into_iter().zip(q.chunks_exact_mut(16)) {
            let y = _mm512_mul_ps(x, inv);
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            let half_or_more =
                _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(_mm512_sub_ps(y, t)), _mm512_set1_ps(0.5));
            let sign = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(i32::MIN));
            let one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.0)), sign));
            let r = _mm512_mask_add_ps(t, half_or_more, t, one);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(y, y);
            let n = _mm512_maskz_cvttps_epi32(!nan, r);
            // SAFETY: 16 bytes of `q`.
            unsafe { _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, _mm512_cvtsepi32_epi8(n)) };
        }
        (d, q)
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
    }
}

/// Blocks for checking a quantization against the plain one: the shared cases, and values
/// whose quotient falls on a half or just beside one.
fn quantization_cases() -> Vec<Vec<f32>> {
    let mut blocks = backend::quantization_cases(BLOCK);
    blocks.push((0..BLOCK).map(|i| (i as f32 - 16.0) * 127.0 / 16.0 / 2.0).collect());
    blocks.push((0..BLOCK).map(|i| (i as f32 - 16.0) * 0.5 + 1e-7).collect());
    blocks
}

/// The x86 kernel's quantization is its plain twin's, value for value.
#[cfg(all(test, x86_kernel))]
#[test]
fn x86_quantization_is_the_plain_one() {
    for block in &quantization_cases() {
        // SAFETY: the x86 kernel is built only for targets with AVX-512.
        let got = unsafe { x86::quantize_block(block) };
        assert_eq!(got, quantize_block_plain(block), "{block:?}");
    }
}

/// [`Q8Rows::matmul_each`] of two matrices against f32 products of the same quantized
/// values, on odd shapes: `(case, largest difference relative to the largest value)`. The
/// sums differ only in f32 rounding order, so anything above 1e-5 is a wrong index or a
/// lost term. First, how many blocks this build quantizes otherwise than the plain loop
/// (any is a bug).
pub fn self_check() -> Vec<(String, f32)> {
    let differ = quantizations_differing(&quantization_cases(), quantize_block, quantize_block_plain);
    let quantization = ("quantization against the plain loop".to_string(), differ as f32);
    let products = [(1, 64, 3), (5, 640, 17), (9, 96, 40), (67, 96, 9)]
        .into_iter()
        .map(|(tokens, cols, rows)| {
            // Two matrices of one input, as a layer's projections are multiplied.
            let ws = [rows, rows + 3].map(|rows| Q8Rows::quantize(&noise(rows * cols, 11 + rows as u64, 1.0)));
            let x = noise(tokens * cols, 12, 3.0);
            let got = Q8Rows::matmul_each([&ws[0], &ws[1]], &x, cols);
            let (xq, xd) = quantize_activations(&x);
            let xs: Vec<f32> = xq.iter().enumerate().map(|(i, v)| *v as f32 * xd[i / BLOCK]).collect();
            let rel = ws.iter().zip(&got).fold(0f32, |worst, (w, got)| {
                let (w, rows) = (w.dequantize(), w.scales.len() / (cols / BLOCK));
                let want: Vec<f32> = (0..tokens * rows)
                    .map(|i| (i / rows, i % rows))
                    .map(|(t, r)| dot(&w[r * cols..(r + 1) * cols], &xs[t * cols..(t + 1) * cols]))
                    .collect();
                worst.max(max_rel_diff(got, &want))
            });
            (format!("{tokens} tokens × {rows}×{cols} and {}×{cols}", rows + 3), rel)
        });
    std::iter::once(quantization).chain(products).collect()
}
