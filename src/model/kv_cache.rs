//! Keys and values of every layer for the positions seen so far, as plain row-major
//! `f32`s (`position × kv_heads × head_dim`), so that a prefix can be kept and resumed.

use super::KvSnapshot;
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct LayerKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct KvCache {
    pub layers: Vec<LayerKv>,
    row: usize,
    len: usize,
}

impl KvCache {
    /// `row` = `kv_heads × head_dim`, the width of one position in one layer.
    pub fn new(layers: usize, row: usize) -> KvCache {
        KvCache {
            layers: vec![
                LayerKv {
                    k: Vec::new(),
                    v: Vec::new()
                };
                layers
            ],
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

    /// Appends `k`, `v` rows to `layer`. The caller appends the same number of positions
    /// to every layer, then calls [`Self::advance`].
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.layers[layer];
        l.k.extend_from_slice(k);
        l.v.extend_from_slice(v);
    }

    pub fn advance(&mut self, positions: usize) {
        self.len += positions;
        debug_assert!(self.layers.iter().all(|l| l.k.len() == self.len * self.row));
    }

    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        for l in &mut self.layers {
            l.k.truncate(len * self.row);
            l.v.truncate(len * self.row);
        }
        self.len = len;
    }

    pub fn snapshot(&self) -> KvSnapshot {
        KvSnapshot::new(self.len, self.clone())
    }

    pub fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()> {
        let s: &KvCache = snapshot.state()?;
        if s.row != self.row || s.layers.len() != self.layers.len() {
            return Err(Error::BadSnapshot);
        }
        // Reuse our allocations: a restore happens once per document.
        for (dst, src) in self.layers.iter_mut().zip(&s.layers) {
            dst.k.clear();
            dst.k.extend_from_slice(&src.k);
            dst.v.clear();
            dst.v.extend_from_slice(&src.v);
        }
        self.len = s.len;
        Ok(())
    }
}
