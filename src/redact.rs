//! Redaction operators (Presidio's "anonymizers", with a consistent pseudonym): turn a
//! text and its entities into safe text plus the mapping from originals to replacements.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::spans::Entity;

#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// `<LABEL>`
    Replace,
    /// Every character but the last `keep_last` becomes `char`.
    Mask { char: char, keep_last: usize },
    /// Hex SHA-256 of salt + value: equal values give equal hashes, unreadable without the salt.
    Hash { salt: String },
    /// `LABEL_1`, `LABEL_2`…: the same value gets the same surrogate within one redactor.
    Pseudonym,
}

impl std::str::FromStr for Operator {
    type Err = Error;
    /// `replace`, `mask`, `mask:#`, `mask:*:4`, `hash`, `hash:SALT`, `pseudonym`.
    fn from_str(s: &str) -> Result<Operator> {
        let mut parts = s.splitn(3, ':');
        let bad = || {
            Error::InvalidSchema(format!(
                "unknown redaction operator {s:?} (replace, mask[:C[:N]], hash[:SALT], pseudonym)"
            ))
        };
        Ok(match parts.next().unwrap_or("") {
            "replace" => Operator::Replace,
            "pseudonym" => Operator::Pseudonym,
            "hash" => Operator::Hash {
                salt: parts.next().unwrap_or("").to_string(),
            },
            "mask" => {
                let char = parts.next().map_or(Some('*'), |c| c.chars().next()).ok_or_else(bad)?;
                let keep_last = parts.next().map_or(Ok(0), |n| n.parse().map_err(|_| bad()))?;
                Operator::Mask { char, keep_last }
            }
            _ => return Err(bad()),
        })
    }
}

/// One replaced span (byte offsets into the original text).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Replacement {
    pub label: String,
    pub start: usize,
    pub end: usize,
    pub original: String,
    pub replacement: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Redaction {
    pub text: String,
    pub replacements: Vec<Replacement>,
}

pub struct Redactor {
    per_label: HashMap<String, Operator>,
    default: Operator,
    pseudonyms: HashMap<(String, String), String>,
    counters: HashMap<String, usize>,
}

impl Redactor {
    pub fn new(default: Operator, per_label: HashMap<String, Operator>) -> Redactor {
        Redactor {
            per_label,
            default,
            pseudonyms: HashMap::new(),
            counters: HashMap::new(),
        }
    }

    /// Replaces each entity (sorted, non-overlapping, as extraction returns them).
    pub fn redact(&mut self, text: &str, entities: &[Entity]) -> Redaction {
        let mut out = String::with_capacity(text.len());
        let mut replacements = Vec::new();
        let mut at = 0;
        for e in entities {
            if e.start < at || e.end > text.len() {
                continue; // overlapping or foreign: extraction never returns these
            }
            out.push_str(&text[at..e.start]);
            let original = &text[e.start..e.end];
            let replacement = self.replace(&e.label, original);
            out.push_str(&replacement);
            replacements.push(Replacement {
                label: e.label.clone(),
                start: e.start,
                end: e.end,
                original: original.into(),
                replacement,
            });
            at = e.end;
        }
        out.push_str(&text[at..]);
        Redaction {
            text: out,
            replacements,
        }
    }

    fn replace(&mut self, label: &str, value: &str) -> String {
        match self.per_label.get(label).unwrap_or(&self.default).clone() {
            Operator::Replace => format!("<{label}>"),
            Operator::Mask { char, keep_last } => {
                let n = value.chars().count();
                value
                    .chars()
                    .enumerate()
                    .map(|(i, c)| if i + keep_last >= n { c } else { char })
                    .collect()
            }
            Operator::Hash { salt } => Sha256::digest(format!("{salt}{value}"))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            Operator::Pseudonym => {
                let key = (label.to_string(), value.to_string());
                if let Some(p) = self.pseudonyms.get(&key) {
                    return p.clone();
                }
                let n = self.counters.entry(label.to_string()).or_default();
                *n += 1;
                let p = format!("{label}_{n}");
                self.pseudonyms.insert(key, p.clone());
                p
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::Source;

    fn ents(text: &str, spans: &[(&str, &str)]) -> Vec<Entity> {
        let mut from = 0;
        spans
            .iter()
            .map(|(label, s)| {
                let start = from + text[from..].find(s).unwrap();
                from = start + s.len();
                Entity {
                    label: label.to_string(),
                    start,
                    end: from,
                    text: s.to_string(),
                    score: 1.0,
                    source: Source::Model,
                }
            })
            .collect()
    }

    #[test]
    fn operators_per_label() {
        let text = "Ann (ann@x.org) met Bob, then Ann again; card 4111111111111111.";
        let e = ents(
            text,
            &[
                ("PERSON", "Ann"),
                ("EMAIL", "ann@x.org"),
                ("PERSON", "Bob"),
                ("PERSON", "Ann"),
                ("CARD", "4111111111111111"),
            ],
        );
        let ops = HashMap::from([
            ("PERSON".to_string(), "pseudonym".parse().unwrap()),
            ("CARD".to_string(), "mask:#:4".parse().unwrap()),
        ]);
        let mut r = Redactor::new(Operator::Replace, ops);
        let out = r.redact(text, &e);
        assert_eq!(
            out.text,
            "PERSON_1 (<EMAIL>) met PERSON_2, then PERSON_1 again; card ############1111."
        );
        assert_eq!(out.replacements.len(), 5);
        assert_eq!(out.replacements[1].original, "ann@x.org");
        // Pseudonyms stay consistent across documents of one run.
        assert_eq!(r.redact("Bob!", &ents("Bob!", &[("PERSON", "Bob")])).text, "PERSON_2!");
    }

    #[test]
    fn hash_depends_on_salt_and_value_and_bad_operators_are_errors() {
        let text = "x@y.com";
        let e = ents(text, &[("EMAIL", "x@y.com")]);
        let h = |salt: &str| {
            Redactor::new(Operator::Hash { salt: salt.into() }, HashMap::new())
                .redact(text, &e)
                .text
        };
        assert_eq!(h("a"), h("a"));
        assert_ne!(h("a"), h("b"));
        assert_eq!(h("a").len(), 64);
        assert!("shred".parse::<Operator>().is_err());
        assert!("mask:*:x".parse::<Operator>().is_err());
        assert_eq!(
            "mask".parse::<Operator>().unwrap(),
            Operator::Mask {
                char: '*',
                keep_last: 0
            }
        );
    }
}
