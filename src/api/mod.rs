//! The API edges over [`crate::ner::extract::Extractor`]: the browser's (`wasm`, wasm32
//! only) and the Python package's native half (`python`, the `python` feature). Offsets
//! leave the engine here, in each caller's unit (UTF-16, code points). The CLI is
//! `bin/anote.rs`.

#[cfg(feature = "python")]
mod python;
#[cfg(target_arch = "wasm32")]
mod wasm;
