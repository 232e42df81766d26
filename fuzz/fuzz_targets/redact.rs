//! Any text and any entity offsets (from the input's first bytes): redaction never panics,
//! its replacements do not overlap, each points at its replacement in the redacted text, and
//! no masked, hashed or pseudonymised value is left whole in its replacement.
#![no_main]

use std::collections::HashMap;

use anote_ner::ner::redact::{Key, Operator, Redactor};
use anote_ner::ner::spans::{Entity, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let ops = ["replace", "mask:*:4", "hash", "pseudonym"];
    let mut entities = Vec::new();
    for pair in head.chunks(2) {
        let (a, b) = (pair[0] as usize % (text.len() + 1), pair[1] as usize % (text.len() + 1));
        let (start, end) = (a.min(b), a.max(b));
        if start < end && text.is_char_boundary(start) && text.is_char_boundary(end) {
            entities.push(Entity {
                label: ["PERSON", "EMAIL"][pair[0] as usize % 2].into(),
                start,
                end,
                text: text[start..end].into(),
                score: 1.0,
                source: Source::Model,
            });
        }
    }
    let op: Operator = ops[head[7] as usize % ops.len()].parse().unwrap();
    let key = Key::new(b"fuzzing key of sixteen bytes or more").unwrap();
    let redactor = Redactor::new(op.clone(), HashMap::new(), Some(key)).unwrap();
    let r = redactor.redact(text, &entities);
    let mut at = 0;
    for x in &r.replacements {
        assert!(x.start >= at && x.end > x.start);
        at = x.end;
        assert_eq!(&r.text[x.redacted_start..x.redacted_end], x.replacement);
        // A value of hex digits and letters may turn up in a hash by chance, and a value
        // whose masked half is already mask stars ("******\x10\x1a") reads the same
        // masked; any other value must not be in its replacement.
        let value = &text[x.start..x.end];
        let distinct = value.chars().any(|c| !c.is_ascii_alphanumeric() && c != '_') && !value.contains('*');
        if op != Operator::Replace && distinct {
            assert!(!x.replacement.contains(value), "{value:?} left in {:?}", x.replacement);
        }
    }
});
