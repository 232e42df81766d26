//! Language models, one module per architecture, dispatched on `general.architecture`.
//! Each model owns its weights and a [`KvCache`]; prompts and schemas are not its business.

pub mod gemma3;
mod kv_cache;

use std::sync::Arc;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, QTensor};
use candle_core::Device;

pub use kv_cache::{KvCache, KvSnapshot};

use crate::backend::cpu;
use crate::error::{Error, Result};
use crate::gguf::{ByteSource, Gguf};

/// The most tokens a model keeps in its KV cache, whatever the GGUF allows: extraction
/// prompts are a schema prefix plus one chunk, and the cache grows on demand up to this.
pub const MAX_CONTEXT: usize = 8192;

/// A causal language model with an incremental KV cache.
pub trait LanguageModel {
    /// Appends `tokens` at the current position and returns the logits after the last one.
    /// Errors (and leaves the cache as it was) if the context would overflow.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>>;
    /// Number of tokens in the cache.
    fn position(&self) -> usize;
    fn max_context(&self) -> usize;
    fn vocab_size(&self) -> usize;
    /// Forgets everything after `position` (0 clears the cache).
    fn truncate(&mut self, position: usize);
    /// A copy of the cache, to resume from later (a schema prompt shared by many documents).
    fn snapshot(&self) -> KvSnapshot;
    fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()>;
}

/// Loads the model the GGUF describes.
pub fn load<S: ByteSource + ?Sized>(g: &Gguf, src: &S) -> Result<Box<dyn LanguageModel>> {
    match g.architecture()? {
        "gemma3" => Ok(Box::new(gemma3::Gemma3::load(g, src)?)),
        other => Err(Error::UnsupportedArchitecture(other.to_string())),
    }
}

/// Reads a tensor, checks its shape (outermost dim first) and repacks types that have no
/// SIMD kernel into Q8_0.
fn load_qtensor<S: ByteSource + ?Sized>(
    g: &Gguf,
    src: &S,
    name: &str,
    shape: &[usize],
) -> Result<Arc<QTensor>> {
    let info = g.tensor(name)?;
    if info.shape() != shape {
        return Err(Error::TensorShape {
            name: name.into(),
            expected: shape.to_vec(),
            found: info.shape(),
        });
    }
    let bytes = src.read_at(info.offset, info.size)?;
    let q = qtensor_from_ggml(info.dtype, &bytes, info.shape(), &Device::Cpu)?;
    let q = if cpu::needs_repack(info.dtype) {
        cpu::repack_q8_0(q)?
    } else {
        q
    };
    Ok(Arc::new(q))
}

/// A small tensor (norm weights) as plain `f32`s.
fn load_vector<S: ByteSource + ?Sized>(
    g: &Gguf,
    src: &S,
    name: &str,
    len: usize,
) -> Result<Vec<f32>> {
    let q = load_qtensor(g, src, name, &[len])?;
    Ok(q.dequantize(&Device::Cpu)?.to_vec1::<f32>()?)
}
