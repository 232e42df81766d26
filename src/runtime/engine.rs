//! A loaded model with its tokenizer: what the CLI and the wasm API drive.

use std::rc::Rc;

use crate::error::{Error, Result};
use crate::runtime::backend::webgpu::Gpu;
use crate::runtime::gguf::{ByteSource, Gguf, SharedSource};
use crate::runtime::model::{self, Adapter, LanguageModel};
use crate::runtime::tokenizer::Tokenizer;

pub struct Engine {
    pub tokenizer: Tokenizer,
    pub model: Box<dyn LanguageModel>,
    pub architecture: String,
    pub name: String,
    /// Identifies the base weights for adapters ([`model::fingerprint`]).
    pub fingerprint: String,
    /// sha256 of the adapter in use, if any.
    pub adapter: Option<String>,
}

/// What one generation produced, with timings for the tokens/s figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub prefill_ms: f64,
    /// Time of the single-token forwards after the prompt (`decode_steps` of them).
    pub decode_ms: f64,
    pub decode_steps: usize,
    /// Whether generation stopped at the end-of-sequence token (else: at `max_tokens`).
    pub stopped_at_eos: bool,
}

impl Engine {
    /// Parses and loads a GGUF model from any byte source, on the CPU.
    pub fn load<S: ByteSource + ?Sized>(src: &S) -> Result<Engine> {
        Engine::load_on(src, None, None)
    }

    /// As [`Engine::load`] from `file`, which the engine keeps: the embedding's rows stay
    /// in it and are read as they are looked up (the default model's 178 MB embedding
    /// never in memory for extraction; see [`model::embedding`]). `src` is what loading
    /// reads: the same file (a view of it that reports progress, say).
    pub fn open<S: ByteSource + ?Sized>(src: &S, file: SharedSource) -> Result<Engine> {
        Engine::load_on(src, None, Some(file))
    }

    /// As [`Engine::load`], on `gpu` (see [`crate::runtime::backend::webgpu::Gpu::new`]).
    pub fn load_webgpu<S: ByteSource + ?Sized>(src: &S, gpu: Rc<Gpu>) -> Result<Engine> {
        Engine::load_on(src, Some(gpu), None)
    }

    fn load_on<S: ByteSource + ?Sized>(src: &S, gpu: Option<Rc<Gpu>>, kept: Option<SharedSource>) -> Result<Engine> {
        let g = Gguf::parse(src)?;
        let architecture = g.architecture()?.to_string();
        // Check the architecture before the tokenizer, so an unsupported model says so.
        if !matches!(architecture.as_str(), "gemma3") {
            return Err(Error::UnsupportedArchitecture(architecture));
        }
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let model = match gpu {
            Some(gpu) => model::load_webgpu(gpu, &g, src)?,
            None => model::load(&g, src, kept)?,
        };
        let name = g.str("general.name").unwrap_or(&architecture).to_string();
        Ok(Engine {
            tokenizer,
            model,
            architecture,
            name,
            fingerprint: model::fingerprint(&g, src)?,
            adapter: None,
        })
    }

    /// Applies a fine-tuning adapter (`None`: back to the base model). An adapter trained
    /// on other base weights is refused.
    pub fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        if let Some(a) = adapter {
            if a.base_fingerprint != self.fingerprint {
                return Err(Error::ForeignAdapter {
                    adapter: a.base_fingerprint.clone(),
                    model: self.fingerprint.clone(),
                });
            }
        }
        self.model.set_adapter(adapter)?;
        self.adapter = adapter.map(|a| a.sha256.clone());
        Ok(())
    }

    /// Applies the adapter shipped in `models/` (its `bytes`, checked against the sha256 in
    /// `models/manifest.json`) and returns `true`; on another base model it returns `false`
    /// and the model runs as it is, as in the page (a user's own GGUF must still work).
    pub fn use_shipped_adapter(&mut self, bytes: &[u8]) -> Result<bool> {
        let Some((_, sha256)) = crate::default_adapter() else {
            return Ok(false);
        };
        match self.set_adapter(Some(&Adapter::from_bytes(bytes, Some(&sha256))?)) {
            Ok(()) => Ok(true),
            Err(Error::ForeignAdapter { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Greedy continuation of `prompt` (BOS added when the model wants it). `on_token`
    /// sees each new token id and the text it completes (possibly empty while a
    /// multi-byte character is still being assembled from byte tokens).
    pub async fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        mut on_token: impl FnMut(u32, &str),
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let ids = self.tokenizer.encode_prompt(prompt);
        let needed = ids.len() + max_tokens.saturating_sub(1);
        if needed > self.model.max_context() {
            return Err(Error::ContextOverflow {
                needed,
                max: self.model.max_context(),
            });
        }
        self.model.truncate(0);
        let t0 = crate::runtime::clock::now_ms();
        let mut logits = self.model.forward(&ids).await?;
        let t1 = crate::runtime::clock::now_ms();
        let mut tokens = Vec::new();
        let mut pending = Vec::new();
        let mut text = String::new();
        let mut stopped_at_eos = false;
        let mut decode_steps = 0;
        while tokens.len() < max_tokens {
            let next = argmax(&logits);
            if next == self.tokenizer.eos {
                stopped_at_eos = true;
                break;
            }
            tokens.push(next);
            self.tokenizer.append_bytes(next, &mut pending);
            let piece = take_complete_utf8(&mut pending);
            text.push_str(&piece);
            on_token(next, &piece);
            if tokens.len() < max_tokens {
                logits = self.model.forward(&[next]).await?;
                decode_steps += 1;
            }
        }
        text.push_str(&String::from_utf8_lossy(&pending));
        Ok(Generation {
            text,
            tokens,
            prompt_tokens: ids.len(),
            prefill_ms: t1 - t0,
            decode_ms: crate::runtime::clock::now_ms() - t1,
            decode_steps,
            stopped_at_eos,
        })
    }
}

/// Index of the largest logit; the first one on ties (as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Removes and returns the longest valid UTF-8 prefix of `bytes`, keeping an unfinished
/// trailing character for the next token. Invalid bytes become U+FFFD.
fn take_complete_utf8(bytes: &mut Vec<u8>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let s = s.to_string();
            bytes.clear();
            s
        }
        Err(e) if e.error_len().is_none() => {
            let rest = bytes.split_off(e.valid_up_to());
            let s = String::from_utf8_lossy(bytes).into_owned();
            *bytes = rest;
            s
        }
        Err(_) => String::from_utf8_lossy(&std::mem::take(bytes)).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_released_only_when_complete() {
        let euro = "€".as_bytes();
        let mut buf = vec![b'a', euro[0]];
        assert_eq!(take_complete_utf8(&mut buf), "a");
        buf.extend_from_slice(&euro[1..]);
        assert_eq!(take_complete_utf8(&mut buf), "€");
        assert!(buf.is_empty());
        let mut bad = vec![0xff, b'x'];
        assert_eq!(take_complete_utf8(&mut bad), "\u{fffd}x");
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
    }
}
