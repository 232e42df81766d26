//! The prompt: the schema rendered as annotation guidelines (a prefix computed once per
//! schema and cached), then the document. The answer format is what `decode` constrains:
//!
//! ```text
//! PERSON: Ahmed Khan
//! PHONE_NUMBER: +44 20 7946 0018
//! (empty line)
//! ```
//!
//! Fine-tuning data must be rendered by this same code, so that training and inference agree.
//!
//! Two other answer formats, JSON and inline tags, exist only to be compared with this one
//! (`anote eval --unconstrained FORMAT`, docs/eval.md): the constrained decoder reads lines.

use std::str::FromStr;

use regex::Regex;

use crate::ner::schema::Schema;

const GUIDELINES: &str = include_str!("prompts/guidelines.txt");

/// How the answer spells the entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `TYPE: span` lines: the product's format, the one the decoder constrains.
    Lines,
    /// A JSON list of `{"type": TYPE, "text": span}` objects on one line.
    Json,
    /// The text again, each entity wrapped as `<TYPE>span</TYPE>`.
    Tags,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "lines" => Ok(Format::Lines),
            "json" => Ok(Format::Json),
            "tags" => Ok(Format::Tags),
            other => Err(format!("unknown answer format {other:?}: lines, json or tags")),
        }
    }
}

impl Format {
    /// The instruction that names the format in the guidelines.
    fn instruction(self) -> &'static str {
        match self {
            Format::Lines => "Answer with one line per entity, in text order, as TYPE: exact text from the text.",
            Format::Json => {
                "Answer with a JSON list of the entities, in text order, as {\"type\": TYPE, \"text\": exact text from the text}."
            }
            Format::Tags => "Answer with the text repeated, each entity wrapped in tags as <TYPE>exact text</TYPE>.",
        }
    }

    /// `entities` in this format, for the text `text` they were found in.
    fn answer(self, text: &str, entities: &[(&str, &str)]) -> String {
        match self {
            Format::Lines => entities.iter().map(|(l, e)| format!("{l}: {e}\n")).collect(),
            Format::Json => {
                let quote = |s: &str| serde_json::Value::from(s).to_string();
                let items: Vec<String> = entities
                    .iter()
                    .map(|(l, e)| format!("{{\"type\": {}, \"text\": {}}}", quote(l), quote(e)))
                    .collect();
                format!("[{}]\n", items.join(", "))
            }
            Format::Tags => {
                let mut out = text.to_string();
                // Right to left, so earlier offsets stay valid; each entity is looked for
                // before the one after it, so a repeated name is tagged at each occurrence.
                let mut end = out.len();
                for (l, e) in entities.iter().rev() {
                    if let Some(at) = out[..end].rfind(e) {
                        out.replace_range(at..at + e.len(), &format!("<{l}>{e}</{l}>"));
                        end = at;
                    }
                }
                out + "\n"
            }
        }
    }
}

/// Everything before the document: header, guidelines, one line per type.
pub fn prefix(schema: &Schema) -> String {
    prefix_in(schema, Format::Lines)
}

/// [`prefix`] with the answer format named and shown in `format`.
pub fn prefix_in(schema: &Schema, format: Format) -> String {
    let types: Vec<String> = schema
        .labels
        .iter()
        .map(|t| {
            let mut line = format!("- {}: {}", t.label, t.description.trim());
            if !t.examples.is_empty() {
                line += &format!(" Examples: {}.", t.examples.join("; "));
            }
            if !t.counter_examples.is_empty() {
                line += &format!(" Not: {}.", t.counter_examples.join("; "));
            }
            line
        })
        .collect();
    let rules = if schema.span_rules.trim().is_empty() {
        "mark the shortest span that names the thing."
    } else {
        schema.span_rules.trim()
    };
    GUIDELINES
        .replace("{answer_format}", format.instruction())
        .replace("{description}", schema.description.trim())
        .replace("{span_rules}", rules)
        .replace("{types}", &types.join("\n"))
        + &worked_example(schema, format)
        + "\n"
        + NEXT_TEXT
}

/// One worked example assembled from the types' own examples, to show the answer format
/// (a base model follows a shown format far better than a described one).
fn worked_example(schema: &Schema, format: Format) -> String {
    let picked: Vec<(&str, &str)> = schema
        .labels
        .iter()
        .filter_map(|t| t.examples.first().map(|e| (t.label.as_str(), e.as_str())))
        .take(6)
        .collect();
    if picked.is_empty() {
        return String::new();
    }
    let text: Vec<&str> = picked.iter().map(|p| p.1).collect();
    let text = format!("{}.", text.join(", "));
    format!("\nText:\n{text}\nEntities:\n{}\n", format.answer(&text, &picked))
}

/// The (label, span) pairs of a free answer in `format`, as written: what is not in the
/// format is skipped, and nothing is checked against the schema or the text yet.
pub fn parse_answer(format: Format, answer: &str) -> Vec<(String, String)> {
    match format {
        Format::Lines => answer
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(l, s)| (l.trim().to_string(), s.trim().to_string()))
            .collect(),
        Format::Json => {
            let string = r#""(?:[^"\\]|\\.)*""#;
            let item = Regex::new(&format!(
                r#"\{{\s*"type"\s*:\s*({string})\s*,\s*"text"\s*:\s*({string})\s*\}}"#
            ))
            .expect("valid regex");
            let unquote = |s: &str| serde_json::from_str::<String>(s).unwrap_or_default();
            item.captures_iter(answer)
                .map(|c| (unquote(&c[1]), unquote(&c[2])))
                .collect()
        }
        Format::Tags => {
            let open = Regex::new(r"<([^<>/\s]+)>").expect("valid regex");
            let mut out = Vec::new();
            let mut at = 0;
            while let Some(c) = open.captures_at(answer, at) {
                let (whole, label) = (c.get(0).expect("match"), &c[1]);
                at = whole.end();
                // A tag around other tags is the text's own markup (`<b>`), not an entity.
                let inner = answer[at..]
                    .find(&format!("</{label}>"))
                    .map(|len| &answer[at..at + len]);
                if let Some(span) = inner.filter(|s| !s.contains('<')) {
                    out.push((label.to_string(), span.to_string()));
                    at += span.len();
                }
            }
            out
        }
    }
}

/// What separates a finished answer from the next document when several share a prefix.
pub const NEXT_TEXT: &str = "Text:\n";

/// The per-document part; the answer starts right after it.
pub fn document(text: &str) -> String {
    format!("{text}\nEntities:\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lists_every_type_with_its_guideline_and_examples() {
        let s = Schema::preset("pii").unwrap();
        let p = prefix(&s);
        for t in &s.labels {
            assert!(p.contains(&format!("- {}: ", t.label)), "{}", t.label);
        }
        assert!(p.contains("Examples: Faina D. Yefremova; Christiansen."));
        assert!(p.ends_with("Text:\n"));
        assert_eq!(document("Hi."), "Hi.\nEntities:\n");
    }

    #[test]
    fn each_format_parses_back_what_it_renders() {
        let text = "Mail \"Ann\" Lee at <b>Acme</b>: ann@acme.com.";
        let found = [("PERSON", "\"Ann\" Lee"), ("ORG", "Acme"), ("EMAIL", "ann@acme.com")];
        for format in [Format::Lines, Format::Json, Format::Tags] {
            let answer = format.answer(text, &found);
            let parsed = parse_answer(format, &answer);
            let parsed: Vec<(&str, &str)> = parsed.iter().map(|(l, s)| (l.as_str(), s.as_str())).collect();
            assert_eq!(parsed, found, "{format:?}: {answer}");
        }
        assert_eq!(
            Format::Tags.answer(text, &found),
            "Mail <PERSON>\"Ann\" Lee</PERSON> at <b><ORG>Acme</ORG></b>: <EMAIL>ann@acme.com</EMAIL>.\n"
        );
        let twice = [("LOC", "Paris"), ("LOC", "Paris")];
        assert_eq!(
            Format::Tags.answer("Paris or Paris?", &twice),
            "<LOC>Paris</LOC> or <LOC>Paris</LOC>?\n"
        );
    }

    #[test]
    fn free_answers_keep_what_is_in_the_format_and_skip_the_rest() {
        let json =
            "[{\"type\": \"PER\", \"text\": \"Bo\"}, {\"type\": \"LOC\"}, {\"type\":\"LOC\",\"text\":\"Oslo\\u00e9\"";
        assert_eq!(parse_answer(Format::Json, json), [("PER".into(), "Bo".into())]);
        let tags = "<PER>Bo</PER> went to <LOC>Oslo and never came back";
        assert_eq!(parse_answer(Format::Tags, tags), [("PER".into(), "Bo".into())]);
        assert_eq!(
            parse_answer(Format::Lines, "PER: Bo\nrambling\nLOC:Oslo"),
            [("PER".into(), "Bo".into()), ("LOC".into(), "Oslo".into())]
        );
        assert_eq!("json".parse(), Ok(Format::Json));
        assert!("yaml".parse::<Format>().is_err());
    }

    #[test]
    fn the_lines_prefix_names_the_format_the_decoder_reads() {
        let s = Schema::preset("conll").unwrap();
        assert_eq!(prefix(&s), prefix_in(&s, Format::Lines));
        assert!(prefix(&s).contains("as TYPE: exact text from the text. End with an empty line."));
        assert!(prefix_in(&s, Format::Json).contains("[{\"type\": "));
        assert!(prefix_in(&s, Format::Tags).contains("</"));
    }
}
