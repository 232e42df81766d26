//! Keys and values of every layer for the positions seen so far, as plain row-major
//! `f32`s (`position × kv_heads × head_dim`), so that a prefix can be kept and resumed.
//!
//! A cache resumed from a snapshot shares the snapshot's rows instead of copying them:
//! every window of a document starts from the same schema prefix, and several windows
//! decode at once, each in its own cache over that one prefix.

use std::rc::Rc;

use super::KvSnapshot;
use crate::error::{Error, Result};
use crate::runtime::backend::cpu::KvRows;

/// Positions a cache grows by, at least, beyond what it needs.
const GROW: usize = 32;

#[derive(Clone, Debug, Default)]
struct LayerKv {
    k: Vec<f32>,
    v: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct KvCache {
    /// The snapshot this cache resumed from: positions `0..prefix.len`, read-only.
    prefix: Option<Rc<KvCache>>,
    /// This cache's own positions, after the prefix.
    layers: Vec<LayerKv>,
    row: usize,
    len: usize,
}

impl KvCache {
    /// `row` = `kv_heads × head_dim`, the width of one position in one layer.
    pub fn new(layers: usize, row: usize) -> KvCache {
        KvCache {
            prefix: None,
            layers: vec![LayerKv::default(); layers],
            row,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, |p| p.len)
    }

    /// Appends `k`, `v` rows to `layer`. The caller appends the same number of positions
    /// to every layer, then calls [`Self::advance`].
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let grow = GROW * self.row;
        let l = &mut self.layers[layer];
        for (rows, new) in [(&mut l.k, k), (&mut l.v, v)] {
            // Room for what is needed and a little more, not twice what is held: a batch
            // keeps a cache per window slot, and wasm memory never shrinks. A quarter of
            // what is held keeps a long generation from copying its cache every 32 steps.
            if rows.len() + new.len() > rows.capacity() {
                rows.reserve_exact(new.len() + grow.max(rows.len() / 4));
            }
            rows.extend_from_slice(new);
        }
    }

    pub fn advance(&mut self, positions: usize) {
        self.len += positions;
        debug_assert!(self
            .layers
            .iter()
            .all(|l| l.k.len() == (self.len - self.prefix_len()) * self.row));
    }

    /// The keys and values of `layer`, every position held.
    pub fn rows(&self, layer: usize) -> (KvRows<'_>, KvRows<'_>) {
        let own = &self.layers[layer];
        let (pk, pv): (&[f32], &[f32]) = match &self.prefix {
            // A snapshot is always flat (see `snapshot`), so its rows are all its own.
            Some(p) => (&p.layers[layer].k, &p.layers[layer].v),
            None => (&[], &[]),
        };
        (KvRows::new(pk, &own.k, self.row), KvRows::new(pv, &own.v, self.row))
    }

    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        let shared = self.prefix_len();
        if len < shared {
            // Keep the first `len` positions of the prefix as our own; rare (a prefix is
            // only ever cut to 0, which copies nothing).
            let p = self.prefix.take().expect("a shared prefix is longer than len");
            for (own, kept) in self.layers.iter_mut().zip(&p.layers) {
                own.k.clear();
                own.k.extend_from_slice(&kept.k[..len * self.row]);
                own.v.clear();
                own.v.extend_from_slice(&kept.v[..len * self.row]);
            }
        } else {
            for l in &mut self.layers {
                l.k.truncate((len - shared) * self.row);
                l.v.truncate((len - shared) * self.row);
            }
        }
        self.len = len;
    }

    /// The cache as it is now. A cache that added nothing to its prefix shares it; any
    /// other is copied into one flat cache.
    pub fn snapshot(&self) -> KvSnapshot {
        if let (Some(p), true) = (&self.prefix, self.len == self.prefix_len()) {
            return KvSnapshot::shared(self.len, p.clone());
        }
        let layers = (0..self.layers.len())
            .map(|i| {
                let (k, v) = self.rows(i);
                LayerKv {
                    k: k.to_vec(),
                    v: v.to_vec(),
                }
            })
            .collect();
        KvSnapshot::new(
            self.len,
            KvCache {
                prefix: None,
                layers,
                row: self.row,
                len: self.len,
            },
        )
    }

    /// Resumes from `snapshot`, sharing its rows.
    pub fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()> {
        let s: Rc<KvCache> = snapshot.state_shared()?;
        if s.row != self.row || s.layers.len() != self.layers.len() {
            return Err(Error::BadSnapshot);
        }
        // Released, not cleared: the rows a cache held (a whole schema prefix, computed in
        // slot 0) would otherwise stay allocated beside the snapshot that copied them.
        for l in &mut self.layers {
            *l = LayerKv::default();
        }
        self.len = s.len;
        self.prefix = Some(s);
        Ok(())
    }
}
