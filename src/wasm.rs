//! The browser API: a thin `#[wasm_bindgen]` layer over [`crate::Engine`]. Errors cross as
//! JS `Error`s with a stable `code` property; nothing here panics.

use js_sys::{Atomics, Function, Int32Array, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::eval::Span;
use crate::extract::Extractor;
use crate::gguf::ByteSource;
use crate::model::Adapter;
use crate::redact::{Operator, Redactor};
use crate::schema::Schema;
use crate::spans::{Entity, OffsetMap, Source, Unit};

#[wasm_bindgen(start)]
fn start() {
    // A panic would be a bug; make it visible in the console instead of a bare trap.
    std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&info.to_string().into())));
}

fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

/// The model file as a JS `Uint8Array`: tensors are copied into wasm memory one at a
/// time, never the whole file at once.
struct JsBytes(Uint8Array);

impl ByteSource for JsBytes {
    fn size(&self) -> u64 {
        self.0.length() as u64
    }
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = offset as u32;
        self.0.subarray(start, start + buf.len() as u32).copy_to(buf);
        Ok(())
    }
}

/// The engine: a loaded model, ready to generate and to extract.
#[wasm_bindgen]
pub struct Engine(Extractor);

/// An entity as JavaScript sees it: offsets in UTF-16 code units (`String.prototype.slice`).
#[derive(serde::Serialize)]
struct JsEntity<'a> {
    label: &'a str,
    start: usize,
    end: usize,
    text: &'a str,
    score: f32,
    source: Source,
}

fn js_entity<'a>(map: &OffsetMap, e: &'a Entity) -> JsEntity<'a> {
    let (start, end) = map.span(e.start, e.end, Unit::Utf16);
    JsEntity {
        label: &e.label,
        start,
        end,
        text: &e.text,
        score: e.score,
        source: e.source,
    }
}

fn to_js<T: serde::Serialize>(v: &T) -> std::result::Result<JsValue, JsValue> {
    // Plain objects, not Maps, for serde_json::Value and structs alike.
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error(Error::Compute(e.to_string())))
}

#[wasm_bindgen]
impl Engine {
    /// Loads a GGUF model from its bytes.
    pub fn load(bytes: Uint8Array) -> std::result::Result<Engine, JsValue> {
        crate::Engine::load(&JsBytes(bytes))
            .map(|e| Engine(Extractor::new(e)))
            .map_err(js_error)
    }

    /// Applies a fine-tuning adapter file (safetensors), checked against `sha256` when
    /// given and against the model's fingerprint; no bytes: back to the base model.
    #[wasm_bindgen(js_name = setAdapter)]
    pub fn set_adapter(
        &mut self,
        bytes: Option<Uint8Array>,
        sha256: Option<String>,
    ) -> std::result::Result<(), JsValue> {
        let adapter = match bytes {
            Some(b) => Some(Adapter::from_bytes(&b.to_vec(), sha256.as_deref()).map_err(js_error)?),
            None => None,
        };
        self.0.engine.set_adapter(adapter.as_ref()).map_err(js_error)
    }

    /// sha256 of the adapter in use, or `undefined` for the base model.
    pub fn adapter(&self) -> Option<String> {
        self.0.engine.adapter.clone()
    }

    /// Which compute backend runs the model: `"cpu"` (SIMD128) for now.
    pub fn backend(&self) -> String {
        "cpu".into()
    }

    /// The model's name from its metadata.
    #[wasm_bindgen(js_name = modelName)]
    pub fn model_name(&self) -> String {
        self.0.engine.name.clone()
    }

    /// Token ids of `text` as user text (no BOS, never control tokens).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.0.engine.tokenizer.encode(text)
    }

    /// Greedy generation. `on_token(id, text)` is called for every new token; returns
    /// `{text, tokens, prompt_tokens, prefill_ms, decode_ms, stopped_at_eos}`.
    pub fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        on_token: Option<Function>,
    ) -> std::result::Result<JsValue, JsValue> {
        let generation = self
            .0
            .engine
            .generate(prompt, max_tokens, |id, piece| {
                if let Some(f) = &on_token {
                    // A throwing callback must not abort generation.
                    let _ = f.call2(&JsValue::NULL, &id.into(), &piece.into());
                }
            })
            .map_err(js_error)?;
        to_js(&generation)
    }

    /// Extracts the entities of `schema` (JSON) from `text`. `on_entity(entity)` sees each
    /// entity as soon as it is final; returns `{entities, windows, decoded_tokens}`, offsets in
    /// UTF-16 units.
    /// `cancel`: an `Int32Array` over a `SharedArrayBuffer`; storing 1 in its first slot
    /// (from another thread) stops the extraction with the error code `cancelled`.
    /// `on_progress(done, total)` is told before each window of a long text.
    pub fn extract(
        &mut self,
        text: &str,
        schema: &str,
        on_entity: Option<Function>,
        cancel: Option<Int32Array>,
        on_progress: Option<Function>,
    ) -> std::result::Result<JsValue, JsValue> {
        let schema = Schema::from_json(schema).map_err(js_error)?;
        self.0.cancelled = match cancel {
            Some(flag) => Box::new(move || Atomics::load(&flag, 0).is_ok_and(|v| v != 0)),
            None => Box::new(|| false),
        };
        self.0.progress = match on_progress {
            Some(f) => Box::new(move |done, total| {
                let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
            }),
            None => Box::new(|_, _| {}),
        };
        let map = OffsetMap::new(text);
        let r = self
            .0
            .extract(text, &schema, |e| {
                if let (Some(f), Ok(v)) = (&on_entity, to_js(&js_entity(&map, e))) {
                    let _ = f.call1(&JsValue::NULL, &v);
                }
            })
            .map_err(js_error)?;
        let entities: Vec<JsEntity> = r.entities.iter().map(|e| js_entity(&map, e)).collect();
        let windows: Vec<(usize, usize)> = r
            .windows
            .iter()
            .map(|w| map.span(w.start, w.end, Unit::Utf16))
            .collect();
        to_js(&serde_json::json!({ "entities": entities, "windows": windows, "decoded_tokens": r.decoded_tokens }))
    }
}

/// The adapter shipped with this build: `{file, sha256}` (under `models/`), or `undefined`.
#[wasm_bindgen(js_name = defaultAdapter)]
pub fn default_adapter() -> std::result::Result<JsValue, JsValue> {
    match crate::default_adapter() {
        Some((file, sha256)) => to_js(&serde_json::json!({ "file": file, "sha256": sha256 })),
        None => Ok(JsValue::UNDEFINED),
    }
}

/// An entity as JavaScript hands it back for redaction (UTF-16 offsets).
#[derive(serde::Deserialize)]
struct JsSpan {
    label: String,
    start: usize,
    end: usize,
}

/// Redacts `text` given its entities (UTF-16 offsets, as `extract` returns them) and
/// `operators`, a map from label to operator (`replace`, `mask:*:4`, `hash:SALT`,
/// `pseudonym`; the key `*` for every other label). Returns `{text, replacements}`, the
/// replacements' offsets in UTF-16 units of the original text.
#[wasm_bindgen]
pub fn redact(text: &str, entities: JsValue, operators: JsValue) -> std::result::Result<JsValue, JsValue> {
    let bad = |e: serde_wasm_bindgen::Error| js_error(Error::InvalidSchema(e.to_string()));
    let spans: Vec<JsSpan> = serde_wasm_bindgen::from_value(entities).map_err(bad)?;
    let ops: HashMap<String, String> = serde_wasm_bindgen::from_value(operators).map_err(bad)?;
    let mut per_label = HashMap::new();
    for (label, op) in &ops {
        per_label.insert(label.clone(), op.parse::<Operator>().map_err(js_error)?);
    }
    let default = per_label.remove("*").unwrap_or(Operator::Replace);
    let map = OffsetMap::new(text);
    let byte = |i: usize| map.convert(i, Unit::Utf16, Unit::Bytes);
    let mut entities = Vec::new();
    for s in spans {
        let (Some(start), Some(end)) = (byte(s.start), byte(s.end)) else {
            return Err(js_error(Error::InvalidSchema(format!(
                "entity {}..{} is not on character boundaries of the text",
                s.start, s.end
            ))));
        };
        entities.push(Entity {
            text: text.get(start..end).unwrap_or_default().to_string(),
            label: s.label,
            start,
            end,
            score: 1.0,
            source: Source::Model,
        });
    }
    entities.sort_by_key(|e| e.start);
    let mut r = Redactor::new(default, per_label).redact(text, &entities);
    for rep in &mut r.replacements {
        (rep.start, rep.end) = map.span(rep.start, rep.end, Unit::Utf16);
    }
    to_js(&r)
}

/// The prompt extraction gives the model for `text` (one window) and `schema` (JSON): the
/// schema prefix, then the document. For anchors that run the same prompt elsewhere.
#[wasm_bindgen(js_name = extractionPrompt)]
pub fn extraction_prompt(schema: &str, text: &str) -> std::result::Result<String, JsValue> {
    let schema = Schema::from_json(schema).map_err(js_error)?;
    Ok(crate::prompt::prefix(&schema) + &crate::prompt::document(text))
}

/// Checks a schema (JSON) as extraction would; throws the typed error (`invalid_schema`).
#[wasm_bindgen(js_name = validateSchema)]
pub fn validate_schema(schema: &str) -> std::result::Result<(), JsValue> {
    Schema::from_json(schema).and_then(|s| s.validate()).map_err(js_error)
}

/// Strict and partial P/R/F1 over documents, as `anote eval` and `score.py` compute them.
/// Spans are `{start, end, label}` in any one unit (the eval files use code points).
#[wasm_bindgen]
#[derive(Default)]
pub struct Scorer(crate::eval::Scorer);

#[wasm_bindgen]
impl Scorer {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Scorer {
        Scorer::default()
    }

    pub fn add(&mut self, gold: JsValue, pred: JsValue) -> std::result::Result<(), JsValue> {
        let spans = |v: JsValue| -> std::result::Result<Vec<Span>, JsValue> {
            let v: Vec<JsSpan> =
                serde_wasm_bindgen::from_value(v).map_err(|e| js_error(Error::BadGold(e.to_string())))?;
            Ok(v.into_iter().map(|s| (s.start, s.end, s.label)).collect())
        };
        self.0.add(&spans(gold)?, &spans(pred)?);
        Ok(())
    }

    /// `{documents, strict, partial}`, each with `per_label`, `micro` and `macro_f1`.
    pub fn finish(&self) -> std::result::Result<JsValue, JsValue> {
        to_js(&self.0.finish())
    }
}
