//! Language models, one module per architecture, dispatched on `general.architecture`.
//! Each model owns its weights and a [`KvCache`]; prompts and schemas are not its business.

pub mod adapter;
pub mod embedding;
pub mod gemma3;
pub mod gemma3_webgpu;
mod kv_cache;
mod snapshot;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use candle_core::quantized::k_quants::{self as kq, GgmlType};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;
use sha2::{Digest, Sha256};

pub use adapter::Adapter;
use embedding::{Embedding, FileRows};
pub use kv_cache::KvCache;
pub use snapshot::KvSnapshot;

use crate::error::{Error, Result};
use crate::runtime::backend::cpu::{self, Linear};
use crate::runtime::backend::kquant::{KRows, Kind};
use crate::runtime::backend::q8::{Q8Rows, Q8_0_BLOCK_BYTES};
use crate::runtime::gguf::{ByteSource, Gguf, SharedSource, TensorInfo};

/// The most tokens a model keeps in its KV cache, whatever the GGUF allows: extraction
/// prompts are a schema prefix plus one chunk, and the cache grows on demand up to this.
pub const MAX_CONTEXT: usize = 8192;

/// A computation whose result may come back later: a GPU readback in the browser
/// resolves from the event loop. CPU models return ready futures.
pub type Compute<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + 'a>>;

/// A causal language model with an incremental KV cache.
pub trait LanguageModel {
    /// Appends `tokens` at the current position and returns the logits after the last one.
    /// Errors (and leaves the cache as it was) if the context would overflow.
    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(async move {
            let hidden = self.forward_hidden(tokens).await?;
            self.logits(&hidden).await
        })
    }
    /// As [`Self::forward`], but returns the final hidden state (after the output norm).
    fn forward_hidden<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>>;
    /// All logits for a hidden state.
    fn logits<'a>(&'a self, hidden: &'a [f32]) -> Compute<'a, Vec<f32>>;
    /// The logits of the listed tokens only (constrained decoding).
    fn logits_for<'a>(&'a self, hidden: &'a [f32], ids: &'a [u32]) -> Compute<'a, Vec<f32>>;
    /// Forwards `tokens`, then the logits of the listed tokens for the last one: a
    /// constrained decoding step. The GPU does both in one submission; the default runs
    /// the two halves.
    fn forward_logits_for<'a>(&'a mut self, tokens: &'a [u32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(async move {
            let hidden = self.forward_hidden(tokens).await?;
            self.logits_for(&hidden, ids).await
        })
    }
    /// Number of tokens in the cache.
    fn position(&self) -> usize;
    fn max_context(&self) -> usize;
    fn vocab_size(&self) -> usize;
    /// Forgets everything after `position` (0 clears the cache).
    fn truncate(&mut self, position: usize);
    /// The cache as it is, to resume from later (a schema prompt shared by many documents).
    /// A CPU model's cache hands its rows to the snapshot and shares them from then on.
    fn snapshot(&mut self) -> KvSnapshot;
    fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()>;
    /// Whether [`Self::save_snapshot`] works here: a CPU model's cache is plain memory, a
    /// GPU's stays on the GPU.
    fn saves_snapshots(&self) -> bool {
        false
    }
    /// Writes `snapshot` through `out`, for a later run to read back with
    /// [`Self::load_snapshot`] (a page keeps its schema prompt's cache between visits).
    fn save_snapshot(&self, _snapshot: &KvSnapshot, _out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        Err(cache_stays(self.backend()))
    }
    /// Reads a snapshot of `len` positions that [`Self::save_snapshot`] wrote, from `src`
    /// at `at` to its end.
    fn load_snapshot(&self, _src: &dyn ByteSource, _at: u64, _len: usize) -> Result<KvSnapshot> {
        Err(cache_stays(self.backend()))
    }
    /// Puts a low-rank adapter beside the weights it names (`None` removes it) and clears
    /// the cache, whose keys and values the old weights made.
    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()>;
    /// Where the forward runs: `cpu` or `webgpu`.
    fn backend(&self) -> &'static str;

    /// How many sequences one [`Self::forward_batch`] carries, each in its own cache
    /// (slots `0..max_batch`; slot 0 is the cache the single-sequence methods use).
    fn max_batch(&self) -> usize {
        1
    }
    /// Starts sequence `slot` at the end of `prefix`, forgetting what the slot held.
    fn begin(&mut self, slot: usize, prefix: &KvSnapshot) -> Result<()> {
        check_slot(slot, self.max_batch())?;
        self.restore(prefix)
    }
    /// Appends each row's tokens to its sequence and returns, per row, the logits it asks
    /// for after its last token. The rows share every weight read: a step of B sequences
    /// costs far less than B steps. The default carries one row.
    fn forward_batch<'a>(&'a mut self, rows: &'a [BatchRow<'a>]) -> Compute<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let [row] = rows else {
                return Err(Error::Compute(format!("{} rows in a batch of at most 1", rows.len())));
            };
            check_slot(row.slot, 1)?;
            let logits = match row.logits {
                Logits::All => self.forward(row.tokens).await?,
                Logits::Of(ids) => self.forward_logits_for(row.tokens, ids).await?,
            };
            Ok(vec![logits])
        })
    }
}

/// Why a model without [`LanguageModel::saves_snapshots`] refuses to save or load one.
fn cache_stays(backend: &str) -> Error {
    Error::StoredPrompt(format!("the {backend} backend keeps its cache where it computes"))
}

/// One sequence's part of a batched forward.
pub struct BatchRow<'a> {
    pub slot: usize,
    pub tokens: &'a [u32],
    pub logits: Logits<'a>,
}

/// Which logits a row wants after its last token.
#[derive(Clone, Copy)]
pub enum Logits<'a> {
    All,
    /// Only these tokens' (constrained decoding).
    Of(&'a [u32]),
}

fn check_slot(slot: usize, slots: usize) -> Result<()> {
    match slot < slots {
        true => Ok(()),
        false => Err(Error::Compute(format!("sequence slot {slot} of {slots}"))),
    }
}

/// The checks a batched forward makes before touching any cache: every slot exists and
/// comes once, and every sequence's tokens pass [`check_tokens`] at its cache's length.
fn check_batch(
    seqs: &[(usize, &[u32])],
    slots: usize,
    len: impl Fn(usize) -> usize,
    context: usize,
    vocab: usize,
) -> Result<()> {
    for (i, &(slot, tokens)) in seqs.iter().enumerate() {
        check_slot(slot, slots)?;
        if seqs[..i].iter().any(|s| s.0 == slot) {
            return Err(Error::Compute(format!("sequence slot {slot} twice in one batch")));
        }
        check_tokens(tokens, len(slot), context, vocab)?;
    }
    Ok(())
}

/// The checks every forward makes before touching the cache.
fn check_tokens(tokens: &[u32], position: usize, context: usize, vocab: usize) -> Result<()> {
    if tokens.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    let needed = position + tokens.len();
    if needed > context {
        return Err(Error::ContextOverflow { needed, max: context });
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::Compute(format!("token id {bad} is outside the vocabulary")));
    }
    Ok(())
}

/// Tensors whose raw bytes identify a base model for [`fingerprint`]: small, and
/// different in any fine-tune or other quantization of it.
pub const FINGERPRINT_TENSORS: [&str; 2] = ["output_norm.weight", "blk.0.attn_q.weight"];

/// What an adapter must have been trained on: sha256 over the raw bytes of
/// [`FINGERPRINT_TENSORS`] (`train/train.py` computes the same).
pub fn fingerprint<S: ByteSource + ?Sized>(g: &Gguf, src: &S) -> Result<String> {
    let mut h = Sha256::new();
    for name in FINGERPRINT_TENSORS {
        let info = g.tensor(name)?;
        let mut bytes = vec![0u8; info.size];
        src.read_into(info.offset, &mut bytes)?;
        h.update(&bytes);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Loads the model the GGUF describes, on the CPU; with `kept` (the same file, kept open),
/// the embedding's rows stay in the file ([`embedding`]).
pub fn load<S: ByteSource + ?Sized>(g: &Gguf, src: &S, kept: Option<SharedSource>) -> Result<Box<dyn LanguageModel>> {
    match g.architecture()? {
        "gemma3" => Ok(Box::new(gemma3::Gemma3::load(g, src, kept)?)),
        other => Err(Error::UnsupportedArchitecture(other.to_string())),
    }
}

/// Loads the model the GGUF describes onto `gpu`.
pub fn load_webgpu<S: ByteSource + ?Sized>(
    gpu: std::rc::Rc<crate::runtime::backend::webgpu::Gpu>,
    g: &Gguf,
    src: &S,
) -> Result<Box<dyn LanguageModel>> {
    match g.architecture()? {
        "gemma3" => Ok(Box::new(gemma3_webgpu::Gemma3Gpu::load(gpu, g, src)?)),
        other => Err(Error::UnsupportedArchitecture(other.to_string())),
    }
}

/// Reads a tensor, checks its shape (outermost dim first) and repacks types that have no
/// SIMD kernel into Q8_0.
fn load_qtensor<S: ByteSource + ?Sized>(g: &Gguf, src: &S, name: &str, shape: &[usize]) -> Result<Arc<QTensor>> {
    let q = read_qtensor(g, src, name, shape)?;
    let q = if cpu::needs_repack(q.dtype()) {
        cpu::repack_q8_0(q)?
    } else {
        q
    };
    Ok(Arc::new(q))
}

/// Reads a tensor as it is stored, checking its shape.
fn read_qtensor<S: ByteSource + ?Sized>(g: &Gguf, src: &S, name: &str, shape: &[usize]) -> Result<QTensor> {
    let info = tensor_of_shape(g, name, shape)?;
    let storage = match info.dtype {
        GgmlDType::F32 => read_blocks::<f32, _>(src, info)?,
        GgmlDType::F16 => read_blocks::<half::f16, _>(src, info)?,
        GgmlDType::BF16 => read_blocks::<half::bf16, _>(src, info)?,
        GgmlDType::Q4_0 => read_blocks::<kq::BlockQ4_0, _>(src, info)?,
        GgmlDType::Q4_1 => read_blocks::<kq::BlockQ4_1, _>(src, info)?,
        GgmlDType::Q5_0 => read_blocks::<kq::BlockQ5_0, _>(src, info)?,
        GgmlDType::Q5_1 => read_blocks::<kq::BlockQ5_1, _>(src, info)?,
        GgmlDType::Q8_0 => read_blocks::<kq::BlockQ8_0, _>(src, info)?,
        GgmlDType::Q8_1 => read_blocks::<kq::BlockQ8_1, _>(src, info)?,
        GgmlDType::Q2K => read_blocks::<kq::BlockQ2K, _>(src, info)?,
        GgmlDType::Q3K => read_blocks::<kq::BlockQ3K, _>(src, info)?,
        GgmlDType::Q4K => read_blocks::<kq::BlockQ4K, _>(src, info)?,
        GgmlDType::Q5K => read_blocks::<kq::BlockQ5K, _>(src, info)?,
        GgmlDType::Q6K => read_blocks::<kq::BlockQ6K, _>(src, info)?,
        GgmlDType::Q8K => read_blocks::<kq::BlockQ8K, _>(src, info)?,
    };
    Ok(QTensor::new(storage, info.shape())?)
}

fn tensor_of_shape<'g>(g: &'g Gguf, name: &str, shape: &[usize]) -> Result<&'g TensorInfo> {
    let info = g.tensor(name)?;
    if info.shape() != shape {
        return Err(Error::TensorShape {
            name: name.into(),
            expected: shape.to_vec(),
            found: info.shape(),
        });
    }
    Ok(info)
}

/// A weight matrix in the Q8 layout of our kernels. Q8_0 is read straight from the source
/// a slice at a time, so the 178 MB embedding is never held twice; other types go
/// through a dequantized copy of one matrix.
fn load_q8rows<S: ByteSource + ?Sized>(g: &Gguf, src: &S, name: &str, shape: &[usize]) -> Result<Q8Rows> {
    let info = tensor_of_shape(g, name, shape)?;
    if cpu::needs_repack(info.dtype) {
        let dense = read_qtensor(g, src, name, shape)?.dequantize(&Device::Cpu)?;
        return Ok(Q8Rows::quantize_q8_0(&dense.flatten_all()?.to_vec1::<f32>()?));
    }
    if info.dtype != GgmlDType::Q8_0 {
        return Q8Rows::from_qtensor(&read_qtensor(g, src, name, shape)?);
    }
    if !info.size.is_multiple_of(Q8_0_BLOCK_BYTES) {
        return Err(Error::Malformed(format!("{name}: Q8_0 blocks do not tile the tensor")));
    }
    let mut rows = Q8Rows::with_capacity(info.size / Q8_0_BLOCK_BYTES);
    // 4.5 MB slices: few reads of a browser Blob, little memory beside the result.
    let slice = Q8_0_BLOCK_BYTES << 17;
    let mut buf = vec![0u8; slice];
    for start in (0..info.size).step_by(slice) {
        let chunk = &mut buf[..(info.size - start).min(slice)];
        src.read_into(info.offset + start as u64, chunk)?;
        rows.extend_q8_0(chunk);
    }
    Ok(rows)
}

/// A `[out, in]` weight for the CPU backend: on our Q8 kernel where it runs (wasm, x86 with
/// AVX2) for Q8_0 and the types repacked to it, else on candle's kernels.
fn load_linear<S: ByteSource + ?Sized>(g: &Gguf, src: &S, name: &str, out: usize, inp: usize) -> Result<Linear> {
    let dtype = g.tensor(name)?.dtype;
    if cpu::OWN_Q8_KERNEL && (dtype == GgmlDType::Q8_0 || cpu::needs_repack(dtype)) {
        return Ok(Linear::from_q8(load_q8rows(g, src, name, &[out, inp])?, out, inp));
    }
    if let Some(kind) = Kind::of(dtype).filter(|_| cpu::OWN_K_KERNEL) {
        let info = tensor_of_shape(g, name, &[out, inp])?;
        let mut blocks = vec![0u8; info.size];
        src.read_into(info.offset, &mut blocks)?;
        return Ok(Linear::from_k(KRows::new(kind, blocks, out, inp)?, out, inp));
    }
    Linear::new(load_qtensor(g, src, name, &[out, inp])?)
}

/// The embedding, also the tied LM head: its rows left in `kept` where it is Q8_0, else
/// loaded ([`load_embedding_whole`]).
fn load_embedding<S: ByteSource + ?Sized>(
    g: &Gguf,
    src: &S,
    kept: Option<SharedSource>,
    name: &str,
    out: usize,
    inp: usize,
) -> Result<Embedding> {
    let info = g.tensor(name)?;
    let in_file = kept.and_then(|file| FileRows::new(file, info, (out, inp)));
    match in_file {
        Some(rows) => Ok(Embedding::InFile(rows)),
        None => Ok(Embedding::Loaded(load_embedding_whole(info, &src, (out, inp))?)),
    }
}

/// The whole embedding: as [`load_linear`], except on x86, where it stays on candle's Q8_0
/// blocks. Extraction only looks rows up; a full-vocabulary product is one token against
/// 262k rows, bound by reading them, and the x86 kernels' repacked rows are larger (f32
/// scales; on AVX-512, groups of eight blocks).
fn load_embedding_whole<S: ByteSource + ?Sized>(
    info: &TensorInfo,
    src: &S,
    (out, inp): (usize, usize),
) -> Result<Linear> {
    // The loaders read a tensor by name from a directory: one of this tensor alone.
    const NAME: &str = "token_embd.weight";
    let g = Gguf {
        version: 3,
        metadata: HashMap::new(),
        tensors: HashMap::from([(NAME.to_string(), info.clone())]),
    };
    match cfg!(target_arch = "x86_64") {
        true => Linear::new(load_qtensor(&g, src, NAME, &[out, inp])?),
        false => load_linear(&g, src, NAME, out, inp),
    }
}

/// Reads a tensor's blocks straight from the source into their final `Vec`, so that
/// loading never holds a second copy of a tensor (the 178 MB embedding matters in wasm).
fn read_blocks<T, S>(src: &S, info: &TensorInfo) -> Result<QStorage>
where
    T: GgmlType + Send + Sync + 'static,
    S: ByteSource + ?Sized,
{
    let block = std::mem::size_of::<T>();
    if block != info.dtype.type_size() || !info.size.is_multiple_of(block) {
        return Err(Error::Malformed(format!(
            "{:?} blocks of {block} bytes do not tile the tensor",
            info.dtype
        )));
    }
    let n = info.size / block;
    let mut blocks: Vec<T> = Vec::with_capacity(n);
    // SAFETY: ggml blocks are plain old data (f16 scales and integer arrays, `repr(C)`), so
    // the all-zero pattern is a valid value; every byte of the `n` initialised blocks is
    // then overwritten from the file.
    unsafe {
        std::ptr::write_bytes(blocks.as_mut_ptr(), 0, n);
        blocks.set_len(n);
        let bytes = std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), info.size);
        src.read_into(info.offset, bytes)?;
    }
    Ok(QStorage::Cpu(Box::new(blocks)))
}

/// A small tensor (norm weights) as plain `f32`s.
fn load_vector<S: ByteSource + ?Sized>(g: &Gguf, src: &S, name: &str, len: usize) -> Result<Vec<f32>> {
    let q = load_qtensor(g, src, name, &[len])?;
    Ok(q.dequantize(&Device::Cpu)?.to_vec1::<f32>()?)
}
