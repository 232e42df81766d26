//! Gemma 3 on the GPU: the forward of [`super::gemma3`], each op a WGSL kernel
//! ([`crate::runtime::backend::webgpu`]). Weights are uploaded once; a forward is one command
//! submission, and only the final hidden state (640 floats) or the logits come back.
//! The KV cache lives on the GPU and grows on demand; snapshots are GPU-side copies.
//! Activations live in buffers kept across layers and steps: creating GPU buffers per
//! kernel made a decode step CPU-bound on a data-centre GPU.
//! An adapter is merged into a copy of the 8-bit projection weights when it is set (the
//! base copy stays, for switching back), so a forward with it runs the same kernels as
//! without; the side path it replaces cost over a quarter of a decode step
//! (docs/benchmarks-gpu.md).

use std::rc::Rc;

use super::gemma3::{Config, Layer};
use super::{load_q8rows, load_vector, Adapter, Compute, KvSnapshot, LanguageModel};
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
            last: gpu.zeros(h),
            out: gpu.zeros(h),
        }
    }
}

/// What a forward reads back.
enum Back<'a> {
    Hidden,
    Logits(Option<&'a [u32]>),
}

/// The LM head's input, the ids it is limited to, and its output.
struct HeadBuffers {
    x: wgpu::Buffer,
    ids: wgpu::Buffer,
    y: wgpu::Buffer,
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
    kv: GpuKv,
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
        let kv = GpuKv {
            k: Vec::new(),
            v: Vec::new(),
            capacity: 0,
            len: 0,
            row: kv_dim,
        };
        let head = HeadBuffers {
            x: gpu.zeros(h),
            ids: gpu.zeros(c.vocab),
            y: gpu.zeros(c.vocab),
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

    /// Makes room for `positions` in the cache, keeping what is there.
    fn reserve(&mut self, rec: &mut Recorder, positions: usize) {
        if positions <= self.kv.capacity {
            return;
        }
        let cap = positions.max(2 * self.kv.capacity).max(256).min(self.config.context);
        let live = (self.kv.len * self.kv.row * 4) as u64;
        let grow = |old: &mut Vec<wgpu::Buffer>, rec: &mut Recorder| {
            let new: Vec<wgpu::Buffer> = (0..self.config.layers)
                .map(|_| self.gpu.zeros(cap * self.kv.row))
                .collect();
            if live > 0 {
                for (o, n) in old.iter().zip(&new) {
                    rec.copy(o, 0, n, 0, live);
                }
            }
            *old = new;
        };
        self.gpu.forget_bind_groups();
        grow(&mut self.kv.k, rec);
        grow(&mut self.kv.v, rec);
        self.kv.capacity = cap;
    }

    /// Makes the scratch buffers hold `tokens` tokens (grown to the next power of two).
    fn grow_scratch(&mut self, tokens: usize) {
        if self.scratch.as_ref().is_none_or(|s| s.tokens < tokens) {
            self.gpu.forget_bind_groups();
            self.scratch = Some(Scratch::new(&self.gpu, &self.config, tokens.next_power_of_two()));
        }
    }

    /// Records the forward of `tokens` at the cache's position; returns the final-normed
    /// hidden state of the last token (on the GPU, in the scratch buffers).
    fn record(&mut self, rec: &mut Recorder, tokens: &[u32]) -> wgpu::Buffer {
        let c = self.config.clone();
        let (seq, h, hd) = (tokens.len(), c.hidden, c.head_dim);
        let start = self.kv.len;
        self.reserve(rec, start + seq);
        self.grow_scratch(seq);
        let (s, gpu) = (self.scratch.as_ref().expect("grown above"), &self.gpu);
        gpu.queue.write_buffer(&s.ids, 0, bytemuck::cast_slice(tokens));
        for (buf, base) in s.rope.iter().zip([c.rope_base, c.local_rope_base]) {
            gpu.queue
                .write_buffer(buf, 0, bytemuck::cast_slice(&rope_table(seq, hd, start, base)));
        }
        ops::embed(rec, &self.embedding, &s.ids, seq, (h as f32).sqrt(), &s.x);
        let norm = |rec: &mut Recorder,
                    src: &wgpu::Buffer,
                    w: &wgpu::Buffer,
                    dst: &wgpu::Buffer,
                    rows: usize,
                    dim: usize,
                    acc: bool| ops::rms_norm(rec, (src, w, dst), (rows, dim), c.eps, acc);
        let rope = |rec: &mut Recorder, x: &wgpu::Buffer, table: &wgpu::Buffer, heads: usize| {
            ops::rope(rec, (table, x), heads, hd, seq)
        };
        let row_bytes = (self.kv.row * 4) as u64;
        for (i, l) in self.layers.iter().enumerate() {
            let global = c.is_global(i);
            norm(rec, &s.x, &l.attn_norm, &s.normed, seq, h, false);
            l.q.forward(rec, &s.normed, seq, &s.q);
            l.k.forward(rec, &s.normed, seq, &s.k);
            l.v.forward(rec, &s.normed, seq, &s.v);
            norm(rec, &s.q, &l.q_norm, &s.qn, seq * c.heads, hd, false);
            norm(rec, &s.k, &l.k_norm, &s.kn, seq * c.kv_heads, hd, false);
            let table = &s.rope[usize::from(!global)];
            rope(rec, &s.qn, table, c.heads);
            rope(rec, &s.kn, table, c.kv_heads);
            let at = start as u64 * row_bytes;
            rec.copy(&s.kn, 0, &self.kv.k[i], at, seq as u64 * row_bytes);
            rec.copy(&s.v, 0, &self.kv.v[i], at, seq as u64 * row_bytes);
            ops::attention(
                rec,
                (&s.qn, &self.kv.k[i], &self.kv.v[i], &s.attn_parts, &s.attn),
                &c.attention_shape(global),
                start,
                seq,
            );
            l.o.forward(rec, &s.attn, seq, &s.back);
            norm(rec, &s.back, &l.post_attn_norm, &s.x, seq, h, true);

            norm(rec, &s.x, &l.ffn_norm, &s.normed, seq, h, false);
            l.gate.forward(rec, &s.normed, seq, &s.gate);
            l.up.forward(rec, &s.normed, seq, &s.up);
            ops::gelu_mul(rec, (&s.up, &s.gate), seq * c.ffn);
            l.down.forward(rec, &s.gate, seq, &s.back);
            norm(rec, &s.back, &l.post_ffn_norm, &s.x, seq, h, true);
        }
        self.kv.len = start + seq;
        rec.copy(&s.x, ((seq - 1) * h * 4) as u64, &s.last, 0, (h * 4) as u64);
        norm(rec, &s.last, &self.output_norm, &s.out, 1, h, false);
        s.out.clone()
    }

    /// The forward of `tokens` in one submission; reads back the final hidden state, or
    /// (`Back::Logits`) runs the LM head over the listed ids (all rows without) and reads
    /// back only those logits. A failed submission leaves the cache as it was.
    async fn step(&mut self, tokens: &[u32], back: Back<'_>) -> Result<Vec<f32>> {
        super::check_tokens(tokens, self.kv.len, self.config.context, self.config.vocab)?;
        let start = self.kv.len;
        let gpu = self.gpu.clone();
        let mut rec = gpu.recorder();
        let hidden = self.record(&mut rec, tokens);
        let result = match back {
            Back::Hidden => rec.read(&hidden, self.config.hidden).await,
            Back::Logits(ids) => self.head(rec, &hidden, ids).await,
        };
        if result.is_err() {
            self.kv.len = start;
        }
        result
    }

    /// Records the LM head over `ids` (all rows without) for the hidden state in `x`,
    /// submits `rec`, and reads the logits back.
    async fn head(&self, mut rec: Recorder<'_>, x: &wgpu::Buffer, ids: Option<&[u32]>) -> Result<Vec<f32>> {
        let b = &self.head;
        let n = ids.map_or(self.config.vocab, <[u32]>::len);
        if n == 0 {
            rec.submit();
            return Ok(Vec::new());
        }
        if let Some(ids) = ids {
            self.gpu.queue.write_buffer(&b.ids, 0, bytemuck::cast_slice(ids));
        }
        let ids = ids.map(|_| (&b.ids, n));
        ops::matmul(&mut rec, self.lm_head(), (x, 1), ids, &b.y);
        rec.read(&b.y, n).await
    }

    /// The LM head for a hidden state read back earlier.
    async fn head_of(&self, hidden: &[f32], ids: Option<&[u32]>) -> Result<Vec<f32>> {
        self.gpu
            .queue
            .write_buffer(&self.head.x, 0, bytemuck::cast_slice(hidden));
        self.head(self.gpu.recorder(), &self.head.x, ids).await
    }
}

impl LanguageModel for Gemma3Gpu {
    fn forward_hidden<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.step(tokens, Back::Hidden))
    }
    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.step(tokens, Back::Logits(None)))
    }
    fn logits<'a>(&'a self, hidden: &'a [f32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.head_of(hidden, None))
    }
    fn logits_for<'a>(&'a self, hidden: &'a [f32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.head_of(hidden, Some(ids)))
    }
    fn forward_logits_for<'a>(&'a mut self, tokens: &'a [u32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.step(tokens, Back::Logits(Some(ids))))
    }
    fn position(&self) -> usize {
        self.kv.len
    }
    fn max_context(&self) -> usize {
        self.config.context
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab
    }
    fn truncate(&mut self, position: usize) {
        self.kv.len = self.kv.len.min(position);
    }
    fn snapshot(&self) -> KvSnapshot {
        let bytes = (self.kv.len * self.kv.row * 4) as u64;
        let mut rec = self.gpu.recorder();
        let copy = |bufs: &[wgpu::Buffer], rec: &mut Recorder| -> Vec<wgpu::Buffer> {
            bufs.iter()
                .map(|b| {
                    let n = self.gpu.zeros(self.kv.len * self.kv.row);
                    if bytes > 0 {
                        rec.copy(b, 0, &n, 0, bytes);
                    }
                    n
                })
                .collect()
        };
        let state = GpuKvCopy {
            k: copy(&self.kv.k, &mut rec),
            v: copy(&self.kv.v, &mut rec),
            row: self.kv.row,
        };
        rec.submit();
        KvSnapshot::new(self.kv.len, state)
    }
    fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()> {
        let s: &GpuKvCopy = snapshot.state()?;
        if s.row != self.kv.row || s.k.len() != self.layers.len() {
            return Err(Error::BadSnapshot);
        }
        let len = snapshot.len();
        let gpu = self.gpu.clone();
        let mut rec = gpu.recorder();
        self.kv.len = 0; // nothing to keep when growing
        self.reserve(&mut rec, len);
        let bytes = (len * self.kv.row * 4) as u64;
        if bytes > 0 {
            for (src, dst) in s.k.iter().zip(&self.kv.k).chain(s.v.iter().zip(&self.kv.v)) {
                rec.copy(src, 0, dst, 0, bytes);
            }
        }
        rec.submit();
        self.kv.len = len;
        Ok(())
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
        self.kv.len = 0;
        self.gpu.forget_bind_groups();
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "webgpu"
    }
}
