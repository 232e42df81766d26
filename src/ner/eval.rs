//! Strict and partial span P/R/F1, computed exactly as `../shared/eval/score.py` does
//! (a test runs both on the same files): strict = same (start, end, label); partial =
//! overlapping spans of the same label, matched one-to-one. [`evaluate`] is the one loop
//! over a gold file that the CLI and the page share: broken lines skipped and reported,
//! every other document predicted, scored and compared span by span.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

/// (start, end, label) in any one unit.
pub type Span = (usize, usize, String);

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: usize,
    pub n_pred: usize,
    pub n_gold: usize,
}

impl Prf {
    fn new(tp: usize, n_pred: usize, n_gold: usize) -> Prf {
        let p = if n_pred > 0 { tp as f64 / n_pred as f64 } else { 0.0 };
        let r = if n_gold > 0 { tp as f64 / n_gold as f64 } else { 0.0 };
        let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        Prf {
            precision: p,
            recall: r,
            f1,
            tp,
            n_pred,
            n_gold,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub per_label: BTreeMap<String, Prf>,
    pub micro: Prf,
    /// Mean F1 over every label seen in gold or predictions.
    pub macro_f1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub documents: usize,
    pub strict: Summary,
    pub partial: Summary,
}

/// Accumulates documents, then [`Scorer::finish`].
#[derive(Default)]
pub struct Scorer {
    documents: usize,
    n_gold: HashMap<String, usize>,
    n_pred: HashMap<String, usize>,
    tp_strict: HashMap<String, usize>,
    tp_partial: HashMap<String, usize>,
}

impl Scorer {
    pub fn add(&mut self, gold: &[Span], pred: &[Span]) {
        self.documents += 1;
        for (_, _, l) in gold {
            *self.n_gold.entry(l.clone()).or_default() += 1;
        }
        for (_, _, l) in pred {
            *self.n_pred.entry(l.clone()).or_default() += 1;
        }
        // Strict: multiset intersection (a duplicated prediction counts once).
        let mut g: HashMap<&Span, usize> = HashMap::new();
        for s in gold {
            *g.entry(s).or_default() += 1;
        }
        let mut p: HashMap<&Span, usize> = HashMap::new();
        for s in pred {
            *p.entry(s).or_default() += 1;
        }
        for (s, n) in &p {
            let m = (*n).min(g.get(s).copied().unwrap_or(0));
            *self.tp_strict.entry(s.2.clone()).or_default() += m;
        }
        // Partial: maximum one-to-one matching of overlapping spans, per label.
        let labels: BTreeSet<&String> = gold.iter().map(|s| &s.2).collect();
        for label in labels {
            let mut gs: Vec<&Span> = gold.iter().filter(|s| &s.2 == label).collect();
            let mut ps: Vec<&Span> = pred.iter().filter(|s| &s.2 == label).collect();
            gs.sort();
            ps.sort();
            if !ps.is_empty() {
                *self.tp_partial.entry(label.clone()).or_default() += max_matching(&gs, &ps);
            }
        }
    }

    pub fn finish(&self) -> Scores {
        Scores {
            documents: self.documents,
            strict: self.summary(&self.tp_strict),
            partial: self.summary(&self.tp_partial),
        }
    }

    fn summary(&self, tp: &HashMap<String, usize>) -> Summary {
        let labels: BTreeSet<&String> = self.n_gold.keys().chain(self.n_pred.keys()).collect();
        let get = |m: &HashMap<String, usize>, l: &str| m.get(l).copied().unwrap_or(0);
        let per_label: BTreeMap<String, Prf> = labels
            .iter()
            .map(|l| {
                (
                    (*l).clone(),
                    Prf::new(get(tp, l), get(&self.n_pred, l), get(&self.n_gold, l)),
                )
            })
            .collect();
        let micro = Prf::new(
            tp.values().sum(),
            self.n_pred.values().sum(),
            self.n_gold.values().sum(),
        );
        let macro_f1 = if per_label.is_empty() {
            0.0
        } else {
            per_label.values().map(|p| p.f1).sum::<f64>() / per_label.len() as f64
        };
        Summary {
            per_label,
            micro,
            macro_f1,
        }
    }
}

fn max_matching(gold: &[&Span], pred: &[&Span]) -> usize {
    let adj: Vec<Vec<usize>> = pred
        .iter()
        .map(|p| {
            (0..gold.len())
                .filter(|&j| p.0 < gold[j].1 && gold[j].0 < p.1)
                .collect()
        })
        .collect();
    let mut match_of_gold = vec![usize::MAX; gold.len()];
    fn assign(i: usize, adj: &[Vec<usize>], seen: &mut [bool], m: &mut [usize]) -> bool {
        for &j in &adj[i] {
            if seen[j] {
                continue;
            }
            seen[j] = true;
            if m[j] == usize::MAX || assign(m[j], adj, seen, m) {
                m[j] = i;
                return true;
            }
        }
        false
    }
    (0..pred.len())
        .filter(|&i| assign(i, &adj, &mut vec![false; gold.len()], &mut match_of_gold))
        .count()
}

impl Scores {
    /// A table in the layout of `score.py`.
    pub fn table(&self) -> String {
        let mut out = format!("documents: {}\n", self.documents);
        for (mode, s) in [("strict", &self.strict), ("partial", &self.partial)] {
            out += &format!(
                "\n== {mode} ==\n{:<24}{:>8}{:>8}{:>8}{:>7}{:>7}{:>7}\n",
                "label", "P", "R", "F1", "tp", "gold", "pred"
            );
            let row = |name: &str, m: &Prf| {
                format!(
                    "{name:<24}{:>8.4}{:>8.4}{:>8.4}{:>7}{:>7}{:>7}\n",
                    m.precision, m.recall, m.f1, m.tp, m.n_gold, m.n_pred
                )
            };
            for (l, m) in &s.per_label {
                out += &row(l, m);
            }
            out += &row("micro", &s.micro);
            out += &format!("{:<24}{:>24.4}\n", "macro F1", s.macro_f1);
        }
        out
    }
}

/// `entities` of `text` (byte offsets) as spans in code points, the unit of gold files.
pub fn code_point_spans(text: &str, entities: &[crate::ner::spans::Entity]) -> Vec<Span> {
    let map = crate::ner::spans::OffsetMap::new(text);
    entities
        .iter()
        .map(|e| {
            let (start, end) = map.span(e.start, e.end, crate::ner::spans::Unit::CodePoints);
            (start, end, e.label.clone())
        })
        .collect()
}

/// One line of an eval-format JSONL file (gold, or predictions as `anote eval --out` writes
/// them): `{"id", "text", "entities": [{"start", "end", "label"}]}`, offsets in code points.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: serde_json::Value,
    /// `None` only where the caller allows it (a predictions file may leave it out).
    pub text: Option<String>,
    pub spans: Vec<Span>,
}

impl Document {
    /// Parses one line; a span that is empty, inverted or beyond the text's end, or that
    /// lacks a field, is an error naming the span, so that nothing is scored against it.
    pub fn parse(line: &str, text_required: bool) -> std::result::Result<Document, String> {
        let doc: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if !doc.is_object() {
            return Err("a document is a JSON object".into());
        }
        let text = doc["text"].as_str().map(str::to_owned);
        if text.is_none() && (text_required || !doc["text"].is_null()) {
            return Err("needs a \"text\" string".into());
        }
        let chars = text.as_deref().map(|t| t.chars().count());
        let entities = match &doc["entities"] {
            serde_json::Value::Null => &Vec::new(),
            serde_json::Value::Array(a) => a,
            _ => return Err("\"entities\" must be an array".into()),
        };
        let mut spans = Vec::with_capacity(entities.len());
        for (i, e) in entities.iter().enumerate() {
            let (Some(start), Some(end), Some(label)) = (e["start"].as_u64(), e["end"].as_u64(), e["label"].as_str())
            else {
                return Err(format!(
                    "entity {i} needs \"start\", \"end\" (code points) and \"label\""
                ));
            };
            let (start, end) = (start as usize, end as usize);
            if start >= end || chars.is_some_and(|n| end > n) {
                return Err(format!(
                    "entity {i} ({label} {start}..{end}) is empty, inverted or past the end of the text ({} code points)",
                    chars.map_or("?".into(), |n| n.to_string())
                ));
            }
            spans.push((start, end, label.to_string()));
        }
        Ok(Document {
            id: doc["id"].clone(),
            text,
            spans,
        })
    }
}

/// A line of a gold file that could not be read, and why (the rest is still scored).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BrokenLine {
    /// 1-based, counting every line, blank ones included.
    pub line: usize,
    pub message: String,
}

/// A span with its text, as a document's outcome lists it (code points).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Labelled {
    pub start: usize,
    pub end: usize,
    pub label: String,
    pub text: String,
}

/// One document of an evaluation: what was predicted, and, strictly, which gold spans were
/// missed and which predictions gold does not have.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: serde_json::Value,
    pub predicted: Vec<Labelled>,
    pub missed: Vec<Labelled>,
    pub spurious: Vec<Labelled>,
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub scores: Scores,
    pub broken: Vec<BrokenLine>,
    pub documents: Vec<Outcome>,
}

/// Scores `predict` on the first `limit` non-blank lines of `gold` (eval-format JSONL, code
/// points). `predict` gets each readable document and returns its spans in code points;
/// `progress(done, total)` follows the documents. An error of `predict` ends the run.
pub async fn evaluate(
    gold: &str,
    limit: Option<usize>,
    mut predict: impl AsyncFnMut(&Document) -> crate::Result<Vec<Span>>,
    mut progress: impl FnMut(usize, usize),
) -> crate::Result<Evaluation> {
    let lines: Vec<(usize, &str)> = gold
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let mut scorer = Scorer::default();
    let mut broken = Vec::new();
    let mut documents = Vec::new();
    for (n, &(index, line)) in lines.iter().enumerate() {
        match Document::parse(line, true) {
            Ok(doc) => {
                let predicted = predict(&doc).await?;
                scorer.add(&doc.spans, &predicted);
                documents.push(doc.outcome(&predicted));
            }
            Err(message) => broken.push(BrokenLine {
                line: index + 1,
                message,
            }),
        }
        progress(n + 1, lines.len());
    }
    Ok(Evaluation {
        scores: scorer.finish(),
        broken,
        documents,
    })
}

impl Document {
    /// `predicted` against this document's gold spans.
    fn outcome(&self, predicted: &[Span]) -> Outcome {
        let text = self.text.as_deref().unwrap_or_default();
        let labelled = |spans: &[&Span]| -> Vec<Labelled> {
            spans
                .iter()
                .map(|(start, end, label)| Labelled {
                    start: *start,
                    end: *end,
                    label: label.clone(),
                    text: text.chars().skip(*start).take(end.saturating_sub(*start)).collect(),
                })
                .collect()
        };
        Outcome {
            id: self.id.clone(),
            predicted: labelled(&predicted.iter().collect::<Vec<_>>()),
            missed: labelled(&multiset_minus(&self.spans, predicted)),
            spurious: labelled(&multiset_minus(predicted, &self.spans)),
        }
    }
}

/// The spans of `a` left when each span of `b` takes away one equal span.
fn multiset_minus<'a>(a: &'a [Span], b: &[Span]) -> Vec<&'a Span> {
    let mut left: HashMap<&Span, usize> = HashMap::new();
    for s in b {
        *left.entry(s).or_default() += 1;
    }
    a.iter()
        .filter(|s| match left.get_mut(s) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: usize, b: usize, l: &str) -> Span {
        (a, b, l.to_string())
    }

    #[test]
    fn strict_partial_and_duplicates() {
        let mut sc = Scorer::default();
        let gold = [s(0, 5, "PER"), s(10, 15, "LOC"), s(20, 30, "ORG"), s(31, 35, "ORG")];
        let pred = [
            s(0, 5, "PER"),
            s(0, 5, "PER"),
            s(11, 15, "LOC"),
            s(20, 35, "ORG"),
            s(40, 42, "MISC"),
        ];
        sc.add(&gold, &pred);
        let r = sc.finish();
        assert_eq!(r.strict.micro.tp, 1);
        assert_eq!(r.strict.per_label["PER"].n_pred, 2);
        // One long ORG prediction covers two gold ORGs but is credited once.
        assert_eq!(r.partial.per_label["ORG"].tp, 1);
        assert_eq!(r.partial.per_label["LOC"].tp, 1);
        assert_eq!(r.partial.per_label["PER"].tp, 1);
        assert_eq!(r.partial.per_label["MISC"].f1, 0.0);
        assert_eq!(r.strict.per_label.len(), 4);
    }

    #[test]
    fn malformed_spans_are_refused_with_a_reason() {
        let ok = Document::parse(
            r#"{"id": "a", "text": "Ann Lee", "entities": [{"start": 0, "end": 7, "label": "P"}]}"#,
            true,
        );
        assert_eq!(ok.unwrap().spans, [s(0, 7, "P")]);
        for (line, why) in [
            (
                r#"{"text": "Ann", "entities": [{"start": 0, "end": 9, "label": "P"}]}"#,
                "past the end",
            ),
            (
                r#"{"text": "Ann", "entities": [{"start": 2, "end": 1, "label": "P"}]}"#,
                "inverted",
            ),
            (r#"{"text": "Ann", "entities": [{"start": 1, "label": "P"}]}"#, "needs"),
            (r#"{"entities": []}"#, "text"),
            (r#"[1]"#, "object"),
        ] {
            let e = Document::parse(line, true).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
        // A predictions file may leave the text out.
        assert!(Document::parse(r#"{"id": "a", "entities": []}"#, false).is_ok());
    }

    #[test]
    fn evaluation_skips_broken_lines_and_lists_misses_per_document() {
        let gold = concat!(
            r#"{"id": "a", "text": "Ann met Bob in Oslo", "entities": [{"start": 0, "end": 3, "label": "P"}, {"start": 8, "end": 11, "label": "P"}, {"start": 15, "end": 19, "label": "L"}]}"#,
            "\n\nnot json\n",
            r#"{"id": "b", "text": "Cé", "entities": []}"#,
            "\n",
        );
        // Finds Ann, labels Oslo wrongly, and invents a span in the second document.
        let predict = async |d: &Document| {
            Ok(match d.id.as_str() {
                Some("a") => vec![s(0, 3, "P"), s(15, 19, "P")],
                _ => vec![s(0, 2, "L")],
            })
        };
        let mut seen = Vec::new();
        let r = pollster::block_on(evaluate(gold, None, predict, |d, n| seen.push((d, n)))).unwrap();
        assert_eq!(seen, [(1, 3), (2, 3), (3, 3)]);
        assert_eq!(r.broken.len(), 1);
        assert_eq!(r.broken[0].line, 3);
        assert_eq!(r.scores.documents, 2);
        assert_eq!(r.scores.strict.micro.tp, 1);
        let texts = |v: &[Labelled]| v.iter().map(|l| format!("{}:{}", l.label, l.text)).collect::<Vec<_>>();
        assert_eq!(texts(&r.documents[0].missed), ["P:Bob", "L:Oslo"]);
        assert_eq!(texts(&r.documents[0].spurious), ["P:Oslo"]);
        assert_eq!(texts(&r.documents[1].spurious), ["L:Cé"]);
        // --limit counts lines with content, broken ones too.
        let r = pollster::block_on(evaluate(gold, Some(2), predict, |_, _| {})).unwrap();
        assert_eq!((r.scores.documents, r.broken.len()), (1, 1));
    }
}
