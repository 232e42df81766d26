//! Redaction operators (Presidio's "anonymizers"): turn a text and its entities into safe
//! text and say where each replacement went. The output never holds an original value; a
//! caller that needs the re-identification table builds it from the text and the offsets,
//! on purpose (the CLI's `--mapping`).
//!
//! `hash` and `pseudonym` are HMAC-SHA256 under a [`Key`]: without the key a dictionary of
//! likely values (phone numbers, e-mail addresses) cannot be hashed to reverse them, and
//! with it the same value gets the same replacement in every document, run, process and
//! machine.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::ner::spans::Entity;

#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// `<LABEL>`
    Replace,
    /// Every character becomes `char` but the last `keep_last`, and never more than half
    /// of them: a short name is never left readable.
    Mask { char: char, keep_last: usize },
    /// Hex HMAC-SHA256 of the value: equal values give equal hashes, irreversible without
    /// the key.
    Hash,
    /// `LABEL_` and ten hex digits of the HMAC of the label and the value (for a name, the
    /// full name it is a variant of in the same document; see [`canonical_values`]).
    Pseudonym,
}

impl std::str::FromStr for Operator {
    type Err = Error;
    /// `replace`, `mask`, `mask:#`, `mask:*:4`, `hash`, `pseudonym`.
    fn from_str(s: &str) -> Result<Operator> {
        let mut parts = s.splitn(3, ':');
        let bad = || {
            Error::InvalidSchema(format!(
                "unknown redaction operator {s:?} (replace, mask[:C[:N]], hash, pseudonym)"
            ))
        };
        let op = match parts.next().unwrap_or("") {
            "replace" => Operator::Replace,
            "pseudonym" => Operator::Pseudonym,
            "hash" => Operator::Hash,
            "mask" => {
                let char = parts.next().map_or(Some('*'), |c| c.chars().next()).ok_or_else(bad)?;
                let keep_last = parts.next().map_or(Ok(0), |n| n.parse().map_err(|_| bad()))?;
                return Ok(Operator::Mask { char, keep_last });
            }
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            // `hash:SALT` was the old form: a salt on the command line is in the shell history.
            return Err(Error::InvalidSchema(format!(
                "redaction operator {s:?} takes no argument (the key of hash and pseudonym comes from a key file)"
            )));
        }
        Ok(op)
    }
}

impl Operator {
    fn name(&self) -> &'static str {
        match self {
            Operator::Replace => "replace",
            Operator::Mask { .. } => "mask",
            Operator::Hash => "hash",
            Operator::Pseudonym => "pseudonym",
        }
    }
}

/// The secret of the keyed operators.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// Shorter keys are refused: a guessable key is a salt on the command line again.
    pub const MIN_BYTES: usize = 16;

    /// A key from its bytes (a key file's content; trailing whitespace, such as the newline
    /// an editor adds, is not part of it).
    pub fn new(bytes: &[u8]) -> Result<Key> {
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        if end < Key::MIN_BYTES {
            return Err(Error::BadKey(format!(
                "it has {end} bytes; a key needs at least {}",
                Key::MIN_BYTES
            )));
        }
        Ok(Key(bytes[..end].to_vec()))
    }

    /// A fresh random key, as 64 hex digits (so that it can be saved and shared as text).
    pub fn generate() -> Result<Key> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| Error::BadKey(format!("no randomness to make one: {e}")))?;
        Ok(Key(hex(&raw).into_bytes()))
    }

    /// The key as text, for the page to keep and export.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// HMAC-SHA256 of the parts, each ended by a NUL so that ("ab", "c") ≠ ("a", "bc").
    fn mac(&self, parts: &[&str]) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for p in parts {
            m.update(p.as_bytes());
            m.update(&[0]);
        }
        m.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)") // never in logs
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One replaced span: where it was, where its replacement is, and how it was made.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Replacement {
    pub label: String,
    /// Byte range in the original text.
    pub start: usize,
    pub end: usize,
    /// Byte range of the replacement in the redacted text.
    pub redacted_start: usize,
    pub redacted_end: usize,
    pub operator: &'static str,
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
    key: Option<Key>,
}

impl Redactor {
    /// `key` is required when any operator is `hash` or `pseudonym`.
    pub fn new(default: Operator, per_label: HashMap<String, Operator>, key: Option<Key>) -> Result<Redactor> {
        let keyed = per_label
            .values()
            .chain([&default])
            .find(|o| matches!(o, Operator::Hash | Operator::Pseudonym));
        if let (Some(op), None) = (keyed, &key) {
            return Err(Error::BadKey(format!(
                "the {} operator needs a key (--key-file FILE or $ANOTE_KEY)",
                op.name()
            )));
        }
        Ok(Redactor {
            per_label,
            default,
            key,
        })
    }

    /// A redactor from label → operator name, as the JavaScript and Python APIs take it;
    /// the label `*` stands for every other label (`replace` when absent).
    pub fn from_operators(operators: &HashMap<String, String>, key: Option<Key>) -> Result<Redactor> {
        let mut per_label = HashMap::new();
        for (label, op) in operators {
            per_label.insert(label.clone(), op.parse::<Operator>()?);
        }
        let default = per_label.remove("*").unwrap_or(Operator::Replace);
        Redactor::new(default, per_label, key)
    }

    /// Whether any operator is `pseudonym` (the CLI makes a key for the run when none is given).
    pub fn wants_pseudonyms(default: &Operator, per_label: &HashMap<String, Operator>) -> bool {
        per_label.values().chain([default]).any(|o| *o == Operator::Pseudonym)
    }

    /// Replaces each entity; entities that overlap an earlier one or lie outside the text
    /// are skipped (extraction never returns them).
    pub fn redact(&self, text: &str, entities: &[Entity]) -> Redaction {
        let mut sorted: Vec<&Entity> = entities.iter().collect();
        sorted.sort_by_key(|e| (e.start, std::cmp::Reverse(e.end)));
        let operator = |e: &Entity| self.per_label.get(&e.label).unwrap_or(&self.default);
        // Name variants matter only to pseudonyms: the other operators never compare names.
        let pseudonymised: Vec<&Entity> = sorted
            .iter()
            .copied()
            .filter(|e| *operator(e) == Operator::Pseudonym)
            .collect();
        let mut canonical = canonical_values(&pseudonymised).into_iter();
        let mut out = String::with_capacity(text.len());
        let mut replacements = Vec::new();
        let mut at = 0;
        for e in sorted {
            let op = operator(e);
            let name = if *op == Operator::Pseudonym {
                canonical.next().unwrap_or_default()
            } else {
                String::new()
            };
            if e.start < at || e.end > text.len() || !text.is_char_boundary(e.start) || !text.is_char_boundary(e.end) {
                continue;
            }
            out.push_str(&text[at..e.start]);
            let replacement = self.replace(op, &e.label, &text[e.start..e.end], &name);
            let redacted_start = out.len();
            out.push_str(&replacement);
            replacements.push(Replacement {
                label: e.label.clone(),
                start: e.start,
                end: e.end,
                redacted_start,
                redacted_end: out.len(),
                operator: op.name(),
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

    /// `canonical`: the name a pseudonym is made from (see [`canonical_values`]); unused by
    /// the other operators.
    fn replace(&self, op: &Operator, label: &str, value: &str, canonical: &str) -> String {
        let key = || self.key.as_ref().expect("Redactor::new checked the key");
        match op {
            Operator::Replace => format!("<{label}>"),
            Operator::Mask { char, keep_last } => {
                let n = value.chars().count();
                let keep = (*keep_last).min(n / 2);
                value
                    .chars()
                    .enumerate()
                    .map(|(i, c)| if i + keep >= n { c } else { *char })
                    .collect()
            }
            Operator::Hash => hex(&key().mac(&["hash", value])),
            Operator::Pseudonym => format!("{label}_{}", &hex(&key().mac(&["pseudonym", label, canonical]))[..10]),
        }
    }
}

/// Courtesy titles, left out when names are compared.
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "herr", "frau", "mme", "mlle",
];

/// The words of a name as compared: lower case, titles and punctuation left out.
fn name_words(value: &str) -> Vec<String> {
    let words: Vec<String> = value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let named: Vec<String> = words
        .iter()
        .filter(|w| !TITLES.contains(&w.as_str()))
        .cloned()
        .collect();
    if named.is_empty() {
        words
    } else {
        named
    }
}

/// Whether the name `a` is a shorter way of writing `b`: each word of `a` is a different
/// word of `b`, or the initial of one ("S Whitfield" of "Sarah J Whitfield").
fn variant_of(a: &[String], b: &[String]) -> bool {
    if a.len() >= b.len() {
        return false;
    }
    let mut free = vec![true; b.len()];
    a.iter().all(|w| {
        let initial = w.chars().count() == 1;
        let hit = b
            .iter()
            .enumerate()
            .position(|(i, x)| free[i] && (x == w || initial && x.starts_with(w.as_str())));
        hit.map(|i| free[i] = false).is_some()
    })
}

/// The value each entity's pseudonym is made from: its words, or those of the one longest
/// name of its label in the document that it is a variant of ("Sarah", "Ms Whitfield" and
/// "S. Whitfield" of "Sarah J. Whitfield"); a variant of two different names keeps its own.
/// Distinct names are compared once each, so a long document costs names², not mentions³.
fn canonical_values(entities: &[&Entity]) -> Vec<String> {
    let mut names: Vec<(&str, Vec<String>)> = Vec::new();
    let index: Vec<usize> = entities
        .iter()
        .map(|e| {
            let words = name_words(&e.text);
            match names.iter().position(|(l, w)| *l == e.label && *w == words) {
                Some(i) => i,
                None => {
                    names.push((&e.label, words));
                    names.len() - 1
                }
            }
        })
        .collect();
    let variant = |a: usize, b: usize| names[a].0 == names[b].0 && variant_of(&names[a].1, &names[b].1);
    let longest: Vec<bool> = (0..names.len())
        .map(|j| !(0..names.len()).any(|k| variant(j, k)))
        .collect();
    let canonical: Vec<String> = (0..names.len())
        .map(|i| {
            let roots: Vec<usize> = (0..names.len()).filter(|&j| longest[j] && variant(i, j)).collect();
            match roots[..] {
                [root] => names[root].1.join(" "),
                _ => names[i].1.join(" "),
            }
        })
        .collect();
    index.into_iter().map(|i| canonical[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ner::spans::Source;

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

    fn key() -> Option<Key> {
        Some(Key::new(b"0123456789abcdef-test-key").unwrap())
    }

    fn redactor(default: &str, ops: &[(&str, &str)]) -> Redactor {
        let per_label = ops.iter().map(|(l, o)| (l.to_string(), o.parse().unwrap())).collect();
        Redactor::new(default.parse().unwrap(), per_label, key()).unwrap()
    }

    #[test]
    fn operators_per_label_and_offsets_of_both_texts() {
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
        let r = redactor("replace", &[("PERSON", "pseudonym"), ("CARD", "mask:#:4")]);
        let out = r.redact(text, &e);
        let ann = &out.replacements[0].replacement;
        assert!(ann.starts_with("PERSON_") && ann.len() == "PERSON_".len() + 10, "{ann}");
        assert_eq!(
            out.replacements[3].replacement, *ann,
            "the same value, the same pseudonym"
        );
        assert_ne!(out.replacements[2].replacement, *ann);
        assert!(out.text.contains("(<EMAIL>)") && out.text.ends_with("############1111."));
        for (rep, e) in out.replacements.iter().zip(&e) {
            assert_eq!((rep.start, rep.end), (e.start, e.end));
            assert_eq!(&out.text[rep.redacted_start..rep.redacted_end], rep.replacement);
        }
        // A pseudonym is a function of (key, label, value): another document, another
        // redactor with the same key, the same pseudonym.
        let again = redactor("pseudonym", &[]).redact("Ann!", &ents("Ann!", &[("PERSON", "Ann")]));
        assert_eq!(again.text, format!("{ann}!"));
    }

    #[test]
    fn hash_and_pseudonym_need_a_key_and_depend_on_it() {
        let text = "x@y.com";
        let e = ents(text, &[("EMAIL", "x@y.com")]);
        for op in [Operator::Hash, Operator::Pseudonym] {
            let err = Redactor::new(op.clone(), HashMap::new(), None).err().unwrap();
            assert_eq!(err.code(), "bad_key");
        }
        let with = |k: &[u8]| {
            Redactor::new(Operator::Hash, HashMap::new(), Some(Key::new(k).unwrap()))
                .unwrap()
                .redact(text, &e)
                .text
        };
        let a = with(b"aaaaaaaaaaaaaaaaaaaa");
        assert_eq!(
            a,
            with(b"aaaaaaaaaaaaaaaaaaaa\n"),
            "a key file's newline is not part of the key"
        );
        assert_ne!(a, with(b"bbbbbbbbbbbbbbbbbbbb"));
        assert_eq!(a.len(), 64);
        // Not a plain SHA-256 of the value, which a dictionary reverses.
        use sha2::Digest;
        assert_ne!(a, hex(&Sha256::digest(text)));
        assert_eq!(Key::new(b"short").err().unwrap().code(), "bad_key");
        assert_ne!(Key::generate().unwrap().text(), Key::generate().unwrap().text());
    }

    #[test]
    fn operator_syntax() {
        assert!("shred".parse::<Operator>().is_err());
        assert!("mask:*:x".parse::<Operator>().is_err());
        assert!(
            "hash:SALT".parse::<Operator>().is_err(),
            "salts on the command line are gone"
        );
        assert_eq!(
            "mask".parse::<Operator>().unwrap(),
            Operator::Mask {
                char: '*',
                keep_last: 0
            }
        );
    }

    #[test]
    fn mask_never_leaves_a_value_whole_or_mostly_readable() {
        let r = redactor("mask:*:4", &[]);
        for (value, masked) in [
            ("Bob", "**b"),
            ("Ann Li", "*** Li"),
            ("+44 20 7946 0018", "************0018"),
            ("X", "*"),
        ] {
            let text = format!("[{value}]");
            let out = r.redact(&text, &ents(&text, &[("X", value)]));
            assert_eq!(out.text, format!("[{masked}]"), "{value}");
        }
        let all = redactor("mask:#:99", &[]).redact("Bob", &ents("Bob", &[("X", "Bob")]));
        assert_eq!(all.text, "##b");
    }

    #[test]
    fn variants_of_one_name_share_a_pseudonym_unless_ambiguous() {
        let text =
            "Sarah J. Whitfield wrote. Sarah Whitfield, Ms Whitfield, S. Whitfield and Sarah agreed; Tom Hale too.";
        let e = ents(
            text,
            &[
                ("PERSON", "Sarah J. Whitfield"),
                ("PERSON", "Sarah Whitfield"),
                ("PERSON", "Ms Whitfield"),
                ("PERSON", "S. Whitfield"),
                ("PERSON", "Sarah"),
                ("PERSON", "Tom Hale"),
            ],
        );
        let out = redactor("pseudonym", &[]).redact(text, &e);
        let p: Vec<&str> = out.replacements.iter().map(|r| r.replacement.as_str()).collect();
        assert!(p[..5].iter().all(|x| *x == p[0]), "{p:?}");
        assert_ne!(p[5], p[0]);
        // Two Sarahs: "Sarah" alone could be either, so it keeps a pseudonym of its own.
        let text = "Sarah Whitfield and Sarah Connor met; Sarah left.";
        let e = ents(
            text,
            &[
                ("PERSON", "Sarah Whitfield"),
                ("PERSON", "Sarah Connor"),
                ("PERSON", "Sarah"),
            ],
        );
        let out = redactor("pseudonym", &[]).redact(text, &e);
        let p: Vec<&str> = out.replacements.iter().map(|r| r.replacement.as_str()).collect();
        assert!(p[2] != p[0] && p[2] != p[1] && p[0] != p[1], "{p:?}");
    }
}
