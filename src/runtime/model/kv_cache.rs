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
use crate::runtime::gguf::ByteSource;

// Stored rows are the f32s' bytes as they lie in memory, read back on a target like it.
const _: () = assert!(cfg!(target_endian = "little"), "stored caches are little-endian");

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

    /// The cache as it is now, which the cache then shares: its own rows move into the
    /// snapshot instead of being copied beside it (a schema prefix's rows are 25 MB, and
    /// wasm memory never shrinks). A cache over a prefix and rows of its own is copied into
    /// one flat snapshot.
    pub fn snapshot(&mut self) -> KvSnapshot {
        if self.len > self.prefix_len() {
            let layers = match self.prefix.take() {
                None => std::mem::take(&mut self.layers),
                Some(p) => p
                    .layers
                    .iter()
                    .zip(&self.layers)
                    .map(|(p, own)| LayerKv {
                        k: [&p.k[..], &own.k].concat(),
                        v: [&p.v[..], &own.v].concat(),
                    })
                    .collect(),
            };
            let count = layers.len();
            self.prefix = Some(Rc::new(KvCache {
                prefix: None,
                layers,
                row: self.row,
                len: self.len,
            }));
            self.layers = vec![LayerKv::default(); count];
        }
        match &self.prefix {
            Some(p) => KvSnapshot::shared(self.len, p.clone()),
            None => KvSnapshot::new(self.len, self.clone()),
        }
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

/// A snapshot's rows as [`KvCache::write`] stores them: layers, row width and positions
/// (`u32` each), then every layer's keys and values.
const HEADER: usize = 12;

impl KvCache {
    /// Writes a snapshot's rows through `out`, a piece at a time (a layer's keys or values).
    pub fn write(&self, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        // A snapshot holds all its rows itself (see `snapshot`).
        if self.prefix.is_some() {
            return Err(Error::BadSnapshot);
        }
        let shape = [self.layers.len(), self.row, self.len].map(|n| n as u32);
        out(bytemuck::cast_slice(&shape))?;
        for l in &self.layers {
            out(bytemuck::cast_slice(&l.k))?;
            out(bytemuck::cast_slice(&l.v))?;
        }
        Ok(())
    }

    /// Reads a snapshot of `len` positions that [`Self::write`] wrote, from `src` at `at` to
    /// its end, for a model of `layers` layers and `row`-wide rows: the rows go straight into
    /// their vectors, and a source of another shape or size is refused before any is made.
    pub fn read(src: &dyn ByteSource, at: u64, layers: usize, row: usize, len: usize) -> Result<KvSnapshot> {
        let mut shape = [0u32; 3];
        if src.size() < at + HEADER as u64 {
            return Err(Error::StoredPrompt("it is shorter than its header".into()));
        }
        src.read_into(at, bytemuck::cast_slice_mut(&mut shape))?;
        let stored = shape.map(|n| n as usize);
        if stored != [layers, row, len] {
            let [l, r, n] = stored;
            return Err(Error::StoredPrompt(format!(
                "it holds {n} positions of {l} layers of {r}; this prompt needs {len} of {layers} of {row}"
            )));
        }
        let floats = len * row;
        if src.size() != at + HEADER as u64 + (8 * floats * layers) as u64 {
            return Err(Error::StoredPrompt("its size is not its rows'".into()));
        }
        let mut cache = KvCache::new(layers, row);
        let mut offset = at + HEADER as u64;
        for l in &mut cache.layers {
            for rows in [&mut l.k, &mut l.v] {
                *rows = vec![0.0; floats];
                src.read_into(offset, bytemuck::cast_slice_mut(rows))?;
                offset += 4 * floats as u64;
            }
        }
        cache.len = len;
        Ok(KvSnapshot::new(len, cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(positions: usize) -> KvCache {
        let mut c = KvCache::new(2, 4);
        for p in 0..positions {
            for layer in 0..2 {
                let row = [(10 * layer + p) as f32; 4];
                c.append(layer, &row, &row.map(|x| -x));
            }
            c.advance(1);
        }
        c
    }

    fn keys(c: &KvCache, layer: usize) -> Vec<f32> {
        let k = c.rows(layer).0;
        (0..c.len()).flat_map(|j| k.row(j).to_vec()).collect()
    }

    #[test]
    fn a_snapshot_takes_the_rows_and_the_cache_shares_them() {
        let mut c = filled(3);
        let before = keys(&c, 1);
        let snap = c.snapshot();
        let state: Rc<KvCache> = snap.state_shared().unwrap();
        assert!(
            Rc::ptr_eq(c.prefix.as_ref().unwrap(), &state),
            "the cache shares the snapshot"
        );
        assert!(
            c.layers.iter().all(|l| l.k.capacity() == 0 && l.v.capacity() == 0),
            "no copy is left behind"
        );
        assert_eq!((c.len(), keys(&c, 1)), (3, before.clone()));
        // The cache goes on after the snapshot, and the snapshot stays as it was.
        c.append(0, &[7.0; 4], &[7.0; 4]);
        c.append(1, &[8.0; 4], &[8.0; 4]);
        c.advance(1);
        assert_eq!(keys(&c, 1), [&before[..], &[8.0; 4]].concat());
        let mut d = KvCache::new(2, 4);
        d.restore(&snap).unwrap();
        assert_eq!((d.len(), keys(&d, 1)), (3, before.clone()));
        // A snapshot of prefix and own rows is flat and holds both.
        let again = c.snapshot();
        assert_eq!(again.len(), 4);
        d.restore(&again).unwrap();
        assert_eq!(keys(&d, 1), [&before[..], &[8.0; 4]].concat());
        assert!(d.prefix.as_ref().unwrap().prefix.is_none(), "one level of sharing");
    }

    #[test]
    fn a_written_snapshot_reads_back_as_it_was_and_another_shape_is_refused() {
        let mut c = filled(3);
        let snap = c.snapshot();
        let mut bytes = b"head".to_vec();
        let state: &KvCache = snap.state().unwrap();
        state
            .write(&mut |piece| {
                bytes.extend_from_slice(piece);
                Ok(())
            })
            .unwrap();
        let back = KvCache::read(&bytes.as_slice(), 4, 2, 4, 3).unwrap();
        let mut d = KvCache::new(2, 4);
        d.restore(&back).unwrap();
        assert_eq!((d.len(), keys(&d, 0), keys(&d, 1)), (3, keys(&c, 0), keys(&c, 1)));
        let values = |c: &KvCache| {
            (0..c.len())
                .flat_map(|j| c.rows(1).1.row(j).to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&d), values(&c));
        for (shape, cut) in [((3, 4, 3), 0), ((2, 8, 3), 0), ((2, 4, 2), 0), ((2, 4, 3), 1)] {
            let err = KvCache::read(&&bytes[..bytes.len() - cut], 4, shape.0, shape.1, shape.2).unwrap_err();
            assert_eq!(err.code(), "stored_prompt", "{shape:?} cut by {cut}");
        }
        assert_eq!(
            KvCache::read(&&bytes[..10], 4, 2, 4, 3).unwrap_err().code(),
            "stored_prompt"
        );
    }
}
