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
