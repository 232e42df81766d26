//! Any bytes as a model file: parsing, loading (tokenizer and weights) and, when a file
//! loads, one short forward pass must end in a value or a typed error, never a panic, a
//! hang or an allocation the file cannot justify. Seed: a one-layer tiny Gemma 3.
#![no_main]

use anote_ner::Engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = anote_ner::runtime::gguf::Gguf::parse(data);
    if let Ok(mut engine) = Engine::load(data) {
        let _ = pollster::block_on(engine.generate("ab c", 2, |_, _| {}));
    }
});
