//! Low-rank adapters (LoRA) applied at run time on top of the unchanged quantized base:
//! `y = x·Wᵀ + (x·Aᵀ)·Bᵀ`. Merging the adapter into 4/5-bit weights would round the
//! fine-tuning away (measured: PII F1 0.46 → 0.22), and a side path keeps the base model
//! selectable without reloading it. The GPU backend, whose weights are 8-bit anyway,
//! merges the pair into a copy of them instead ([`crate::runtime::backend::webgpu::ops::merged`]):
//! 8 bits keep the tuning, and a forward then runs no extra kernels.
//!
//! File format (written by `train/train.py`): safetensors with f16 tensors
//! `blk.N.<stem>.lora_a` `[r, in]` and `blk.N.<stem>.lora_b` `[out, r]` (the LoRA scale
//! already folded into B), and metadata `format = anote-lora-v1` and `base_fingerprint`,
//! which must equal the loaded model's [`super::fingerprint`].

use std::collections::HashMap;
use std::sync::Arc;

use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::runtime::backend::low_rank::LowRank;

pub const FORMAT: &str = "anote-lora-v1";

pub struct Adapter {
    /// sha256 of the adapter file.
    pub sha256: String,
    pub base_fingerprint: String,
    pub rank: usize,
    pairs: HashMap<String, Arc<LowRank>>,
}

impl Adapter {
    /// Parses an adapter file; with `expected_sha256`, a file with other bytes (corrupt,
    /// truncated, another version) is refused.
    pub fn from_bytes(bytes: &[u8], expected_sha256: Option<&str>) -> Result<Adapter> {
        let sha256 = format!("{:x}", Sha256::digest(bytes));
        if let Some(want) = expected_sha256 {
            if want != sha256 {
                return Err(Error::BadAdapter(format!(
                    "the adapter file's sha256 is {sha256}, expected {want} (corrupt or a different version)"
                )));
            }
        }
        let bad = |e: safetensors::SafeTensorError| Error::BadAdapter(format!("not a safetensors file: {e}"));
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(Error::BadAdapter(format!("metadata format is not {FORMAT}")));
        }
        let base_fingerprint = meta
            .get("base_fingerprint")
            .cloned()
            .ok_or_else(|| Error::BadAdapter("no base_fingerprint in the metadata".into()))?;
        let file = SafeTensors::deserialize(bytes).map_err(bad)?;
        // Per stem: A `(values, [r, in])` and B `(values, [out, r])`.
        type Half = Option<(Vec<f32>, [usize; 2])>;
        let mut halves: HashMap<String, (Half, Half)> = HashMap::new();
        let mut rank = 0;
        for (name, view) in file.tensors() {
            let (stem, part) = name
                .rsplit_once('.')
                .filter(|(_, p)| *p == "lora_a" || *p == "lora_b")
                .ok_or_else(|| Error::BadAdapter(format!("unexpected tensor {name}")))?;
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => return Err(Error::BadAdapter(format!("tensor {name} is {other:?}, expected F16"))),
            };
            // A NaN or an infinity would poison every logit and switch the model off silently.
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::BadAdapter(format!(
                    "tensor {name} holds {} at element {i}",
                    values[i]
                )));
            }
            let [rows, cols] = view.shape() else {
                return Err(Error::BadAdapter(format!("tensor {name} is not a matrix")));
            };
            rank = if part == "lora_a" { *rows } else { *cols };
            let slot = halves.entry(stem.to_string()).or_default();
            let half = Some((values, [*rows, *cols]));
            if part == "lora_a" {
                slot.0 = half
            } else {
                slot.1 = half
            }
        }
        let mut pairs = HashMap::new();
        for (stem, halves) in halves {
            match halves {
                (Some((a, [r, in_dim])), Some((b, [out_dim, rb]))) if r == rb => {
                    let pair = LowRank::new(a, &b, r, in_dim, out_dim);
                    pairs.insert(stem, Arc::new(pair));
                }
                _ => return Err(Error::BadAdapter(format!("{stem} needs lora_a and lora_b of one rank"))),
            }
        }
        if pairs.is_empty() {
            return Err(Error::BadAdapter("the file holds no low-rank pairs".into()));
        }
        Ok(Adapter {
            sha256,
            base_fingerprint,
            rank,
            pairs,
        })
    }

    /// The pair for the weight `stem` (e.g. `blk.3.attn_q`), checked against its shape.
    pub fn pair(&self, stem: &str, out_dim: usize, in_dim: usize) -> Result<Option<Arc<LowRank>>> {
        let Some(p) = self.pairs.get(stem) else {
            return Ok(None);
        };
        if p.shape() != (out_dim, in_dim) {
            return Err(Error::BadAdapter(format!(
                "{stem} is {}×{} in the adapter but {out_dim}×{in_dim} in the model",
                p.shape().0,
                p.shape().1
            )));
        }
        Ok(Some(p.clone()))
    }

    /// Names of the adapted weights, to check that a model used them all.
    pub fn stems(&self) -> impl Iterator<Item = &str> {
        self.pairs.keys().map(String::as_str)
    }
}
