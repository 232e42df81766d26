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

use std::ops::Range;

use crate::error::{Error, Result};
use crate::ner::batch::{self, answer_budget};
use crate::ner::chunk;
use crate::ner::prompt::{self, Format};
use crate::ner::recognizers::{self, Recognizer};
use crate::ner::schema::Schema;
use crate::ner::spans::{self, inside_word, Entity, Occupied, Source};
use crate::runtime::engine::Engine;
use crate::runtime::gguf::ByteSource;
use crate::runtime::model::KvSnapshot;
use sha2::{Digest, Sha256};

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

/// What a stored prompt cache starts with, before its key ([`Extractor::save_prepared`]).
const STORED_MAGIC: &[u8] = b"anote-prompt-cache-1\n";

pub struct Extractor {
    pub engine: Engine,
    /// The schema prefix (and the adapter it ran with) whose KV cache is ready to restore.
    cached: Option<(String, Option<String>, KvSnapshot)>,
}

/// How far a call is: windows whose entities are final, of all, and the share of the
/// model's work done. The share moves with every decoding step, so it says something before
/// the first window ends; it is an estimate (an answer's length is known only when it ends:
/// until then it is taken to be the mean of the answers so far) and never goes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub share: f64,
}

impl Progress {
    /// Progress counted in whole items (documents of an evaluation).
    pub fn counted(done: usize, total: usize) -> Progress {
        Progress {
            done,
            total,
            share: done as f64 / total.max(1) as f64,
        }
    }
}

/// What one call is asked and told besides its texts and schema; [`Options::default`]
/// decodes as the product does, never stops and tells nothing.
pub struct Options<'a> {
    /// Asked between decoding steps; `true` stops the extraction with [`Error::Cancelled`].
    pub cancelled: &'a dyn Fn() -> bool,
    /// Told at the start, after every decoding step and as each window's entities become
    /// final.
    pub progress: &'a dyn Fn(Progress),
    /// How windows are decoded: how many at once, the end penalty, and (for the
    /// answer-format comparison in docs/eval.md only) a free answer format.
    pub decoding: batch::Settings,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            cancelled: &|| false,
            progress: &|_| {},
            decoding: batch::Settings::default(),
        }
    }
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
        Extractor { engine, cached: None }
    }

    /// Extracts every entity of `schema` from `text`; `on_entity` sees each final entity
    /// as soon as it is known, in text order of the windows.
    pub async fn extract(
        &mut self,
        text: &str,
        schema: &Schema,
        options: &Options<'_>,
        mut on_entity: impl FnMut(&Entity),
    ) -> Result<Extraction> {
        let mut one = self.extract_many(&[text], schema, options, |_, e| on_entity(e)).await?;
        one.pop().expect("one result per text")
    }

    /// Extracts from each of `texts`, their windows decoded together (a corpus of short
    /// texts batches as well as one long text); `on_entity(i, e)` sees each final entity
    /// of text `i` as soon as it is known, texts in order. A text that cannot be read (too
    /// large) gets its error in its place; an error that ends the whole run (a bad schema,
    /// cancellation, the model failing) is returned instead.
    pub async fn extract_many(
        &mut self,
        texts: &[&str],
        schema: &Schema,
        options: &Options<'_>,
        mut on_entity: impl FnMut(usize, &Entity),
    ) -> Result<Vec<Result<Extraction>>> {
        schema.validate()?;
        let prompt = prompt::prefix_in(schema, options.decoding.free_format.unwrap_or(Format::Lines));
        // A cached prefix passed the context check when it was computed: a corpus of short
        // documents must not tokenize the schema's prompt once per document.
        if self.cached_prefix(&prompt).is_none() {
            self.check_prompt(&prompt)?;
        }
        let mut docs: Vec<Result<Doc>> = texts.iter().map(|text| Doc::start(text, schema)).collect();
        // Every window of every readable text, in text order.
        let mut jobs: Vec<(usize, usize)> = Vec::new();
        let mut chunks: Vec<&str> = Vec::new();
        for (i, doc) in docs.iter_mut().enumerate() {
            let Ok(doc) = doc else { continue };
            if doc.windows.is_empty() {
                doc.finish(schema);
                doc.emit(|e| on_entity(i, e));
            }
            for (w, range) in doc.windows.iter().enumerate() {
                jobs.push((i, w));
                chunks.push(&doc.text[range.clone()]);
            }
        }
        if !jobs.is_empty() {
            let prefix = self.prefix(prompt).await?;
            let labels: Vec<String> = schema.labels.iter().map(|t| t.label.clone()).collect();
            let total = jobs.len();
            // The share the steps report, kept for the reports of finished windows.
            let share = std::cell::Cell::new(0.0);
            let report = |done: usize| {
                (options.progress)(Progress {
                    done,
                    total,
                    share: share.get(),
                })
            };
            report(0);
            // Answers come in as windows finish; entities become final in window order,
            // so that the overlap policies see them as they would one window at a time.
            let mut waiting: Vec<Option<batch::Answer>> = jobs.iter().map(|_| None).collect();
            let done = std::cell::Cell::new(0);
            let on_answer = |job: usize, answer: batch::Answer| {
                waiting[job] = Some(answer);
                while let Some(answer) = waiting.get_mut(done.get()).and_then(Option::take) {
                    let (i, w) = jobs[done.get()];
                    let doc = docs[i].as_mut().expect("only readable texts have windows");
                    doc.take(w, answer, &labels, schema);
                    if w + 1 == doc.windows.len() {
                        doc.finish(schema);
                    }
                    doc.emit(|e| on_entity(i, e));
                    done.set(done.get() + 1);
                    if done.get() == total {
                        share.set(1.0);
                    }
                    report(done.get());
                }
            };
            let on_step = |estimate: f64| {
                if estimate > share.get() {
                    share.set(estimate);
                    report(done.get());
                }
            };
            batch::answer_windows(
                &mut self.engine,
                &prefix,
                &chunks,
                &labels,
                options.decoding,
                options.cancelled,
                (on_answer, on_step),
            )
            .await?;
        }
        Ok(docs
            .into_iter()
            .map(|d| {
                d.map(|mut d| {
                    d.found.sort_by_key(|e| e.start);
                    Extraction {
                        entities: d.found,
                        windows: d.windows,
                        decoded_tokens: d.decoded,
                    }
                })
            })
            .collect())
    }

    /// Validates `schema` and checks, before any work, that its prompt leaves room in the
    /// model's context for a window and its answer; returns the prompt's length in tokens.
    pub fn check_schema(&self, schema: &Schema) -> Result<usize> {
        schema.validate()?;
        Ok(self.check_prompt(&prompt::prefix_in(schema, Format::Lines))?.len())
    }

    /// Checks `schema` as [`Self::check_schema`] does and reads its prompt into the KV
    /// cache, so that the next extraction with it starts at the text: a page does this while
    /// its user is still pasting. Returns the prompt's length in tokens.
    pub async fn prepare(&mut self, schema: &Schema) -> Result<usize> {
        schema.validate()?;
        let prompt = prompt::prefix_in(schema, Format::Lines);
        let tokens = self.check_prompt(&prompt)?.len();
        self.prefix(prompt).await?;
        Ok(tokens)
    }

    /// Whether `schema`'s prompt is the one in the KV cache (with the current adapter): an
    /// extraction with it starts at the text.
    pub fn is_prepared(&self, schema: &Schema) -> bool {
        self.cached_prefix(&prompt::prefix_in(schema, Format::Lines)).is_some()
    }

    /// The name a store keeps `schema`'s prepared prompt under ([`Self::save_prepared`]), or
    /// `None` where the model's cache cannot be saved (on a GPU). The name is a hash of all
    /// that makes the cache: the prompt's tokens, the model, the adapter, the backend and
    /// the runtime's sources; checks the schema as [`Self::check_schema`] does.
    pub fn prompt_key(&self, schema: &Schema) -> Result<Option<String>> {
        schema.validate()?;
        let prompt = prompt::prefix_in(schema, Format::Lines);
        let ids = self.check_prompt(&prompt)?;
        Ok(self.engine.model.saves_snapshots().then(|| self.key_of(&ids)))
    }

    /// The prompt key of a prompt's tokens (see [`Self::prompt_key`]).
    fn key_of(&self, ids: &[u32]) -> String {
        let e = &self.engine;
        let mut h = Sha256::new();
        let parts = [
            env!("ANOTE_RUNTIME_HASH"),
            &e.fingerprint,
            e.adapter.as_deref().unwrap_or("-"),
            e.model.backend(),
        ];
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for id in ids {
            h.update(id.to_le_bytes());
        }
        format!("{:x}", h.finalize())
    }

    /// Writes the cache of `schema`'s prompt, prepared (or used) last, through `out`: a
    /// header with its [`Self::prompt_key`], then the model's snapshot.
    pub fn save_prepared(&self, schema: &Schema, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let prompt = prompt::prefix_in(schema, Format::Lines);
        let snap = self
            .cached_prefix(&prompt)
            .ok_or_else(|| Error::StoredPrompt("the schema's prompt has not been read".into()))?;
        out(STORED_MAGIC)?;
        out(self.key_of(&self.engine.tokenizer.encode_prompt(&prompt)).as_bytes())?;
        self.engine.model.save_snapshot(snap, out)
    }

    /// As [`Self::prepare`], from a cache that [`Self::save_prepared`] wrote into `src`
    /// instead of the model: refused (`stored_prompt`) unless it was made for this schema,
    /// model, adapter, backend and runtime. Returns the prompt's length in tokens.
    pub fn load_prepared(&mut self, schema: &Schema, src: &dyn ByteSource) -> Result<usize> {
        schema.validate()?;
        let prompt = prompt::prefix_in(schema, Format::Lines);
        let ids = self.check_prompt(&prompt)?;
        let tokens = ids.len();
        if self.cached_prefix(&prompt).is_some() {
            return Ok(tokens);
        }
        let key = self.key_of(&ids);
        let mut head = vec![0u8; STORED_MAGIC.len() + key.len()];
        if src.size() < head.len() as u64 {
            return Err(Error::StoredPrompt("it is shorter than its header".into()));
        }
        src.read_into(0, &mut head)?;
        if head[..STORED_MAGIC.len()] != STORED_MAGIC[..] || head[STORED_MAGIC.len()..] != *key.as_bytes() {
            return Err(Error::StoredPrompt(
                "it was made for another schema, model, adapter, backend or engine build".into(),
            ));
        }
        let snap = self.engine.model.load_snapshot(src, head.len() as u64, tokens)?;
        self.engine.model.restore(&snap)?;
        self.cached = Some((prompt, self.engine.adapter.clone(), snap));
        Ok(tokens)
    }

    /// [`Self::check_schema`]'s context check on a rendered prompt; returns its tokens.
    fn check_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let ids = self.engine.tokenizer.encode_prompt(prompt);
        let tokens = ids.len();
        let limit = self.engine.model.max_context().saturating_sub(WINDOW_ROOM);
        if tokens > limit {
            return Err(Error::InvalidSchema(format!(
                "its prompt takes {tokens} tokens; the limit is {limit} (the model's context of {}, less \
                 {WINDOW_ROOM} for a window of text and its answer): shorten the descriptions and examples",
                self.engine.model.max_context()
            )));
        }
        Ok(ids)
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

/// A text being extracted from: what is final so far.
struct Doc<'t> {
    text: &'t str,
    found: Vec<Entity>,
    /// How many of `found` were told (they are told as their window's turn comes, so
    /// that the entities of many texts are told text after text).
    told: usize,
    /// Where `found` are, and where its pattern entities are.
    taken: Occupied,
    patterns: Occupied,
    windows: Vec<Range<usize>>,
    decoded: usize,
}

impl<'t> Doc<'t> {
    /// Checks the text's size, accepts its pattern entities and cuts its windows.
    fn start(text: &'t str, schema: &Schema) -> Result<Doc<'t>> {
        check_size(text)?;
        let mut doc = Doc {
            text,
            found: Vec::new(),
            windows: match text.trim().is_empty() {
                true => Vec::new(),
                false => chunk::windows(text, WINDOWS),
            },
            decoded: 0,
            told: 0,
            taken: Occupied::default(),
            patterns: Occupied::default(),
        };
        for e in pattern_entities(text, schema) {
            doc.accept(e, schema);
        }
        Ok(doc)
    }

    /// Tells the entities accepted since the last call.
    fn emit(&mut self, mut on_entity: impl FnMut(&Entity)) {
        self.found[self.told..].iter().for_each(&mut on_entity);
        self.told = self.found.len();
    }

    /// The entities of window `w`'s answer.
    fn take(&mut self, w: usize, answer: batch::Answer, labels: &[String], schema: &Schema) {
        let offset = self.windows[w].start;
        self.decoded += answer.decoded;
        for line in answer.lines {
            let (start, end) = (offset + line.start, offset + line.end);
            let e = Entity {
                label: labels[line.label].clone(),
                start,
                end,
                text: self.text[start..end].to_string(),
                score: line.score,
                source: Source::Model,
            };
            self.accept(e, schema);
        }
    }

    /// After the last window: the repeats of labelled names.
    fn finish(&mut self, schema: &Schema) {
        for e in repeats(self.text, &self.found) {
            self.accept(e, schema);
        }
    }

    /// Adds `e` unless the policies drop it (see the module's documentation).
    fn accept(&mut self, e: Entity, schema: &Schema) {
        let Some(e) = outside_patterns(self.text, e, &self.patterns) else {
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
        // Spans are never empty, so "overlaps an accepted one" also drops the same span
        // found again in the next window.
        if !self.taken.overlaps(e.start, e.end) {
            self.taken.insert(e.start, e.end);
            if e.source == Source::Pattern {
                self.patterns.insert(e.start, e.end);
            }
            self.found.push(e);
        }
    }
}

/// [`Error::InputTooLarge`] for a text above [`MAX_TEXT_BYTES`]: callers can refuse it
/// before loading a model.
pub fn check_size(text: &str) -> Result<()> {
    match text.len() > MAX_TEXT_BYTES {
        true => Err(Error::InputTooLarge {
            bytes: text.len(),
            max: MAX_TEXT_BYTES,
        }),
        false => Ok(()),
    }
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

/// A model entity without the edges that the pattern entities at `patterns` already
/// claim, and the spaces and punctuation beside them; `None` when no word of it is left.
/// One with a pattern entity inside it comes back whole, for the overlap check to drop.
fn outside_patterns(text: &str, mut e: Entity, patterns: &Occupied) -> Option<Entity> {
    if e.source != Source::Model {
        return Some(e);
    }
    let (start, end) = (e.start, e.end);
    for (p_start, p_end) in patterns.overlapping(start, end) {
        if p_start <= start {
            e.start = e.start.max(p_end);
        } else if p_end >= end {
            e.end = e.end.min(p_start);
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

#[cfg(test)]
mod tests {
    use super::{outside_patterns, runs_on};
    use crate::ner::spans::{Entity, Occupied, Source};

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
        let mut patterns = Occupied::default();
        for p in [&dr, &phone] {
            patterns.insert(p.start, p.end);
        }
        let kept =
            |part: &str| outside_patterns(text, entity(text, part, "PERSON", Source::Model), &patterns).map(|e| e.text);
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
            outside_patterns(text, dr.clone(), &patterns).map(|e| e.text),
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
