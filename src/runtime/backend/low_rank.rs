//! A low-rank update `y += (x·Aᵀ)·Bᵀ` on the CPU: the side path of a LoRA adapter beside a
//! quantized projection (`crate::runtime::model::adapter` reads the pairs from a file).

use crate::runtime::backend::heads;
use crate::runtime::backend::threads;

/// One adapted projection, row-major f32: `A` `[r, in]`, and `B` stored transposed,
/// `Bᵀ` `[r, out]`, so that its product is r long vector updates rather than `out`
/// dot products of length r (each ending in a horizontal sum).
pub struct LowRank {
    a: Vec<f32>,
    bt: Vec<f32>,
    rank: usize,
    in_dim: usize,
    out_dim: usize,
}

impl LowRank {
    /// From `A` `[rank, in_dim]` and `B` `[out_dim, rank]`, row-major.
    pub fn new(a: Vec<f32>, b: &[f32], rank: usize, in_dim: usize, out_dim: usize) -> LowRank {
        LowRank {
            a,
            bt: transpose(b, out_dim, rank),
            rank,
            in_dim,
            out_dim,
        }
    }

    /// `y += (x·Aᵀ)·Bᵀ` for every row of `x` (`rows × in`; `y` is `rows × out`), the rows
    /// shared out among the threads. Plain loops: per row this is r·(in+out) multiply-adds,
    /// too little to be worth a tensor library's per-call overhead (that overhead cost
    /// 12-21 % of a token). The rows go through [`heads`] as its heads go, four at a time:
    /// the rows of `A` against them several at a time (several sums in flight rather than
    /// one), then the rows of `Bᵀ` summed into their rows of `y`, each stretch of `Bᵀ` read
    /// once for the four and each sum in the order of the plain loop (a row's result does not
    /// depend on the rows beside it).
    pub fn add_to(&self, x: &[f32], y: &mut [f32]) {
        threads::row_runs_mut(y, self.out_dim, |first, ys| {
            let rows = ys.len() / self.out_dim;
            let mut m = vec![0f32; rows * self.rank];
            heads::scores(
                &x[first * self.in_dim..][..rows * self.in_dim],
                self.in_dim,
                self.rank,
                |r| &self.a[r * self.in_dim..][..self.in_dim],
                |t, r, v| m[t * self.rank + r] = v,
            );
            heads::weighted_sums(&m, self.rank, |r| &self.bt[r * self.out_dim..][..self.out_dim], ys);
        });
    }

    /// `(out, in)`: the shape of the projection it adapts.
    pub fn shape(&self) -> (usize, usize) {
        (self.out_dim, self.in_dim)
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// `A` `[r, in]` and `B` `[out, r]`, row-major (what the GPU's merge reads).
    pub fn matrices(&self) -> (&[f32], Vec<f32>) {
        (&self.a, transpose(&self.bt, self.rank, self.out_dim))
    }
}

/// The transpose of a row-major `rows × cols` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}
