//! The extraction pipeline, on the runtime: text + [`schema`] → [`extract`] (pattern
//! [`recognizers`], windows from [`chunk`], the prompt from [`prompt`], constrained
//! [`decode`]ing of many windows at once in [`batch`], offsets in [`spans`]) → entities →
//! [`redact`] or [`eval`]. [`finetune`] renders training data with the same prompt and
//! answer code; [`free_format`] is the unconstrained decoding of the answer-format study.

pub mod batch;
pub mod chunk;
pub mod decode;
pub mod eval;
pub mod extract;
pub mod finetune;
pub mod free_format;
pub mod prompt;
pub mod recognizers;
pub mod redact;
pub mod schema;
pub mod spans;
