//! The operations a forward pass is made of. `cpu` is the reference and the SIMD CPU path
//! (candle's quantized kernels for the matrix products, plain Rust for the rest); `q8` is
//! the 8-bit weight layout of our own kernels (and, in wasm, the CPU's Q8_0 product);
//! `webgpu` implements the same ops as WGSL kernels, each tested against its CPU twin.

pub mod cpu;
pub mod dot;
pub mod heads;
pub mod kquant;
pub mod low_rank;
pub mod q8;
pub mod threads;
pub mod webgpu;

/// Products computed weight row by weight row (`yt[r · tokens + t]`: each row stays in
/// cache while every token reads it) laid out token by token (`y[t · rows + r]`), sixteen
/// rows at a time so that each token's sixteen values fill one cache line of `y`.
pub fn transposed(yt: Vec<f32>, tokens: usize) -> Vec<f32> {
    if tokens <= 1 {
        return yt;
    }
    let n = yt.len() / tokens;
    let mut y = vec![0f32; yt.len()];
    for r0 in (0..n).step_by(16) {
        let cols = &yt[r0 * tokens..(r0 + 16).min(n) * tokens];
        for (t, y) in y.chunks_exact_mut(n).enumerate() {
            for (i, y) in y[r0..(r0 + 16).min(n)].iter_mut().enumerate() {
                *y = cols[i * tokens + t];
            }
        }
    }
    y
}

/// `x.round()`: halves away from zero, the same value for every `x` that is not NaN. In wasm
/// `f32::round` is a call into the maths library (wasm's own rounding sends halves to even),
/// one per activation quantized; this is four instructions, and loops of it vectorise.
pub fn round(x: f32) -> f32 {
    let t = x.trunc();
    match (x - t).abs() >= 0.5 {
        true => t + 1f32.copysign(x),
        false => t,
    }
}

/// How many of `blocks` a kernel's quantization (`(scale, values)` of a block) gives
/// otherwise than its plain twin, the scales compared bit for bit.
pub fn quantizations_differing<Q: PartialEq>(
    blocks: &[Vec<f32>],
    kernel: impl Fn(&[f32]) -> (f32, Q),
    plain: impl Fn(&[f32]) -> (f32, Q),
) -> usize {
    blocks
        .iter()
        .filter(|b| {
            let (got, want) = (kernel(b), plain(b));
            got.1 != want.1 || got.0.to_bits() != want.0.to_bits()
        })
        .count()
}

/// Blocks of `len` values for checking a quantization against its plain twin: 200 of
/// noise at magnitudes from 1e-3 to 1e3, zeros, and one with a NaN and both infinities.
/// Each check adds the halves and ties of its own rounding.
pub fn quantization_cases(len: usize) -> Vec<Vec<f32>> {
    let mut blocks: Vec<Vec<f32>> = (0..200).map(|i| noise(len, i, 10f32.powi(i as i32 % 7 - 3))).collect();
    blocks.push(vec![0.0; len]);
    let mut odd = noise(len, 7, 1.0);
    (odd[3], odd[len / 3], odd[len - 1]) = (f32::NAN, f32::INFINITY, f32::NEG_INFINITY);
    blocks.push(odd);
    blocks
}

/// [`round`] of four values, the same operations (the activation quantizations' simd128
/// form).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn round_f32x4(x: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    let t = f32x4_trunc(x);
    let half_or_more = f32x4_ge(f32x4_abs(f32x4_sub(x, t)), f32x4_splat(0.5));
    let one = v128_or(f32x4_splat(1.0), v128_and(x, i32x4_splat(i32::MIN)));
    v128_bitselect(f32x4_add(t, one), t, half_or_more)
}

/// The largest magnitude of the values in `xs`, four to a register, as the plain loop
/// `fold(0, |m, a| if a > m { a } else { m })` over magnitudes finds it: a NaN never wins
/// (`pmax(m, a)` is `m < a ? a : m`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn max_magnitude(xs: impl Iterator<Item = core::arch::wasm32::v128>) -> f32 {
    use core::arch::wasm32::*;
    let m = xs.fold(f32x4_splat(0.0), |m, x| f32x4_pmax(m, f32x4_abs(x)));
    let lanes = [
        f32x4_extract_lane::<0>(m),
        f32x4_extract_lane::<1>(m),
        f32x4_extract_lane::<2>(m),
        f32x4_extract_lane::<3>(m),
    ];
    lanes.into_iter().fold(0f32, |m, a| if a > m { a } else { m })
}

/// The largest difference between `got` and the reference `want`, relative to the largest
/// reference value (at least 1); infinite when the lengths differ or a value is NaN, so a
/// comparison against a tolerance fails.
pub fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = match got.len() == want.len() {
        true => got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())),
        false => f32::INFINITY,
    };
    if diff.is_nan() {
        f32::INFINITY
    } else {
        diff / scale
    }
}

/// Deterministic pseudo-random numbers in `[-scale, scale]` (the kernel checks' inputs, and the tests' weights).
pub fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every half, every value near one, large and tiny values, and the signs of zeros.
    #[test]
    fn round_is_the_librarys_round() {
        let halves = (-600..=600).map(|i| i as f32 * 0.5);
        let near = (-2000..=2000).flat_map(|i| {
            let x = i as f32 * 0.25;
            [x.next_down(), x, x.next_up()]
        });
        let wide = [1e-30, 0.49999997, 8388607.5, 8388609.0, 3e9, f32::MAX, f32::INFINITY].into_iter();
        for x in halves.chain(near).chain(wide.clone()).chain(wide.map(|x| -x)) {
            let (ours, lib) = (super::round(x), x.round());
            assert!(ours.to_bits() == lib.to_bits(), "round({x:e}) = {ours:e}, not {lib:e}");
        }
    }
}
