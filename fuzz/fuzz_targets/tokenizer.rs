//! Any vocabulary and any text: the input is split at NUL bytes into pieces; each piece's
//! first byte picks its token type (as `tokenizer.ggml.token_type` would) and the last piece
//! is the text. Loading either refuses the vocabulary or gives a tokenizer whose encoding of
//! the text ends, and whose decoding never panics.
#![no_main]

use std::collections::HashMap;

use anote_ner::runtime::gguf::{Array, Gguf, Value};
use anote_ner::runtime::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let text = String::from_utf8_lossy(parts.pop().unwrap_or_default()).into_owned();
    let mut tokens = Vec::new();
    let mut types = Vec::new();
    // Byte-fallback tokens come first, as every SentencePiece vocabulary has them.
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for p in parts.iter().take(4096) {
        let (kind, piece) = p.split_first().map_or((1, &[][..]), |(k, rest)| (*k as i32 % 7, rest));
        tokens.push(String::from_utf8_lossy(piece).into_owned());
        types.push(kind);
    }
    let n = tokens.len() as u32;
    let metadata = HashMap::from([
        ("tokenizer.ggml.model".to_string(), Value::Str("llama".into())),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(Array::F32((0..n).map(|i| -(i as f32)).collect())),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(types))),
        ("tokenizer.ggml.tokens".into(), Value::Array(Array::Str(tokens))),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(n - 1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ]);
    let g = Gguf {
        version: 3,
        metadata,
        tensors: HashMap::new(),
    };
    if let Ok(t) = Tokenizer::from_gguf(&g) {
        let ids = t.encode(&text);
        let _ = t.decode(&ids);
        let _ = t.encode_prompt(&text);
    }
});
