//! Constrained greedy decoding of the answer. The grammar admits only
//! `LABEL: span\n` lines, where LABEL is a schema label and span a substring of the
//! document, and an empty line to finish. It works on characters of the document, not on
//! its tokenization, so a span the model spells with other tokens still decodes; and it
//! asks the model for the logits of the allowed tokens only (a few hundred rows of the
//! 262k-row LM head).
//!
//! A span may cross a line of the document (postal addresses do): inside an answer line
//! every run of ASCII whitespace is spelled as one space, so a line break and the indentation or
//! blank line after it read as the space the model writes between two words on one line
//! ([`Spelled`] matches against the document read that way and maps back to its offsets).

use std::collections::BTreeMap;

use crate::ner::spans::occurrences;
use crate::runtime::tokenizer::Tokenizer;

/// The longest token text the candidate scan looks for, in characters.
const MAX_PIECE_CHARS: usize = 24;
/// Spans longer than this are cut (the line is ended for the model).
const MAX_SPAN_BYTES: usize = 256;

/// A decoded line: label index, span text as spelled, where it can be in the document, and
/// the mean log-probability of its tokens under the constrained distribution.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: usize,
    pub text: String,
    /// Byte ranges of the document that `text` spells, in text order.
    pub at: Vec<(usize, usize)>,
    pub score: f32,
}

/// The document as an answer spells it: each run of ASCII whitespace as one space, with the
/// document offset of every byte, so a span found here maps back to exact offsets. Other
/// spaces (no-break, ideographic) stay as they are: they are the text's own characters.
pub struct Spelled {
    pub text: String,
    /// `origin[i]`: the document byte offset of spelled byte `i`; one entry more for the end.
    origin: Vec<usize>,
}

impl Spelled {
    pub fn new(doc: &str) -> Spelled {
        let mut text = String::with_capacity(doc.len());
        let mut origin = Vec::with_capacity(doc.len() + 1);
        let mut chars = doc.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c.is_ascii_whitespace() {
                while chars.next_if(|(_, c)| c.is_ascii_whitespace()).is_some() {}
                text.push(' ');
                origin.push(i);
            } else {
                text.push(c);
                origin.extend(i..i + c.len_utf8());
            }
        }
        origin.push(doc.len());
        Spelled { text, origin }
    }

    /// The document range that spelled bytes `start..end` stand for.
    pub fn range(&self, start: usize, end: usize) -> (usize, usize) {
        (self.origin[start], self.origin[end])
    }

    /// Every document range that `span` (as [`spell`] writes it) spells, overlapping ones included.
    pub fn find(&self, span: &str) -> Vec<(usize, usize)> {
        occurrences(&self.text, span)
            .into_iter()
            .map(|s| self.range(s, s + span.len()))
            .collect()
    }
}

/// `span` as an answer line spells it: each run of ASCII whitespace as one space.
pub fn spell(span: &str) -> String {
    Spelled::new(span).text
}

/// Tokens worth considering: those whose text occurs in the document (optionally with a
/// leading space, as a span's first token has), and those that spell labels.
pub struct Grammar {
    /// The document as spans are spelled.
    doc: Spelled,
    options: Vec<String>,
    label_tokens: Vec<(u32, String)>,
    span_tokens: Vec<(u32, String)>,
    newline: u32,
    end_of_list: Option<u32>,
}

/// Into `out`, ordered by token id: a step's tokens then come in one order in every run, so
/// ties go the same way and a step's probabilities are summed in the same order (a hash
/// map's order, random per map, moved entity scores in their last bits from run to run).
fn substrings_as_tokens(tok: &Tokenizer, text: &str, with_space: bool, out: &mut BTreeMap<u32, String>) {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    for (i, &a) in bounds.iter().enumerate() {
        for &b in bounds[i + 1..].iter().take(MAX_PIECE_CHARS) {
            let sub = &text[a..b];
            let piece = sub.replace(' ', "\u{2581}");
            if let Some(id) = tok.lookup(&piece) {
                out.insert(id, sub.to_string());
            }
            if with_space {
                if let Some(id) = tok.lookup(&format!("\u{2581}{piece}")) {
                    out.insert(id, format!(" {sub}"));
                }
            }
        }
    }
}

impl Grammar {
    pub fn new(tok: &Tokenizer, labels: &[String], text: &str) -> Grammar {
        let doc = Spelled::new(text);
        let options: Vec<String> = labels.iter().map(|l| format!("{l}:")).collect();
        let mut label_tokens = BTreeMap::new();
        for o in &options {
            substrings_as_tokens(tok, o, false, &mut label_tokens);
        }
        let mut span_tokens = BTreeMap::new();
        substrings_as_tokens(tok, &doc.text, true, &mut span_tokens);
        let newline = tok
            .lookup("\n")
            .expect("Tokenizer::from_gguf refuses vocabularies without it");
        Grammar {
            doc,
            options,
            label_tokens: label_tokens.into_iter().collect(),
            span_tokens: span_tokens.into_iter().collect(),
            newline,
            end_of_list: tok.lookup("\n\n"),
        }
    }

    /// The document ranges of a `len`-byte span ending at each of `ends` (spelled offsets).
    fn ranges(&self, ends: &[usize], len: usize) -> Vec<(usize, usize)> {
        ends.iter().map(|&e| self.doc.range(e - len, e)).collect()
    }
}

enum State {
    Label(String),
    /// `ends`: byte offsets in the spelled document right after each occurrence of `typed`
    /// (`None` before the first span token).
    Span {
        label: usize,
        typed: String,
        ends: Option<Vec<usize>>,
    },
}

/// How far decoding runs, and how readily it stops.
pub struct Limits {
    pub max_tokens: usize,
    /// Subtracted from the logit of every step that ends the list: above 0 the model must
    /// be surer that nothing is left before it stops (more recall, less precision).
    pub end_penalty: f32,
}

/// Whether a line of label `.0` whose span is at document ranges `.1` can be placed.
pub type Fits<'a> = dyn Fn(usize, &[(usize, usize)]) -> bool + 'a;

/// The answer to one window, decoded a step at a time so that many windows can share each
/// forward of the model: [`Decoder::allowed`] gives the tokens the next step may choose
/// among, the caller forwards the tokens chosen since its last forward (or the window, on
/// the first step) asking for their logits, and [`Decoder::choose`] takes them (a step
/// with one allowed token may be chosen without a forward: see `batch`). It stops at the empty
/// line, after `max_tokens`, or when `on_line` returns false. A line may go on to the next
/// only where `fits(label, at)` says the caller can place it: a repeated or mid-word span
/// then has to grow into a placeable one, or end the list, instead of being written and
/// refused (which used to end the answer with entities still unlisted).
pub struct Decoder {
    limits: Limits,
    state: State,
    /// What each token allowed at this step does.
    steps: Vec<(u32, Step)>,
    ids: Vec<u32>,
    logprob: f32,
    line_tokens: usize,
    decoded: usize,
    done: bool,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            done: limits.max_tokens == 0,
            limits,
            state: State::Label(String::new()),
            steps: Vec::new(),
            ids: Vec::new(),
            logprob: 0.0,
            line_tokens: 0,
            decoded: 0,
        }
    }

    /// Tokens decoded so far.
    pub fn decoded(&self) -> usize {
        self.decoded
    }

    /// Prepares the next step: the tokens it may choose among ([`Self::ids`]). False when
    /// the answer is over.
    pub fn allowed(&mut self, grammar: &Grammar, fits: &Fits<'_>) -> bool {
        if self.done {
            return false;
        }
        let text = grammar.doc.text.as_str();
        let allowed = &mut self.steps;
        allowed.clear();
        match &self.state {
            State::Label(typed) => {
                if typed.is_empty() {
                    allowed.push((grammar.newline, Step::Finish));
                }
                for (id, s) in &grammar.label_tokens {
                    let next = format!("{typed}{s}");
                    if let Some(label) = grammar.options.iter().position(|o| *o == next) {
                        allowed.push((*id, Step::LabelDone(label)));
                    } else if grammar.options.iter().any(|o| o.starts_with(&next)) {
                        allowed.push((*id, Step::Label(next)));
                    }
                }
            }
            State::Span { label, typed, ends } => {
                if !typed.is_empty() {
                    if fits(
                        *label,
                        &grammar.ranges(ends.as_deref().unwrap_or_default(), typed.len()),
                    ) {
                        allowed.push((grammar.newline, Step::EndLine));
                    }
                    if let Some(id) = grammar.end_of_list {
                        allowed.push((id, Step::EndLineAndList));
                    }
                }
                if typed.len() < MAX_SPAN_BYTES {
                    for (id, s) in &grammar.span_tokens {
                        let new_ends: Vec<usize> = match ends {
                            // The first token carries the space after the colon; a bare
                            // space (before a digit, say) lets the span start anywhere.
                            None => match s.strip_prefix(' ') {
                                Some("") => text.char_indices().map(|(i, _)| i).collect(),
                                Some(r) => occurrences(text, r).into_iter().map(|i| i + r.len()).collect(),
                                None => continue,
                            },
                            Some(ends) => ends
                                .iter()
                                .filter(|&&e| text[e..].starts_with(s.as_str()))
                                .map(|e| e + s.len())
                                .collect(),
                        };
                        if !new_ends.is_empty() {
                            let piece = if ends.is_none() { s[1..].to_string() } else { s.clone() };
                            allowed.push((*id, Step::Span(piece, new_ends)));
                        }
                    }
                }
            }
        }
        self.done = allowed.is_empty();
        self.ids.clear();
        self.ids.extend(allowed.iter().map(|a| a.0));
        !self.done
    }

    /// The tokens the prepared step may choose among, whose logits [`Self::choose`] wants.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Takes the logits of the allowed tokens, chooses the best and calls `on_line` when it
    /// completes a line. Returns the chosen token, which the next step forwards, or `None`
    /// when the answer is over.
    pub fn choose(&mut self, grammar: &Grammar, logits: &[f32], on_line: impl FnOnce(Line) -> bool) -> Option<u32> {
        assert_eq!(logits.len(), self.steps.len(), "one logit per allowed token");
        let penalised = |i: usize| match self.steps[i].1 {
            Step::Finish | Step::EndLineAndList => logits[i] - self.limits.end_penalty,
            _ => logits[i],
        };
        let best = (0..logits.len()).fold(0, |b, i| if penalised(i) > penalised(b) { i } else { b });
        let max = penalised(best);
        let log_z = max + (0..logits.len()).map(|i| (penalised(i) - max).exp()).sum::<f32>().ln();
        self.logprob += max - log_z;
        self.line_tokens += 1;
        let (token, step) = self.steps.swap_remove(best);
        self.steps.clear();
        self.decoded += 1;
        let state = std::mem::replace(&mut self.state, State::Label(String::new()));
        self.state = match (state, step) {
            (_, Step::Finish) => {
                self.done = true;
                return None;
            }
            (State::Label(_), Step::Label(t)) => State::Label(t),
            (State::Label(_), Step::LabelDone(label)) => State::Span {
                label,
                typed: String::new(),
                ends: None,
            },
            (State::Span { label, mut typed, .. }, Step::Span(piece, ends)) => {
                typed.push_str(&piece);
                State::Span {
                    label,
                    typed,
                    ends: Some(ends),
                }
            }
            (State::Span { label, typed, ends }, step @ (Step::EndLine | Step::EndLineAndList)) => {
                let at = grammar.ranges(&ends.unwrap_or_default(), typed.len());
                let score = (self.logprob / self.line_tokens as f32).exp();
                (self.logprob, self.line_tokens) = (0.0, 0);
                let go_on = on_line(Line {
                    label,
                    text: typed,
                    at,
                    score,
                });
                self.done = !go_on || matches!(step, Step::EndLineAndList);
                State::Label(String::new())
            }
            _ => unreachable!("steps are generated for their state"),
        };
        self.done |= self.decoded >= self.limits.max_tokens;
        (!self.done).then_some(token)
    }
}

/// The tokens of a complete answer, spelled as the grammar spells it (label tokens, then
/// the span after a space, one line each, an empty line to end): what fine-tuning teaches
/// the model to emit. Spans are given as they appear in the document.
pub fn answer_tokens(tok: &Tokenizer, lines: &[(&str, &str)]) -> Vec<u32> {
    let mut ids = Vec::new();
    for (label, span) in lines {
        ids.extend(tok.encode(&format!("{label}:")));
        ids.extend(tok.encode(&format!(" {}", spell(span))));
        ids.extend(tok.encode("\n"));
    }
    ids.extend(tok.encode("\n"));
    ids
}

enum Step {
    Finish,
    Label(String),
    LabelDone(usize),
    Span(String, Vec<usize>),
    EndLine,
    EndLineAndList,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spelled_span_maps_back_to_the_exact_document_range() {
        let doc = "Suite 9\n   Oslo\r\n\tNorway  😀 東京 x\u{a0}y";
        let s = Spelled::new(doc);
        assert_eq!(
            s.text, "Suite 9 Oslo Norway 😀 東京 x\u{a0}y",
            "a no-break space is kept"
        );
        let range = |needle: &str| s.find(needle).into_iter().map(|(a, b)| &doc[a..b]).collect::<Vec<_>>();
        assert_eq!(range("9 Oslo Norway"), ["9\n   Oslo\r\n\tNorway"]);
        assert_eq!(range("😀 東京"), ["😀 東京"]);
        assert_eq!(
            range("Norway "),
            ["Norway  "],
            "a trailing space stands for the whole run"
        );
        assert_eq!(
            range("Oslo  Norway"),
            Vec::<&str>::new(),
            "two spaces are never spelled"
        );
        assert_eq!(spell(" a\n\n b "), " a b ");
        assert_eq!(Spelled::new("").text, "");
    }
}
