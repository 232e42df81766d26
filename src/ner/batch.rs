//! Answers many windows at once. The windows of a document (and of many documents) are
//! independent once the schema prefix is in the KV cache, so each live window gets a
//! sequence slot of its own over that shared prefix, and every decoding step forwards one
//! token of each live window together: the weights are read once per step instead of
//! once per window. A window that finishes frees its slot for the next (continuous
//! batching), whose prompt then rides along in the same forward as the others' tokens.
//! Each window's answer is the same as when it is decoded alone.

use crate::error::{Error, Result};
use crate::ner::decode::{Decoder, Grammar, Limits, Line};
use crate::ner::free_format::FreeDecoder;
use crate::ner::prompt::{self, Format};
use crate::ner::spans::inside_word;
use crate::runtime::engine::Engine;
use crate::runtime::model::{BatchRow, KvSnapshot, Logits};
use crate::runtime::tokenizer::Tokenizer;

/// How the windows are answered: [`Settings::default`] is the product's way.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Windows decoded at once (at most what the model carries; 1: one after another).
    pub batch: usize,
    /// See [`Limits::end_penalty`].
    pub end_penalty: f32,
    /// `None` (the product): lines under the grammar; else see [`crate::ner::free_format`].
    pub free_format: Option<Format>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            batch: DEFAULT_BATCH,
            end_penalty: END_PENALTY,
            free_format: None,
        }
    }
}

/// Windows decoded at once unless set. Natively 16: each step's weights serve twice the
/// windows, 8 % less time than 8 on the 4.2 KB e-mail at 2 threads (32 was no faster). In
/// the browser 8: there 16 gained 2 %, and every slot's cache adds to the tab's memory.
pub const DEFAULT_BATCH: usize = if cfg!(target_arch = "wasm32") { 8 } else { 16 };
/// The default [`Limits::end_penalty`].
pub const END_PENALTY: f32 = 0.0;

/// A line of a window's answer, placed in the window: byte range, surrounding whitespace
/// trimmed.
#[derive(Debug, Clone)]
pub struct Placed {
    pub label: usize,
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// One window's answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub lines: Vec<Placed>,
    /// Answer tokens decoded.
    pub decoded: usize,
}

/// Answers each of `windows` after `prefix` (the schema prompt's cache), telling
/// `on_answer(i, answer)` as each window finishes, in whatever order they finish, and
/// `on_step(share)` after every forward step with the estimated share of the work done
/// ([`Estimate`]). `cancelled` is asked before every step.
pub async fn answer_windows(
    engine: &mut Engine,
    prefix: &KvSnapshot,
    windows: &[&str],
    labels: &[String],
    settings: Settings,
    cancelled: &dyn Fn() -> bool,
    (mut on_answer, mut on_step): (impl FnMut(usize, Answer), impl FnMut(f64)),
) -> Result<()> {
    let Engine { model, tokenizer, .. } = engine;
    let slots = settings.batch.clamp(1, model.max_batch());
    let mut free: Vec<usize> = (0..slots).rev().collect();
    let mut live: Vec<Live> = Vec::with_capacity(slots);
    let mut next = 0;
    let mut estimate = Estimate {
        windows: windows.len(),
        finished: 0,
        decoded: 0,
    };
    loop {
        while next < windows.len() && !free.is_empty() {
            let slot = free.pop().expect("a free slot");
            model.begin(slot, prefix)?;
            let chunk = windows[next];
            let input = tokenizer.encode(&prompt::document(chunk));
            let room = model.max_context().saturating_sub(prefix.len() + input.len());
            let max_tokens = answer_budget(chunk.split_whitespace().count()).min(room);
            let decoder = match settings.free_format {
                None => Decoding::Grammar(Box::new((
                    Decoder::new(Limits {
                        max_tokens,
                        end_penalty: settings.end_penalty,
                    }),
                    Grammar::new(tokenizer, labels, chunk),
                ))),
                Some(format) => Decoding::Free(FreeDecoder::new(format, max_tokens)),
            };
            live.push(Live {
                window: next,
                slot,
                chunk,
                input,
                decoder,
                placer: Placer::default(),
            });
            next += 1;
        }
        if live.is_empty() {
            return Ok(());
        }
        if cancelled() {
            return Err(Error::Cancelled);
        }
        // Windows with nothing left to ask are done.
        let mut i = 0;
        while i < live.len() {
            if live[i].wants_step() {
                i += 1;
            } else {
                let l = live.swap_remove(i);
                free.push(l.slot);
                let window = l.window;
                let answer = l.finish(labels);
                estimate.finished(answer.decoded);
                on_answer(window, answer);
            }
        }
        if live.is_empty() {
            continue;
        }
        let rows: Vec<BatchRow> = live.iter().map(Live::row).collect();
        let logits = model.forward_batch(&rows).await?;
        for (l, logits) in live.iter_mut().zip(&logits) {
            l.input.clear();
            if let Some(token) = l.choose(tokenizer, logits) {
                l.input.push(token);
            }
        }
        on_step(estimate.share(live.iter().map(Live::decoded)));
    }
}

/// The share of a call's work done, for progress: each window counts one, a live window
/// the share of its answer decoded so far. An answer's length is known only when it ends,
/// so it is taken to be the mean of the answers finished (at first, [`FIRST_GUESS`]
/// tokens) and a live window never counts more than 0.95 of one. Decoding is most of a
/// window's time; its prompt is a share of one batched forward.
struct Estimate {
    windows: usize,
    finished: usize,
    decoded: usize,
}

/// Answer tokens a window is taken to need before any has finished: a few entity lines.
const FIRST_GUESS: f64 = 24.0;

impl Estimate {
    fn finished(&mut self, decoded: usize) {
        self.finished += 1;
        self.decoded += decoded;
    }

    fn share(&self, live: impl Iterator<Item = usize>) -> f64 {
        let expected = match self.finished {
            0 => FIRST_GUESS,
            n => (self.decoded as f64 / n as f64).max(1.0),
        };
        let partial: f64 = live.map(|d| (d as f64 / expected).min(0.95)).sum();
        (self.finished as f64 + partial) / self.windows.max(1) as f64
    }
}

/// Most answer tokens the model may decode for a window of `words` words.
pub const fn answer_budget(words: usize) -> usize {
    16 + 4 * words
}

/// A window being answered in a sequence slot.
struct Live<'t> {
    window: usize,
    slot: usize,
    chunk: &'t str,
    /// What the next step forwards: the window's prompt, then each chosen token.
    input: Vec<u32>,
    decoder: Decoding,
    placer: Placer,
}

enum Decoding {
    Grammar(Box<(Decoder, Grammar)>),
    Free(FreeDecoder),
}

impl Live<'_> {
    /// Whether the answer goes on; prepares the step's allowed tokens. A step the grammar
    /// leaves one token for (the colon after most labels: a seventh of the e-mail's steps)
    /// is taken here, without the model: greedy decoding would choose that token whatever
    /// its logit, so it joins the tokens the next forward appends, and the window needs one
    /// forward fewer.
    fn wants_step(&mut self) -> bool {
        if self.input.is_empty() {
            return false;
        }
        let (chunk, placer) = (self.chunk, &mut self.placer);
        match &mut self.decoder {
            Decoding::Grammar(dg) => loop {
                let (d, g) = &mut **dg;
                let fits = |label, at: &[(usize, usize)]| placer.place(chunk, label, at).is_some();
                if !d.allowed(g, &fits) {
                    return false;
                }
                if d.ids().len() > 1 {
                    return true;
                }
                match d.choose(g, &[0.0], |line| placer.accept(chunk, &line)) {
                    Some(token) => self.input.push(token),
                    None => return false,
                }
            },
            Decoding::Free(d) => d.wants_step(),
        }
    }

    fn row(&self) -> BatchRow<'_> {
        let logits = match &self.decoder {
            Decoding::Grammar(dg) => Logits::Of(dg.0.ids()),
            Decoding::Free(_) => Logits::All,
        };
        BatchRow {
            slot: self.slot,
            tokens: &self.input,
            logits,
        }
    }

    /// The token this step chose, if the answer goes on.
    fn choose(&mut self, tokenizer: &Tokenizer, logits: &[f32]) -> Option<u32> {
        let (chunk, placer) = (self.chunk, &mut self.placer);
        match &mut self.decoder {
            Decoding::Grammar(dg) => {
                let (d, g) = &mut **dg;
                d.choose(g, logits, |line| placer.accept(chunk, &line))
            }
            Decoding::Free(d) => d.choose(tokenizer, logits),
        }
    }

    /// Answer tokens decoded so far.
    fn decoded(&self) -> usize {
        match &self.decoder {
            Decoding::Grammar(dg) => dg.0.decoded(),
            Decoding::Free(d) => d.decoded(),
        }
    }

    fn finish(mut self, labels: &[String]) -> Answer {
        let decoded = self.decoded();
        if let Decoding::Free(d) = &self.decoder {
            // A line that fits nowhere is dropped; the ones after it still count.
            for line in d.lines(self.chunk, labels) {
                self.placer.accept(self.chunk, &line);
            }
        }
        Answer {
            lines: self.placer.lines,
            decoded,
        }
    }
}

/// Where a window's lines go: a line maps to the first fitting occurrence of its text at or
/// after the end of the previous line (answers are in text order), else to the first; an
/// occurrence must not start or end inside a word, nor repeat a line of the same label.
#[derive(Default)]
struct Placer {
    cursor: usize,
    lines: Vec<Placed>,
}

impl Placer {
    /// Where a line of `label` whose text is at `at` would go; `None` if nowhere fits.
    fn place(&self, chunk: &str, label: usize, at: &[(usize, usize)]) -> Option<(usize, usize)> {
        let trimmed = |&(s, e): &(usize, usize)| {
            let span = &chunk[s..e];
            let s = s + span.len() - span.trim_start().len();
            (s, s + span.trim().len())
        };
        let fits = |&(s, e): &(usize, usize)| {
            s < e
                && !inside_word(chunk, s)
                && !inside_word(chunk, e)
                && !self
                    .lines
                    .iter()
                    .any(|p| p.label == label && p.start == s && p.end == e)
        };
        let spans: Vec<(usize, usize)> = at.iter().map(trimmed).filter(fits).collect();
        spans.iter().find(|s| s.0 >= self.cursor).or(spans.first()).copied()
    }

    /// Places `line`; false (the answer ends) if it fits nowhere.
    fn accept(&mut self, chunk: &str, line: &Line) -> bool {
        let Some((start, end)) = self.place(chunk, line.label, &line.at) else {
            return false;
        };
        self.cursor = end;
        self.lines.push(Placed {
            label: line.label,
            start,
            end,
            score: line.score,
        });
        true
    }
}
