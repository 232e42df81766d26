//! Attention's inner loops over the query heads that share a KV head (four in Gemma 3
//! 270M): their scores against a key row, and their weighted sums of the value rows.
//!
//! One head at a time, each score is a single chain of dependent additions that waits on
//! the adder, and every value row is read once per head; four heads side by side keep
//! four chains going and read each row once. [`Lanes`] is the widest f32 register the
//! target has (AVX-512 or AVX on x86, one simd128 register in wasm, an array elsewhere), with a
//! fused multiply-add where the CPU has one: these loops are bound by their arithmetic, and
//! on x86 the widest fused form is four times the work per instruction of eight-lane
//! multiplies and adds. A head's sum does not depend on the heads beside it; LLVM does not
//! find this interleaving in plain loops over heads. The adapter's side path scores its
//! rank rows against a token the same way.

/// Heads taken together.
const HEADS: usize = 4;
/// Values of a row one pass of [`weighted_sums`] keeps in registers per head.
const VALUES: usize = imp::PARTS * imp::WIDTH;

/// `each(h, j, qs[h] · key(j))` for every `hd`-wide row `qs[h]` of `qs` and every key
/// `j < keys`. Four heads go against [`imp::KEYS`] keys at a time, every product in a
/// register of its own: each key stretch loaded serves four heads and each head stretch
/// several keys, and the products' chains of multiply-adds overlap. A product is the same
/// bits whatever shares its block (one head alone, the last keys), so a row's scores do
/// not depend on the heads or keys beside it.
pub fn scores<'k>(
    qs: &[f32],
    hd: usize,
    keys: usize,
    key: impl Fn(usize) -> &'k [f32],
    mut each: impl FnMut(usize, usize, f32),
) {
    const M: usize = imp::KEYS;
    let heads = qs.len() / hd.max(1);
    let mut h0 = 0;
    while h0 < heads {
        let n = (heads - h0).min(HEADS);
        let q: [&[f32]; HEADS] = std::array::from_fn(|h| &qs[(h0 + h.min(n - 1)) * hd..][..hd]);
        let mut j0 = 0;
        while j0 < keys {
            let m = (keys - j0).min(M);
            let k: [&[f32]; M] = std::array::from_fn(|j| &key(j0 + j.min(m - 1))[..hd]);
            match (n, m) {
                (HEADS, M) => emit(dots(q, k), h0, j0, n, m, &mut each),
                (HEADS, _) => (0..m).for_each(|j| emit(dots(q, [k[j]]), h0, j0 + j, n, 1, &mut each)),
                _ => (0..n).for_each(|h| emit(dots([q[h]], k), h0 + h, j0, 1, m, &mut each)),
            }
            j0 += m;
        }
        h0 += n;
    }
}

/// Tells the first `n` × `m` products of a block from head `h0` and key `j0`.
fn emit<const N: usize, const M: usize>(
    sums: [[f32; M]; N],
    h0: usize,
    j0: usize,
    n: usize,
    m: usize,
    each: &mut impl FnMut(usize, usize, f32),
) {
    for (h, sums) in sums.iter().take(n).enumerate() {
        for (j, sum) in sums.iter().take(m).enumerate() {
            each(h0 + h, j0 + j, *sum);
        }
    }
}

/// `q[h] · k[j]` for `N` rows against `M`, each one chain of multiply-adds over whole
/// registers, then the rest of the row.
fn dots<const N: usize, const M: usize>(q: [&[f32]; N], k: [&[f32]; M]) -> [[f32; M]; N] {
    const W: usize = imp::WIDTH;
    let whole = q[0].len() / W * W;
    let qc = q.map(|q| q[..whole].as_chunks::<W>().0);
    let kc = k.map(|k| k[..whole].as_chunks::<W>().0);
    let mut acc = [[Lanes::zero(); M]; N];
    for c in 0..whole / W {
        let kc = kc.map(|k| Lanes::load(&k[c]));
        for (acc, q) in acc.iter_mut().zip(qc) {
            let qc = Lanes::load(&q[c]);
            for (acc, kc) in acc.iter_mut().zip(kc) {
                *acc = qc.mul_add(kc, *acc);
            }
        }
    }
    std::array::from_fn(|h| {
        std::array::from_fn(|j| {
            let tail: f32 = q[h][whole..].iter().zip(&k[j][whole..]).map(|(x, y)| x * y).sum();
            acc[h][j].sum() + tail
        })
    })
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
    const W: usize = imp::WIDTH;
    let (hd, span) = (out.len() / N, p[0].len());
    let part = |row: &[f32; VALUES], u: usize| Lanes::load(row[u * W..][..W].try_into().expect("a register"));
    for c in (0..whole).step_by(VALUES) {
        let at = |h: usize| h * hd + c;
        let mut acc: [[Lanes; imp::PARTS]; N] = std::array::from_fn(|h| {
            let row = out[at(h)..][..VALUES].try_into().expect("a pass");
            std::array::from_fn(|u| part(row, u))
        });
        for j in 0..span {
            let row = v(j)[c..][..VALUES].try_into().expect("a pass");
            let x: [Lanes; imp::PARTS] = std::array::from_fn(|u| part(row, u));
            for (acc, p) in acc.iter_mut().zip(p) {
                let pj = Lanes::splat(p[j]);
                for (acc, x) in acc.iter_mut().zip(x) {
                    *acc = pj.mul_add(x, *acc);
                }
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            for (u, acc) in acc.iter().enumerate() {
                acc.store(&mut out[at(h) + u * W..][..W]);
            }
        }
    }
}

/// `imp::WIDTH` f32 lanes.
#[derive(Clone, Copy)]
struct Lanes(imp::Lanes);

impl Lanes {
    fn zero() -> Lanes {
        Lanes::splat(0.0)
    }

    fn splat(x: f32) -> Lanes {
        Lanes(imp::splat(x))
    }

    fn load(x: &[f32; imp::WIDTH]) -> Lanes {
        Lanes(imp::load(x))
    }

    /// Into the first `WIDTH` values of `x`.
    fn store(self, x: &mut [f32]) {
        imp::store(self.0, (&mut x[..imp::WIDTH]).try_into().expect("a register's values"))
    }

    /// `self · b + c`, rounded once where the CPU fuses it.
    fn mul_add(self, b: Lanes, c: Lanes) -> Lanes {
        Lanes(imp::mul_add(self.0, b.0, c.0))
    }

    fn sum(self) -> f32 {
        imp::sum(self.0)
    }
}

// SAFETY (every `unsafe` in the `imp` modules): each is built only where the target has the
// instructions it uses, and loads and stores go through arrays of exactly one register.

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
mod imp {
    use core::arch::x86_64::*;

    pub const WIDTH: usize = 16;
    /// Keys per block of [`super::scores`]: 16 sums, four keys and a head stretch fit the 32 registers.
    pub const KEYS: usize = 4;
    /// Registers per head of a pass of [`super::weighted_sums`]: four heads' sums, a value
    /// stretch and a weight fit the 32 registers, and each weight loaded serves four.
    pub const PARTS: usize = 4;
    pub type Lanes = __m512;

    pub fn splat(x: f32) -> Lanes {
        unsafe { _mm512_set1_ps(x) }
    }

    pub fn load(x: &[f32; WIDTH]) -> Lanes {
        unsafe { _mm512_loadu_ps(x.as_ptr()) }
    }

    pub fn store(a: Lanes, x: &mut [f32; WIDTH]) {
        unsafe { _mm512_storeu_ps(x.as_mut_ptr(), a) }
    }

    pub fn mul_add(a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }

    pub fn sum(a: Lanes) -> f32 {
        unsafe { _mm512_reduce_add_ps(a) }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx", not(target_feature = "avx512f")))]
mod imp {
    use core::arch::x86_64::*;

    pub const WIDTH: usize = 8;
    /// Eight sums, two keys and a head stretch fit the 16 registers.
    pub const KEYS: usize = 2;
    pub const PARTS: usize = 2;
    pub type Lanes = __m256;

    pub fn splat(x: f32) -> Lanes {
        unsafe { _mm256_set1_ps(x) }
    }

    pub fn load(x: &[f32; WIDTH]) -> Lanes {
        unsafe { _mm256_loadu_ps(x.as_ptr()) }
    }

    pub fn store(a: Lanes, x: &mut [f32; WIDTH]) {
        unsafe { _mm256_storeu_ps(x.as_mut_ptr(), a) }
    }

    pub fn sum(a: Lanes) -> f32 {
        let x = unsafe { _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a)) };
        let x = unsafe { _mm_add_ps(x, _mm_movehl_ps(x, x)) };
        unsafe { _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x))) }
    }

    #[cfg(target_feature = "fma")]
    pub fn mul_add(a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    #[cfg(not(target_feature = "fma"))]
    pub fn mul_add(a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        unsafe { _mm256_add_ps(_mm256_mul_ps(a, b), c) }
    }
}

/// wasm has no fused multiply-add (relaxed SIMD's may or may not fuse).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    pub const WIDTH: usize = 4;
    /// Eight sums, two keys and a head stretch fit the 16 registers of the x86 CPUs most
    /// browsers run on; with sums of two registers and one key per block (fewer loads of
    /// each key, more of each head) attention took a tenth longer in V8.
    pub const KEYS: usize = 2;
    /// Four heads' sums take all 16 registers, and V8 spills some, yet this measured
    /// faster than two registers per head.
    pub const PARTS: usize = 4;
    pub type Lanes = v128;

    pub fn splat(x: f32) -> Lanes {
        f32x4_splat(x)
    }

    pub fn load(x: &[f32; WIDTH]) -> Lanes {
        unsafe { v128_load(x.as_ptr() as *const v128) }
    }

    pub fn store(a: Lanes, x: &mut [f32; WIDTH]) {
        unsafe { v128_store(x.as_mut_ptr() as *mut v128, a) }
    }

    pub fn mul_add(a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        f32x4_add(f32x4_mul(a, b), c)
    }

    pub fn sum(x: Lanes) -> f32 {
        let x = f32x4_add(x, i32x4_shuffle::<2, 3, 0, 1>(x, x));
        f32x4_extract_lane::<0>(x) + f32x4_extract_lane::<1>(x)
    }
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_feature = "avx"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
mod imp {
    pub const WIDTH: usize = 8;
    pub const KEYS: usize = 2;
    pub const PARTS: usize = 2;
    pub type Lanes = [f32; WIDTH];

    pub fn splat(x: f32) -> Lanes {
        [x; WIDTH]
    }

    pub fn load(x: &[f32; WIDTH]) -> Lanes {
        *x
    }

    pub fn store(a: Lanes, x: &mut [f32; WIDTH]) {
        *x = a;
    }

    pub fn mul_add(a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }

    /// Pairwise, as the vector forms sum their lanes.
    pub fn sum(a: Lanes) -> f32 {
        let x: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
        (x[0] + x[2]) + (x[1] + x[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::backend::dot::dot;
    use crate::runtime::backend::{max_rel_diff, noise};

    /// Every head count (whole groups of four and the rest) and widths with and without a
    /// remainder: a head's sums are the bits it gets alone, and within f32 rounding of the
    /// plain loops (the fused multiply-add rounds once where they round twice).
    #[test]
    fn grouped_heads_give_what_each_head_gives_alone() {
        for (heads, hd, span) in [(4, 256, 37), (5, 40, 9), (3, 16, 1), (8, 20, 12), (1, 7, 3)] {
            let qs = noise(heads * hd, 1, 2.0);
            let keys = noise(span * hd, 2, 1.5);
            let key = |j: usize| &keys[j * hd..][..hd];
            let mut got = vec![f32::NAN; heads * span];
            scores(&qs, hd, span, key, |h, j, s| got[h * span + j] = s);
            let mut alone = vec![f32::NAN; heads * span];
            for (h, q) in qs.chunks_exact(hd).enumerate() {
                for j in 0..span {
                    scores(q, hd, 1, |_| key(j), |_, _, s| alone[h * span + j] = s);
                }
            }
            assert_eq!(got, alone, "scores, {heads} heads × {hd}, {span} keys");
            let plain: Vec<f32> = (0..heads * span)
                .map(|i| dot(&qs[i / span * hd..][..hd], key(i % span)))
                .collect();
            assert!(max_rel_diff(&got, &plain) < 1e-5, "scores, {heads} heads × {hd}");

            let p = noise(heads * span, 3, 1.0);
            let values = noise(span * hd, 4, 3.0);
            let start = noise(heads * hd, 5, 0.5);
            let value = |j: usize| &values[j * hd..][..hd];
            let mut got = start.clone();
            weighted_sums(&p, span, value, &mut got);
            let mut alone = start.clone();
            for (h, o) in alone.chunks_exact_mut(hd).enumerate() {
                weighted_sums(&p[h * span..][..span], span, value, o);
            }
            assert_eq!(got, alone, "weighted sums, {heads} heads × {hd}, {span} rows");
            let mut plain = start;
            for (h, o) in plain.chunks_exact_mut(hd).enumerate() {
                for j in 0..span {
                    for (o, x) in o.iter_mut().zip(value(j)) {
                        *o += p[h * span + j] * x;
                    }
                }
            }
            assert!(
                max_rel_diff(&got, &plain) < 1e-5,
                "weighted sums, {heads} heads × {hd}, {span} rows"
            );
        }
    }
}
