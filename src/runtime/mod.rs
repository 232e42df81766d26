//! The language-model runtime: a GGUF file's bytes → [`tokenizer`] and [`model`] (its ops
//! in [`backend`], CPU and WebGPU) → [`engine::Engine`], which generates. Knows nothing of
//! entities; the extraction pipeline (`crate::ner`) is built on it.

pub mod backend;
pub(crate) mod clock;
pub mod engine;
pub mod gguf;
pub mod model;
pub mod tokenizer;
