//! Texts are read in windows the size of the documents the model was trained on (a
//! template, a sentence or two, a tweet). Read whole, a longer text is mostly left
//! unanswered: the fine-tuned model lists the entities of its first sentences or of its
//! last paragraph and ends (docs/extraction.md, "Long texts"). So each paragraph is a
//! window of its own when it fits in [`Limits::run`] bytes (a signature or an address block
//! stays whole); a longer one is read as runs of whole sentences or lines up to that size,
//! a long sentence whole up to [`Limits::sentence`] bytes, and a longer one in overlapping
//! slices cut at whitespace. Together the windows cover every byte that is not whitespace.

use std::ops::Range;

/// Window sizes, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A paragraph, or a run of its sentences, is read together up to this size.
    pub run: usize,
    /// A sentence is read whole up to this size (at least `run`), a longer one in slices.
    pub sentence: usize,
    /// How far the slices of an over-long sentence overlap.
    pub overlap: usize,
}

/// Byte ranges (on char boundaries, never starting or ending with whitespace, never across a
/// blank line) covering every non-whitespace byte of `text`, each at most `limits.sentence`
/// bytes; slices of an over-long sentence start about `limits.overlap` bytes before the
/// previous one ends.
pub fn windows(text: &str, limits: Limits) -> Vec<Range<usize>> {
    let Limits { run, overlap, .. } = limits;
    let sentence = limits.sentence.max(run);
    let mut out: Vec<Range<usize>> = Vec::new();
    for para in paragraphs(text) {
        if para.len() <= run {
            out.push(para);
            continue;
        }
        // Whether the last window is a run of this paragraph's sentences that may grow.
        let mut open = false;
        for s in sentences(text, para) {
            match out.last_mut() {
                Some(w) if open && s.end - w.start <= run => w.end = s.end,
                _ if s.len() <= sentence => {
                    open = s.len() <= run;
                    out.push(s);
                }
                _ => {
                    out.extend(slices(text, s, sentence, overlap));
                    open = false;
                }
            }
        }
    }
    out
}

/// `r` with the whitespace at both ends left out (`None` if nothing is left).
fn trimmed(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    let s = &text[r.clone()];
    let start = r.start + (s.len() - s.trim_start().len());
    let end = r.start + s.trim_end().len();
    (start < end).then_some(start..end)
}

/// The text between blank lines.
fn paragraphs(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            out.extend(trimmed(text, start..at));
            start = at + line.len();
        }
        at += line.len();
    }
    out.extend(trimmed(text, start..text.len()));
    out
}

/// The lines of a paragraph, each split after `.`, `!`, `?` or `;` followed by whitespace,
/// except after an abbreviation's `.`.
fn sentences(text: &str, para: Range<usize>) -> Vec<Range<usize>> {
    let p = &text[para.clone()];
    let mut cuts = vec![0];
    let mut chars = p.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let ends = matches!(c, '.' | '!' | '?' | ';') && next.is_some_and(char::is_whitespace);
        if c == '\n' || ends && !(c == '.' && abbreviated(&p[..i])) {
            cuts.push(i + c.len_utf8());
        }
    }
    cuts.push(p.len());
    cuts.windows(2)
        .filter_map(|c| trimmed(text, para.start + c[0]..para.start + c[1]))
        .collect()
}

/// Words whose `.` rarely ends a sentence: titles before a name, company and address
/// abbreviations.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "gen", "col", "capt", "lt", "sgt", "rev", "hon",
    "gov", "sen", "rep", "pres", "inc", "ltd", "co", "corp", "bros", "no", "nr", "apt", "ave", "blvd", "rd", "vs",
    "approx", "dept", "univ", "fig", "vol",
];

/// Whether the word that ends `before` (the text up to a `.`) is an abbreviation: an
/// initial (`Valida M. Ibragimov`: cut there, the name is read in two windows and lost),
/// one with dots inside (`U.S`, `e.g`), or one of [`ABBREVIATIONS`].
fn abbreviated(before: &str) -> bool {
    let word = before
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_start_matches(|c: char| !c.is_alphanumeric());
    let mut letters = word.chars();
    match (letters.next(), letters.next()) {
        (Some(c), None) => c.is_alphabetic(),
        (Some(_), Some(_)) => word.contains('.') || ABBREVIATIONS.iter().any(|a| a.eq_ignore_ascii_case(word)),
        _ => false,
    }
}

/// Overlapping slices of at most `max` bytes over `r`, cut at whitespace where there is
/// some in a slice's last third, each starting about `overlap` bytes before the previous ends.
fn slices(text: &str, r: Range<usize>, max: usize, overlap: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = r.start;
    loop {
        let mut end = floor_boundary(text, (start + max).min(r.end));
        if end < r.end {
            let from = floor_boundary(text, start + (end - start) * 2 / 3);
            if let Some(i) = text[from..end].rfind(char::is_whitespace) {
                end = from + i;
            }
        }
        if end <= start {
            end = ceil_boundary(text, start + 1);
        }
        out.extend(trimmed(text, start..end));
        if end >= r.end {
            return out;
        }
        // Back up by `overlap`, then forward to the next word start, but always progress.
        let back = floor_boundary(text, end.saturating_sub(overlap).max(start + 1));
        let next = text[back..end]
            .find(char::is_whitespace)
            .map(|i| back + i + 1)
            .unwrap_or(end);
        start = ceil_boundary(text, next.clamp(start + 1, end));
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_word_within_limits_and_never_cross_a_blank_line() {
        let para = "Alpha beta gamma. Delta epsilon zeta! 東京 and 😀 emoji here.\nNew line text continues for a while longer. ";
        let text = format!("{}\n \n\t{}\n\n\n{}", para.repeat(7), "x".repeat(30), para.repeat(3));
        for (run, sentence, overlap) in [(40, 40, 10), (40, 90, 10), (100, 30, 30), (7, 7, 3), (5000, 5000, 100)] {
            let max = sentence.max(run);
            let w = windows(&text, Limits { run, sentence, overlap });
            for (i, c) in text.char_indices().filter(|c| !c.1.is_whitespace()) {
                assert!(w.iter().any(|r| r.contains(&i)), "{c:?} at {i} unread with max {max}");
            }
            for r in &w {
                let s = &text[r.clone()];
                assert!(r.len() <= max.max(4), "window of {} bytes", r.len());
                assert_eq!(s, s.trim(), "a window starts or ends with whitespace");
                assert!(
                    !s.contains("\n\n") && !s.contains("\n \n"),
                    "{s:?} crosses a blank line"
                );
            }
            for pair in w.windows(2) {
                assert!(pair[1].start > pair[0].start, "no progress");
            }
        }
        let limits = Limits {
            run: 10,
            sentence: 10,
            overlap: 2,
        };
        assert!(windows("", limits).is_empty());
        assert!(windows(" \n\n ", limits).is_empty());
        assert_eq!(windows(" short ", Limits { run: 100, ..limits }), vec![1..6]);
    }

    #[test]
    fn paragraphs_stay_whole_or_are_read_as_runs_of_sentences_and_only_an_over_long_sentence_is_sliced() {
        fn read(text: &str, run: usize, sentence: usize) -> Vec<&str> {
            let limits = Limits {
                run,
                sentence,
                overlap: 4,
            };
            windows(text, limits).into_iter().map(|r| &text[r]).collect()
        }
        // A paragraph that fits is one window, else runs of its whole sentences.
        let text = "Ann met Bo. Cy met Di.\nEd met Flo.\n\nGus left.\n\nHal met Ivy.";
        assert_eq!(
            read(text, 100, 100),
            ["Ann met Bo. Cy met Di.\nEd met Flo.", "Gus left.", "Hal met Ivy."]
        );
        assert_eq!(
            read(text, 24, 24),
            ["Ann met Bo. Cy met Di.", "Ed met Flo.", "Gus left.", "Hal met Ivy."]
        );
        // An initial or an abbreviation does not end a sentence; the word after it stays.
        let text = "Ask Dr. Ann B. Cole. She met (Mr. Bo) at Acme Inc. on Main St. in the U.S. today. Ok.";
        assert_eq!(
            read(text, 12, 90),
            [
                "Ask Dr. Ann B. Cole.",
                "She met (Mr. Bo) at Acme Inc. on Main St. in the U.S. today.",
                "Ok."
            ]
        );
        // A sentence longer than a run is read alone, whole up to `sentence` bytes.
        let text = "Ann met Bo. A much longer sentence here. Cy met Di. Ed met Flo.";
        assert_eq!(
            read(text, 25, 40),
            ["Ann met Bo.", "A much longer sentence here.", "Cy met Di. Ed met Flo."]
        );
        let long = "one two three four five six seven eight nine ten";
        let w = windows(
            long,
            Limits {
                run: 10,
                sentence: 20,
                overlap: 8,
            },
        );
        assert!(w.len() > 2 && w.iter().all(|r| r.len() <= 20));
        for pair in w.windows(2) {
            assert!(pair[1].start < pair[0].end, "slices of one sentence overlap");
        }
    }
}
