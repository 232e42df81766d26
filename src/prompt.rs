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

use crate::schema::Schema;

const GUIDELINES: &str = include_str!("prompts/guidelines.txt");

/// Everything before the document: header, guidelines, one line per type.
pub fn prefix(schema: &Schema) -> String {
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
        .replace("{description}", schema.description.trim())
        .replace("{span_rules}", rules)
        .replace("{types}", &types.join("\n"))
        + &worked_example(schema)
        + "\n"
        + NEXT_TEXT
}

/// One worked example assembled from the types' own examples, to show the answer format
/// (a base model follows a shown format far better than a described one).
fn worked_example(schema: &Schema) -> String {
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
    let answer: String = picked.iter().map(|(l, e)| format!("{l}: {e}\n")).collect();
    format!("\nText:\n{}.\nEntities:\n{answer}\n", text.join(", "))
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
}
