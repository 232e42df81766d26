//! Training sequences for fine-tuning, rendered by the same code that builds prompts and
//! constrains answers at inference, so the model learns exactly the format it will be
//! asked for (`train/` feeds these ids to PyTorch).
//!
//! One sequence is a schema prefix followed by one or more documents, each with its
//! answer: packing several short documents under one schema makes each prefix token
//! count for more than one example.

use std::ops::Range;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ner::decode::answer_tokens;
use crate::ner::prompt;
use crate::ner::schema::Schema;
use crate::runtime::tokenizer::Tokenizer;

#[derive(Debug, Deserialize)]
pub struct Example {
    pub schema: Schema,
    pub docs: Vec<Doc>,
}

/// A document with its gold entities (code-point offsets, as in the eval JSONL files).
#[derive(Debug, Deserialize)]
pub struct Doc {
    pub text: String,
    #[serde(default)]
    pub entities: Vec<GoldSpan>,
}

#[derive(Debug, Deserialize)]
pub struct GoldSpan {
    pub start: usize,
    pub end: usize,
    pub label: String,
}

#[derive(Debug, serde::Serialize)]
pub struct Sequence {
    pub ids: Vec<u32>,
    /// Token ranges of the answers: the loss is taken on these tokens only.
    pub answers: Vec<Range<usize>>,
}

/// Renders one example. Entities whose label is not in the schema are left out of the
/// answer (that is how a label subset teaches "only the listed types").
pub fn render(tok: &Tokenizer, example: &Example) -> Result<Sequence> {
    example.schema.validate()?;
    let mut ids = tok.encode_prompt(&prompt::prefix(&example.schema));
    let mut answers = Vec::new();
    for (i, doc) in example.docs.iter().enumerate() {
        if i > 0 {
            ids.extend(tok.encode(prompt::NEXT_TEXT));
        }
        ids.extend(tok.encode(&prompt::document(&doc.text)));
        let chars: Vec<(usize, char)> = doc.text.char_indices().collect();
        let byte = |cp: usize| chars.get(cp).map_or(doc.text.len(), |c| c.0);
        let mut gold: Vec<&GoldSpan> = doc
            .entities
            .iter()
            .filter(|e| example.schema.get(&e.label).is_some())
            .collect();
        gold.sort_by_key(|e| (e.start, e.end));
        let mut lines = Vec::new();
        for e in gold {
            if e.start >= e.end || e.end > chars.len() {
                return Err(Error::BadGold(format!(
                    "entity {}..{} is outside its document ({} code points)",
                    e.start,
                    e.end,
                    chars.len()
                )));
            }
            lines.push((e.label.as_str(), &doc.text[byte(e.start)..byte(e.end)]));
        }
        let start = ids.len();
        ids.extend(answer_tokens(tok, &lines));
        answers.push(start..ids.len());
    }
    Ok(Sequence { ids, answers })
}
