//! Free-format answers, for research only: the answer-format comparison in
//! `docs/eval.md` asks for lines, JSON or inline tags in the prompt, lets the model answer
//! greedily without a grammar, then parses the answer and drops what is not grounded
//! (labels outside the schema, spans not in the text). The product decodes under the
//! grammar ([`crate::ner::decode`]).

use crate::ner::decode::{self, Line, Spelled};
use crate::ner::prompt::{self, Format};
use crate::runtime::engine::argmax;
use crate::runtime::tokenizer::Tokenizer;

/// What ends a free answer: the empty line every format ends with, or the next text of
/// the few-shot pattern.
const END_MARKERS: [&[u8]; 2] = [b"\n\n", b"\nText:"];

/// A greedy answer without a grammar, a step at a time (as [`decode::Decoder`]). Stops at
/// the end of sequence, at an end marker, or after `max_tokens`.
pub struct FreeDecoder {
    format: Format,
    bytes: Vec<u8>,
    max_tokens: usize,
    decoded: usize,
    /// The end of sequence or an end marker came.
    ended: bool,
}

impl FreeDecoder {
    /// `max_tokens`: the budget of a grammar answer for the same window. JSON spends about a
    /// dozen tokens of syntax per entity and tags spell the whole text again, so they get twice it.
    pub fn new(format: Format, max_tokens: usize) -> FreeDecoder {
        let max_tokens = match format {
            Format::Lines => max_tokens,
            Format::Json | Format::Tags => 2 * max_tokens,
        };
        FreeDecoder {
            format,
            bytes: Vec::new(),
            max_tokens,
            decoded: 0,
            ended: false,
        }
    }

    pub fn decoded(&self) -> usize {
        self.decoded
    }

    /// Whether another step is wanted (its logits: all of them).
    pub fn wants_step(&self) -> bool {
        !self.ended && self.decoded < self.max_tokens
    }

    /// Takes the logits of every token: the chosen token, which the next step forwards, or
    /// `None` when the answer is over.
    pub fn choose(&mut self, tok: &Tokenizer, logits: &[f32]) -> Option<u32> {
        let next = argmax(logits);
        if next == tok.eos {
            self.ended = true;
            return None;
        }
        self.decoded += 1;
        // Only the new bytes, and the few before them that could start a marker, are searched.
        let from = self
            .bytes
            .len()
            .saturating_sub(END_MARKERS.iter().map(|m| m.len() - 1).max().unwrap_or(0));
        tok.append_bytes(next, &mut self.bytes);
        let end = END_MARKERS
            .iter()
            .filter_map(|m| self.bytes[from..].windows(m.len()).position(|w| w == *m))
            .min();
        if let Some(end) = end {
            self.bytes.truncate(from + end);
            self.ended = true;
        }
        self.wants_step().then_some(next)
    }

    /// The answer's lines whose label is in `labels`, in the order written, with where
    /// their spans are in `chunk`; a free answer has no distribution over allowed choices
    /// to score, so each scores 1. The caller drops a line the grammar would not have let
    /// end (its span not in the text, repeated, or inside a word).
    pub fn lines(&self, chunk: &str, labels: &[String]) -> Vec<Line> {
        let answer = String::from_utf8_lossy(&self.bytes);
        let spelled = Spelled::new(chunk);
        let mut out = Vec::new();
        for (label, span) in prompt::parse_answer(self.format, &answer) {
            let Some(label) = labels.iter().position(|l| *l == label) else {
                continue;
            };
            let span = decode::spell(&span);
            out.push(Line {
                label,
                at: spelled.find(&span),
                text: span,
                score: 1.0,
            });
        }
        out
    }
}
