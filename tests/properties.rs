//! Properties over generated inputs (proptest): offsets convert losslessly between bytes,
//! code points and UTF-16; redaction's replacements never overlap, sit where their offsets
//! say in the redacted text, leave the rest of the text as it was and never hold the value
//! they replace.

use std::collections::HashMap;

use anote_ner::ner::redact::{Key, Operator, Redactor};
use anote_ner::ner::spans::{Entity, OffsetMap, Source, Unit};
use proptest::prelude::*;

/// Text from a pool that mixes one-, two-, three- and four-byte characters, a combining
/// mark, a joiner and newlines.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'Z', ' ', '\n', 'é', '\u{301}', 'ß', '東', '😀', '\u{200d}', '@', '.',
        ]),
        0..80,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #[test]
    fn offsets_round_trip_between_every_unit(text in text()) {
        let map = OffsetMap::new(&text);
        let boundaries: Vec<usize> = text.char_indices().map(|(b, _)| b).chain([text.len()]).collect();
        for (cp, &b) in boundaries.iter().enumerate() {
            prop_assert_eq!(map.convert(b, Unit::Bytes, Unit::CodePoints), Some(cp));
            let u16 = text[..b].encode_utf16().count();
            prop_assert_eq!(map.convert(b, Unit::Bytes, Unit::Utf16), Some(u16));
            prop_assert_eq!(map.convert(u16, Unit::Utf16, Unit::Bytes), Some(b));
            prop_assert_eq!(map.convert(cp, Unit::CodePoints, Unit::Utf16), Some(u16));
        }
        // Inside a multi-byte character there is no offset in any unit.
        for b in (0..text.len()).filter(|&b| !text.is_char_boundary(b)) {
            prop_assert_eq!(map.convert(b, Unit::Bytes, Unit::CodePoints), None);
        }
    }

    #[test]
    fn replacements_sit_where_they_say_and_hold_no_original(
        words in prop::collection::vec("[g-z]{2,8}( [g-z]{2,8})?", 1..12),
        picks in prop::collection::vec(any::<bool>(), 12),
        op in prop::sample::select(vec!["replace", "mask", "mask:#:4", "hash", "pseudonym"]),
    ) {
        // Words joined by ", " (no word is part of another's replacement: replacements use
        // upper case, hex digits, '_', '<', '>' and mask characters).
        let text = words.join(", ");
        let mut entities = Vec::new();
        let mut at = 0;
        for (w, &pick) in words.iter().zip(&picks) {
            if pick {
                entities.push(Entity {
                    label: "PERSON".into(),
                    start: at,
                    end: at + w.len(),
                    text: w.clone(),
                    score: 1.0,
                    source: Source::Model,
                });
            }
            at += w.len() + 2;
        }
        let key = Key::new(b"a property test key, 16+ bytes").unwrap();
        let r = Redactor::new(op.parse::<Operator>().unwrap(), HashMap::new(), Some(key)).unwrap().redact(&text, &entities);
        prop_assert_eq!(r.replacements.len(), entities.len());
        let (mut before, mut redacted_before) = (0, 0);
        for (x, e) in r.replacements.iter().zip(&entities) {
            prop_assert!(x.start >= before && x.redacted_start >= redacted_before, "overlap");
            prop_assert_eq!((x.start, x.end), (e.start, e.end));
            prop_assert_eq!(&r.text[x.redacted_start..x.redacted_end], x.replacement.as_str());
            prop_assert!(!x.replacement.contains(&e.text), "{:?} in {:?}", e.text, x.replacement);
            // The text between replacements is the original text between entities.
            prop_assert_eq!(&r.text[redacted_before..x.redacted_start], &text[before..x.start]);
            before = x.end;
            redacted_before = x.redacted_end;
        }
        prop_assert_eq!(&r.text[redacted_before..], &text[before..]);
    }
}
