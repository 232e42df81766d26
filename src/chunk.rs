//! Long texts are split into overlapping windows that each fit the model's context next to
//! the cached schema prefix. Windows end at a sentence or line break when one is near,
//! else at whitespace; together they cover every byte of the text.

use std::ops::Range;

/// Byte ranges (on char boundaries) covering `text`, each at most `max` bytes, each
/// starting about `overlap` bytes before the previous one ends.
pub fn windows(text: &str, max: usize, overlap: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = floor_boundary(text, (start + max).min(text.len()));
        if end < text.len() {
            end = cut_point(text, start, end);
        }
        if end <= start {
            end = ceil_boundary(text, start + 1);
        }
        out.push(start..end);
        if end >= text.len() {
            break;
        }
        // Back up by `overlap`, then forward to the next word start, but always progress.
        let back = floor_boundary(text, end.saturating_sub(overlap).max(start + 1));
        let next = text[back..end]
            .find(char::is_whitespace)
            .map(|i| back + i + 1)
            .unwrap_or(end);
        start = ceil_boundary(text, next.clamp(start + 1, end));
    }
    out
}

/// The best place to end a window at or before `end`: after a sentence end or newline in
/// its last third, else after whitespace, else `end` itself.
fn cut_point(text: &str, start: usize, end: usize) -> usize {
    let from = floor_boundary(text, start + (end - start) * 2 / 3);
    let tail = &text[from..end];
    let sentence = tail
        .rmatch_indices(['\n', '.', '!', '?', ';'])
        .map(|(i, m)| from + i + m.len())
        .next();
    let space = tail.rfind(char::is_whitespace).map(|i| from + i + 1);
    sentence.or(space).map(|e| ceil_boundary(text, e)).unwrap_or(end)
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
    fn windows_cover_everything_overlap_and_respect_limits() {
        let text = "Alpha beta gamma. Delta epsilon zeta! 東京 and 😀 emoji here.\nNew line text continues for a while longer. ".repeat(20);
        for (max, overlap) in [(40, 10), (100, 30), (7, 3), (5000, 100)] {
            let w = windows(&text, max, overlap);
            assert_eq!(w[0].start, 0);
            assert_eq!(w.last().unwrap().end, text.len());
            for pair in w.windows(2) {
                assert!(pair[1].start <= pair[0].end, "gap between windows");
                assert!(pair[1].start > pair[0].start, "no progress");
            }
            for r in &w {
                assert!(r.len() <= max.max(4), "window of {} bytes", r.len());
                assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
            }
        }
        assert!(windows("", 10, 2).is_empty());
        assert_eq!(windows("short", 100, 10), vec![0..5]);
    }
}
