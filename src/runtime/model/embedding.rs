//! The token embedding, which is also the LM head where the weights are tied (Gemma's). Of
//! the default model's 253 MB, its 262k Q8_0 rows are 178 MB, yet extraction only looks
//! rows up: the document's tokens going in, and the few tokens the constrained decoder
//! allows coming out. So where the engine may keep the model file open, the rows stay in
//! the file and are read when looked up (and kept while few); the whole matrix is read
//! only for a product over the full vocabulary (free generation). In the browser this
//! keeps the matrix out of wasm memory, which never shrinks.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::{Mutex, OnceLock};

use candle_core::quantized::GgmlDType;

use crate::error::{Error, Result};
use crate::runtime::backend::cpu::Linear;
use crate::runtime::backend::dot::dot;
use crate::runtime::backend::q8::Q8_0_BLOCK_BYTES;
use crate::runtime::gguf::{SharedSource, TensorInfo};

/// Rows kept after reading (≈ 11 MB of Q8_0): every token of a long document and the
/// labels' tokens; past this the kept rows are dropped and read again as needed.
const KEPT_ROWS: usize = 16_384;

/// The embedding matrix (or an untied LM head, always loaded).
pub enum Embedding {
    Loaded(Linear),
    InFile(FileRows),
}

impl Embedding {
    /// Rows `ids`, dequantized (the embeddings of tokens `ids`).
    pub fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        match self {
            Embedding::Loaded(l) => l.rows(ids),
            Embedding::InFile(f) => f.rows(ids),
        }
    }

    /// `x · W[id]ᵀ` for the listed rows only, for one input row (the logits the constrained
    /// decoder allows).
    pub fn forward_rows(&self, x: &[f32], ids: &[u32]) -> Result<Vec<f32>> {
        match self {
            Embedding::Loaded(l) => l.forward_rows(x, ids),
            Embedding::InFile(f) => Ok(f.rows(ids)?.chunks_exact(f.cols).map(|w| dot(w, x)).collect()),
        }
    }

    /// `x · Wᵀ` over every row (`rows` input rows).
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        match self {
            Embedding::Loaded(l) => l.forward(x, rows),
            Embedding::InFile(f) => f.whole()?.forward(x, rows),
        }
    }
}

/// A Q8_0 matrix left in the model file.
pub struct FileRows {
    file: SharedSource,
    info: TensorInfo,
    rows: usize,
    cols: usize,
    /// Rows read, as stored.
    kept: Mutex<HashMap<u32, Box<[u8]>>>,
    /// The whole matrix, loaded on the first product over all rows.
    whole: OnceLock<Linear>,
}

impl FileRows {
    /// `info`'s rows in `file`, if it is a `rows × cols` Q8_0 matrix (other types are
    /// loaded whole: rows read here must be what the loaded matrix would give, and Q8_0
    /// values are read as they are stored).
    pub fn new(file: SharedSource, info: &TensorInfo, (rows, cols): (usize, usize)) -> Option<FileRows> {
        let whole_blocks = cols.is_multiple_of(32) && info.size == rows * cols / 32 * Q8_0_BLOCK_BYTES;
        (info.dtype == GgmlDType::Q8_0 && info.shape() == [rows, cols] && whole_blocks).then(|| FileRows {
            file,
            info: info.clone(),
            rows,
            cols,
            kept: Mutex::new(HashMap::new()),
            whole: OnceLock::new(),
        })
    }

    fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.rows) {
            return Err(Error::Compute(format!(
                "row {bad} is outside a {}-row matrix",
                self.rows
            )));
        }
        if let Some(w) = self.whole.get() {
            return w.rows(ids);
        }
        let mut kept = self.kept.lock().expect("no lookup panics while holding the rows");
        if kept.len() + ids.len() > KEPT_ROWS {
            kept.clear();
        }
        let row_bytes = self.cols / 32 * Q8_0_BLOCK_BYTES;
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let raw = match kept.entry(id) {
                Entry::Occupied(row) => row.into_mut(),
                Entry::Vacant(row) => {
                    let mut raw = vec![0u8; row_bytes];
                    self.file
                        .read_into(self.info.offset + (id as usize * row_bytes) as u64, &mut raw)?;
                    row.insert(raw.into())
                }
            };
            out.extend(dequantize_q8_0(raw));
        }
        Ok(out)
    }

    fn whole(&self) -> Result<&Linear> {
        if let Some(w) = self.whole.get() {
            return Ok(w);
        }
        let w = super::load_embedding_whole(&self.info, &*self.file, (self.rows, self.cols))?;
        self.kept
            .lock()
            .expect("no lookup panics while holding the rows")
            .clear();
        Ok(self.whole.get_or_init(|| w))
    }
}

/// Q8_0 blocks (an f16 scale, then 32 i8 values) as `f32`: `q · d`, as ggml and candle
/// dequantize them.
fn dequantize_q8_0(raw: &[u8]) -> impl Iterator<Item = f32> + '_ {
    raw.chunks_exact(Q8_0_BLOCK_BYTES).flat_map(|b| {
        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        b[2..].iter().map(move |&q| q as i8 as f32 * d)
    })
}
