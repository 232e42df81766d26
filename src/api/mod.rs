//! The API edges over [`crate::ner::extract::Extractor`]: the browser's (`wasm`, wasm32
//! only) and the Python package's native half (`python`, the `python` feature). Offsets
//! leave the engine here, in each caller's unit (UTF-16, code points). The CLI is
//! `bin/anote.rs`; it shares the folder of read schema prompts with Python
//! ([`prompt_store`], not in wasm: the page keeps them in OPFS).

#[cfg(not(target_arch = "wasm32"))]
pub mod prompt_store;

#[cfg(feature = "python")]
mod python;
#[cfg(target_arch = "wasm32")]
mod wasm;
