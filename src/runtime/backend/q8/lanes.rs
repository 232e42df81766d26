//! The Q8 kernel where module `x86` (AVX-512 VNNI) is not: simd128 in wasm, AVX2 on other x86,
//! plain Rust elsewhere. A row's blocks go in groups of four, interleaved so that each i32
//! lane of a dot product sums the products of one block: a group's four sums then sit in
//! one register and are scaled at once. With
//! the blocks in order, each block's four partial sums were converted and scaled alone (its
//! two scales loaded, multiplied and splatted), which cost a quarter of the kernel's time.
//!
//! A block's sum is exact (integers), and the scaled sums go into eight f32 lanes, block `b`
//! into lane `b % 8` in order of `b`, which are added last as `((l0 + l4) + (l2 + l6)) +
//! ((l1 + l5) + (l3 + l7))`: the order of the x86 kernel's eight lanes (module `x86`), which
//! fuses each multiply and add where this rounds twice. The plain, simd128 and AVX2 forms
//! compute the same bits.

use super::{ends, locate, quantize_activations, start, threads, unstack, Q8Rows, BLOCK};

/// Blocks in a group: one per i32 lane of a 128-bit register.
const LANES: usize = 4;
/// Values of a group.
const GROUP: usize = LANES * BLOCK;
/// Tokens that share each load of a weight register.
const TILE: usize = 4;
/// Weight rows that share each load of a token's values.
const ROWS: usize = 2;

/// Where value `v` of block `k` of a group sits: the 16 bytes from `16 · (v / 4)` hold
/// values `v / 4 · 4 ..+ 4` of every block, so that widening their low and high halves to
/// i16 gives registers whose i32 lane `k` is a pair of block `k`'s values.
fn at(k: usize, v: usize) -> usize {
    16 * (v / 4) + 8 * (v / 2 % 2) + 2 * k + v % 2
}

/// Block `k` of a group (`group`, as laid out here), each value mapped by `f`.
fn put<T>(group: &mut [T], k: usize, block: &[i8], f: impl Fn(i8) -> T) {
    for (v, x) in block.iter().enumerate() {
        group[at(k, v)] = f(*x);
    }
}

/// Rows of blocks in groups (a short group padded with zero blocks of scale 0).
pub struct Packed {
    /// The values, four to a `u32` as in [`Q8Rows`], so that a `Linear`'s rows are
    /// rearranged where they lie.
    values: Vec<u32>,
    scales: Vec<f32>,
    groups: usize,
    /// Blocks of a row (its groups may hold more).
    blocks: usize,
    pub rows: usize,
}

impl Packed {
    /// A copy of `q`'s rows (`cols` wide).
    pub fn new(q: &Q8Rows, cols: usize) -> Packed {
        let blocks = cols / BLOCK;
        let (groups, rows) = (blocks.div_ceil(LANES), q.scales.len() / blocks.max(1));
        let mut p = Packed {
            values: vec![0; rows * groups * GROUP / 4],
            scales: vec![0.0; rows * groups * LANES],
            groups,
            blocks,
            rows,
        };
        let values = q.values();
        for r in 0..rows {
            for b in 0..blocks {
                let (g, k) = (r * groups + b / LANES, b % LANES);
                p.scales[g * LANES + k] = q.scales[r * blocks + b];
                let block = &values[(r * blocks + b) * BLOCK..][..BLOCK];
                put(&mut p.bytes_mut()[g * GROUP..][..GROUP], k, block, |x| x);
            }
        }
        p
    }

    /// `q`'s rows, rearranged in place where they are whole groups (Gemma's are: 640, 1024
    /// and 2048 wide), so that loading never holds a matrix twice.
    pub fn from_rows(q: Q8Rows, cols: usize) -> Packed {
        let blocks = cols / BLOCK;
        if !blocks.is_multiple_of(LANES) || blocks == 0 {
            return Packed::new(&q, cols);
        }
        let rows = q.scales.len() / blocks;
        let mut p = Packed {
            values: q.qs,
            scales: q.scales,
            groups: blocks / LANES,
            blocks,
            rows,
        };
        for group in p.bytes_mut().chunks_exact_mut(GROUP) {
            let plain: [i8; GROUP] = group.try_into().expect("a group");
            for (k, block) in plain.chunks_exact(BLOCK).enumerate() {
                put(group, k, block, |x| x);
            }
        }
        p
    }

    fn bytes_mut(&mut self) -> &mut [i8] {
        bytemuck::cast_slice_mut(&mut self.values)
    }

    /// Row `r`: its groups' values and scales.
    fn row(&self, r: usize) -> (&[i8], &[f32]) {
        let g = self.groups;
        let values: &[i8] = bytemuck::cast_slice(&self.values);
        (
            &values[r * g * GROUP..][..g * GROUP],
            &self.scales[r * g * LANES..][..g * LANES],
        )
    }

    pub fn dequantize(&self) -> Vec<f32> {
        self.dequantize_rows(0..self.rows)
    }

    /// Rows `ids`, dequantized (what the plain layout's rows hold).
    pub fn dequantize_rows(&self, ids: impl Iterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for r in ids {
            let (values, scales) = self.row(r);
            for (b, d) in scales.iter().take(self.blocks).enumerate() {
                let group = &values[b / LANES * GROUP..][..GROUP];
                out.extend((0..BLOCK).map(|v| group[at(b % LANES, v)] as f32 * d));
            }
        }
        out
    }
}

/// A token's values quantized as [`quantize_activations`] does, widened to i16 and laid out
/// as the weights are, with their scales (a short group padded with zeros).
struct Token {
    values: Vec<i16>,
    scales: Vec<f32>,
}

impl Token {
    fn new(x: &[f32]) -> Token {
        let (q, d) = quantize_activations(x);
        let groups = d.len().div_ceil(LANES);
        let mut t = Token {
            values: vec![0; groups * GROUP],
            scales: vec![0.0; groups * LANES],
        };
        t.scales[..d.len()].copy_from_slice(&d);
        for (b, block) in q.chunks_exact(BLOCK).enumerate() {
            put(&mut t.values[b / LANES * GROUP..][..GROUP], b % LANES, block, i16::from);
        }
        t
    }

    fn get(&self) -> (&[i16], &[f32]) {
        (&self.values, &self.scales)
    }
}

/// `yt[r · tokens + t] = W[r] · x[t]` for each matrix, the threads taking runs of all the
/// matrices' weight rows, [`ROWS`] rows of a matrix against [`TILE`] tokens at a time.
pub fn products<const N: usize>(ws: [&Packed; N], x: &[f32], cols: usize) -> [Vec<f32>; N] {
    let tokens = x.len() / cols;
    // Token by token among the threads (on one, the others would wait), each laid out once
    // here rather than for every weight row in the kernel.
    let xs = threads::map(tokens, |t| Token::new(&x[t * cols..(t + 1) * cols]));
    let ends = ends(ws.map(|w| w.rows));
    let mut yt = vec![0f32; ends[N - 1] * tokens];
    threads::row_runs_mut(&mut yt, tokens, |first, run| {
        let mut i = first;
        for out in run.chunks_mut(ROWS * tokens) {
            let (m, r) = locate(&ends, i);
            match out.len() == ROWS * tokens && r + ROWS <= ws[m].rows {
                true => row_products::<ROWS>(std::array::from_fn(|k| ws[m].row(r + k)), &xs, out),
                false => {
                    for (k, out) in out.chunks_exact_mut(tokens).enumerate() {
                        let (m, r) = locate(&ends, i + k);
                        row_products::<1>([ws[m].row(r)], &xs, out);
                    }
                }
            }
            i += out.len() / tokens.max(1);
        }
    });
    unstack(yt, |m| start(&ends, m) * tokens..ends[m] * tokens)
}

/// `out[k · tokens + t] = W[r_k] · x[t]` for `R` rows, [`TILE`] tokens at a time.
fn row_products<const R: usize>(rows: [(&[i8], &[f32]); R], xs: &[Token], out: &mut [f32]) {
    let tokens = xs.len();
    let tiled = tokens / TILE * TILE;
    for t0 in (0..tiled).step_by(TILE) {
        let y = dots::<R, TILE>(rows, std::array::from_fn(|i| xs[t0 + i].get()));
        for (k, y) in y.iter().enumerate() {
            out[k * tokens + t0..][..TILE].copy_from_slice(y);
        }
    }
    for t in tiled..tokens {
        let y = dots::<R, 1>(rows, [xs[t].get()]);
        for (k, y) in y.iter().enumerate() {
            out[k * tokens + t] = y[0];
        }
    }
}

/// `Σ_groups Σ_lanes (Σ w·x) · dw · dx` of each of `R` weight rows `(values, scales)` with
/// each of `N` tokens, each sum computed as it would be alone.
#[cfg(any(test, not(vector_lanes)))]
fn plain_dots<const R: usize, const N: usize>(rows: [(&[i8], &[f32]); R], x: [(&[i16], &[f32]); N]) -> [[f32; N]; R] {
    rows.map(|(w, wd)| {
        x.map(|(x, xd)| {
            let mut acc = [[0f32; LANES]; 2];
            for (g, (w, x)) in w.chunks_exact(GROUP).zip(x.chunks_exact(GROUP)).enumerate() {
                let mut sums = [0i32; LANES];
                for (i, (w, x)) in w.iter().zip(x).enumerate() {
                    sums[i % 8 / 2] += *w as i32 * *x as i32;
                }
                for (k, (acc, s)) in acc[g % 2].iter_mut().zip(sums).enumerate() {
                    *acc += s as f32 * (wd[g * LANES + k] * xd[g * LANES + k]);
                }
            }
            let l: [f32; LANES] = std::array::from_fn(|k| acc[0][k] + acc[1][k]);
            (l[0] + l[2]) + (l[1] + l[3])
        })
    })
}

#[cfg(not(vector_lanes))]
use plain_dots as dots;

/// The groups of the rows and tokens given to a vector form of `dots`, after checking the
/// lengths its unchecked loads rely on.
#[cfg(vector_lanes)]
fn groups_of<const R: usize, const N: usize>(rows: &[(&[i8], &[f32]); R], x: &[(&[i16], &[f32]); N]) -> usize {
    let wd0 = rows[0].1;
    assert!(rows
        .iter()
        .all(|(w, wd)| w.len() == wd.len() * BLOCK && wd.len() == wd0.len()));
    assert!(wd0.len().is_multiple_of(LANES));
    assert!(x
        .iter()
        .all(|(x, xd)| x.len() == rows[0].0.len() && xd.len() == wd0.len()));
    wd0.len() / LANES
}

/// `group(g, acc)` for every group, the even ones into the first registers and the odd ones
/// into the second, as the plain form's two rows of lanes.
#[cfg(vector_lanes)]
fn even_and_odd<A: Copy, const R: usize, const N: usize>(
    groups: usize,
    zero: A,
    mut group: impl FnMut(usize, &mut [[A; N]; R]),
) -> ([[A; N]; R], [[A; N]; R]) {
    let (mut even, mut odd) = ([[zero; N]; R], [[zero; N]; R]);
    for g in (0..groups).step_by(2) {
        group(g, &mut even);
        if g + 1 < groups {
            group(g + 1, &mut odd);
        }
    }
    (even, odd)
}

/// The same with simd128: each 16 weights widened to i16 once for all the tokens, each
/// 16 values of a token loaded once for all the rows, then `i32x4.dot_i16x8_s`
/// (|w·x| ≤ 16384, two to a lane); per group one conversion and one product of four scales
/// with four.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dots<const R: usize, const N: usize>(rows: [(&[i8], &[f32]); R], x: [(&[i16], &[f32]); N]) -> [[f32; N]; R] {
    use core::arch::wasm32::*;
    let groups = groups_of(&rows, &x);
    // Group g's scaled sums of each row against each token, into `acc`.
    let group = |g: usize, acc: &mut [[v128; N]; R]| {
        let mut sums = [[i32x4_splat(0); N]; R];
        for i in (0..GROUP).step_by(16) {
            // SAFETY: values g·GROUP + i ..+ 16 are inside every row and every x (`groups_of`).
            let w = rows.map(|(w, _)| unsafe { v128_load(w.as_ptr().add(g * GROUP + i) as *const v128) });
            let w = w.map(|w| (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w)));
            for (t, (x, _)) in x.iter().enumerate() {
                let p = unsafe { x.as_ptr().add(g * GROUP + i) } as *const v128;
                let (xlo, xhi) = unsafe { (v128_load(p), v128_load(p.add(1))) };
                for (s, (lo, hi)) in sums.iter_mut().zip(&w) {
                    s[t] = i32x4_add(s[t], i32x4_add(i32x4_dot_i16x8(*lo, xlo), i32x4_dot_i16x8(*hi, xhi)));
                }
            }
        }
        for ((acc, sums), (_, wd)) in acc.iter_mut().zip(sums).zip(&rows) {
            // SAFETY: scales g·LANES ..+ 4 are inside every wd and xd (`groups_of`).
            let dw = unsafe { v128_load(wd.as_ptr().add(g * LANES) as *const v128) };
            for ((acc, s), (_, xd)) in acc.iter_mut().zip(sums).zip(&x) {
                let dx = unsafe { v128_load(xd.as_ptr().add(g * LANES) as *const v128) };
                *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(s), f32x4_mul(dw, dx)));
            }
        }
    };
    let (even, odd) = even_and_odd(groups, f32x4_splat(0.0), group);
    std::array::from_fn(|k| {
        std::array::from_fn(|t| {
            let l = f32x4_add(even[k][t], odd[k][t]);
            let l = f32x4_add(l, i32x4_shuffle::<2, 3, 0, 1>(l, l));
            f32x4_extract_lane::<0>(l) + f32x4_extract_lane::<1>(l)
        })
    })
}

/// The same with AVX2, on x86 CPUs without the AVX-512 VNNI of module `x86` (most laptops,
/// AMD before Zen 4): 16 weights widened to i16 once for all the tokens (`vpmovsxbw`), whose
/// two 128-bit halves are the simd128 form's two registers, then `vpmaddwd` against a
/// token's 16 values; the halves' sums are added per group, and scaled with a separate
/// multiply and add, as the plain form does, so the bits are the plain form's.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
fn dots<const R: usize, const N: usize>(rows: [(&[i8], &[f32]); R], x: [(&[i16], &[f32]); N]) -> [[f32; N]; R] {
    // SAFETY: compiled only for targets with AVX2.
    unsafe { avx2_dots(rows, x) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
#[target_feature(enable = "avx2")]
fn avx2_dots<const R: usize, const N: usize>(rows: [(&[i8], &[f32]); R], x: [(&[i16], &[f32]); N]) -> [[f32; N]; R] {
    use core::arch::x86_64::*;
    let groups = groups_of(&rows, &x);
    // Group g's scaled sums of each row against each token, into `acc`.
    let group = |g: usize, acc: &mut [[__m128; N]; R]| {
        let mut sums = [[_mm256_setzero_si256(); N]; R];
        for i in (0..GROUP).step_by(16) {
            // SAFETY: values g·GROUP + i ..+ 16 are inside every row and every x (`groups_of`).
            let w = rows.map(|(w, _)| unsafe {
                _mm256_cvtepi8_epi16(_mm_loadu_si128(w.as_ptr().add(g * GROUP + i) as *const __m128i))
            });
            for (t, (x, _)) in x.iter().enumerate() {
                let xv = unsafe { _mm256_loadu_si256(x.as_ptr().add(g * GROUP + i) as *const __m256i) };
                for (s, w) in sums.iter_mut().zip(&w) {
                    s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(*w, xv));
                }
            }
        }
        for ((acc, sums), (_, wd)) in acc.iter_mut().zip(sums).zip(&rows) {
            // SAFETY: scales g·LANES ..+ 4 are inside every wd and xd (`groups_of`).
            let dw = unsafe { _mm_loadu_ps(wd.as_ptr().add(g * LANES)) };
            for ((acc, s), (_, xd)) in acc.iter_mut().zip(sums).zip(&x) {
                let dx = unsafe { _mm_loadu_ps(xd.as_ptr().add(g * LANES)) };
                let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
                *acc = _mm_add_ps(*acc, _mm_mul_ps(_mm_cvtepi32_ps(s), _mm_mul_ps(dw, dx)));
            }
        }
    };
    let (even, odd) = even_and_odd(groups, _mm_setzero_ps(), group);
    std::array::from_fn(|k| {
        std::array::from_fn(|t| {
            let l = _mm_add_ps(even[k][t], odd[k][t]);
            let l = _mm_add_ps(l, _mm_movehl_ps(l, l));
            _mm_cvtss_f32(l) + _mm_cvtss_f32(_mm_movehdup_ps(l))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::backend::{max_rel_diff, noise};

    /// Widths of whole groups (laid out in place) and of a short last group (padded): the
    /// rows read back as they were, and each product is within f32 rounding of the products
    /// of the dequantized values, for a token alone and in tiles.
    #[test]
    fn grouped_rows_hold_the_values_and_multiply_as_the_plain_ones() {
        for (cols, rows, tokens) in [(640, 5, 9), (64, 3, 1), (96, 7, 5)] {
            let q = Q8Rows::quantize(&noise(rows * cols, 31, 1.0));
            let plain = q.dequantize();
            assert_eq!(Packed::new(&q, cols).dequantize(), plain, "copied, {cols} wide");
            let packed = Packed::from_rows(Q8Rows::quantize(&noise(rows * cols, 31, 1.0)), cols);
            assert_eq!(packed.dequantize(), plain, "in place, {cols} wide");
            assert_eq!(
                packed.dequantize_rows([rows - 1].into_iter()),
                plain[(rows - 1) * cols..]
            );

            let x = noise(tokens * cols, 32, 3.0);
            let (xq, xd) = quantize_activations(&x);
            let xs: Vec<f32> = xq.iter().enumerate().map(|(i, v)| *v as f32 * xd[i / BLOCK]).collect();
            let want: Vec<f32> = (0..rows * tokens)
                .map(|i| (i / tokens, i % tokens))
                .map(|(r, t)| (0..cols).map(|c| plain[r * cols + c] * xs[t * cols + c]).sum())
                .collect();
            let [got] = products([&packed], &x, cols);
            assert!(max_rel_diff(&got, &want) < 1e-5, "{cols} wide, {tokens} tokens");
            let alone: Vec<f32> = (0..tokens)
                .flat_map(|t| {
                    let [y] = products([&packed], &x[t * cols..(t + 1) * cols], cols);
                    y
                })
                .collect();
            let by_token: Vec<f32> = (0..tokens)
                .flat_map(|t| (0..rows).map(move |r| (r, t)))
                .map(|(r, t)| got[r * tokens + t])
                .collect();
            assert_eq!(by_token, alone, "a token's products do not depend on its tile");
        }
    }

    /// The AVX2 kernel computes the plain form's bits, rows and tokens alone and in tiles,
    /// with an even and an odd count of groups.
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    #[test]
    fn avx2_products_are_the_plain_ones_bit_for_bit() {
        for cols in [640, 384, 96] {
            let w = Packed::new(&Q8Rows::quantize(&noise(ROWS * cols, 41, 1.0)), cols);
            let rows: [_; ROWS] = std::array::from_fn(|r| w.row(r));
            let xs: Vec<Token> = (0..TILE as u64)
                .map(|t| Token::new(&noise(cols, 42 + t, 3.0)))
                .collect();
            let x: [_; TILE] = std::array::from_fn(|t| xs[t].get());
            assert_eq!(dots(rows, x), plain_dots(rows, x), "{cols} wide, in tiles");
            assert_eq!(
                dots([rows[1]], [x[2]]),
                plain_dots([rows[1]], [x[2]]),
                "{cols} wide, alone"
            );
        }
    }
}
