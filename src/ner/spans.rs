//! Entities and their offsets. Inside Rust offsets are UTF-8 byte offsets into the text;
//! they cross each boundary in that boundary's unit — Unicode code points in JSONL files
//! (as `../shared/eval`), UTF-16 code units in JavaScript — converted here and only here.

use serde::{Deserialize, Serialize};

/// Where an entity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Model,
    Pattern,
}

/// One extracted entity; `start..end` are byte offsets and `text == input[start..end]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub label: String,
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub score: f32,
    pub source: Source,
}

/// The unit an offset is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    CodePoints,
    Utf16,
}

/// An entity with its offsets in a caller's unit ([`OffsetMap::entity`]), serialised as
/// `{label, start, end, text, score, source}`: the JSONL files, the CLI and the wasm API.
#[derive(Debug, Clone, Serialize)]
pub struct EntityIn<'a> {
    pub label: &'a str,
    pub start: usize,
    pub end: usize,
    pub text: &'a str,
    pub score: f32,
    pub source: Source,
}

/// Converts offsets between units for one text in a single pass over it.
pub struct OffsetMap {
    /// (byte, code point, UTF-16) at every char boundary, including the end.
    marks: Vec<(usize, usize, usize)>,
}

impl OffsetMap {
    pub fn new(text: &str) -> OffsetMap {
        let mut marks = Vec::with_capacity(text.len() + 1);
        let (mut cp, mut u16) = (0, 0);
        for (b, c) in text.char_indices() {
            marks.push((b, cp, u16));
            cp += 1;
            u16 += c.len_utf16();
        }
        marks.push((text.len(), cp, u16));
        OffsetMap { marks }
    }

    fn get(m: &(usize, usize, usize), unit: Unit) -> usize {
        match unit {
            Unit::Bytes => m.0,
            Unit::CodePoints => m.1,
            Unit::Utf16 => m.2,
        }
    }

    /// A byte range on char boundaries (as every entity's is) in `unit`.
    pub fn span(&self, start: usize, end: usize, unit: Unit) -> (usize, usize) {
        let to = |b| self.convert(b, Unit::Bytes, unit).unwrap_or(0);
        (to(start), to(end))
    }

    /// `e` as a caller sees it: its offsets in `unit`.
    pub fn entity<'a>(&self, e: &'a Entity, unit: Unit) -> EntityIn<'a> {
        let (start, end) = self.span(e.start, e.end, unit);
        EntityIn {
            label: &e.label,
            start,
            end,
            text: &e.text,
            score: e.score,
            source: e.source,
        }
    }

    /// `offset` in `from` units as `to` units; `None` if it is not on a char boundary.
    pub fn convert(&self, offset: usize, from: Unit, to: Unit) -> Option<usize> {
        let i = self.marks.binary_search_by_key(&offset, |m| Self::get(m, from)).ok()?;
        Some(Self::get(&self.marks[i], to))
    }
}

/// Every start (byte offset) at which `needle` occurs in `text`, overlapping ones included.
pub fn occurrences(text: &str, needle: &str) -> Vec<usize> {
    if needle.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(needle) {
        out.push(from + i);
        from += i + needle[..].chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// Disjoint byte ranges, for overlap checks that stay fast with tens of thousands of
/// entities (a 2 MiB text of dates).
#[derive(Debug, Default, Clone)]
pub struct Occupied(std::collections::BTreeMap<usize, usize>);

impl Occupied {
    /// The held ranges that overlap `start..end`, in order.
    pub fn overlapping(&self, start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        // Ranges are disjoint, so only the last one starting at or before `start` can reach
        // into it from the left.
        let first = self.0.range(..=start).next_back().map_or(start, |(&s, _)| s);
        self.0
            .range(first..end)
            .map(|(&s, &e)| (s, e))
            .filter(move |&(s, e)| s < end && e > start)
    }

    pub fn overlaps(&self, start: usize, end: usize) -> bool {
        self.overlapping(start, end).next().is_some()
    }

    /// Holds `start..end`, which must overlap nothing held.
    pub fn insert(&mut self, start: usize, end: usize) {
        debug_assert!(!self.overlaps(start, end));
        self.0.insert(start, end);
    }
}

/// Whether byte offset `at` falls between two letters or digits of one word.
pub fn inside_word(text: &str, at: usize) -> bool {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    word(text[..at].chars().next_back()) && word(text[at..].chars().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupied_ranges_find_what_overlaps() {
        let mut o = Occupied::default();
        o.insert(10, 20);
        o.insert(30, 35);
        o.insert(20, 25);
        assert!(o.overlaps(19, 21) && o.overlaps(0, 11) && o.overlaps(34, 99) && o.overlaps(12, 13));
        assert!(!o.overlaps(0, 10) && !o.overlaps(25, 30) && !o.overlaps(35, 40));
        assert_eq!(
            o.overlapping(15, 31).collect::<Vec<_>>(),
            [(10, 20), (20, 25), (30, 35)]
        );
    }

    #[test]
    fn offsets_convert_across_emoji_combining_marks_and_cjk() {
        let text = "a😀e\u{301}東京 x";
        let m = OffsetMap::new(text);
        // "東" starts at byte 1+4+1+2 = 8, code point 4, UTF-16 unit 5 (the emoji is a pair).
        assert_eq!(m.convert(8, Unit::Bytes, Unit::CodePoints), Some(4));
        assert_eq!(m.convert(8, Unit::Bytes, Unit::Utf16), Some(5));
        assert_eq!(m.convert(5, Unit::Utf16, Unit::Bytes), Some(8));
        assert_eq!(m.convert(4, Unit::CodePoints, Unit::Bytes), Some(8));
        assert_eq!(m.convert(2, Unit::Bytes, Unit::CodePoints), None, "inside the emoji");
        assert_eq!(
            m.convert(text.len(), Unit::Bytes, Unit::CodePoints),
            Some(text.chars().count())
        );
    }

    #[test]
    fn conversions_round_trip_on_random_unicode() {
        let pool = ['a', ' ', 'é', '\u{301}', '東', '😀', '👨', '\u{200d}', '\n', 'ß'];
        let mut seed = 7u64;
        for _ in 0..200 {
            let text: String = (0..20)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    pool[(seed >> 33) as usize % pool.len()]
                })
                .collect();
            let m = OffsetMap::new(&text);
            for (b, _) in text.char_indices() {
                for unit in [Unit::CodePoints, Unit::Utf16] {
                    let o = m.convert(b, Unit::Bytes, unit).unwrap();
                    assert_eq!(m.convert(o, unit, Unit::Bytes), Some(b));
                }
                let cp = m.convert(b, Unit::Bytes, Unit::CodePoints).unwrap();
                assert_eq!(text.chars().take(cp).map(char::len_utf8).sum::<usize>(), b);
            }
        }
    }

    #[test]
    fn occurrences_include_overlapping_ones() {
        assert_eq!(occurrences("aaa", "aa"), [0, 1]);
        assert_eq!(occurrences("x東x東", "東"), [1, 5]);
    }
}
