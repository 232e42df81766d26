//! Any text: offset conversion (bytes, code points, UTF-16) round-trips at every char
//! boundary; windows cover every non-whitespace byte on char boundaries; recognizer matches
//! and span placement (`Spelled::find`) lie on char boundaries inside the text.
#![no_main]

use anote_ner::ner::chunk;
use anote_ner::ner::decode::Spelled;
use anote_ner::ner::extract::WINDOWS;
use anote_ner::ner::recognizers::{self, ALL};
use anote_ner::ner::spans::{OffsetMap, Unit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let map = OffsetMap::new(text);
    for (b, _) in text.char_indices().chain([(text.len(), ' ')]) {
        for unit in [Unit::CodePoints, Unit::Utf16] {
            let o = map.convert(b, Unit::Bytes, unit).unwrap();
            assert_eq!(map.convert(o, unit, Unit::Bytes), Some(b));
        }
    }
    let windows = chunk::windows(text, WINDOWS);
    for w in &windows {
        assert!(text.is_char_boundary(w.start) && text.is_char_boundary(w.end) && w.start < w.end);
    }
    for (b, c) in text.char_indices().filter(|(_, c)| !c.is_whitespace()) {
        assert!(
            windows.iter().any(|w| w.contains(&b)),
            "byte {b} ({c:?}) is in no window"
        );
    }
    for m in recognizers::find_all(text, &ALL) {
        assert!(m.start < m.end && text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
    }
    let spelled = Spelled::new(text);
    let needle: String = text.chars().skip(text.chars().count() / 3).take(5).collect();
    for (s, e) in spelled.find(&anote_ner::ner::decode::spell(&needle)) {
        assert!(s <= e && e <= text.len() && text.is_char_boundary(s) && text.is_char_boundary(e));
    }
});
