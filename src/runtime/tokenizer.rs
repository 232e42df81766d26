//! The SentencePiece tokenizer that a GGUF file describes in `tokenizer.ggml.*`, with the
//! same results as llama.cpp's SPM tokenizer (parity is tested on a fixture of real ids).
//!
//! There is no `tokenizer.json` for these models, and deriving BPE merges from the scores
//! for the `tokenizers` crate costs about a second at every load (513k merges); the SPM
//! algorithm needs only the vocabulary and the scores, so we implement it directly.
//!
//! User text never becomes a control token: only *user-defined* tokens (whitespace runs,
//! newline runs, HTML tags) are matched in raw text, exactly as llama.cpp does with
//! `parse_special = false`. Control tokens (`<eos>`, `<start_of_turn>`…) are added by code.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, Result};
use crate::runtime::gguf::{Gguf, Value};

/// What a token is, from `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte(u8),
}

#[derive(Debug)]
pub struct Tokenizer {
    pieces: Vec<String>,
    scores: Vec<f32>,
    kinds: Vec<TokenKind>,
    /// Pieces that text may become: every token but control and unused ones.
    by_piece: HashMap<String, u32>,
    /// User-defined tokens, longest first: matched in raw text before SPM runs.
    user_defined: Vec<(String, u32)>,
    byte_tokens: [u32; 256],
    pub bos: u32,
    pub eos: u32,
    pub add_bos: bool,
}

/// End-of-generation spellings that llama.cpp treats as control tokens whatever their
/// stored type (Gemma's vocabulary has `</s>` as a user-defined HTML tag); we follow it
/// so that both see the same ids and user text cannot end a generation.
const END_MARKERS: &[&str] = &[
    "</s>",
    "<eos>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<EOT>",
];

/// SentencePiece's visible space.
const SPACE: char = '\u{2581}';

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let model = g.str("tokenizer.ggml.model")?;
        if model != "llama" {
            return Err(Error::Metadata {
                key: "tokenizer.ggml.model".into(),
                expected: "\"llama\" (SentencePiece)",
            });
        }
        let pieces: Vec<String> = g
            .array("tokenizer.ggml.tokens")?
            .strings()
            .ok_or_else(|| bad("tokenizer.ggml.tokens", "string array"))?
            .to_vec();
        let n = pieces.len();
        let scores: Vec<f32> = match g.get("tokenizer.ggml.scores") {
            Some(Value::Array(a)) => a.f32s(),
            _ => None,
        }
        .filter(|s: &Vec<f32>| s.len() == n)
        .ok_or_else(|| bad("tokenizer.ggml.scores", "float array as long as the vocabulary"))?;
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.i64s(),
            None => Some(vec![1; n]),
            _ => None,
        }
        .filter(|t: &Vec<i64>| t.len() == n)
        .ok_or_else(|| bad("tokenizer.ggml.token_type", "integer array as long as the vocabulary"))?;

        let mut byte_tokens = [u32::MAX; 256];
        let mut kinds = Vec::with_capacity(n);
        let mut by_piece = HashMap::with_capacity(n);
        let mut user_defined = Vec::new();
        for (id, (piece, &t)) in pieces.iter().zip(&types).enumerate() {
            let id = id as u32;
            let kind = match t {
                _ if END_MARKERS.contains(&piece.as_str()) => TokenKind::Control,
                2 => TokenKind::Unknown,
                3 => TokenKind::Control,
                4 => TokenKind::UserDefined,
                5 => TokenKind::Unused,
                6 => {
                    let b = parse_byte_piece(piece)
                        .ok_or_else(|| bad("tokenizer.ggml.tokens", "byte tokens spelled <0xXX>"))?;
                    byte_tokens[b as usize] = id;
                    TokenKind::Byte(b)
                }
                _ => TokenKind::Normal,
            };
            // An empty user-defined token would match everywhere and never advance.
            if kind == TokenKind::UserDefined && !piece.is_empty() {
                user_defined.push((piece.clone(), id));
            }
            kinds.push(kind);
            // Merges may not produce control tokens: llama.cpp lets them (a user's "<eos>"
            // could merge into the real one), we don't. As in llama.cpp, a later duplicate wins.
            if !matches!(kind, TokenKind::Control | TokenKind::Unused) {
                by_piece.insert(piece.clone(), id);
            }
        }
        if byte_tokens.contains(&u32::MAX) {
            return Err(bad("tokenizer.ggml.token_type", "256 byte-fallback tokens"));
        }
        // Stable sort: equal lengths keep id order.
        user_defined.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let id = |key: &str| -> Result<u32> {
            let v = g.u64(key)?;
            if (v as usize) < n {
                Ok(v as u32)
            } else {
                Err(bad(key, "token id inside the vocabulary"))
            }
        };
        // The answer grammar ends lines with the newline token: a vocabulary where text
        // cannot spell it (missing, or a control token) cannot run extraction.
        if !by_piece.contains_key("\n") {
            return Err(bad("tokenizer.ggml.tokens", "a newline token that text can spell"));
        }
        Ok(Tokenizer {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            add_bos: g
                .get("tokenizer.ggml.add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            pieces,
            scores,
            kinds,
            by_piece,
            user_defined,
            byte_tokens,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    /// The piece as stored in the vocabulary (`▁` for spaces, `<0x0A>` for bytes).
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The token spelled exactly `piece` (`▁` for spaces), never a control token.
    pub fn lookup(&self, piece: &str) -> Option<u32> {
        self.by_piece.get(piece).copied()
    }

    /// A token's text with `▁` turned back into spaces (empty for control and byte tokens).
    pub fn text(&self, id: u32) -> String {
        match self.kind(id) {
            Some(TokenKind::Normal | TokenKind::UserDefined | TokenKind::Unknown) => {
                self.pieces[id as usize].replace(SPACE, " ")
            }
            _ => String::new(),
        }
    }

    /// Encodes user text. Never emits control tokens; no BOS (see [`Self::encode_prompt`]).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        for fragment in self.split_user_defined(text) {
            match fragment {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(t) => self.encode_spm(&t.replace(' ', "\u{2581}"), &mut out),
            }
        }
        out
    }

    /// BOS (when the model wants it) followed by the encoded text.
    pub fn encode_prompt(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.push(self.bos);
        }
        ids.extend(self.encode(text));
        ids
    }

    /// Splits raw text at user-defined tokens, longest token first (llama.cpp's
    /// `tokenizer_st_partition` with `parse_special = false`).
    fn split_user_defined<'t>(&self, text: &'t str) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for (piece, id) in &self.user_defined {
            if !text.contains(piece.as_str()) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for f in fragments {
                let Fragment::Text(mut rest) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(at) = rest.find(piece.as_str()) {
                    if at > 0 {
                        next.push(Fragment::Text(&rest[..at]));
                    }
                    next.push(Fragment::Token(*id));
                    rest = &rest[at + piece.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// SentencePiece BPE: repeatedly merge the adjacent pair whose concatenation is the
    /// highest-scoring token (ties: leftmost), then fall back to bytes for unknown chars.
    fn encode_spm(&self, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, ch)) in text.char_indices().enumerate() {
            syms.push(Symbol {
                start,
                len: ch.len_utf8(),
                prev: i as isize - 1,
                next: i as isize + 1,
            });
        }
        if let Some(last) = syms.last_mut() {
            last.next = -1;
        }
        let mut queue = BinaryHeap::new();
        for i in 1..syms.len() {
            self.push_bigram(text, &syms, i - 1, i, &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (&syms[b.left], &syms[b.right]);
            // Stale entry: one side was merged away or grew since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            let right_next = r.next;
            syms[b.left].len += syms[b.right].len;
            syms[b.right].len = 0;
            syms[b.left].next = right_next;
            if right_next >= 0 {
                syms[right_next as usize].prev = b.left as isize;
            }
            let prev = syms[b.left].prev;
            if prev >= 0 {
                self.push_bigram(text, &syms, prev as usize, b.left, &mut queue);
            }
            if right_next >= 0 {
                self.push_bigram(text, &syms, b.left, right_next as usize, &mut queue);
            }
        }
        let mut i = if syms.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = &syms[i as usize];
            let piece = &text[s.start..s.start + s.len];
            match self.by_piece.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().map(|b| self.byte_tokens[b as usize])),
            }
            i = s.next;
        }
    }

    fn push_bigram(&self, text: &str, syms: &[Symbol], left: usize, right: usize, queue: &mut BinaryHeap<Bigram>) {
        let (l, r) = (&syms[left], &syms[right]);
        let merged = &text[l.start..r.start + r.len];
        if let Some(&id) = self.by_piece.get(merged) {
            queue.push(Bigram {
                score: self.scores[id as usize],
                left,
                right,
                len: merged.len(),
            });
        }
    }

    /// Text of a token sequence: `▁` becomes a space, byte tokens are reassembled into
    /// UTF-8, control tokens produce nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.append_bytes(id, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw bytes a token stands for (streaming decoders join them into UTF-8).
    pub fn append_bytes(&self, id: u32, bytes: &mut Vec<u8>) {
        match self.kind(id) {
            Some(TokenKind::Byte(b)) => bytes.push(b),
            Some(TokenKind::Normal | TokenKind::UserDefined | TokenKind::Unknown) => {
                bytes.extend(self.text(id).as_bytes())
            }
            _ => {}
        }
    }
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap on score; on ties the leftmost pair comes first.
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

fn bad(key: &str, expected: &'static str) -> Error {
    Error::Metadata {
        key: key.to_string(),
        expected,
    }
}
