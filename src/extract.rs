//! The extractor: recognizers and the model over one text and one schema, merged into one
//! list of grounded entities, streamed as they are found.
//!
//! Policies (documented in `docs/extraction.md`):
//! - Pattern (validated) entities come first and win any overlap with a model entity. A
//!   model entity that runs into one at its start or end keeps the rest ("Dr. Berta
//!   Szöllössy" beside the honorific "Dr." keeps "Berta Szöllössy"): dropping it would leave
//!   the name unredacted.
//! - A model line maps to the first occurrence of its text at or after the end of the
//!   previous line (answers are in text order), else to the first unused occurrence; an
//!   occurrence must not start or end inside a word. The decoder lets a line end (and
//!   the next begin) only where such an occurrence exists; a line that ends the list
//!   without one is dropped.
//! - A model span of a type that a recognizer fills must be shaped like one
//!   ([`Recognizer::plausible`]): "mail" is no e-mail address, a postcode no phone number.
//! - Among model entities the first found wins an overlap; the same span found in two
//!   overlapping windows is reported once.
//! - A text the model labelled once gets that label at its other whole-word occurrences
//!   that nothing else claims (a redacted name must not leak where it is repeated), unless
//!   the occurrence runs on into a neighbouring name-like word (see [`runs_on`]).

use std::cell::RefCell;
use std::ops::Range;

use crate::chunk;
use crate::decode::{self, Grammar, Line};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::KvSnapshot;
use crate::prompt::{self, Format};
use crate::recognizers::{self, Recognizer};
use crate::schema::Schema;
use crate::spans::{self, Entity, Source};

/// Texts above this are refused: at a few hundred bytes a second, 2 MiB is already hours
/// of work, and a corpus belongs in separate documents.
pub const MAX_TEXT_BYTES: usize = 2 * 1024 * 1024;
/// How much the model reads at once, the size of its training documents: runs of sentences
/// up to 150 bytes (about 35 tokens of English, most of them), one sentence up to 320 bytes
/// (a long newswire sentence or a tweet). Read in 1 500-byte windows, 600-byte texts made
/// of ten CoNLL sentences scored strict F1 0.32 where the sentences alone score 0.87; cut
/// at 150 bytes instead of 320, CrossNER's long sentences scored 0.301 instead of 0.306
/// (docs/extraction.md, "Long texts").
pub const WINDOWS: chunk::Limits = chunk::Limits {
    run: 150,
    sentence: 320,
    overlap: 40,
};
/// Context a window and its answer may need after the schema prefix: the window's bytes (a
/// token takes at least one), its frame, and the answer budget of its words (see `extract`).
pub const WINDOW_ROOM: usize = WINDOWS.sentence + 16 + answer_budget(WINDOWS.sentence.div_ceil(2)) + 16;
/// The default [`decode::Limits::end_penalty`].
pub const END_PENALTY: f32 = 0.0;

pub struct Extractor {
    pub engine: Engine,
    /// Asked between decoding steps; `true` stops the extraction with [`Error::Cancelled`].
    pub cancelled: Box<dyn Fn() -> bool>,
    /// Told `(windows done, windows in all)` before each window and at the end.
    pub progress: Box<dyn Fn(usize, usize)>,
    /// See [`decode::Limits::end_penalty`]; [`END_PENALTY`] unless set.
    pub end_penalty: f32,
    /// `None` (the product): `LABEL: span` lines under the grammar. `Some(format)`: the
    /// prompt asks for `format`, the model answers freely, and the answer is parsed and
    /// grounded afterwards (labels outside the schema and spans not in the text dropped).
    /// Only the answer-format comparison in docs/eval.md uses it.
    pub free_format: Option<Format>,
    /// The schema prefix (and the adapter it ran with) whose KV cache is ready to restore.
    cached: Option<(String, Option<String>, KvSnapshot)>,
}

/// What one extraction produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Extraction {
    pub entities: Vec<Entity>,
    /// Byte ranges of the text that the model read: every byte that is not whitespace.
    pub windows: Vec<Range<usize>>,
    /// Answer tokens the model decoded, over all windows (the cost of an extraction).
    pub decoded_tokens: usize,
}

impl Extractor {
    pub fn new(engine: Engine) -> Extractor {
        Extractor {
            engine,
            cancelled: Box::new(|| false),
            progress: Box::new(|_, _| {}),
            end_penalty: END_PENALTY,
            free_format: None,
            cached: None,
        }
    }

    /// Extracts every entity of `schema` from `text`; `on_entity` sees each final entity
    /// as soon as it is known.
    pub async fn extract(
        &mut self,
        text: &str,
        schema: &Schema,
        mut on_entity: impl FnMut(&Entity),
    ) -> Result<Extraction> {
        schema.validate()?;
        let prompt = self.prompt(schema);
        // A cached prefix passed the context check when it was computed: a corpus of short
        // documents must not tokenize the schema's prompt once per document.
        if self.cached_prefix(&prompt).is_none() {
            self.check_prompt(&prompt)?;
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::InputTooLarge {
                bytes: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        let mut found: Vec<Entity> = Vec::new();
        // Spans are never empty, so "overlaps an accepted one" also drops the same span
        // found again in the next window.
        let mut accept = |e: Entity, found: &mut Vec<Entity>| {
            let Some(e) = outside_patterns(text, e, found) else {
                return;
            };
            // A value that cannot be of its recognizer's type is no entity (nor is what a
            // pattern entity left of one: "Office" of "(37) 788-063-Office").
            let recognizer = schema
                .labels
                .iter()
                .find(|t| t.label == e.label)
                .and_then(|t| t.recognizer);
            if e.source == Source::Model && recognizer.is_some_and(|r| !r.plausible(&e.text)) {
                return;
            }
            if found.iter().all(|f| e.end <= f.start || e.start >= f.end) {
                on_entity(&e);
                found.push(e);
            }
        };
        for e in pattern_entities(text, schema) {
            accept(e, &mut found);
        }
        let windows = if text.trim().is_empty() {
            Vec::new()
        } else {
            chunk::windows(text, WINDOWS)
        };
        if windows.is_empty() {
            found.sort_by_key(|e| e.start);
            return Ok(Extraction {
                entities: found,
                windows,
                decoded_tokens: 0,
            });
        }
        let snapshot = self.prefix(prompt).await?;
        let labels: Vec<String> = schema.labels.iter().map(|t| t.label.clone()).collect();
        let mut decoded_tokens = 0;
        for (i, w) in windows.iter().enumerate() {
            (self.progress)(i, windows.len());
            let chunk = &text[w.clone()];
            let model = &mut self.engine.model;
            model.restore(&snapshot)?;
            let doc = self.engine.tokenizer.encode(&prompt::document(chunk));
            let hidden = model.forward_hidden(&doc).await?;
            let limits = decode::Limits {
                max_tokens: answer_budget(chunk.split_whitespace().count()),
                end_penalty: self.end_penalty,
            };
            let mut cursor = 0;
            let used: RefCell<Vec<(usize, usize, usize)>> = RefCell::default();
            let fits = |label: usize, at: &[(usize, usize)]| place(chunk, label, at, 0, &used.borrow()).is_some();
            let mut on_line = |line: Line| {
                let Some((start, end)) = place(chunk, line.label, &line.at, cursor, &used.borrow()) else {
                    return false;
                };
                // The line stays placed (the answer goes on after it) even when `accept`
                // drops its entity.
                used.borrow_mut().push((line.label, start, end));
                cursor = end;
                let (start, end) = (w.start + start, w.start + end);
                let e = Entity {
                    label: labels[line.label].clone(),
                    start,
                    end,
                    text: text[start..end].to_string(),
                    score: line.score,
                    source: Source::Model,
                };
                accept(e, &mut found);
                true
            };
            let cancelled = &*self.cancelled;
            decoded_tokens += match self.free_format {
                None => {
                    let grammar = Grammar::new(&self.engine.tokenizer, &labels, chunk);
                    decode::decode(model.as_mut(), &grammar, hidden, limits, cancelled, &fits, &mut on_line).await?
                }
                Some(format) => {
                    let tok = &self.engine.tokenizer;
                    // JSON spends about a dozen tokens of syntax per entity and tags spell
                    // the whole text again: the budget of lines would cut short texts short.
                    let budget = match format {
                        Format::Lines => limits.max_tokens,
                        Format::Json | Format::Tags => 2 * limits.max_tokens,
                    };
                    let (answer, n) = decode::decode_free(model.as_mut(), tok, hidden, budget, cancelled).await?;
                    let spelled = decode::Spelled::new(chunk);
                    for (label, span) in prompt::parse_answer(format, &answer) {
                        let Some(label) = labels.iter().position(|l| *l == label) else {
                            continue;
                        };
                        let span = decode::spell(&span);
                        // A line the grammar would not have let end (its span not in the
                        // text, repeated, or inside a word) is dropped.
                        let at = spelled.find(&span);
                        if !fits(label, &at) {
                            continue;
                        }
                        // A free answer has no distribution over allowed choices to score.
                        on_line(Line {
                            label,
                            text: span,
                            at,
                            score: 1.0,
                        });
                    }
                    n
                }
            };
        }
        (self.progress)(windows.len(), windows.len());
        for e in repeats(text, &found) {
            accept(e, &mut found);
        }
        found.sort_by_key(|e| e.start);
        Ok(Extraction {
            entities: found,
            windows,
            decoded_tokens,
        })
    }

    /// Validates `schema` and checks, before any work, that its prompt leaves room in the
    /// model's context for a window and its answer; returns the prompt's length in tokens.
    pub fn check_schema(&self, schema: &Schema) -> Result<usize> {
        schema.validate()?;
        self.check_prompt(&self.prompt(schema))
    }

    /// The schema prefix the model reads before every window.
    fn prompt(&self, schema: &Schema) -> String {
        prompt::prefix_in(schema, self.free_format.unwrap_or(Format::Lines))
    }

    /// [`Self::check_schema`]'s context check on a rendered prompt.
    fn check_prompt(&self, prompt: &str) -> Result<usize> {
        let tokens = self.engine.tokenizer.encode_prompt(prompt).len();
        let limit = self.engine.model.max_context().saturating_sub(WINDOW_ROOM);
        if tokens > limit {
            return Err(Error::InvalidSchema(format!(
                "its prompt takes {tokens} tokens; the limit is {limit} (the model's context of {}, less \
                 {WINDOW_ROOM} for a window of text and its answer): shorten the descriptions and examples",
                self.engine.model.max_context()
            )));
        }
        Ok(tokens)
    }

    /// The KV cache after `prompt`, if it is the cached one (with the current adapter).
    fn cached_prefix(&self, prompt: &str) -> Option<&KvSnapshot> {
        let (text, adapter, snap) = self.cached.as_ref()?;
        (text == prompt && *adapter == self.engine.adapter).then_some(snap)
    }

    /// The KV cache after the schema prefix `prompt`, computed once per schema.
    async fn prefix(&mut self, prompt: String) -> Result<KvSnapshot> {
        if let Some(snap) = self.cached_prefix(&prompt) {
            return Ok(snap.clone());
        }
        let ids = self.engine.tokenizer.encode_prompt(&prompt);
        let model = &mut self.engine.model;
        model.truncate(0);
        model.forward_hidden(&ids).await?;
        let snap = model.snapshot();
        self.cached = Some((prompt, self.engine.adapter.clone(), snap.clone()));
        Ok(snap)
    }
}

/// Most answer tokens the model may decode for a window of `words` words.
const fn answer_budget(words: usize) -> usize {
    16 + 4 * words
}

/// Entities from the recognizers that the schema's types name.
pub fn pattern_entities(text: &str, schema: &Schema) -> Vec<Entity> {
    let wanted: Vec<(Recognizer, &str)> = schema
        .labels
        .iter()
        .filter_map(|t| t.recognizer.map(|r| (r, t.label.as_str())))
        .collect();
    let recs: Vec<Recognizer> = wanted.iter().map(|w| w.0).collect();
    recognizers::find_all(text, &recs)
        .into_iter()
        .map(|m| Entity {
            label: wanted
                .iter()
                .find(|w| w.0 == m.recognizer)
                .map(|w| w.1.to_string())
                .unwrap_or_default(),
            start: m.start,
            end: m.end,
            text: text[m.start..m.end].to_string(),
            score: 1.0,
            source: Source::Pattern,
        })
        .collect()
}

/// A model entity without the edges that pattern entities in `found` already claim, and
/// the spaces and punctuation beside them; `None` when no word of it is left. One with a
/// pattern entity inside it comes back whole, for the overlap check to drop.
fn outside_patterns(text: &str, mut e: Entity, found: &[Entity]) -> Option<Entity> {
    if e.source != Source::Model {
        return Some(e);
    }
    let (start, end) = (e.start, e.end);
    for p in found
        .iter()
        .filter(|p| p.source == Source::Pattern && p.start < end && p.end > start)
    {
        if p.start <= start {
            e.start = e.start.max(p.end);
        } else if p.end >= end {
            e.end = e.end.min(p.start);
        }
    }
    if (e.start, e.end) == (start, end) {
        return Some(e);
    }
    let rest = text.get(e.start..e.end.max(e.start))?;
    let not_word = |c: char| !c.is_alphanumeric();
    let kept = rest.trim_matches(not_word);
    if kept.is_empty() {
        return None;
    }
    e.start += rest.len() - rest.trim_start_matches(not_word).len();
    e.end = e.start + kept.len();
    if inside_word(text, e.start) || inside_word(text, e.end) {
        return None;
    }
    e.text = kept.to_string();
    Some(e)
}

/// The other whole-word occurrences of each text the model labelled, with its label and
/// score (the first found gives them), except those that run on into a longer name; the
/// caller drops any that overlap an accepted entity.
fn repeats(text: &str, found: &[Entity]) -> Vec<Entity> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    // One scan of the text per distinct name.
    for e in found
        .iter()
        .filter(|e| e.source == Source::Model && seen.insert(&e.text))
    {
        for start in spans::occurrences(text, &e.text) {
            let end = start + e.text.len();
            if !inside_word(text, start) && !inside_word(text, end) && !runs_on(text, start, end) {
                out.push(Entity {
                    start,
                    end,
                    ..e.clone()
                });
            }
        }
    }
    out
}

/// Whether byte offset `at` falls between two letters or digits of one word.
fn inside_word(text: &str, at: usize) -> bool {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    word(text[..at].chars().next_back()) && word(text[at..].chars().next())
}

/// Whether `text[start..end]` runs on into a neighbouring capitalised word or number, as
/// "United Kingdom" does in "the 1886 United Kingdom general election": it is then likely
/// part of a longer name. Punctuation between them, or a capitalised first word of a
/// sentence before, does not count.
fn runs_on(text: &str, start: usize, end: usize) -> bool {
    let capital = |w: &str| w.chars().next().is_some_and(char::is_uppercase);
    let number = |w: &str| w.chars().next().is_some_and(|c| c.is_ascii_digit());
    let next = text[end..]
        .strip_prefix(' ')
        .and_then(|r| r.split(char::is_whitespace).next());
    if next.is_some_and(|w| capital(w) || number(w)) {
        return true;
    }
    let Some(before) = text[..start].strip_suffix(' ') else {
        return false;
    };
    let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
    if !word.ends_with(char::is_alphanumeric) {
        return false; // a name does not run on through punctuation
    }
    let head = before[..before.len() - word.len()].trim_end_matches([' ', '\t']);
    let sentence_start = head.is_empty() || head.ends_with(['.', '!', '?', ':', '\n', '\r']);
    number(word) || (capital(word) && !sentence_start)
}

/// Where a decoded line of `label` whose text is at `at` sits in the chunk (byte range,
/// surrounding whitespace trimmed): the first fitting occurrence at or after `cursor`, else
/// the first; `None` if none fits (all inside words or already used for this label).
fn place(
    chunk: &str,
    label: usize,
    at: &[(usize, usize)],
    cursor: usize,
    used: &[(usize, usize, usize)],
) -> Option<(usize, usize)> {
    let trimmed = |&(s, e): &(usize, usize)| {
        let span = &chunk[s..e];
        let s = s + span.len() - span.trim_start().len();
        (s, s + span.trim().len())
    };
    let fits = |&(s, e): &(usize, usize)| {
        s < e
            && !inside_word(chunk, s)
            && !inside_word(chunk, e)
            && !used.iter().any(|u| u.0 == label && u.1 == s && u.2 == e)
    };
    let spans: Vec<(usize, usize)> = at.iter().map(trimmed).filter(fits).collect();
    spans.iter().find(|s| s.0 >= cursor).or(spans.first()).copied()
}

#[cfg(test)]
mod tests {
    use super::{outside_patterns, runs_on};
    use crate::spans::{Entity, Source};

    fn entity(text: &str, part: &str, label: &str, source: Source) -> Entity {
        let start = text.find(part).unwrap();
        Entity {
            label: label.into(),
            start,
            end: start + part.len(),
            text: part.into(),
            score: 1.0,
            source,
        }
    }

    #[test]
    fn a_model_entity_keeps_what_pattern_entities_leave_of_it() {
        let text = "correct it to Dr. Berta Szöllössy, +1 555 0100 Mr Bo";
        let dr = entity(text, "Dr.", "TITLE", Source::Pattern);
        let phone = entity(text, "+1 555 0100", "PHONE_NUMBER", Source::Pattern);
        let found = [dr.clone(), phone.clone()];
        let kept =
            |part: &str| outside_patterns(text, entity(text, part, "PERSON", Source::Model), &found).map(|e| e.text);
        assert_eq!(kept("Dr. Berta Szöllössy").as_deref(), Some("Berta Szöllössy"));
        assert_eq!(kept("Szöllössy, +1 555 0100").as_deref(), Some("Szöllössy"));
        assert_eq!(kept("Berta Szöllössy").as_deref(), Some("Berta Szöllössy"));
        assert_eq!(kept("Dr."), None, "nothing is left");
        assert_eq!(kept("+1 555"), None, "inside a pattern entity");
        // A pattern entity inside it: the entity comes back whole and the overlap drops it.
        assert_eq!(
            kept("Szöllössy, +1 555 0100 Mr Bo").as_deref(),
            Some("Szöllössy, +1 555 0100 Mr Bo")
        );
        // Pattern entities never shrink.
        assert_eq!(
            outside_patterns(text, dr.clone(), &[phone]).map(|e| e.text),
            Some(dr.text)
        );
    }

    #[test]
    fn an_occurrence_inside_a_longer_name_runs_on() {
        let at = |text: &str, part: &str| {
            let start = text.find(part).unwrap();
            runs_on(text, start, start + part.len())
        };
        assert!(at("in the 1886 United Kingdom general election", "United Kingdom"));
        assert!(at("the Lüliang Campaign began", "Lüliang"));
        assert!(at("speeches with Clara Zetkin", "Zetkin"));
        assert!(!at("Contact Maria Gonzalez today", "Maria Gonzalez"));
        assert!(!at("from Lyon. Maria Gonzalez left", "Maria Gonzalez"));
        assert!(!at("to Lyon, France", "Lyon"));
        assert!(!at("Lyon", "Lyon"));
    }
}
