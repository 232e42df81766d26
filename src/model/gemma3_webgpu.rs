//! Gemma 3 on the GPU: the forward of [`super::gemma3`], each op a WGSL kernel
//! ([`crate::backend::webgpu`]). Weights are uploaded once; a forward is one command
//! submission, and only the final hidden state (640 floats) or the logits come back.
//! The KV cache lives on the GPU and grows on demand; snapshots are GPU-side copies.

use std::rc::Rc;

use super::gemma3::{Config, Layer};
use super::{load_q8rows, load_vector, Adapter, Compute, KvSnapshot, LanguageModel};
use crate::backend::cpu::rope_table;
use crate::backend::webgpu::{Gpu, GpuMatrix, Groups, Kernel, Out, MAX_HEAD_DIM};
use crate::error::{Error, Result};
use crate::gguf::{ByteSource, Gguf};

/// A projection with its optional LoRA side path (`A` `[r, in]`, `B` `[out, r]`).
struct GpuLinear {
    w: GpuMatrix,
    lora: Option<(wgpu::Buffer, wgpu::Buffer, usize)>,
}

impl GpuLinear {
    /// Records `y = x · Wᵀ (+ x · Aᵀ · Bᵀ)` for `tokens` rows; returns `y`.
    fn forward(&self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, x: &wgpu::Buffer, tokens: usize) -> wgpu::Buffer {
        let y = gpu.zeros(tokens * self.w.rows);
        self.w.matmul(gpu, enc, (x, tokens), None, Out::Write(&y));
        if let Some((a, b, rank)) = &self.lora {
            let mid = gpu.zeros(tokens * rank);
            let dims = |rows: usize, cols: usize, acc: bool| [rows as u32, cols as u32, tokens as u32, acc as u32];
            let groups = |rows: usize| Groups::cover(rows * tokens, 64, 1);
            gpu.dispatch(
                enc,
                Kernel::MatmulF32,
                &dims(*rank, self.w.cols, false),
                &[a, x, &mid],
                groups(*rank),
            );
            gpu.dispatch(
                enc,
                Kernel::MatmulF32,
                &dims(self.w.rows, *rank, true),
                &[b, &mid, &y],
                groups(self.w.rows),
            );
        }
        y
    }
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
}

impl Gemma3Gpu {
    pub fn load<S: ByteSource + ?Sized>(gpu: Rc<Gpu>, g: &Gguf, src: &S) -> Result<Gemma3Gpu> {
        let c = Config::from_gguf(g)?;
        if c.head_dim > MAX_HEAD_DIM || !c.hidden.is_multiple_of(32) || !c.ffn.is_multiple_of(32) {
            return Err(Error::Gpu(format!(
                "the GPU kernels need head_dim ≤ {MAX_HEAD_DIM} and widths that are multiples of 32"
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
                lora: None,
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
        Ok(Gemma3Gpu {
            config: c,
            gpu,
            embedding,
            output,
            layers,
            output_norm,
            kv,
        })
    }

    pub fn adapter_name(&self) -> &str {
        &self.gpu.adapter
    }

    fn lm_head(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.embedding)
    }

    /// Makes room for `positions` in the cache, keeping what is there.
    fn reserve(&mut self, enc: &mut wgpu::CommandEncoder, positions: usize) {
        if positions <= self.kv.capacity {
            return;
        }
        let cap = positions.max(2 * self.kv.capacity).max(256).min(self.config.context);
        let live = (self.kv.len * self.kv.row * 4) as u64;
        let grow = |old: &mut Vec<wgpu::Buffer>, enc: &mut wgpu::CommandEncoder| {
            let new: Vec<wgpu::Buffer> = (0..self.config.layers)
                .map(|_| self.gpu.zeros(cap * self.kv.row))
                .collect();
            if live > 0 {
                for (o, n) in old.iter().zip(&new) {
                    enc.copy_buffer_to_buffer(o, 0, n, 0, live);
                }
            }
            *old = new;
        };
        grow(&mut self.kv.k, enc);
        grow(&mut self.kv.v, enc);
        self.kv.capacity = cap;
    }

    /// Records the forward of `tokens` at the cache's position; returns the final-normed
    /// hidden state of the last token (on the GPU).
    fn record(&mut self, enc: &mut wgpu::CommandEncoder, tokens: &[u32]) -> wgpu::Buffer {
        let c = self.config.clone();
        let gpu = self.gpu.clone();
        let (seq, h, hd) = (tokens.len(), c.hidden, c.head_dim);
        let start = self.kv.len;
        self.reserve(enc, start + seq);
        let ids = gpu.upload(tokens);
        let x = gpu.zeros(seq * h);
        self.embedding.embed(&gpu, enc, &ids, seq, (h as f32).sqrt(), &x);
        let tables = [c.rope_base, c.local_rope_base].map(|base| gpu.upload(&rope_table(seq, hd, start, base)));
        let norm = |enc: &mut wgpu::CommandEncoder,
                    src: &wgpu::Buffer,
                    w: &wgpu::Buffer,
                    dst: &wgpu::Buffer,
                    rows: usize,
                    dim: usize,
                    acc: bool| {
            let params = [dim as u32, rows as u32, c.eps.to_bits(), acc as u32];
            gpu.dispatch(
                enc,
                Kernel::RmsNorm,
                &params,
                &[src, w, dst],
                Groups::cover(rows, 64, 1),
            );
        };
        let rope = |enc: &mut wgpu::CommandEncoder, x: &wgpu::Buffer, table: &wgpu::Buffer, heads: usize| {
            let params = [heads as u32, hd as u32, seq as u32];
            gpu.dispatch(
                enc,
                Kernel::Rope,
                &params,
                &[table, x],
                Groups::cover(seq * heads * hd / 2, 64, 1),
            );
        };
        let row_bytes = (self.kv.row * 4) as u64;
        for (i, l) in self.layers.iter().enumerate() {
            let global = c.is_global(i);
            let a = gpu.zeros(seq * h);
            norm(enc, &x, &l.attn_norm, &a, seq, h, false);
            let q = l.q.forward(&gpu, enc, &a, seq);
            let k = l.k.forward(&gpu, enc, &a, seq);
            let v = l.v.forward(&gpu, enc, &a, seq);
            let qn = gpu.zeros(seq * c.heads * hd);
            let kn = gpu.zeros(seq * c.kv_heads * hd);
            norm(enc, &q, &l.q_norm, &qn, seq * c.heads, hd, false);
            norm(enc, &k, &l.k_norm, &kn, seq * c.kv_heads, hd, false);
            let table = &tables[usize::from(!global)];
            rope(enc, &qn, table, c.heads);
            rope(enc, &kn, table, c.kv_heads);
            let at = start as u64 * row_bytes;
            enc.copy_buffer_to_buffer(&kn, 0, &self.kv.k[i], at, seq as u64 * row_bytes);
            enc.copy_buffer_to_buffer(&v, 0, &self.kv.v[i], at, seq as u64 * row_bytes);
            let attn = gpu.zeros(seq * c.heads * hd);
            let window = if global { 0 } else { c.window as u32 };
            let params = [
                c.heads as u32,
                c.kv_heads as u32,
                hd as u32,
                start as u32,
                window,
                (1.0 / (hd as f32).sqrt()).to_bits(),
            ];
            gpu.dispatch(
                enc,
                Kernel::Attention,
                &params,
                &[&qn, &self.kv.k[i], &self.kv.v[i], &attn],
                Groups::Grid(c.heads as u32, seq as u32, 1),
            );
            let o = l.o.forward(&gpu, enc, &attn, seq);
            norm(enc, &o, &l.post_attn_norm, &x, seq, h, true);

            let f = gpu.zeros(seq * h);
            norm(enc, &x, &l.ffn_norm, &f, seq, h, false);
            let gate = l.gate.forward(&gpu, enc, &f, seq);
            let up = l.up.forward(&gpu, enc, &f, seq);
            let len = (seq * c.ffn) as u32;
            gpu.dispatch(
                enc,
                Kernel::GeluMul,
                &[len],
                &[&up, &gate],
                Groups::cover(seq * c.ffn, 64, 1),
            );
            let down = l.down.forward(&gpu, enc, &gate, seq);
            norm(enc, &down, &l.post_ffn_norm, &x, seq, h, true);
        }
        self.kv.len = start + seq;
        let last = gpu.zeros(h);
        enc.copy_buffer_to_buffer(&x, ((seq - 1) * h * 4) as u64, &last, 0, (h * 4) as u64);
        let out = gpu.zeros(h);
        norm(enc, &last, &self.output_norm, &out, 1, h, false);
        out
    }

    async fn hidden(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        super::check_tokens(tokens, self.kv.len, self.config.context, self.config.vocab)?;
        let start = self.kv.len;
        let mut enc = self.gpu.encoder();
        let out = self.record(&mut enc, tokens);
        let gpu = self.gpu.clone();
        let result = gpu.read(enc, &out, self.config.hidden).await;
        if result.is_err() {
            self.kv.len = start;
        }
        result
    }

    async fn head(&self, hidden: &[f32], ids: Option<&[u32]>) -> Result<Vec<f32>> {
        let gpu = &self.gpu;
        let x = gpu.upload(hidden);
        let mut enc = gpu.encoder();
        let (n, ids) = match ids {
            Some(ids) => (ids.len(), Some((gpu.upload(ids), ids.len()))),
            None => (self.config.vocab, None),
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let y = gpu.zeros(n);
        self.lm_head().matmul(
            gpu,
            &mut enc,
            (&x, 1),
            ids.as_ref().map(|(b, n)| (b, *n)),
            Out::Write(&y),
        );
        gpu.read(enc, &y, n).await
    }
}

impl LanguageModel for Gemma3Gpu {
    fn forward_hidden<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.hidden(tokens))
    }
    fn logits<'a>(&'a self, hidden: &'a [f32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.head(hidden, None))
    }
    fn logits_for<'a>(&'a self, hidden: &'a [f32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        Box::pin(self.head(hidden, Some(ids)))
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
        let mut enc = self.gpu.encoder();
        let copy = |bufs: &[wgpu::Buffer], enc: &mut wgpu::CommandEncoder| -> Vec<wgpu::Buffer> {
            bufs.iter()
                .map(|b| {
                    let n = self.gpu.zeros(self.kv.len * self.kv.row);
                    if bytes > 0 {
                        enc.copy_buffer_to_buffer(b, 0, &n, 0, bytes);
                    }
                    n
                })
                .collect()
        };
        let state = GpuKvCopy {
            k: copy(&self.kv.k, &mut enc),
            v: copy(&self.kv.v, &mut enc),
            row: self.kv.row,
        };
        self.gpu.queue.submit([enc.finish()]);
        KvSnapshot::new(self.kv.len, state)
    }
    fn restore(&mut self, snapshot: &KvSnapshot) -> Result<()> {
        let s: &GpuKvCopy = snapshot.state()?;
        if s.row != self.kv.row || s.k.len() != self.layers.len() {
            return Err(Error::BadSnapshot);
        }
        let len = snapshot.len();
        let mut enc = self.gpu.encoder();
        self.kv.len = 0; // nothing to keep when growing
        self.reserve(&mut enc, len);
        let bytes = (len * self.kv.row * 4) as u64;
        if bytes > 0 {
            for (src, dst) in s.k.iter().zip(&self.kv.k).chain(s.v.iter().zip(&self.kv.v)) {
                enc.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
            }
        }
        self.gpu.queue.submit([enc.finish()]);
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
                linear.lora = match pairs.next().flatten() {
                    Some(p) => {
                        let (a, b) = p.matrices();
                        Some((self.gpu.upload(a), self.gpu.upload(&b), p.rank()))
                    }
                    None => None,
                };
            }
        }
        self.kv.len = 0;
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "webgpu"
    }
}
