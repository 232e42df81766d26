//! Gemma 3 on the GPU: the forward of [`super::gemma3`], each op a WGSL kernel
//! ([`crate::runtime::backend::webgpu`]). Weights are uploaded once; a forward is one command
//! submission, and only the final hidden states (640 floats each) or the logits come back.
//! A batch of sequences goes through one forward as the CPU model's does: their tokens share
//! every projection (a row of the matmul per token), and each attends to its own cache slot.
//! The KV caches live on the GPU and grow on demand; snapshots are GPU-side copies.
//! Activations live in buffers kept across layers and steps: creating GPU buffers per
//! kernel made a decode step CPU-bound on a data-centre GPU.
//! An adapter is merged into a copy of the 8-bit projection weights when it is set (the
//! base copy stays, for switching back), so a forward with it runs the same kernels as
//! without; the side path it replaces cost over a quarter of a decode step
//! (docs/benchmarks-gpu.md).

use std::rc::Rc;

use super::gemma3::{Config, Layer, MAX_BATCH};
use super::{load_q8rows, load_vector, Adapter, BatchRow, Compute, KvSnapshot, LanguageModel, Logits};
use crate::error::{Error, Result};
use crate::runtime::backend::cpu::rope_table;
use crate::runtime::backend::webgpu::ops::{self, attention_parts_len, MAX_HEAD_DIM};
use crate::runtime::backend::webgpu::{Gpu, GpuMatrix, Recorder};
use crate::runtime::gguf::{ByteSource, Gguf};

/// A projection, and its weights with an adapter merged in while one is set.
struct GpuLinear {
    w: GpuMatrix,
    merged: Option<GpuMatrix>,
}

impl GpuLinear {
    /// Records `y = x · Wᵀ` for `tokens` rows, with the merged weights where there are.
    fn forward(&self, rec: &mut Recorder, x: &wgpu::Buffer, tokens: usize, y: &wgpu::Buffer) {
        let w = self.merged.as_ref().unwrap_or(&self.w);
        ops::matmul(rec, w, (x, tokens), None, y);
    }
}

/// One forward's activations for up to `tokens` tokens, reused by every layer and step.
struct Scratch {
    tokens: usize,
    ids: wgpu::Buffer,
    /// RoPE (cos, sin) pairs per token: global layers, local layers.
    rope: [wgpu::Buffer; 2],
    /// The residual stream.
    x: wgpu::Buffer,
    /// Its normed copy: the input of the attention and of the FFN projections.
    normed: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    qn: wgpu::Buffer,
    kn: wgpu::Buffer,
    attn: wgpu::Buffer,
    /// A split attention's per-split results (a decode step's).
    attn_parts: wgpu::Buffer,
    /// The attention output and FFN down projections, before their post-norms.
    back: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    last: wgpu::Buffer,
    out: wgpu::Buffer,
}

impl Scratch {
    fn new(gpu: &Gpu, c: &Config, tokens: usize) -> Scratch {
        let (h, q_dim, kv_dim) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        Scratch {
            tokens,
            ids: gpu.zeros(tokens),
            rope: [(); 2].map(|_| gpu.zeros(tokens * c.head_dim)),
            x: gpu.zeros(tokens * h),
            normed: gpu.zeros(tokens * h),
            q: gpu.zeros(tokens * q_dim),
            k: gpu.zeros(tokens * kv_dim),
            v: gpu.zeros(tokens * kv_dim),
            qn: gpu.zeros(tokens * q_dim),
            kn: gpu.zeros(tokens * kv_dim),
            attn: gpu.zeros(tokens * q_dim),
            attn_parts: gpu.zeros(attention_parts_len(&c.attention_shape(true), tokens)),
            back: gpu.zeros(tokens * h),
            gate: gpu.zeros(tokens * c.ffn),
            up: gpu.zeros(tokens * c.ffn),
            last: gpu.zeros(tokens * h),
            out: gpu.zeros(tokens * h),
        }
    }
}

/// What a forward reads back.
enum Back<'a> {
    Hidden,
    Logits(Option<&'a [u32]>),
}

/// The LM head's input, the ids it is limited to, and its output (`y_len` floats: a
/// batch's rows times the ids they ask for, grown on demand).
struct HeadBuffers {
    x: wgpu::Buffer,
    ids: wgpu::Buffer,
    y: wgpu::Buffer,
    y_len: usize,
}

/// Keys and values per layer, `capacity × kv_row` f32s each; positions `0..len` are live.
struct GpuKv {
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    capacity: usize,
    len: usize,
    row: usize,
}

/// A GPU-side copy of the first `len` positions of every layer.
struct GpuKvCopy {
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
    row: usize,
}

pub struct Gemma3Gpu {
    pub config: Config,
    gpu: Rc<Gpu>,
    embedding: GpuMatrix,
    /// `None`: the LM head is the embedding (tied weights).
    output: Option<GpuMatrix>,
    layers: Vec<Layer<GpuLinear, wgpu::Buffer>>,
    output_norm: wgpu::Buffer,
    /// One cache per sequence slot, grown on first use; slot 0 is the one the
    /// single-sequence methods use.
    kv: Vec<GpuKv>,
    /// `None` until the first forward.
    scratch: Option<Scratch>,
    head: HeadBuffers,
}

impl Gemma3Gpu {
    pub fn load<S: ByteSource + ?Sized>(gpu: Rc<Gpu>, g: &Gguf, src: &S) -> Result<Gemma3Gpu> {
        let c = Config::from_gguf(g)?;
        if c.head_dim > MAX_HEAD_DIM
            || !c.head_dim.is_multiple_of(4)
            || !c.hidden.is_multiple_of(32)
            || !c.ffn.is_multiple_of(32)
        {
            return Err(Error::Gpu(format!(
                "the GPU kernels need a head_dim ≤ {MAX_HEAD_DIM} that is a multiple of 4, and widths that are multiples of 32"
            )));
        }
        let (h, kv_dim) = (c.hidden, c.kv_heads * c.head_dim);
        // Each tensor is read, repacked and uploaded on its own, so the CPU never holds
        // more than one of them.
        let mat = |name: String, out: usize, inp: usize| -> Result<GpuMatrix> {
            GpuMatrix::upload(&gpu, &load_q8rows(g, src, &name, &[out, inp])?, out, inp)
        };
        let lin = |name: String, out: usize, inp: usize| -> Result<GpuLinear> {
            Ok(GpuLinear {
                w: mat(name, out, inp)?,
                merged: None,
            })
        };
        let vec =
            |name: String, len: usize| -> Result<wgpu::Buffer> { Ok(gpu.upload(&load_vector(g, src, &name, len)?)) };
        let embedding = mat("token_embd.weight".into(), c.vocab, h)?;
        let output = match g.tensors.contains_key("output.weight") {
            true => Some(mat("output.weight".into(), c.vocab, h)?),
            false => None,
        };
        let layers = (0..c.layers)
            .map(|i| Layer::load(&c, i, lin, vec))
            .collect::<Result<Vec<_>>>()?;
        let output_norm = vec("output_norm.weight".into(), h)?;
        let kv = (0..MAX_BATCH)
            .map(|_| GpuKv {
                k: Vec::new(),
                v: Vec::new(),
                capacity: 0,
                len: 0,
                row: kv_dim,
            })
            .collect();
        let head = HeadBuffers {
            x: gpu.zeros(h),
            ids: gpu.zeros(c.vocab),
            y: gpu.zeros(c.vocab),
            y_len: c.vocab,
        };
        Ok(Gemma3Gpu {
            config: c,
            gpu,
            embedding,
            output,
            layers,
            output_norm,
            kv,
            scratch: None,
            head,
        })
    }

    pub fn adapter_name(&self) -> &str {
        &self.gpu.adapter
    }

    fn lm_head(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.embedding)
    }

    /// Makes room for `positions` in slot `slot`'s cache, keeping what is there.
    fn reserve(&mut self, rec: &mut Recorder, slot: usize, positions: usize) {
        let kv = &self.kv[slot];
        if positions <= kv.capacity {
            return;
        }
        // What is needed and a quarter more (at least 64 positions): a batch's slots each
        // hold the schema prefix and a window, and doubling left most of each unused.
        let cap = (positions + (positions / 4).max(64)).min(self.config.context);
        let live = (kv.len * kv.row * 4) as u64;
        let grow = |old: &[wgpu::Buffer], rec: &mut Recorder| -> Vec<wgpu::Buffer> {
            let new: Vec<wgpu::Buffer> = (0..self.config.layers).map(|_| self.gpu.zeros(cap * kv.row)).collect();
            if live > 0 {
                for (o, n) in old.iter().zip(&new) {
                    rec.copy(o, 0, n, 0, live);
                }
            }
            new
        };
        let (k, v) = (grow(&kv.k, rec), grow(&kv.v, rec));
        self.gpu.forget_bind_groups();
        let kv = &mut self.kv[slot];
        (kv.k, kv.v, kv.capacity) = (k, v, cap);
    }

    /// Makes the scratch buffers hold `tokens` tokens (grown to the next power of two).
    fn grow_scratch(&mut self, tokens: usize) {
        if self.scratch.as_ref().is_none_or(|s| s.tokens < tokens) {
            self.gpu.forget_bind_groups();
            self.scratch = Some(Scratch::new(&self.gpu, &self.config, tokens.next_power_of_two()));
        }
    }

    /// Records the forward of each sequence's tokens (`(slot, tokens)`, checked by the
    /// caller) at its cache's position; the final-normed hidden state after each one's last
    /// token ends in the scratch `out` buffer, a row per sequence. All tokens go through each
    /// projection together: the weights are read once per forward, not once per sequence.
    fn record(&mut self, rec: &mut Recorder, seqs: &[(usize, &[u32])]) -> wgpu::Buffer {
        let c = self.config.clone();
        let (h, hd) = (c.hidden, c.head_dim);
        // Each sequence's first row in the batch, its length and its first position.
        let mut spans = Vec::with_capacity(seqs.len());
        let mut n = 0;
        for &(slot, tokens) in seqs {
            spans.push((slot, n, tokens.len(), self.kv[slot].len));
            self.reserve(rec, slot, self.kv[slot].len + tokens.len());
            n += tokens.len();
        }
        self.grow_scratch(n);
        let (s, gpu) = (self.scratch.as_ref().expect("grown above"), &self.gpu);
        let all: Vec<u32> = seqs.iter().flat_map(|s| s.1.iter().copied()).collect();
        gpu.queue.write_buffer(&s.ids, 0, bytemuck::cast_slice(&all));
        for (buf, base) in s.rope.iter().zip([c.rope_base, c.local_rope_base]) {
            let table: Vec<f32> = spans
                .iter()
                .flat_map(|&(_, _, len, start)| rope_table(len, hd, start, base))
                .collect();
            gpu.queue.write_buffer(buf, 0, bytemuck::cast_slice(&table));
        }
        ops::embed(rec, &self.embedding, &s.ids, n, (h as f32).sqrt(), &s.x);
        let norm = |rec: &mut Recorder,
                    src: &wgpu::Buffer,
                    w: &wgpu::Buffer,
                    dst: &wgpu::Buffer,
                    rows: usize,
                    dim: usize,
                    acc: bool| ops::rms_norm(rec, (src, w, dst), (rows, dim), c.eps, acc);
        let rope = |rec: &mut Recorder, x: &wgpu::Buffer, table: &wgpu::Buffer, heads: usize| {
            ops::rope(rec, (table, x), heads, hd, n)
        };
        let row_bytes = (c.kv_heads * hd * 4) as u64;
        for (i, l) in self.layers.iter().enumerate() {
            let global = c.is_global(i);
            norm(rec, &s.x, &l.attn_norm, &s.normed, n, h, false);
            l.q.forward(rec, &s.normed, n, &s.q);
            l.k.forward(rec, &s.normed, n, &s.k);
            l.v.forward(rec, &s.normed, n, &s.v);
            norm(rec, &s.q, &l.q_norm, &s.qn, n * c.heads, hd, false);
            norm(rec, &s.k, &l.k_norm, &s.kn, n * c.kv_heads, hd, false);
            let table = &s.rope[usize::from(!global)];
            rope(rec, &s.qn, table, c.heads);
            rope(rec, &s.kn, table, c.kv_heads);
            for &(slot, first_row, len, start) in &spans {
                let kv = &self.kv[slot];
                let (from, to, bytes) = (
                    first_row as u64 * row_bytes,
                    start as u64 * row_bytes,
                    len as u64 * row_bytes,
                );
                rec.copy(&s.kn, from, &kv.k[i], to, bytes);
                rec.copy(&s.v, from, &kv.v[i], to, bytes);
                ops::attention(
                    rec,
                    (&s.qn, &kv.k[i], &kv.v[i], &s.attn_parts, &s.attn),
                    &c.attention_shape(global),
                    (first_row, start, len),
                );
            }
            l.o.forward(rec, &s.attn, n, &s.back);
            norm(rec, &s.back, &l.post_attn_norm, &s.x, n, h, true);

            norm(rec, &s.x, &l.ffn_norm, &s.normed, n, h, false);
            l.gate.forward(rec, &s.normed, n, &s.gate);
            l.up.forward(rec, &s.normed, n, &s.up);
            ops::gelu_mul(rec, (&s.up, &s.gate), n * c.ffn);
            l.down.forward(rec, &s.gate, n, &s.back);
            norm(rec, &s.back, &l.post_ffn_norm, &s.x, n, h, true);
        }
        let row = (h * 4) as u64;
        for (r, &(slot, first_row, len, _)) in spans.iter().enumerate() {
            self.kv[slot].len += len;
            rec.copy(&s.x, (first_row + len - 1) as u64 * row, &s.last, r as u64 * row, row);
        }
        norm(rec, &s.last, &self.output_norm, &s.out, spans.len(), h, false);
        s.out.clone()
    }

    /// The forward of each sequence in one submission, checked first; reads back the final
    /// hidden states (a row per sequence), or (`Back::Logits`) runs the LM head over the
    /// listed ids (all rows without) and reads back only those logits. A failed forward
    /// leaves every cache as it was.
    async fn step(&mut self, seqs: &[(usize, &[u32])], back: Back<'_>) -> Result<Vec<f32>> {
        let c = &self.config;
        super::check_batch(seqs, self.kv.len(), |slot| self.kv[slot].len, c.context, c.vocab)?;
        if let Back::Logits(ids) = back {
            let len = seqs.len() * ids.map_or(self.config.vocab, <[u32]>::len);
            if self.head.y_len < len {
                (self.head.y, self.head.y_len) = (self.gpu.zeros(len), len);
                self.gpu.forget_bind_groups();
            }
        }
        let starts: Vec<usize> = seqs.iter().map(|s| self.kv[s.0].len).collect();
        let gpu = self.gpu.clone();
        let mut rec = gpu.recorder();
        let hidden = self.record(&mut rec, seqs);
        let result = match back {
            Back::Hidden => rec.read(&hidden, seqs.len() * self.config.hidden).await,
            Back::Logits(ids) => self.head(rec, (&hidden, seqs.len()), ids).await,
        };
        if result.is_err() {
            for (s, start) in seqs.iter().zip(starts) {
                self.kv[s.0].len = start;
            }
        }
        result
    }

    /// Records the LM head over `ids` (all rows without) for the `rows` hidden states in
    /// `x`, submits `rec`, and reads the logits back: `rows × ids.len()` (or × vocab).
    async fn head(
        &self,
        mut rec: Recorder<'_>,
        (x, rows): (&wgpu::Buffer, usize),
        ids: Option<&[u32]>,
    ) -> Result<Vec<f32>> {
        let n = ids.map_or(self.config.vocab, <[u32]>::len);
        if n == 0 {
            rec.submit();
            return Ok(Vec::new());
        }
        let b = &self.head;
        if let Some(ids) = ids {
            self.gpu.queue.write_buffer(&b.ids, 0, bytemuck::cast_slice(ids));
        }
        let ids = ids.map(|_| (&b.ids, n));
        ops::matmul(&mut rec, self.lm_head(), (x, rows), ids, &b.y);
        rec.read(&b.y, rows * n).await
    }

    /// A batch's forward and each row's logits: the LM head runs once over every row for
    /// the union of the ids they list (or the whole vocabulary if one asks for all), and
    /// each row takes its own.
    async fn forward_rows(&mut self, rows: &[BatchRow<'_>]) -> Result<Vec<Vec<f32>>> {
        let seqs: Vec<(usize, &[u32])> = rows.iter().map(|r| (r.slot, r.tokens)).collect();
        let mut union: Option<Vec<u32>> = Some(Vec::new());
        for r in rows {
            match (r.logits, union.as_mut()) {
                (Logits::Of(ids), Some(u)) => u.extend_from_slice(ids),
                _ => union = None,
            }
        }
        if let Some(u) = union.as_mut() {
            u.sort_unstable();
            u.dedup();
        }
        let width = union.as_ref().map_or(self.config.vocab, Vec::len);
        let logits = self.step(&seqs, Back::Logits(union.as_deref())).await?;
        let pick = |id: u32| match &union {
            Some(u) => u.binary_search(&id).expect("the union holds every row's ids"),
            None => id as usize,
        };
        Ok(rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let all = &logits[r * width..(r + 1) * width];
                match row.logits {
                    Logits::Of(ids) => ids.iter().map(|&id| all[pick(id)]).collect(),
                    Logits::All => all.to_vec(),
                }
            })
            .collect())
    }

    /// The LM head for a hidden state read back earlier.
    async fn head_of(&self, hidden: &[f32], ids: Option<&[u32]>) -> Result<Vec<f32>> {
        self.gpu
            .queue
            .write_buffer(&self.head.x, 0, bytemuck::cast_slice(hidden));
        self.head(self.gpu.recorder(), (&self.head.x, 1), ids).await
    }
}

impl LanguageModel for Gemma3Gpu {
    fn forward_hidden<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(async move { self.step(&[(0, tokens)], Back::Hidden).await })
    }
    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(async move { self.step(&[(0, tokens)], Back::Logits(None)).await })
    }
    fn logits<'a>(&'a self, hidden: &'a [f32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.head_of(hidden, None))
    }
    fn logits_for<'a>(&'a self, hidden: &'a [f32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.head_of(hidden, Some(ids)))
    }
    fn forward_logits_for<'a>(&'a mut self, tokens: &'a [u32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(async move { self.step(&[(0, tokens)], Back::Logits(Some(ids))).await })
    }
    fn position(&self) -> usize {
        self.kv[0].len
    }
    fn max_context(&self) -> usize {
        self.config.context
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab
    }
    fn truncate(&mut self, position: usize) {
        self.kv[0].len = self.kv[0].len.min(position);
    }
    fn snapshot(&mut self) -> KvSnapshot {
        let kv = &self.kv[0];
        let bytes = (kv.len * kv.row * 4) as u64;
        let mut rec = self.gpu.recorder();
        let copy = |bufs: &[wgpu::Buffer], rec: &mut Recorder| -> Vec<wgpu::Buffer> {
            bufs.iter()
                .map(|b| {
                    let n = self.gpu.zeros(kv.len * kv.row);
                    if bytes > 0 {
                        rec.copy(b, 0, &n, 0, bytes);
                    }
                    n
                })
                .collect()
        };
        let state = GpuKvCopy {
            k: copy(&kv.k, &mut rec),
            v: copy(&kv.v, &mut rec),
            row: kv.row,
        };
        rec.submit();
        KvSnapshot::new(kv.len, state)
    }
    fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()> {
        self.begin(0, snapshot)
    }
    fn max_batch(&self) -> usize {
        self.kv.len()
    }
    fn begin(&mut self, slot: usize, prefix: &KvSnapshot) -> Result<()> {
        super::check_slot(slot, self.kv.len())?;
        let s: &GpuKvCopy = prefix.state()?;
        if s.row != self.kv[slot].row || s.k.len() != self.layers.len() {
            return Err(Error::BadSnapshot);
        }
        let len = prefix.len();
        let gpu = self.gpu.clone();
        let mut rec = gpu.recorder();
        self.kv[slot].len = 0; // nothing to keep when growing
        self.reserve(&mut rec, slot, len);
        let kv = &self.kv[slot];
        let bytes = (len * kv.row * 4) as u64;
        if bytes > 0 {
            for (src, dst) in s.k.iter().zip(&kv.k).chain(s.v.iter().zip(&kv.v)) {
                rec.copy(src, 0, dst, 0, bytes);
            }
        }
        rec.submit();
        self.kv[slot].len = len;
        Ok(())
    }
    fn forward_batch<'a>(&'a mut self, rows: &'a [BatchRow<'a>]) -> Compute<'a, Vec<Vec<f32>>> {
        Box::pin(self.forward_rows(rows))
    }
    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        let shapes: Vec<[(usize, usize); 7]> = self
            .layers
            .iter_mut()
            .map(|l| l.projections_mut().map(|p| (p.w.rows, p.w.cols)))
            .collect();
        let pairs = super::gemma3::adapter_pairs(adapter, &shapes)?;
        let mut pairs = pairs.into_iter();
        for l in &mut self.layers {
            for linear in l.projections_mut() {
                linear.merged = match pairs.next().flatten() {
                    Some(p) => {
                        let (a, b) = p.matrices();
                        Some(ops::merged(&self.gpu, &linear.w, (a, &b, p.rank()))?)
                    }
                    None => None,
                };
            }
        }
        for kv in &mut self.kv {
            kv.len = 0;
        }
        self.gpu.forget_bind_groups();
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "webgpu"
    }
}
