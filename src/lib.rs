//! Anote NER: private entity extraction with a small GGUF language model that runs where
//! the text is — natively, or in the browser through WebAssembly.
//!
//! Three layers, each using only the ones below it: [`runtime`] (GGUF, tokenizer, model,
//! CPU and WebGPU backends, generation), [`ner`] (schema, prompt, constrained decoding,
//! recognizers, extraction, redaction, evaluation), and the API edges (`api`: wasm and
//! Python; the CLI is `bin/anote.rs`). [`error`] is shared by all.

pub mod api;
pub mod error;
pub mod ner;
pub mod runtime;

pub use error::{Error, Result};
pub use ner::extract::{Extraction, Extractor};
pub use ner::schema::Schema;
pub use ner::spans::Entity;
pub use runtime::engine::{Engine, Generation};

/// `initThreadPool(n)` for JavaScript: starts the threaded browser build's `n` helper Web
/// Workers (`www/worker.js` awaits it before it loads a model).
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;

/// File name of the default model inside `models/` (see `models/manifest.json`).
pub const DEFAULT_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// `models/manifest.json`, built in: the shipped adapter is checked against its sha256.
const MANIFEST: &str = include_str!("../models/manifest.json");

/// File name and sha256 of the fine-tuning adapter shipped in `models/`.
pub fn default_adapter() -> Option<(String, String)> {
    let m: serde_json::Value = serde_json::from_str(MANIFEST).ok()?;
    let a = &m["adapter"];
    Some((a["file"].as_str()?.to_string(), a["sha256"].as_str()?.to_string()))
}
