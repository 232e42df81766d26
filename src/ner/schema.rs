//! The entity schema: what to extract, with a guideline per type. JSON format documented
//! in `docs/schema.md` (JSON Schema: `docs/schema.schema.json`); every schema in
//! `../shared/eval` loads as is, and unknown top-level keys are ignored.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};
use crate::ner::recognizers::Recognizer;

/// Limits that keep the prompt (and its cached prefix) a sensible size.
pub const MAX_TYPES: usize = 64;
pub const MAX_LABEL_CHARS: usize = 48;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_EXAMPLES: usize = 16;
pub const MAX_EXAMPLE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// What the whole schema is about (rendered at the top of the guidelines).
    #[serde(default)]
    pub description: String,
    /// How spans are delimited (shortest span, no punctuation…).
    #[serde(default)]
    pub span_rules: String,
    pub labels: Vec<EntityType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityType {
    /// The label returned with each entity: natural language ("date of birth", "人名") or a
    /// code (`PERSON`), kept as [`normalize_label`] writes it.
    pub label: String,
    /// The guideline: what counts as this type and what does not.
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Look-alikes that are *not* this type.
    #[serde(default, skip_serializing_if = "Vec::is_empty", alias = "negative_examples")]
    pub counter_examples: Vec<String>,
    /// A built-in pattern recognizer that also fills this label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recognizer: Option<Recognizer>,
}

/// Built-in schemas, by name.
pub const PRESETS: &[(&str, &str)] = [
    ("pii", include_str!("../../presets/pii.json")),
    ("conll", include_str!("../../presets/conll.json")),
]
.as_slice();

impl Schema {
    /// Parses and validates a schema from JSON.
    pub fn from_json(json: &str) -> Result<Schema> {
        let mut schema: Schema =
            serde_json::from_str(json).map_err(|e| Error::InvalidSchema(format!("not a valid schema: {e}")))?;
        for t in &mut schema.labels {
            t.label = normalize_label(&t.label);
        }
        schema.validate()?;
        Ok(schema)
    }

    pub fn preset(name: &str) -> Result<Schema> {
        let (_, json) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            Error::UnknownPreset(format!("{name} (available: {})", names.join(", ")))
        })?;
        Schema::from_json(json)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSchema(m));
        if self.labels.is_empty() {
            return bad("the schema declares no entity types".into());
        }
        if self.labels.len() > MAX_TYPES {
            return bad(format!(
                "the schema declares {} entity types; the limit is {MAX_TYPES}",
                self.labels.len()
            ));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS
            || self.span_rules.chars().count() > MAX_DESCRIPTION_CHARS
        {
            return bad(format!(
                "the schema description and span rules are limited to {MAX_DESCRIPTION_CHARS} characters"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.labels {
            let l = &t.label;
            if l.is_empty() || l.chars().count() > MAX_LABEL_CHARS {
                return bad(format!("label {l:?} must have 1 to {MAX_LABEL_CHARS} characters"));
            }
            // The model answers `label: span`, one per line: a colon or a control character
            // would end the label early.
            if l.chars().any(|c| c == ':' || c.is_control()) {
                return bad(format!("label {l:?} may not contain ':' or control characters"));
            }
            if *l != normalize_label(l) {
                return bad(format!(
                    "label {l:?} must be trimmed, with single spaces, in Unicode NFC (as Schema::from_json writes it)"
                ));
            }
            if !seen.insert(l.to_lowercase()) {
                return bad(format!(
                    "label {l:?} is declared twice (labels are compared ignoring case)"
                ));
            }
            if t.description.chars().count() > MAX_DESCRIPTION_CHARS {
                return bad(format!(
                    "the description of {l} is longer than {MAX_DESCRIPTION_CHARS} characters"
                ));
            }
            for ex in t.examples.iter().chain(&t.counter_examples) {
                if ex.trim().is_empty() || ex.chars().count() > MAX_EXAMPLE_CHARS {
                    return bad(format!("examples of {l} must have 1 to {MAX_EXAMPLE_CHARS} characters"));
                }
            }
            if t.examples.len() > MAX_EXAMPLES || t.counter_examples.len() > MAX_EXAMPLES {
                return bad(format!("{l} has more than {MAX_EXAMPLES} examples or counter-examples"));
            }
        }
        Ok(())
    }

    pub fn get(&self, label: &str) -> Option<&EntityType> {
        self.labels.iter().find(|t| t.label == label)
    }
}

/// A label as the schema keeps it: Unicode NFC, surrounding whitespace dropped and every
/// inner run of whitespace one space, so that "date  of\u{a0}birth" and "date of birth" are
/// one label, as are a composed and a decomposed "é".
pub fn normalize_label(label: &str) -> String {
    label.split_whitespace().collect::<Vec<_>>().join(" ").nfc().collect()
}

/// The schema format as a JSON Schema (draft 2020-12), from the limits above and the
/// recognizers: `docs/schema.schema.json` is this, as `anote json-schema` prints it
/// (`tests/cli.rs` fails when the file is stale).
pub fn json_schema() -> serde_json::Value {
    use crate::ner::recognizers::ALL;
    use serde_json::json;
    let text = |max: usize| json!({ "type": "string", "maxLength": max });
    let examples = json!({
        "type": "array",
        "maxItems": MAX_EXAMPLES,
        "items": { "type": "string", "minLength": 1, "maxLength": MAX_EXAMPLE_CHARS }
    });
    let recognizers: Vec<serde_json::Value> = ALL
        .iter()
        .map(|r| json!({ "const": r.name(), "description": r.description() }))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Anote NER entity schema",
        "description": "What to extract: entity types with guidelines (docs/schema.md).",
        "type": "object",
        "required": ["labels"],
        "properties": {
            "description": text(MAX_DESCRIPTION_CHARS),
            "span_rules": text(MAX_DESCRIPTION_CHARS),
            "labels": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_TYPES,
                "items": {
                    "type": "object",
                    "required": ["label"],
                    "properties": {
                        "label": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_LABEL_CHARS,
                            "pattern": "^[^:\\u0000-\\u001f\\u007f-\\u009f]+$",
                            "description": "Natural language or a code: any text without ':' or control characters; kept trimmed, with single spaces, in Unicode NFC; unique ignoring case."
                        },
                        "description": text(MAX_DESCRIPTION_CHARS),
                        "examples": examples,
                        "counter_examples": examples,
                        "negative_examples": examples,
                        "recognizer": { "oneOf": recognizers }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_load_and_unknown_preset_is_an_error() {
        let pii = Schema::preset("pii").unwrap();
        assert_eq!(pii.labels.len(), 17);
        assert_eq!(pii.get("EMAIL_ADDRESS").unwrap().recognizer, Some(Recognizer::Email));
        assert_eq!(Schema::preset("conll").unwrap().labels.len(), 4);
        assert_eq!(Schema::preset("nope").unwrap_err().code(), "unknown_preset");
    }

    #[test]
    fn invalid_schemas_are_rejected_with_a_reason() {
        let cases = [
            ("{", "not a valid schema"),
            (r#"{"labels": []}"#, "no entity types"),
            (r#"{"labels": [{"label": "A"}, {"label": "a"}]}"#, "declared twice"),
            (r#"{"labels": [{"label": "time: start"}]}"#, "may not contain ':'"),
            (r#"{"labels": [{"label": "bell\u0007"}]}"#, "control characters"),
            (
                r#"{"labels": [{"label": "Name"}, {"label": "name "}]}"#,
                "declared twice",
            ),
            (
                r#"{"labels": [{"label": "caf\u00e9"}, {"label": "CAFE\u0301"}]}"#,
                "declared twice",
            ),
            (r#"{"labels": [{"label": "   "}]}"#, "1 to 48"),
            (r#"{"labels": [{"label": ""}]}"#, "1 to 48"),
            (r#"{"labels": [{"label": "A", "examples": [" "]}]}"#, "examples of A"),
            (
                r#"{"labels": [{"label": "A", "recognizer": "telepathy"}]}"#,
                "not a valid schema",
            ),
        ];
        for (json, why) in cases {
            let e = Schema::from_json(json).unwrap_err();
            assert_eq!(e.code(), "invalid_schema");
            assert!(e.to_string().contains(why), "{json}: {e}");
        }
        let many: Vec<String> = (0..500).map(|i| format!(r#"{{"label": "T{i}"}}"#)).collect();
        let e = Schema::from_json(&format!(r#"{{"labels": [{}]}}"#, many.join(","))).unwrap_err();
        assert!(e.to_string().contains("limit is 64"), "{e}");
    }

    #[test]
    fn counter_examples_accept_their_alias() {
        let s = Schema::from_json(r#"{"labels": [{"label": "A", "negative_examples": ["x"]}], "dataset": "ignored"}"#)
            .unwrap();
        assert_eq!(s.labels[0].counter_examples, ["x"]);
    }

    #[test]
    fn labels_are_natural_language_kept_normalised() {
        let s = Schema::from_json(
            r#"{"labels": [{"label": " Restaurant   Name "}, {"label": "date of birth"}, {"label": "人名"}, {"label": "cafe\u0301"}]}"#,
        )
        .unwrap();
        let labels: Vec<&str> = s.labels.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["Restaurant Name", "date of birth", "人名", "caf\u{e9}"]);
        // A schema built in code must already be normalised.
        let mut raw = s.clone();
        raw.labels[0].label = " Restaurant Name".into();
        assert!(raw.validate().unwrap_err().to_string().contains("NFC"));
    }
}
