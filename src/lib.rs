//! Anote NER: private entity extraction with a small GGUF language model that runs where
//! the text is — natively, or in the browser through WebAssembly.
//!
//! Data flows one way: [`gguf`] bytes → [`tokenizer`] + [`model`] (ops in [`backend`]) →
//! [`engine`]; then text + [`schema`] → [`extract`] ([`recognizers`], [`chunk`], [`prompt`],
//! [`decode`], offsets in [`spans`]) → entities → [`redact`] or [`eval`]. The browser API
//! lives in `wasm` and the Python API's native half in `python` (the `python` feature),
//! thin layers over [`extract::Extractor`]; the CLI is `bin/anote.rs`.

pub mod backend;
pub mod batch;
pub mod chunk;
mod clock;
pub mod decode;
pub mod engine;
pub mod error;
pub mod eval;
pub mod extract;
pub mod finetune;
pub mod free_format;
pub mod gguf;
pub mod model;
pub mod prompt;
#[cfg(feature = "python")]
mod python;
pub mod recognizers;
pub mod redact;
pub mod schema;
pub mod spans;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use engine::{Engine, Generation};
pub use error::{Error, Result};
pub use extract::{Extraction, Extractor};
pub use schema::Schema;
pub use spans::Entity;

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
