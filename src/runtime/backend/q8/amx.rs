//! Q8 products of many tokens on AMX, the tile units of Intel Xeons since Sapphire Rapids:
//! one `tdpbssd` multiplies 16 tokens by 16 weight rows over a 32-value block (8 192
//! products; AVX-512 VNNI takes 128 instructions for as many). Each block's integer sums
//! are then scaled and added as the VNNI kernel adds them (block `b` in lane `b mod 8`,
//! blocks in order, the lanes summed in the order of its `hsum`), so every product is the
//! same bits as there: a window's answer does not depend on how many tokens share a step.

use core::arch::asm;
use core::arch::x86_64::*;
use std::sync::OnceLock;

use super::x86::{Packed, LANES};
use super::{quantize_activations, BLOCK};

/// Tokens, and weight rows, of one tile.
const TILE: usize = 16;
/// Bytes of a tile of weights over one block (`tdpbssd`'s B operand): 8 rows of 64 bytes,
/// row `k` holding values `4k..4k + 4` of each of the 16 weight rows.
const B_BYTES: usize = TILE * BLOCK;
/// Each step multiplies two tiles of tokens by two tiles of weight rows.
pub const SPAN: usize = 2 * TILE;

/// Tokens from which a product runs here: below, most of a 16-token tile would be padding.
pub const FROM_TOKENS: usize = 8;

/// Whether the CPU has AMX (tiles and int8) and the OS lets this process use it.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let leaf = __cpuid_count(7, 0);
        leaf.edx & (1 << 24) != 0 && leaf.edx & (1 << 25) != 0 && permitted()
    })
}

/// Linux gives a process the tile registers when it asks for them
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`).
#[cfg(target_os = "linux")]
fn permitted() -> bool {
    const SYS_ARCH_PRCTL: isize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a system call that only changes which register state the kernel saves.
    unsafe {
        asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

/// Other systems would need their own request; there the VNNI kernel does the work.
#[cfg(not(target_os = "linux"))]
fn permitted() -> bool {
    false
}

/// A weight matrix as B tiles: for each tile of 16 rows and each block, [`B_BYTES`] of
/// values, then the 16 rows' scales; rows past the last (to a whole [`SPAN`]) are zeros.
pub struct Weights {
    values: Vec<i8>,
    scales: Vec<f32>,
    rows: usize,
    blocks: usize,
}

impl Weights {
    pub fn new(w: &Packed) -> Weights {
        let blocks = w.cols / BLOCK;
        let tiles = w.rows.div_ceil(SPAN) * 2;
        let mut values = vec![0i8; tiles * blocks * B_BYTES];
        let mut scales = vec![0f32; tiles * blocks * TILE];
        for r in 0..w.rows {
            let (tile, n) = (r / TILE, r % TILE);
            for b in 0..blocks {
                let (v, d) = w.block(r, b);
                let at = tile * blocks + b;
                scales[at * TILE + n] = d;
                for (i, v) in v.into_iter().enumerate() {
                    values[at * B_BYTES + i / 4 * 64 + n * 4 + i % 4] = v;
                }
            }
        }
        Weights {
            values,
            scales,
            rows: w.rows,
            blocks,
        }
    }
}

/// Tokens quantized as the VNNI kernel quantizes them, row after row, padded with zeros to
/// a whole tile.
pub struct Tokens {
    values: Vec<i8>,
    scales: Vec<f32>,
    tokens: usize,
}

impl Tokens {
    pub fn new(x: &[f32], cols: usize) -> Tokens {
        let tokens = x.len() / cols;
        let (mut values, mut scales) = quantize_activations(x);
        let padded = tokens.next_multiple_of(TILE);
        values.resize(padded * cols, 0);
        scales.resize(padded * cols / BLOCK, 0.0);
        Tokens { values, scales, tokens }
    }

    pub fn len(&self) -> usize {
        self.tokens
    }

    /// `y[t · rows + r] = W[r] · x[t]`.
    pub fn times(&self, w: &Weights, y: &mut [f32]) {
        assert!(y.len() == self.tokens * w.rows);
        let mut lanes = Lanes::new();
        for r0 in (0..w.rows).step_by(SPAN) {
            let n = SPAN.min(w.rows - r0);
            for t0 in (0..self.tokens).step_by(SPAN) {
                self.span(w, r0, t0, &mut lanes, |t, sums| {
                    y[t * w.rows + r0..][..n].copy_from_slice(&sums[..n]);
                });
            }
        }
    }

    /// `yt[r · tokens + t] = W[r0 + r] · x[t]` for the rows of `yt` (at most [`SPAN`]).
    pub fn times_rows(&self, w: &Weights, r0: usize, yt: &mut [f32]) {
        let n = yt.len() / self.tokens;
        assert!(n <= SPAN && r0 + n <= w.rows && yt.len() == n * self.tokens);
        let mut lanes = Lanes::new();
        for t0 in (0..self.tokens).step_by(SPAN) {
            self.span(w, r0, t0, &mut lanes, |t, sums| {
                for (r, v) in sums[..n].iter().enumerate() {
                    yt[r * self.tokens + t] = *v;
                }
            });
        }
    }

    /// The products of weight rows `r0..r0 + SPAN` with tokens `t0..t0 + SPAN`: for each
    /// token there is, `emit(t, sums)` with its sums for the rows (past the last: zeros).
    fn span(&self, w: &Weights, r0: usize, t0: usize, lanes: &mut Lanes, mut emit: impl FnMut(usize, &[f32; SPAN])) {
        let blocks = w.blocks;
        let cols = blocks * BLOCK;
        assert!(self.scales.len() * BLOCK == self.values.len() && self.values.len().is_multiple_of(TILE * cols));
        let tile = r0 / TILE;
        // One tile of tokens or two: the values end with the padded tokens.
        let halves = match self.tokens - t0 > TILE {
            true => 2,
            false => 1,
        };
        lanes.0.fill(0.0);
        // Lane after lane, each lane's blocks in order.
        for (l, acc) in lanes.0.chunks_exact_mut(SPAN * SPAN).enumerate() {
            for b in (l..blocks).step_by(LANES) {
                let a = &self.values[t0 * cols + b * BLOCK..][..(halves * TILE - 1) * cols + BLOCK];
                let at = |tile: usize| (tile * blocks + b) * B_BYTES;
                let bt = [&w.values[at(tile)..][..B_BYTES], &w.values[at(tile + 1)..][..B_BYTES]];
                // SAFETY: AMX is configured (`Lanes::new`); `a` holds the tiles' 16 or 32 rows of
                // 32 bytes `cols` apart (its length).
                unsafe { multiply(a.as_ptr(), cols, bt, halves, &mut lanes.1) };
                let dw = [tile, tile + 1].map(|t| &w.scales[(t * blocks + b) * TILE..][..TILE]);
                let dx = |t: usize| self.scales[(t0 + t) * blocks + b];
                // SAFETY: avx512f is a feature of every CPU with AMX.
                unsafe { scale(&lanes.1, halves, dw, dx, acc) };
            }
        }
        let mut sums = [0f32; SPAN];
        for t in 0..SPAN.min(self.tokens - t0) {
            // SAFETY: as above.
            unsafe { add_lanes(&lanes.0, t, &mut sums) };
            emit(t0 + t, &sums);
        }
    }
}

/// A span's sums of the blocks of each lane (`[l][t][r]`), and one block's integer sums
/// (`[tile][t][r]`, the tiles A₀B₀, A₀B₁, A₁B₀, A₁B₁).
struct Lanes(Vec<f32>, [i32; 4 * TILE * TILE]);

impl Lanes {
    fn new() -> Lanes {
        assert!(available(), "AMX products on a CPU without AMX");
        // SAFETY: the CPU has AMX (asserted). The configuration is the same for every product,
        // so it is loaded where a thread's products start.
        unsafe { configure() };
        Lanes(vec![0f32; LANES * SPAN * SPAN], [0; 4 * TILE * TILE])
    }
}

/// Token `t`'s sums over the lanes, added in the order of the VNNI kernel's `hsum` (the
/// upper four lanes onto the lower, then pairs).
#[target_feature(enable = "avx512f")]
fn add_lanes(lanes: &[f32], t: usize, out: &mut [f32; SPAN]) {
    assert!(lanes.len() == LANES * SPAN * SPAN && t < SPAN);
    for half in 0..SPAN / TILE {
        // SAFETY: 16 values of lane l's row t (size asserted), and of `out`.
        let lane = |l: usize| unsafe { _mm512_loadu_ps(lanes[(l * SPAN + t) * SPAN + half * TILE..].as_ptr()) };
        let add = |a, b| _mm512_add_ps(a, b);
        let sum = add(
            add(add(lane(0), lane(4)), add(lane(2), lane(6))),
            add(add(lane(1), lane(5)), add(lane(3), lane(7))),
        );
        unsafe { _mm512_storeu_ps(out[half * TILE..].as_mut_ptr(), sum) };
    }
}

/// The tile registers' shapes: tmm0–3 sums (16 × 16 i32), tmm4–5 tokens (16 × 32 i8),
/// tmm6–7 weights (8 × 64 i8). candle's AMX kernel keeps the same shapes configured on the
/// threads it has run on, so neither kernel changes what the other expects.
#[target_feature(enable = "avx512f")]
unsafe fn configure() {
    let mut cfg = [0u8; 64];
    cfg[0] = 1; // palette
    for t in 0..8 {
        let (colsb, rows): (u16, u8) = match t {
            0..4 => (64, 16),
            4..6 => (32, 16),
            _ => (64, 8),
        };
        cfg[16 + 2 * t..][..2].copy_from_slice(&colsb.to_le_bytes());
        cfg[48 + t] = rows;
    }
    // SAFETY: a valid palette-1 configuration.
    unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly)) };
}

/// The products of one block into `sums`: A₀B₀, A₀B₁, A₁B₀, A₁B₁ (`halves` = 1: the first
/// two), from `a` one or two tiles of 16 tokens (rows of 32 bytes, `stride` apart) and `b`
/// two tiles of weights.
///
/// # Safety
/// AMX configured by [`configure`]; `a` readable for `16 · halves` rows of 32 bytes `stride`
/// apart.
unsafe fn multiply(a: *const i8, stride: usize, b: [&[i8]; 2], halves: usize, sums: &mut [i32; 4 * TILE * TILE]) {
    assert!(b.iter().all(|b| b.len() == B_BYTES));
    let c = sums.as_mut_ptr();
    // SAFETY: `a` as the caller promises, `b` 512 bytes each (asserted), `sums` four tiles of
    // 1 KB.
    unsafe {
        match halves {
            2 => asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "tileloadd tmm4, [{a0} + {sa} * 1]",
                "tileloadd tmm6, [{b0} + {s} * 1]",
                "tdpbssd tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s} * 1]",
                "tdpbssd tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {sa} * 1]",
                "tdpbssd tmm2, tmm5, tmm6",
                "tdpbssd tmm3, tmm5, tmm7",
                "tilestored [{c0} + {s} * 1], tmm0",
                "tilestored [{c1} + {s} * 1], tmm1",
                "tilestored [{c2} + {s} * 1], tmm2",
                "tilestored [{c3} + {s} * 1], tmm3",
                a0 = in(reg) a,
                a1 = in(reg) a.add(TILE * stride),
                sa = in(reg) stride,
                b0 = in(reg) b[0].as_ptr(),
                b1 = in(reg) b[1].as_ptr(),
                s = in(reg) 64usize,
                c0 = in(reg) c,
                c1 = in(reg) c.add(TILE * TILE),
                c2 = in(reg) c.add(2 * TILE * TILE),
                c3 = in(reg) c.add(3 * TILE * TILE),
                options(nostack),
            ),
            _ => asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tileloadd tmm4, [{a0} + {sa} * 1]",
                "tileloadd tmm6, [{b0} + {s} * 1]",
                "tdpbssd tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s} * 1]",
                "tdpbssd tmm1, tmm4, tmm7",
                "tilestored [{c0} + {s} * 1], tmm0",
                "tilestored [{c1} + {s} * 1], tmm1",
                a0 = in(reg) a,
                sa = in(reg) stride,
                b0 = in(reg) b[0].as_ptr(),
                b1 = in(reg) b[1].as_ptr(),
                s = in(reg) 64usize,
                c0 = in(reg) c,
                c1 = in(reg) c.add(TILE * TILE),
                options(nostack),
            ),
        }
    }
}

/// Adds one block's sums (of `halves` tiles of tokens) to a lane's accumulators
/// (`acc[t · SPAN + r]`), each as the VNNI
/// kernel does: `acc + s · (dw · dx)`, one fused multiply-add.
#[target_feature(enable = "avx512f")]
fn scale(sums: &[i32; 4 * TILE * TILE], halves: usize, dw: [&[f32]; 2], dx: impl Fn(usize) -> f32, acc: &mut [f32]) {
    assert!(acc.len() == SPAN * SPAN && dw.iter().all(|d| d.len() == TILE));
    // SAFETY: every load and store is 16 values within `sums`, `dw` or `acc` (sizes asserted).
    unsafe {
        let dw = dw.map(|d| _mm512_loadu_ps(d.as_ptr()));
        for (i, sums) in sums.chunks_exact(TILE * TILE).take(2 * halves).enumerate() {
            let (ta, rb) = (i / 2, i % 2);
            for m in 0..TILE {
                let t = ta * TILE + m;
                let s = _mm512_cvtepi32_ps(_mm512_loadu_si512(sums[m * TILE..].as_ptr() as *const __m512i));
                let p = _mm512_mul_ps(dw[rb], _mm512_set1_ps(dx(t)));
                let a = acc[t * SPAN + rb * TILE..].as_mut_ptr();
                _mm512_storeu_ps(a, _mm512_fmadd_ps(s, p, _mm512_loadu_ps(a)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{x86, Q8Rows};
    use super::*;
    use crate::runtime::backend::noise;

    /// Every product the same bits as the VNNI kernel's, on shapes with part-filled spans
    /// and groups of blocks.
    #[test]
    fn products_are_the_vnni_kernels_bits() {
        if !available() {
            eprintln!("no AMX on this CPU: nothing to compare");
            return;
        }
        for (tokens, cols, rows) in [(8, 640, 2048), (37, 640, 256), (50, 96, 17), (20, 2048, 40)] {
            let w = x86::Packed::new(&Q8Rows::quantize(&noise(rows * cols, rows as u64, 1.0)), cols);
            let (wa, x) = (Weights::new(&w), noise(tokens * cols, 7, 3.0));
            let xa = Tokens::new(&x, cols);
            // The VNNI kernel's products, one token pair at a time, and the two ways here.
            let want: Vec<f32> = (0..tokens)
                .flat_map(|t| x86::rows_of(&w, &x[t * cols..(t + 1) * cols], cols))
                .collect();
            let mut by_tokens = vec![0f32; tokens * rows];
            xa.times(&wa, &mut by_tokens);
            let mut yt = vec![0f32; tokens * rows];
            for (i, span) in yt.chunks_mut(SPAN * tokens).enumerate() {
                xa.times_rows(&wa, i * SPAN, span);
            }
            let by_rows = super::super::transposed(yt, tokens);
            for got in [by_tokens, by_rows] {
                let differ = got
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(
                    differ,
                    0,
                    "{tokens} tokens × {rows}×{cols}: {differ} of {} differ",
                    got.len()
                );
            }
        }
    }
}
