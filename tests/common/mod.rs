//! Test support: a GGUF writer and a generator of tiny random Gemma 3 models, so that unit
//! tests exercise the real loader and forward pass in milliseconds.
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::HashMap;

/// The default model, fetched by `cargo xtask setup`.
pub fn real_model_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(anote_ner::DEFAULT_MODEL_FILE);
    assert!(p.exists(), "{} is missing: run `cargo xtask setup`", p.display());
    p
}

/// The `entities` of an eval-format JSONL document as scorer spans (code points); a
/// malformed entity fails the test.
pub fn gold_spans(doc: &serde_json::Value) -> Vec<anote_ner::ner::eval::Span> {
    doc["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["start"].as_u64().unwrap() as usize,
                e["end"].as_u64().unwrap() as usize,
                e["label"].as_str().unwrap().into(),
            )
        })
        .collect()
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

#[derive(Default)]
pub struct GgufWriter {
    pub version: u32,
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<usize>, u32, Vec<u8>)>,
}

fn string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            ..Default::default()
        }
    }
    pub fn u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.kv.push((k.into(), 4, v.to_le_bytes().to_vec()));
        self
    }
    pub fn f32(&mut self, k: &str, v: f32) -> &mut Self {
        self.kv.push((k.into(), 6, v.to_le_bytes().to_vec()));
        self
    }
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.kv.push((k.into(), 7, vec![v as u8]));
        self
    }
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.kv.push((k.into(), 8, string(v)));
        self
    }
    /// An array of `n` elements of GGUF type `elem`, `body` their bytes (`n` may lie).
    pub fn array(&mut self, k: &str, elem: u32, n: usize, body: Vec<u8>) -> &mut Self {
        let mut b = elem.to_le_bytes().to_vec();
        b.extend((n as u64).to_le_bytes());
        b.extend(body);
        self.kv.push((k.into(), 9, b));
        self
    }
    pub fn strs(&mut self, k: &str, v: &[String]) -> &mut Self {
        let body = v.iter().flat_map(|s| string(s)).collect();
        self.array(k, 8, v.len(), body)
    }
    pub fn f32s(&mut self, k: &str, v: &[f32]) -> &mut Self {
        self.array(k, 6, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    pub fn i32s(&mut self, k: &str, v: &[i32]) -> &mut Self {
        self.array(k, 5, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    /// A tensor of raw bytes; `shape` outermost first, `type_id` as in ggml.h.
    pub fn raw_tensor(&mut self, name: &str, shape: &[usize], type_id: u32, data: Vec<u8>) -> &mut Self {
        self.tensors
            .push((name.into(), shape.iter().rev().copied().collect(), type_id, data));
        self
    }
    pub fn f32_tensor(&mut self, name: &str, shape: &[usize], data: &[f32]) -> &mut Self {
        self.raw_tensor(name, shape, 0, data.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    /// Quantizes `data` with candle (Q8_0 = 8, Q5_0 = 6, Q4_K = 12…).
    pub fn quant_tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        data: &[f32],
        dtype: GgmlDType,
        type_id: u32,
    ) -> &mut Self {
        let t = Tensor::from_slice(data, shape, &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        self.raw_tensor(name, shape, type_id, q.data().unwrap().into_owned())
    }
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.0 != name);
        self
    }
    pub fn remove_kv(&mut self, k: &str) -> &mut Self {
        self.kv.retain(|e| e.0 != k);
        self
    }
    pub fn set_str(&mut self, k: &str, v: &str) -> &mut Self {
        self.kv.retain(|e| e.0 != k);
        self.str(k, v)
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kv.len() as u64).to_le_bytes());
        for (k, t, v) in &self.kv {
            b.extend(string(k));
            b.extend(t.to_le_bytes());
            b.extend(v);
        }
        let mut offset = 0u64;
        for (name, dims, t, data) in &self.tensors {
            b.extend(string(name));
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend((*d as u64).to_le_bytes());
            }
            b.extend(t.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        b.resize(b.len().div_ceil(32) * 32, 0);
        for (_, _, _, data) in &self.tensors {
            b.extend(data);
            b.resize(b.len().div_ceil(32) * 32, 0);
        }
        b
    }
}

/// Largest element-wise difference of two equally long vectors.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Deterministic pseudo-random numbers in [-scale, scale].
pub use anote_ner::runtime::backend::noise;

pub struct TinyGemma {
    pub layers: usize,
    pub window: u32,
    pub context: u32,
}

impl Default for TinyGemma {
    fn default() -> Self {
        TinyGemma {
            layers: 6,
            window: 4,
            context: 64,
        }
    }
}

/// The tiny model's vocabulary: control tokens, 256 byte tokens, user-defined whitespace
/// runs, then letters and a few merges with descending scores (SentencePiece style).
pub fn tiny_vocab() -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut toks: Vec<(String, i32)> = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>"]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), if i == 3 { 2 } else { 3 }))
        .collect();
    toks.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 6)));
    toks.extend(["\n", "\n\n", "  ", "<b>"].iter().map(|t| (t.to_string(), 4)));
    // "s>", "os>" and "<e" outrank "eo", so plain merging would reach the control token <eos>.
    let normal = [
        "\u{2581}",
        "a",
        "b",
        "c",
        "d",
        "e",
        "o",
        "s",
        "<",
        ">",
        "\u{2581}a",
        "ab",
        "abc",
        "\u{2581}ab",
        "s>",
        "os>",
        "<e",
        "eo",
        "\u{2581}c",
        "é",
        ":",
    ];
    toks.extend(normal.iter().map(|t| (t.to_string(), 1)));
    let scores = (0..toks.len()).map(|i| -(i as f32)).collect();
    let types = toks.iter().map(|t| t.1).collect();
    (toks.into_iter().map(|t| t.0).collect(), scores, types)
}

pub const H: usize = 64;
pub const HEAD_DIM: usize = 32;
pub const HEADS: usize = 2;
pub const FFN: usize = 96;

impl TinyGemma {
    pub fn writer(&self) -> GgufWriter {
        let (tokens, scores, types) = tiny_vocab();
        let vocab = tokens.len();
        let mut w = GgufWriter::new();
        w.str("general.architecture", "gemma3")
            .str("general.name", "tiny gemma3")
            .u32("gemma3.context_length", self.context)
            .u32("gemma3.embedding_length", H as u32)
            .u32("gemma3.block_count", self.layers as u32)
            .u32("gemma3.feed_forward_length", FFN as u32)
            .u32("gemma3.attention.head_count", HEADS as u32)
            .u32("gemma3.attention.head_count_kv", 1)
            .u32("gemma3.attention.key_length", HEAD_DIM as u32)
            .u32("gemma3.attention.value_length", HEAD_DIM as u32)
            .f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6)
            .f32("gemma3.rope.freq_base", 1e6)
            .u32("gemma3.attention.sliding_window", self.window)
            .str("tokenizer.ggml.model", "llama")
            .strs("tokenizer.ggml.tokens", &tokens)
            .f32s("tokenizer.ggml.scores", &scores)
            .i32s("tokenizer.ggml.token_type", &types)
            .u32("tokenizer.ggml.bos_token_id", 2)
            .u32("tokenizer.ggml.eos_token_id", 1)
            .bool("tokenizer.ggml.add_bos_token", true);
        let mut seed = 1;
        let mut next = || {
            seed += 1;
            seed
        };
        let q8 = |w: &mut GgufWriter, name: &str, shape: &[usize], seed: u64| {
            let n = shape.iter().product();
            w.quant_tensor(name, shape, &noise(n, seed, 0.2), GgmlDType::Q8_0, 8);
        };
        q8(&mut w, "token_embd.weight", &[vocab, H], next());
        let norm = |w: &mut GgufWriter, name: &str, n: usize, seed: u64| {
            let v: Vec<f32> = noise(n, seed, 0.1).iter().map(|x| 1.0 + x).collect();
            w.f32_tensor(name, &[n], &v);
        };
        norm(&mut w, "output_norm.weight", H, next());
        for i in 0..self.layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            norm(&mut w, &n("attn_norm"), H, next());
            // Q5_0 exercises the load-time repack to Q8_0.
            let qd = HEADS * HEAD_DIM;
            let data = noise(qd * H, next(), 0.2);
            w.quant_tensor(&n("attn_q"), &[qd, H], &data, GgmlDType::Q5_0, 6);
            q8(&mut w, &n("attn_k"), &[HEAD_DIM, H], next());
            q8(&mut w, &n("attn_v"), &[HEAD_DIM, H], next());
            norm(&mut w, &n("attn_q_norm"), HEAD_DIM, next());
            norm(&mut w, &n("attn_k_norm"), HEAD_DIM, next());
            q8(&mut w, &n("attn_output"), &[H, qd], next());
            norm(&mut w, &n("post_attention_norm"), H, next());
            norm(&mut w, &n("ffn_norm"), H, next());
            q8(&mut w, &n("ffn_gate"), &[FFN, H], next());
            q8(&mut w, &n("ffn_up"), &[FFN, H], next());
            q8(&mut w, &n("ffn_down"), &[H, FFN], next());
            norm(&mut w, &n("post_ffw_norm"), H, next());
        }
        w
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.writer().bytes()
    }
}

/// Rank of the test adapters.
pub const RANK: usize = 4;

/// `(stem, out, in)` of every projection the adapter format covers.
pub fn projections(layers: usize) -> Vec<(String, usize, usize)> {
    let q = HEADS * HEAD_DIM;
    let mut v = Vec::new();
    for i in 0..layers {
        for (stem, out, inp) in [
            ("attn_q", q, H),
            ("attn_k", HEAD_DIM, H),
            ("attn_v", HEAD_DIM, H),
            ("attn_output", H, q),
            ("ffn_gate", FFN, H),
            ("ffn_up", FFN, H),
            ("ffn_down", H, FFN),
        ] {
            v.push((format!("blk.{i}.{stem}"), out, inp));
        }
    }
    v
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()
}

/// An adapter file as `train/train.py` writes it.
pub fn adapter_file(fingerprint: &str, pairs: &[(String, usize, usize)], b_scale: f32) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, (stem, out, inp)) in pairs.iter().enumerate() {
        let a = f16_bytes(&noise(RANK * inp, 100 + k as u64, 0.5));
        let b = f16_bytes(&noise(out * RANK, 900 + k as u64, b_scale));
        data.push((format!("{stem}.lora_a"), vec![RANK, *inp], a));
        data.push((format!("{stem}.lora_b"), vec![*out, RANK], b));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, shape, bytes)| (n.clone(), TensorView::new(Dtype::F16, shape.clone(), bytes).unwrap()))
        .collect();
    let meta = HashMap::from([
        ("format".to_string(), "anote-lora-v1".to_string()),
        ("base_fingerprint".to_string(), fingerprint.to_string()),
    ]);
    safetensors::tensor::serialize(views, Some(meta)).unwrap()
}
