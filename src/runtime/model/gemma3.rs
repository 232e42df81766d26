//! Gemma 3 (text), as llama.cpp runs it from a GGUF file.
//!
//! Written on candle-core rather than taken from candle-transformers' `quantized_gemma3`,
//! which allocates RoPE tables for 131k positions (≈2.4 GB), keeps an f32 copy of the
//! 262k×640 embedding (671 MB), ignores the sliding window when decoding and cannot run a
//! multi-token forward after a cached prefix. Here RoPE is computed for the positions in
//! use, the embedding stays Q8_0 (shared with the tied LM head), and every forward — one
//! token or many, with or without a prefix — takes the same path.

use std::rc::Rc;
use std::sync::Arc;

use super::embedding::Embedding;
use super::{
    check_batch, check_slot, check_tokens, load_embedding, load_linear, load_vector, BatchRow, Compute, KvCache,
    KvSnapshot, LanguageModel, Logits, MAX_CONTEXT,
};
use crate::error::{Error, Result};
use crate::runtime::backend::cpu::{self, AttentionShape, Linear};
use crate::runtime::backend::low_rank::LowRank;
use crate::runtime::gguf::{ByteSource, Gguf, SharedSource};
use crate::runtime::model::adapter::Adapter;

/// Unless the GGUF says otherwise, every sixth layer attends globally and the others use
/// the sliding window (llama.cpp's default swa pattern for gemma3).
const GLOBAL_EVERY: usize = 6;
/// The most tokens one step of a long forward takes (see `forward_hidden`).
const PIECE: usize = match cfg!(target_arch = "wasm32") {
    true => 64,
    false => usize::MAX,
};

/// Default RoPE base of the sliding-window layers (Gemma 3's `rope_local_base_freq`).
const LOCAL_ROPE_BASE: f32 = 10_000.0;
/// Sequences one forward carries. Each has its own cache (a few MB over a shared prefix);
/// the extractor decides how many it uses.
pub const MAX_BATCH: usize = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub hidden: usize,
    pub layers: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    pub rope_base: f32,
    pub local_rope_base: f32,
    pub window: usize,
    pub global_every: usize,
    pub context: usize,
    pub vocab: usize,
}

impl Config {
    pub(crate) fn from_gguf(g: &Gguf) -> Result<Config> {
        let key = |k: &str| format!("gemma3.{k}");
        let u = |k: &str| g.u64(&key(k)).map(|v| v as usize);
        let hidden = u("embedding_length")?;
        let heads = u("attention.head_count")?;
        let embd = g.tensor("token_embd.weight")?.shape();
        let [vocab, width] = embd[..] else {
            return Err(Error::TensorShape {
                name: "token_embd.weight".into(),
                expected: vec![0, hidden],
                found: embd,
            });
        };
        if vocab == 0 || width != hidden {
            return Err(Error::TensorShape {
                name: "token_embd.weight".into(),
                expected: vec![vocab.max(1), hidden],
                found: embd,
            });
        }
        let c = Config {
            hidden,
            layers: u("block_count")?,
            ffn: u("feed_forward_length")?,
            heads,
            kv_heads: u("attention.head_count_kv").unwrap_or(heads),
            head_dim: u("attention.key_length").unwrap_or(hidden / heads.max(1)),
            eps: g.f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            rope_base: g.f32(&key("rope.freq_base")).unwrap_or(1_000_000.0),
            local_rope_base: g.f32(&key("rope.freq_base_swa")).unwrap_or(LOCAL_ROPE_BASE),
            window: u("attention.sliding_window").unwrap_or(512),
            global_every: u("attention.sliding_window_pattern").unwrap_or(GLOBAL_EVERY).max(1),
            context: u("context_length").unwrap_or(MAX_CONTEXT).min(MAX_CONTEXT),
            vocab,
        };
        if c.heads == 0 || c.kv_heads == 0 || !c.heads.is_multiple_of(c.kv_heads) || !c.head_dim.is_multiple_of(2) {
            return Err(Error::Metadata {
                key: key("attention.head_count_kv"),
                expected: "a divisor of head_count",
            });
        }
        Ok(c)
    }

    /// Without a sliding window (0 in the GGUF, as llama.cpp reads it) every layer is global.
    pub(crate) fn is_global(&self, layer: usize) -> bool {
        self.window == 0 || (layer + 1).is_multiple_of(self.global_every)
    }

    /// The attention of a global layer, or of a sliding-window one.
    pub(crate) fn attention_shape(&self, global: bool) -> AttentionShape {
        AttentionShape {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            window: (!global).then_some(self.window),
            scale: 1.0 / (self.head_dim as f32).sqrt(),
        }
    }
}

/// One transformer block's weights: `L` a projection, `N` a norm vector (on the CPU a
/// [`Linear`] and a `Vec<f32>`; on the GPU their buffers).
pub(crate) struct Layer<L, N> {
    pub attn_norm: N,
    pub q: L,
    pub k: L,
    pub v: L,
    pub q_norm: N,
    pub k_norm: N,
    pub o: L,
    pub post_attn_norm: N,
    pub ffn_norm: N,
    pub gate: L,
    pub up: L,
    pub down: L,
    pub post_ffn_norm: N,
}

impl<L, N> Layer<L, N> {
    /// Layer `i`'s tensors by their GGUF names and shapes, through `mat(name, out, in)`
    /// and `vec(name, len)`.
    pub(crate) fn load(
        c: &Config,
        i: usize,
        mat: impl Fn(String, usize, usize) -> Result<L>,
        vec: impl Fn(String, usize) -> Result<N>,
    ) -> Result<Self> {
        let (h, q_dim, kv_dim) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        Ok(Layer {
            attn_norm: vec(n("attn_norm"), h)?,
            q: mat(n("attn_q"), q_dim, h)?,
            k: mat(n("attn_k"), kv_dim, h)?,
            v: mat(n("attn_v"), kv_dim, h)?,
            q_norm: vec(n("attn_q_norm"), c.head_dim)?,
            k_norm: vec(n("attn_k_norm"), c.head_dim)?,
            o: mat(n("attn_output"), h, q_dim)?,
            post_attn_norm: vec(n("post_attention_norm"), h)?,
            ffn_norm: vec(n("ffn_norm"), h)?,
            gate: mat(n("ffn_gate"), c.ffn, h)?,
            up: mat(n("ffn_up"), c.ffn, h)?,
            down: mat(n("ffn_down"), h, c.ffn)?,
            post_ffn_norm: vec(n("post_ffw_norm"), h)?,
        })
    }

    /// The adaptable projections, in the order of [`PROJECTIONS`].
    pub(crate) fn projections_mut(&mut self) -> [&mut L; 7] {
        [
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.o,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }
}

pub struct Gemma3 {
    pub config: Config,
    /// The token embedding, and the LM head: one matrix when they are tied (as in Gemma).
    embedding: Rc<Embedding>,
    layers: Vec<Layer<Linear, Vec<f32>>>,
    output_norm: Vec<f32>,
    lm_head: Rc<Embedding>,
    /// One cache per sequence slot; slot 0 is the single-sequence methods' cache.
    caches: Vec<KvCache>,
}

impl Gemma3 {
    /// With `kept`, the embedding's rows stay in that file ([`super::embedding`]).
    pub fn load<S: ByteSource + ?Sized>(g: &Gguf, src: &S, kept: Option<SharedSource>) -> Result<Gemma3> {
        let c = Config::from_gguf(g)?;
        let (h, kv_dim) = (c.hidden, c.kv_heads * c.head_dim);
        let mat = |name: String, out: usize, inp: usize| load_linear(g, src, &name, out, inp);
        let vec = |name: String, len: usize| load_vector(g, src, &name, len);
        let embedding = Rc::new(load_embedding(g, src, kept, "token_embd.weight", c.vocab, h)?);
        let lm_head = match g.tensors.contains_key("output.weight") {
            true => Rc::new(Embedding::Loaded(mat("output.weight".into(), c.vocab, h)?)),
            false => embedding.clone(),
        };
        let layers = (0..c.layers)
            .map(|i| Layer::load(&c, i, mat, vec))
            .collect::<Result<Vec<_>>>()?;
        Ok(Gemma3 {
            output_norm: vec("output_norm.weight".into(), h)?,
            caches: (0..MAX_BATCH).map(|_| KvCache::new(c.layers, kv_dim)).collect(),
            config: c,
            embedding,
            layers,
            lm_head,
        })
    }

    /// Appends each sequence's tokens (`(slot, tokens)`, distinct slots) to its cache and
    /// returns the hidden state after its last token (after the final norm), `hidden` wide
    /// per sequence. All tokens go through each projection together: the weights are read
    /// once per forward, not once per sequence.
    fn hidden_last(&mut self, seqs: &[(usize, &[u32])]) -> Result<Vec<f32>> {
        let c = &self.config;
        let (h, hd) = (c.hidden, c.head_dim);
        let all: Vec<u32> = seqs.iter().flat_map(|s| s.1.iter().copied()).collect();
        let n = all.len();
        // Where each sequence's rows start in the batch, and its first position.
        let mut spans = Vec::with_capacity(seqs.len());
        let mut row = 0;
        for &(slot, tokens) in seqs {
            spans.push((slot, row..row + tokens.len(), self.caches[slot].len()));
            row += tokens.len();
        }
        let (q_row, kv_row) = (c.heads * hd, c.kv_heads * hd);
        // RoPE's angles for each sequence's positions, local base then global: two tables per
        // forward, which Q and K of every layer share (each made its own before: 36 a forward).
        let tables: Vec<[Vec<f32>; 2]> = spans
            .iter()
            .map(|(_, rows, start)| {
                [c.local_rope_base, c.rope_base].map(|b| cpu::rope_table(rows.len(), hd, *start, b))
            })
            .collect();
        let mut x = self.embedding.rows(&all)?;
        cpu::scale_in_place(&mut x, (h as f32).sqrt());
        // Only the last row of each sequence is read after the last layer, so that layer
        // takes every row's keys and values but only those rows further.
        let last_rows = |rows: &[f32], width: usize| -> Vec<f32> {
            spans
                .iter()
                .flat_map(|(_, r, _)| &rows[(r.end - 1) * width..r.end * width])
                .copied()
                .collect()
        };
        for (i, l) in self.layers.iter().enumerate() {
            let global = c.is_global(i);
            let mut a = x.clone();
            cpu::rms_norm(&mut a, &l.attn_norm, c.eps);
            let last = i + 1 == c.layers;
            // Q with K and V, except in the last layer, which needs Q of the last rows only.
            let (mut k, v, q) = match last {
                false => {
                    let [k, v, q] = Linear::forward_each([&l.k, &l.v, &l.q], &a, n)?;
                    (k, v, Some(q))
                }
                true => {
                    let [k, v] = Linear::forward_each([&l.k, &l.v], &a, n)?;
                    (k, v, None)
                }
            };
            cpu::rms_norm(&mut k, &l.k_norm, c.eps);
            for ((slot, rows, _), tables) in spans.iter().zip(&tables) {
                let k = &mut k[rows.start * kv_row..rows.end * kv_row];
                cpu::rope(k, c.kv_heads, hd, &tables[global as usize]);
                self.caches[*slot].append(i, k, &v[rows.start * kv_row..rows.end * kv_row]);
            }
            if last {
                (a, x) = (last_rows(&a, h), last_rows(&x, h));
            }
            let n = x.len() / h;
            let mut q = match q {
                Some(q) => q,
                None => l.q.forward(&a, n)?,
            };
            cpu::rms_norm(&mut q, &l.q_norm, c.eps);
            let mut seqs = Vec::with_capacity(spans.len());
            let mut row = 0;
            for ((slot, rows, start), tables) in spans.iter().zip(&tables) {
                let (first_pos, tokens) = match last {
                    true => (start + rows.len() - 1, 1),
                    false => (*start, rows.len()),
                };
                let table = &tables[global as usize][(first_pos - start) * hd..];
                cpu::rope(&mut q[row * q_row..(row + tokens) * q_row], c.heads, hd, table);
                let (k, v) = self.caches[*slot].rows(i);
                seqs.push(cpu::Sequence {
                    k,
                    v,
                    first_pos,
                    tokens,
                });
                row += tokens;
            }
            let attn = cpu::attention_batch(&q, &seqs, &c.attention_shape(global));
            let mut a = l.o.forward(&attn, n)?;
            cpu::rms_norm(&mut a, &l.post_attn_norm, c.eps);
            cpu::add_in_place(&mut x, &a);

            let mut f = x.clone();
            cpu::rms_norm(&mut f, &l.ffn_norm, c.eps);
            let [mut gate, up] = Linear::forward_each([&l.gate, &l.up], &f, n)?;
            cpu::gelu_mul(&mut gate, &up);
            let mut f = l.down.forward(&gate, n)?;
            cpu::rms_norm(&mut f, &l.post_ffn_norm, c.eps);
            cpu::add_in_place(&mut x, &f);
        }
        for (slot, rows, _) in &spans {
            self.caches[*slot].advance(rows.len());
        }
        cpu::rms_norm(&mut x, &self.output_norm, c.eps);
        Ok(x)
    }

    /// [`Self::hidden_last`] after checking every sequence; on an error every cache is
    /// left as it was.
    fn hidden(&mut self, seqs: &[(usize, &[u32])]) -> Result<Vec<f32>> {
        let c = &self.config;
        check_batch(
            seqs,
            self.caches.len(),
            |slot| self.caches[slot].len(),
            c.context,
            c.vocab,
        )?;
        let starts: Vec<usize> = seqs.iter().map(|s| self.caches[s.0].len()).collect();
        let result = self.hidden_last(seqs);
        if result.is_err() {
            for (s, start) in seqs.iter().zip(starts) {
                self.caches[s.0].truncate(start);
            }
        }
        result
    }

    /// One sequence in slot 0 forwarded in pieces of at most [`PIECE`] tokens (see
    /// `forward_hidden`); on an error the cache is as it was before the first piece.
    fn hidden_in_pieces(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let (c, start) = (&self.config, self.caches[0].len());
        check_tokens(tokens, start, c.context, c.vocab)?;
        let mut hidden = Vec::new();
        for piece in tokens.chunks(tokens.len().div_ceil(tokens.len().div_ceil(PIECE))) {
            hidden = self
                .hidden(&[(0, piece)])
                .inspect_err(|_| self.caches[0].truncate(start))?;
        }
        Ok(hidden)
    }

    /// The logits a row asks for, from its hidden state.
    fn row_logits(&self, hidden: &[f32], logits: Logits) -> Result<Vec<f32>> {
        match logits {
            Logits::All => self.lm_head.forward(hidden, 1),
            Logits::Of(ids) => self.lm_head.forward_rows(hidden, ids),
        }
    }
}

impl LanguageModel for Gemma3 {
    /// In wasm a long forward (a schema prompt of 700 tokens) runs in pieces of at most
    /// [`PIECE`] tokens: each piece's work buffers stay small, which wasm memory would keep
    /// for good, and fit the CPU's caches (the page reads the PII preset's prompt in about a
    /// quarter less time). Natively one piece is faster (the AMX tiles take more tokens per
    /// weight load). A token's products and attention do not depend on the tokens beside
    /// it, so the pieces give the same bits.
    fn forward_hidden<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(std::future::ready(self.hidden_in_pieces(tokens)))
    }

    fn logits<'a>(&'a self, hidden: &'a [f32]) -> Compute<'a, Vec<f32>> {
        Box::pin(std::future::ready(self.row_logits(hidden, Logits::All)))
    }

    fn logits_for<'a>(&'a self, hidden: &'a [f32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(std::future::ready(self.row_logits(hidden, Logits::Of(ids))))
    }

    fn max_batch(&self) -> usize {
        self.caches.len()
    }

    fn begin(&mut self, slot: usize, prefix: &KvSnapshot) -> Result<()> {
        check_slot(slot, self.caches.len())?;
        self.caches[slot].restore(prefix)
    }

    fn forward_batch<'a>(&'a mut self, rows: &'a [BatchRow<'a>]) -> Compute<'a, Vec<Vec<f32>>> {
        let seqs: Vec<(usize, &[u32])> = rows.iter().map(|r| (r.slot, r.tokens)).collect();
        let logits = self.hidden(&seqs).and_then(|hidden| {
            hidden
                .chunks_exact(self.config.hidden)
                .zip(rows)
                .map(|(h, r)| self.row_logits(h, r.logits))
                .collect()
        });
        Box::pin(std::future::ready(logits))
    }

    fn position(&self) -> usize {
        self.caches[0].len()
    }
    fn max_context(&self) -> usize {
        self.config.context
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab
    }
    fn truncate(&mut self, position: usize) {
        self.caches[0].truncate(position);
    }
    fn snapshot(&mut self) -> KvSnapshot {
        self.caches[0].snapshot()
    }
    fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()> {
        self.caches[0].restore(snapshot)
    }
    fn saves_snapshots(&self) -> bool {
        true
    }
    fn save_snapshot(&self, snapshot: &KvSnapshot, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        snapshot.state::<KvCache>()?.write(out)
    }
    fn load_snapshot(&self, src: &dyn ByteSource, at: u64, len: usize) -> Result<KvSnapshot> {
        let c = &self.config;
        KvCache::read(src, at, c.layers, c.kv_heads * c.head_dim, len)
    }
    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        let shapes: Vec<[(usize, usize); 7]> = self
            .layers
            .iter_mut()
            .map(|l| l.projections_mut().map(|p| (p.out_dim, p.in_dim)))
            .collect();
        let mut pairs = adapter_pairs(adapter, &shapes)?.into_iter();
        for l in &mut self.layers {
            for linear in l.projections_mut() {
                linear.lora = pairs.next().flatten();
            }
        }
        for cache in &mut self.caches {
            cache.truncate(0);
        }
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "cpu"
    }
}

/// The adaptable projections of a layer, as the adapter names them.
const PROJECTIONS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// The adapter's pair for every projection of every layer (`shapes`: `(out, in)` per
/// projection, in [`PROJECTIONS`] order), checked in full before any model changes, so
/// that a refused adapter leaves the model as it was.
pub(crate) fn adapter_pairs(
    adapter: Option<&Adapter>,
    shapes: &[[(usize, usize); 7]],
) -> Result<Vec<Option<Arc<LowRank>>>> {
    let Some(a) = adapter else {
        return Ok(vec![None; shapes.len() * PROJECTIONS.len()]);
    };
    if let Some(stray) = a.stems().find(|s| !is_projection(s, shapes.len())) {
        return Err(Error::BadAdapter(format!("this model has no weight {stray}")));
    }
    let mut pairs = Vec::new();
    for (i, layer) in shapes.iter().enumerate() {
        for (stem, &(out, inp)) in PROJECTIONS.iter().zip(layer) {
            pairs.push(a.pair(&format!("blk.{i}.{stem}"), out, inp)?);
        }
    }
    Ok(pairs)
}

/// Whether `stem` names a projection of a model of `layers` layers.
fn is_projection(stem: &str, layers: usize) -> bool {
    let Some((layer, name)) = stem.strip_prefix("blk.").and_then(|s| s.split_once('.')) else {
        return false;
    };
    layer.parse::<usize>().is_ok_and(|i| i < layers) && PROJECTIONS.contains(&name)
}
