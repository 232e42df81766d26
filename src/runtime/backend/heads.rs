//! Attention's inner loops over the query heads that share a KV head (four in Gemma 3
//! 270M): their scores against a key row, and their weighted sums of the value rows.
//!
//! One head at a time, each score is a single chain of dependent additions that waits on
//! the adder, and every value row is read once per head; four heads side by side keep
//! four chains going and read each row once. Every sum is still taken as one head alone
//! takes it ([`dot`]'s eight lanes, then the values in position order), so the results are
//! the same bits. [`Lanes`] holds eight f32s: an AVX register on x86, two simd128 ones in
//! wasm, an array elsewhere; LLVM does not find this interleaving in plain loops over heads.
//! The adapter's side path scores its rank rows against a token the same way.

use crate::runtime::backend::dot::dot;

/// Heads taken together.
const HEADS: usize = 4;
/// Values of a row one pass of [`weighted_sums`] keeps in registers per head.
const VALUES: usize = 16;

/// `each(h, qs[h] · k)` for every `k.len()`-wide row `qs[h]` of `qs`, each the value
/// [`dot`] gives.
pub fn scores(qs: &[f32], k: &[f32], mut each: impl FnMut(usize, f32)) {
    let hd = k.len();
    let heads = qs.len() / hd;
    let whole = hd / 8 * 8;
    let mut h0 = 0;
    while h0 + HEADS <= heads {
        let q: [&[f32]; HEADS] = std::array::from_fn(|h| &qs[(h0 + h) * hd..][..hd]);
        let mut acc = [Lanes::zero(); HEADS];
        for c in (0..whole).step_by(8) {
            let kc = Lanes::load(&k[c..c + 8]);
            for h in 0..HEADS {
                acc[h] = acc[h].add(Lanes::load(&q[h][c..c + 8]).mul(kc));
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            let tail: f32 = q[h][whole..].iter().zip(&k[whole..]).map(|(x, y)| x * y).sum();
            each(h0 + h, acc.to_array().iter().sum::<f32>() + tail);
        }
        h0 += HEADS;
    }
    for h in h0..heads {
        each(h, dot(&qs[h * hd..][..hd], k));
    }
}

/// `out[h] += Σ_j p[h][j] · v(j)` for `j < span` and every head `h`: `p` holds a row of
/// `span` weights per head, and `out` a row per head as wide as a value row; each value's
/// sum is taken in order of `j`.
pub fn weighted_sums<'v>(p: &[f32], span: usize, v: impl Fn(usize) -> &'v [f32], out: &mut [f32]) {
    let heads = p.len() / span.max(1);
    if heads == 0 {
        return;
    }
    let hd = out.len() / heads;
    let whole = hd / VALUES * VALUES;
    let mut h0 = 0;
    while h0 < heads {
        let n = (heads - h0).min(HEADS);
        let p: [&[f32]; HEADS] = std::array::from_fn(|h| &p[(h0 + h.min(n - 1)) * span..][..span]);
        let rows = &mut out[h0 * hd..(h0 + n) * hd];
        match n {
            HEADS => sums_in_registers::<HEADS>(p, &v, rows, whole),
            _ => (0..n).for_each(|h| sums_in_registers::<1>([p[h]], &v, &mut rows[h * hd..][..hd], whole)),
        }
        // The values past the last whole pass.
        for (h, row) in rows.chunks_exact_mut(hd).enumerate() {
            for (j, pj) in p[h].iter().enumerate() {
                for (o, x) in row[whole..].iter_mut().zip(&v(j)[whole..]) {
                    *o += pj * x;
                }
            }
        }
        h0 += n;
    }
}

/// The first `whole` values of [`weighted_sums`] for `N` heads (`out`: their rows), `VALUES`
/// of each head's row held in registers while the value rows go by.
fn sums_in_registers<'v, const N: usize>(
    p: [&[f32]; N],
    v: &impl Fn(usize) -> &'v [f32],
    out: &mut [f32],
    whole: usize,
) {
    let (hd, span) = (out.len() / N, p[0].len());
    for c in (0..whole).step_by(VALUES) {
        let at = |h: usize, u: usize| h * hd + c + 8 * u;
        let mut acc: [[Lanes; 2]; N] = std::array::from_fn(|h| [0, 1].map(|u| Lanes::load(&out[at(h, u)..][..8])));
        for j in 0..span {
            let row = &v(j)[c..c + VALUES];
            let x = [Lanes::load(&row[..8]), Lanes::load(&row[8..])];
            for (acc, p) in acc.iter_mut().zip(p) {
                let pj = Lanes::splat(p[j]);
                for (acc, x) in acc.iter_mut().zip(x) {
                    *acc = acc.add(pj.mul(x));
                }
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            for (u, acc) in acc.iter().enumerate() {
                out[at(h, u)..][..8].copy_from_slice(&acc.to_array());
            }
        }
    }
}

/// Eight f32 lanes, each multiplied and added on its own (no fused multiply-add: the
/// products round as the plain loops' do).
#[derive(Clone, Copy)]
struct Lanes(imp::Lanes);

impl Lanes {
    fn zero() -> Lanes {
        Lanes::splat(0.0)
    }

    fn splat(x: f32) -> Lanes {
        Lanes(imp::splat(x))
    }

    /// The first eight values of `x`.
    fn load(x: &[f32]) -> Lanes {
        let x: &[f32; 8] = x[..8].try_into().expect("eight values");
        Lanes(imp::load(x))
    }

    fn add(self, o: Lanes) -> Lanes {
        Lanes(imp::add(self.0, o.0))
    }

    fn mul(self, o: Lanes) -> Lanes {
        Lanes(imp::mul(self.0, o.0))
    }

    fn to_array(self) -> [f32; 8] {
        imp::to_array(self.0)
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
mod imp {
    use core::arch::x86_64::*;

    pub type Lanes = __m256;

    // SAFETY (every `unsafe` below): this module is built only where the target has AVX.

    pub fn splat(x: f32) -> Lanes {
        unsafe { _mm256_set1_ps(x) }
    }

    pub fn load(x: &[f32; 8]) -> Lanes {
        // Eight f32s, read unaligned.
        unsafe { _mm256_loadu_ps(x.as_ptr()) }
    }

    pub fn add(a: Lanes, b: Lanes) -> Lanes {
        unsafe { _mm256_add_ps(a, b) }
    }

    pub fn mul(a: Lanes, b: Lanes) -> Lanes {
        unsafe { _mm256_mul_ps(a, b) }
    }

    pub fn to_array(a: Lanes) -> [f32; 8] {
        let mut out = [0f32; 8];
        // Eight f32s, written unaligned.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
        out
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    pub type Lanes = [v128; 2];

    pub fn splat(x: f32) -> Lanes {
        [f32x4_splat(x); 2]
    }

    pub fn load(x: &[f32; 8]) -> Lanes {
        let p = x.as_ptr() as *const v128;
        // SAFETY: eight f32s are two v128s, read unaligned.
        unsafe { [v128_load(p), v128_load(p.add(1))] }
    }

    pub fn add(a: Lanes, b: Lanes) -> Lanes {
        [f32x4_add(a[0], b[0]), f32x4_add(a[1], b[1])]
    }

    pub fn mul(a: Lanes, b: Lanes) -> Lanes {
        [f32x4_mul(a[0], b[0]), f32x4_mul(a[1], b[1])]
    }

    pub fn to_array(a: Lanes) -> [f32; 8] {
        let mut out = [0f32; 8];
        let p = out.as_mut_ptr() as *mut v128;
        // SAFETY: eight f32s are two v128s, written unaligned.
        unsafe { [v128_store(p, a[0]), v128_store(p.add(1), a[1])] };
        out
    }
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_feature = "avx"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
mod imp {
    pub type Lanes = [f32; 8];

    pub fn splat(x: f32) -> Lanes {
        [x; 8]
    }

    pub fn load(x: &[f32; 8]) -> Lanes {
        *x
    }

    pub fn add(a: Lanes, b: Lanes) -> Lanes {
        std::array::from_fn(|i| a[i] + b[i])
    }

    pub fn mul(a: Lanes, b: Lanes) -> Lanes {
        std::array::from_fn(|i| a[i] * b[i])
    }

    pub fn to_array(a: Lanes) -> [f32; 8] {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::backend::noise;

    /// Every head count (whole groups of four and the rest) and widths with and without a
    /// remainder give exactly what one head at a time gives.
    #[test]
    fn grouped_heads_give_the_bits_of_one_head_at_a_time() {
        for (heads, hd, span) in [(4, 256, 37), (5, 40, 9), (3, 16, 1), (8, 20, 12), (1, 7, 3)] {
            let qs = noise(heads * hd, 1, 2.0);
            let k = noise(hd, 2, 1.5);
            let mut got = vec![f32::NAN; heads];
            scores(&qs, &k, |h, s| got[h] = s);
            let want: Vec<f32> = qs.chunks_exact(hd).map(|q| dot(q, &k)).collect();
            assert_eq!(got, want, "scores, {heads} heads × {hd}");

            let p = noise(heads * span, 3, 1.0);
            let values = noise(span * hd, 4, 3.0);
            let start = noise(heads * hd, 5, 0.5);
            let mut got = start.clone();
            weighted_sums(&p, span, |j| &values[j * hd..][..hd], &mut got);
            let mut want = start;
            for (h, o) in want.chunks_exact_mut(hd).enumerate() {
                for j in 0..span {
                    for (o, x) in o.iter_mut().zip(&values[j * hd..][..hd]) {
                        *o += p[h * span + j] * x;
                    }
                }
            }
            assert_eq!(got, want, "weighted sums, {heads} heads × {hd}, {span} rows");
        }
    }
}
