//! Loader, tokenizer and forward pass on tiny generated Gemma 3 GGUF files.

mod common;

use anote_ner::runtime::gguf::{Array, Gguf, Value};
use anote_ner::runtime::tokenizer::{TokenKind, Tokenizer};
use anote_ner::{Engine, Error};
use common::{max_diff, GgufWriter, TinyGemma};
use pollster::block_on;

fn engine(t: &TinyGemma) -> Engine {
    Engine::load(t.bytes().as_slice()).expect("tiny model loads")
}

#[test]
fn batched_incremental_and_restored_forwards_agree() {
    let mut e = engine(&TinyGemma::default());
    let tokens: Vec<u32> = (0..20).map(|i| 265 + (i * 7) % 20).collect();
    let m = &mut e.model;
    let full = block_on(m.forward(&tokens)).unwrap();
    assert_eq!(m.position(), 20);

    m.truncate(0);
    let mut step = Vec::new();
    for &t in &tokens {
        step = block_on(m.forward(&[t])).unwrap();
    }
    assert!(
        max_diff(&full, &step) < 1e-3,
        "token-by-token differs: {}",
        max_diff(&full, &step)
    );

    // A cached prefix, then a different document, then the prefix restored and resumed.
    m.truncate(0);
    block_on(m.forward(&tokens[..12])).unwrap();
    let prefix = m.snapshot();
    assert_eq!(prefix.len(), 12);
    block_on(m.forward(&[275, 276, 277])).unwrap();
    m.restore(&prefix).unwrap();
    assert_eq!(m.position(), 12);
    let resumed = block_on(m.forward(&tokens[12..])).unwrap();
    assert!(
        max_diff(&full, &resumed) < 1e-3,
        "restored prefix differs: {}",
        max_diff(&full, &resumed)
    );
}

/// Sequences forwarded together, each in its own slot over one shared prefix, get the
/// logits each gets alone; a bad batch is refused and changes no cache.
#[test]
fn sequences_forwarded_together_get_their_logits_alone() {
    use anote_ner::runtime::model::{BatchRow, Logits};
    let mut e = engine(&TinyGemma::default());
    let m = &mut e.model;
    let prefix_tokens: Vec<u32> = (0..9).map(|i| 265 + (i * 5) % 20).collect();
    block_on(m.forward(&prefix_tokens)).unwrap();
    let prefix = m.snapshot();
    let docs: [&[u32]; 3] = [&[270, 271, 272], &[280], &[266, 267]];
    let ids = [265u32, 270, 283];
    // Alone: the prefix restored, the document, then one more token.
    let alone: Vec<(Vec<f32>, Vec<f32>)> = docs
        .iter()
        .map(|doc| {
            m.restore(&prefix).unwrap();
            let first = block_on(m.forward_logits_for(doc, &ids)).unwrap();
            let next = block_on(m.forward(&[277])).unwrap();
            (first, next)
        })
        .collect();
    assert!(m.max_batch() >= 3);
    for (slot, _) in docs.iter().enumerate() {
        m.begin(slot, &prefix).unwrap();
    }
    let rows: Vec<BatchRow> = docs
        .iter()
        .enumerate()
        .map(|(slot, doc)| BatchRow {
            slot,
            tokens: doc,
            logits: Logits::Of(&ids),
        })
        .collect();
    let first = block_on(m.forward_batch(&rows)).unwrap();
    // Ragged steps: the second sequence sits one out.
    let next: Vec<BatchRow> = [0, 2]
        .map(|slot| BatchRow {
            slot,
            tokens: &[277],
            logits: Logits::All,
        })
        .into();
    let next = block_on(m.forward_batch(&next)).unwrap();
    for (i, (a, b)) in alone.iter().zip(&first).enumerate() {
        assert!(max_diff(&a.0, b) < 1e-4, "sequence {i}: {}", max_diff(&a.0, b));
    }
    for (a, b) in [(&alone[0].1, &next[0]), (&alone[2].1, &next[1])] {
        assert!(max_diff(a, b) < 1e-4, "{}", max_diff(a, b));
    }

    let twice = [0, 0].map(|slot| BatchRow {
        slot,
        tokens: &[270],
        logits: Logits::All,
    });
    assert_eq!(block_on(m.forward_batch(&twice)).unwrap_err().code(), "compute");
    let out_of_vocabulary = [
        BatchRow {
            slot: 1,
            tokens: &[270],
            logits: Logits::All,
        },
        BatchRow {
            slot: 2,
            tokens: &[1_000_000],
            logits: Logits::All,
        },
    ];
    assert_eq!(
        block_on(m.forward_batch(&out_of_vocabulary)).unwrap_err().code(),
        "compute"
    );
    // Nothing moved: slot 1 still resumes where it was.
    let again = block_on(m.forward_batch(&[BatchRow {
        slot: 1,
        tokens: &[277],
        logits: Logits::All,
    }]))
    .unwrap();
    assert!(max_diff(&alone[1].1, &again[0]) < 1e-4);
}

#[test]
fn sliding_window_hides_tokens_beyond_its_reach() {
    // Two local layers with window 3: position p sees back to p - 4 at most.
    let local = TinyGemma {
        layers: 2,
        window: 3,
        context: 64,
    };
    let mut e = engine(&local);
    let mut a: Vec<u32> = (0..12).map(|i| 265 + i % 15).collect();
    let base = block_on(e.model.forward(&a)).unwrap();
    a[0] = 284;
    e.model.truncate(0);
    let changed_far = block_on(e.model.forward(&a)).unwrap();
    assert!(
        max_diff(&base, &changed_far) < 1e-5,
        "a token outside the window changed the output"
    );
    a[10] = 284;
    e.model.truncate(0);
    let changed_near = block_on(e.model.forward(&a)).unwrap();
    assert!(
        max_diff(&base, &changed_near) > 1e-4,
        "a token inside the window had no effect"
    );

    // The same change is visible when the window is wide.
    let wide = TinyGemma {
        layers: 2,
        window: 64,
        context: 64,
    };
    let mut e = engine(&wide);
    let mut a: Vec<u32> = (0..12).map(|i| 265 + i % 15).collect();
    let base = block_on(e.model.forward(&a)).unwrap();
    a[0] = 284;
    e.model.truncate(0);
    assert!(max_diff(&base, &block_on(e.model.forward(&a)).unwrap()) > 1e-4);
}

#[test]
fn context_overflow_is_an_error_and_keeps_the_cache() {
    let mut e = engine(&TinyGemma {
        context: 16,
        ..Default::default()
    });
    block_on(e.model.forward(&[270; 10])).unwrap();
    let err = block_on(e.model.forward(&[271; 7])).unwrap_err();
    assert!(matches!(err, Error::ContextOverflow { needed: 17, max: 16 }), "{err}");
    assert_eq!(e.model.position(), 10);
    block_on(e.model.forward(&[271; 6])).unwrap();

    let err = block_on(e.generate("zzzzzzzzzzzzzzzzzzzz", 4, |_, _| {})).unwrap_err();
    assert_eq!(err.code(), "context_overflow");
}

#[test]
fn empty_prompt_and_out_of_vocabulary_ids_are_errors() {
    let mut e = engine(&TinyGemma::default());
    assert_eq!(
        block_on(e.generate("", 4, |_, _| {})).unwrap_err().code(),
        "empty_prompt"
    );
    assert_eq!(block_on(e.model.forward(&[])).unwrap_err().code(), "empty_prompt");
    assert_eq!(block_on(e.model.forward(&[100_000])).unwrap_err().code(), "compute");
    let g = block_on(e.generate("abc", 5, |_, _| {})).unwrap();
    assert!(g.tokens.len() <= 5 && g.prompt_tokens == 2);
}

#[test]
fn tokenizer_merges_by_score_falls_back_to_bytes_and_never_emits_control_tokens() {
    let bytes = TinyGemma::default().bytes();
    let tok = Tokenizer::from_gguf(&Gguf::parse(bytes.as_slice()).unwrap()).unwrap();
    let pieces = |text: &str| -> Vec<String> {
        tok.encode(text)
            .iter()
            .map(|&t| tok.piece(t).unwrap().to_string())
            .collect()
    };
    // "▁a" outranks "ab" (higher score), so " abc" merges ▁a, then ▁ab, never ▁ + abc.
    assert_eq!(pieces(" abc"), ["\u{2581}ab", "c"]);
    assert_eq!(pieces("abc"), ["abc"]);
    // User-defined whitespace runs and tags are matched in raw text, longest first.
    assert_eq!(pieces("a\n\n\nb"), ["a", "\n\n", "\n", "b"]);
    assert_eq!(pieces("a  b<b>"), ["a", "  ", "b", "<b>"]);
    // Characters outside the vocabulary fall back to their UTF-8 bytes.
    assert_eq!(pieces("z€"), ["<0x7A>", "<0xE2>", "<0x82>", "<0xAC>"]);
    // Control-token look-alikes stay text, whatever merges exist.
    for text in ["<eos>", "<bos>", "a<eos>b", "<start_of_turn>", "<unk>"] {
        let ids = tok.encode(text);
        assert!(
            ids.iter().all(|&t| tok.kind(t) != Some(TokenKind::Control)),
            "{text:?} -> {ids:?}"
        );
        assert_eq!(tok.decode(&ids), text);
    }
    for text in ["", "é abc\n\n  <b>", "日本 🧬", "a\u{0}b"] {
        assert_eq!(tok.decode(&tok.encode(text)), text);
    }
    assert_eq!(tok.encode_prompt("a")[0], tok.bos);
}

fn load_err(bytes: &[u8]) -> Error {
    match Engine::load(bytes) {
        Ok(_) => panic!("loaded a bad file"),
        Err(e) => e,
    }
}

#[test]
fn bad_files_give_typed_errors() {
    let good = TinyGemma::default().bytes();
    assert_eq!(load_err(b"").code(), "not_gguf");
    assert_eq!(load_err(b"PK\x03\x04 not a model at all").code(), "not_gguf");
    // Cut anywhere: in the header, in the metadata, in the tensor directory, in the data.
    for cut in [5, 30, 2_000, good.len() / 2, good.len() - 1] {
        let e = load_err(&good[..cut]);
        assert_eq!(e.code(), "truncated", "cut at {cut}: {e}");
    }
    let mut w = TinyGemma::default().writer();
    w.version = 7;
    assert_eq!(load_err(&w.bytes()).code(), "unsupported_version");

    let mut w = TinyGemma::default().writer();
    w.set_str("general.architecture", "mamba");
    let e = load_err(&w.bytes());
    assert_eq!(e.code(), "unsupported_arch");
    assert!(e.to_string().contains("mamba"));

    let mut w = TinyGemma::default().writer();
    w.remove_tensor("blk.3.ffn_up.weight");
    assert_eq!(load_err(&w.bytes()).code(), "missing_tensor");

    let mut w = TinyGemma::default().writer();
    w.raw_tensor("strange.weight", &[4], 99, vec![0; 16]);
    assert_eq!(load_err(&w.bytes()).code(), "unsupported_tensor_type");

    let mut w = GgufWriter::new();
    w.str("general.architecture", "gemma3");
    assert_eq!(load_err(&w.bytes()).code(), "bad_metadata");

    // Random garbage after a valid magic never panics.
    for seed in 0..50u64 {
        let mut b = b"GGUF\x03\0\0\0".to_vec();
        b.extend(common::noise(64, seed, 1.0).iter().map(|x| (x * 127.0) as i8 as u8));
        let _ = Engine::load(b.as_slice());
    }
}

/// The tiny model with its vocabulary changed by `edit(tokens, types)`.
fn with_vocab(edit: impl Fn(&mut Vec<String>, &mut Vec<i32>)) -> Vec<u8> {
    let (mut tokens, mut scores, mut types) = common::tiny_vocab();
    edit(&mut tokens, &mut types);
    scores.resize(tokens.len(), -1000.0);
    let mut w = TinyGemma::default().writer();
    w.remove_kv("tokenizer.ggml.tokens")
        .remove_kv("tokenizer.ggml.scores")
        .remove_kv("tokenizer.ggml.token_type")
        .strs("tokenizer.ggml.tokens", &tokens)
        .f32s("tokenizer.ggml.scores", &scores)
        .i32s("tokenizer.ggml.token_type", &types);
    w.bytes()
}

#[test]
fn hostile_vocabularies_are_refused_or_harmless() {
    // An empty user-defined token matched everywhere and never advanced: encoding looped
    // until memory ran out. It is ignored now.
    let bytes = with_vocab(|tokens, types| {
        tokens.push(String::new());
        types.push(4);
    });
    let engine = Engine::load(bytes.as_slice()).unwrap();
    assert_eq!(engine.tokenizer.decode(&engine.tokenizer.encode("abc  d")), "abc  d");
    // A newline that text cannot spell (a control token) panicked in the answer grammar.
    let bytes = with_vocab(|tokens, types| {
        let nl = tokens.iter().position(|t| t == "\n").unwrap();
        types[nl] = 3;
    });
    let e = load_err(&bytes);
    assert_eq!(e.code(), "bad_metadata", "{e}");
    assert!(e.to_string().contains("newline"), "{e}");
}

/// Overwrites the data offset of tensor `name` in a GGUF written by [`GgufWriter`].
fn patch_offset(bytes: &mut [u8], name: &str, offset: u64) {
    let mut entry = (name.len() as u64).to_le_bytes().to_vec();
    entry.extend(name.as_bytes());
    let at = bytes.windows(entry.len()).position(|w| w == entry).unwrap() + entry.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let off = at + 4 + 8 * n_dims + 4;
    bytes[off..off + 8].copy_from_slice(&offset.to_le_bytes());
}

#[test]
fn hostile_tensor_directories_are_refused() {
    // A 0-dimensional embedding panicked when the vocabulary size was read from it.
    let mut w = TinyGemma::default().writer();
    w.remove_tensor("token_embd.weight")
        .f32_tensor("token_embd.weight", &[], &[0.5]);
    assert_eq!(load_err(&w.bytes()).code(), "tensor_shape");
    // An offset that wraps around 2^64 onto the header loaded and read it as weights.
    let mut bytes = TinyGemma::default().bytes();
    patch_offset(&mut bytes, "output_norm.weight", u64::MAX - 7);
    assert_eq!(load_err(&bytes).code(), "truncated");
    // A directory that claims more tensors than the file could describe.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((1u64 << 24).to_le_bytes());
    b.extend(0u64.to_le_bytes());
    assert_eq!(load_err(&b).code(), "truncated");
}

#[test]
fn metadata_arrays_cost_what_the_file_holds() {
    // Sixteen million one-byte elements claimed by a file of a few hundred bytes: refused
    // before anything is allocated for them.
    let mut w = TinyGemma::default().writer();
    w.array("junk", 0, 1 << 24, vec![7; 64]);
    assert_eq!(load_err(&w.bytes()).code(), "truncated");
    // A real byte array is kept as bytes (one per element, not a 32-byte value each).
    let mut w = TinyGemma::default().writer();
    w.array("junk", 0, 1 << 20, vec![7; 1 << 20]);
    let g = Gguf::parse(w.bytes().as_slice()).unwrap();
    assert_eq!(g.get("junk"), Some(&Value::Array(Array::U8(vec![7; 1 << 20]))));
}

/// A model file that counts the bytes of reads that start in one range of it (the header
/// parser reads ahead, into the first tensor's bytes).
struct Counted {
    bytes: Vec<u8>,
    range: std::ops::Range<usize>,
    read: std::sync::atomic::AtomicUsize,
}

impl anote_ner::runtime::gguf::ByteSource for Counted {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> anote_ner::Result<()> {
        let (start, end) = (offset as usize, offset as usize + buf.len());
        if self.range.contains(&start) {
            self.read.fetch_add(buf.len(), std::sync::atomic::Ordering::Relaxed);
        }
        buf.copy_from_slice(&self.bytes[start..end]);
        Ok(())
    }
}

/// An engine that keeps its file leaves the embedding there: loading skips it, a forward
/// reads the rows of its tokens and of the logits asked for (each once), a product over the
/// whole vocabulary reads the matrix once, and every result is the loaded engine's, bit
/// for bit.
#[test]
fn an_engine_that_keeps_its_file_reads_embedding_rows_as_looked_up() {
    use anote_ner::runtime::model::{BatchRow, Logits};
    use std::sync::atomic::Ordering::Relaxed;
    let bytes = TinyGemma::default().bytes();
    let g = Gguf::parse(bytes.as_slice()).unwrap();
    let embd = g.tensor("token_embd.weight").unwrap();
    let row = embd.size / embd.shape()[0];
    let file = std::sync::Arc::new(Counted {
        bytes: bytes.clone(),
        range: embd.offset as usize..embd.offset as usize + embd.size,
        read: 0.into(),
    });
    let mut kept = Engine::open(&*file, file.clone()).unwrap();
    let mut loaded = Engine::load(bytes.as_slice()).unwrap();
    assert_eq!(file.read.load(Relaxed), 0, "loading reads none of the embedding");

    let (prompt, ids) = ([270u32, 271, 270, 272], [265u32, 270, 283]);
    let rows = |slot| {
        [BatchRow {
            slot,
            tokens: &prompt,
            logits: Logits::Of(&ids),
        }]
    };
    let want = block_on(loaded.model.forward_batch(&rows(0))).unwrap();
    assert_eq!(block_on(kept.model.forward_batch(&rows(0))).unwrap(), want);
    // Rows 270, 271, 272 in, then 265 and 283 out (270 is kept).
    assert_eq!(file.read.swap(0, Relaxed), 5 * row);

    let all = block_on(loaded.model.forward(&[277])).unwrap();
    assert_eq!(block_on(kept.model.forward(&[277])).unwrap(), all);
    // Row 277 in, then the whole matrix for the logits.
    assert_eq!(file.read.swap(0, Relaxed), row + embd.size);
    assert_eq!(
        block_on(kept.model.forward(&[278])).unwrap(),
        block_on(loaded.model.forward(&[278])).unwrap()
    );
    assert_eq!(file.read.load(Relaxed), 0, "the whole matrix is read once");

    let out_of_vocabulary = kept.model.forward(&[1_000_000]);
    assert_eq!(block_on(out_of_vocabulary).unwrap_err().code(), "compute");
}
