//! The browser API: a thin `#[wasm_bindgen]` layer over [`crate::Engine`]. Errors cross as
//! JS `Error`s with a stable `code` property; nothing here panics.

use js_sys::{Atomics, Function, Int32Array, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::runtime::backend::webgpu::{Gpu, GpuOptions};

use crate::error::{Error, Result};
use crate::ner::batch::{Settings, DEFAULT_BATCH};
use crate::ner::eval::Span;
use crate::ner::extract::{Extraction, Extractor, Options, Progress};
use crate::ner::redact::{Key, Redactor};
use crate::ner::schema::Schema;
use crate::ner::spans::{Entity, OffsetMap, Source, Unit};
use crate::runtime::gguf::ByteSource;
use crate::runtime::model::Adapter;

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

/// A model file (or a stored prompt cache) as JS holds it: tensors are copied into wasm
/// memory one at a time, never the whole file at once. A file handle is closed when this
/// is dropped: a CPU engine keeps the model's to read the embedding's rows from.
enum JsBytes {
    Array(Uint8Array),
    /// A file in the origin private file system (the page's model cache), read with a
    /// synchronous access handle straight into wasm memory: no JavaScript copy at all.
    /// Its size is asked once: each question is a round trip to the browser process, and
    /// the GGUF parser asks before every read.
    File(web_sys::FileSystemSyncAccessHandle, u64),
    /// A Blob (a local file the user picked) is read a slice at a time, so the renderer
    /// never holds the whole model file beside the weights in wasm memory. Workers can
    /// read Blobs synchronously, which the loader needs.
    Blob(web_sys::Blob, web_sys::FileReaderSync),
}

fn read_error(e: JsValue) -> Error {
    Error::Io(format!("reading the file: {e:?}"))
}

impl JsBytes {
    fn new(source: JsValue) -> Result<JsBytes> {
        if let Some(file) = source.dyn_ref::<web_sys::FileSystemSyncAccessHandle>() {
            let size = file.get_size().map_err(read_error)?;
            return Ok(JsBytes::File(file.clone(), size as u64));
        }
        if let Some(blob) = source.dyn_ref::<web_sys::Blob>() {
            let reader = web_sys::FileReaderSync::new()
                .map_err(|_| Error::Io("a Blob can be read only in a Web Worker".into()))?;
            return Ok(JsBytes::Blob(blob.clone(), reader));
        }
        match source.dyn_into::<Uint8Array>() {
            Ok(a) => Ok(JsBytes::Array(a)),
            Err(_) => Err(Error::Io(
                "a file is a Uint8Array, a Blob or a FileSystemSyncAccessHandle".into(),
            )),
        }
    }

    /// Whether rows can be read from it later without holding the file in memory.
    fn is_file(&self) -> bool {
        matches!(self, JsBytes::File(..) | JsBytes::Blob(..))
    }
}

impl Drop for JsBytes {
    fn drop(&mut self) {
        if let JsBytes::File(f, _) = self {
            f.close();
        }
    }
}

impl ByteSource for JsBytes {
    fn size(&self) -> u64 {
        match self {
            JsBytes::Array(a) => a.length() as u64,
            JsBytes::File(_, size) => *size,
            JsBytes::Blob(b, _) => b.size() as u64,
        }
    }
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            JsBytes::Array(a) => {
                let start = offset as u32;
                a.subarray(start, start + buf.len() as u32).copy_to(buf);
            }
            JsBytes::File(f, _) => {
                let at = web_sys::FileSystemReadWriteOptions::new();
                at.set_at_f64(offset as f64);
                let n = f.read_with_u8_array_and_options(buf, &at).map_err(read_error)?;
                if n as usize != buf.len() {
                    return Err(Error::Io(format!(
                        "reading the file: {n} of {} bytes at offset {offset}",
                        buf.len()
                    )));
                }
            }
            JsBytes::Blob(b, reader) => {
                let (start, end) = (offset as f64, (offset + buf.len() as u64) as f64);
                let slice = b.slice_with_f64_and_f64(start, end).map_err(read_error)?;
                let data = reader.read_as_array_buffer(&slice).map_err(read_error)?;
                Uint8Array::new(&data).copy_to(buf);
            }
        }
        Ok(())
    }
}

/// A model file whose reads are reported: `on_progress(bytes read, size)` at most once per
/// percent, as the weights are read and prepared a tensor at a time (the loading bar).
struct Reported {
    source: Rc<JsBytes>,
    on_progress: Option<Function>,
    read: std::cell::Cell<u64>,
}

impl ByteSource for Reported {
    fn size(&self) -> u64 {
        self.source.size()
    }
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.source.read_into(offset, buf)?;
        let size = self.size().max(1);
        let before = self.read.get();
        // A fallback from the GPU reads the file again: the count stays at its size.
        let after = (before + buf.len() as u64).min(size);
        self.read.set(after);
        if let Some(f) = &self.on_progress {
            if after * 100 / size > before * 100 / size {
                let _ = f.call2(&JsValue::NULL, &(after as f64).into(), &(size as f64).into());
            }
        }
        Ok(())
    }
}

/// The engine on the CPU. A model in a file (the page's model cache, or a file the user
/// picked) keeps it open: the embedding's rows are read from it as they are looked up, and
/// its 178 MB never enter wasm memory (see [`crate::runtime::model::embedding`]).
fn on_cpu(src: &Reported, file: Rc<JsBytes>) -> Result<crate::Engine> {
    match file.is_file() {
        true => crate::Engine::open(src, file),
        false => crate::Engine::load(src),
    }
}

/// A text and the entities found in it.
type Extracted = (String, Vec<Entity>);

/// The engine: a loaded model, ready to generate and to extract. Compute is async (a
/// WebGPU readback resolves from the event loop), so `generate` and `extract` return
/// promises; the worker runs one request at a time.
#[wasm_bindgen]
pub struct Engine {
    x: Rc<RefCell<Extractor>>,
    /// The last text extracted and its entities (byte offsets), which `redactLast` redacts:
    /// the page changes operators without sending the text back or converting offsets twice.
    last: Rc<RefCell<Option<Extracted>>>,
    /// `webgpu` or `cpu`; fixed at load, like the name, so that asking never waits.
    backend: &'static str,
    /// The GPU adapter's name, or why the CPU runs the model instead of WebGPU.
    device: String,
    name: String,
}

/// What an explicit `webgpu` asks for: any adapter, software or not.
const SOFTWARE_TOO: GpuOptions = GpuOptions {
    allow_software: true,
    broken_kernel: false,
    profile: false,
};

fn busy() -> JsValue {
    js_error(Error::Compute("the engine is busy with another request".into()))
}

fn to_js<T: serde::Serialize>(v: &T) -> std::result::Result<JsValue, JsValue> {
    // Plain objects, not Maps, for serde_json::Value and structs alike.
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error(Error::Compute(e.to_string())))
}

#[wasm_bindgen]
impl Engine {
    /// Loads a GGUF model from its bytes (a `Uint8Array`, or a `Blob` read a slice at a
    /// time). `backend`: `"auto"` (the default) uses a hardware
    /// WebGPU adapter; `"webgpu"` any adapter, software renderers too; both fall back to
    /// the CPU when there is none, a kernel does not compile or loading fails (`device`
    /// then says why). `"cpu"` skips WebGPU. `"webgpu-broken"` injects a kernel that does
    /// not compile, to test the fallback. `on_progress(read, size)` follows the reading
    /// of the weights, in bytes.
    pub async fn load(
        source: JsValue,
        backend: Option<String>,
        on_progress: Option<Function>,
    ) -> std::result::Result<Engine, JsValue> {
        let file = Rc::new(JsBytes::new(source).map_err(js_error)?);
        let src = Reported {
            source: file.clone(),
            on_progress,
            read: Default::default(),
        };
        let backend = backend.unwrap_or_else(|| "auto".into());
        let gpu = match backend.as_str() {
            "cpu" => Err(Error::Gpu("the CPU was asked for".into())),
            "auto" => Gpu::new(GpuOptions::default()).await,
            "webgpu" => Gpu::new(SOFTWARE_TOO).await,
            "webgpu-broken" => {
                let broken = GpuOptions {
                    broken_kernel: true,
                    ..SOFTWARE_TOO
                };
                Gpu::new(broken).await
            }
            other => {
                return Err(js_error(Error::Gpu(format!(
                    "unknown backend {other:?}: cpu, webgpu or auto"
                ))))
            }
        };
        let (engine, device) = match gpu {
            Ok(gpu) => {
                let name = gpu.adapter.clone();
                match crate::Engine::load_webgpu(&src, Rc::new(gpu)) {
                    Ok(e) => (e, name),
                    // A model error (not a GGUF, truncated…) is the same on the CPU: say it.
                    Err(e) if e.code() != "gpu" => return Err(js_error(e)),
                    Err(e) => (on_cpu(&src, file).map_err(js_error)?, format!("CPU fallback: {e}")),
                }
            }
            Err(e) => (on_cpu(&src, file).map_err(js_error)?, format!("CPU: {e}")),
        };
        Ok(Engine {
            backend: engine.model.backend(),
            name: engine.name.clone(),
            x: Rc::new(RefCell::new(Extractor::new(engine))),
            last: Rc::default(),
            device,
        })
    }

    /// Runs `f` on the extractor inside a promise; a second call while one runs is refused,
    /// which is why `f` may hold the extractor across its awaits.
    fn run<F, Fut>(&self, f: F) -> Promise
    where
        F: FnOnce(Rc<RefCell<Extractor>>) -> Fut + 'static,
        Fut: std::future::Future<Output = std::result::Result<JsValue, JsValue>> + 'static,
    {
        let x = self.x.clone();
        future_to_promise(async move {
            if x.try_borrow_mut().is_err() {
                return Err(busy());
            }
            f(x).await
        })
    }

    /// Applies a fine-tuning adapter file (safetensors), checked against `sha256` when
    /// given and against the model's fingerprint; no bytes: back to the base model.
    #[wasm_bindgen(js_name = setAdapter)]
    pub fn set_adapter(&self, bytes: Option<Uint8Array>, sha256: Option<String>) -> std::result::Result<(), JsValue> {
        let adapter = match bytes {
            Some(b) => Some(Adapter::from_bytes(&b.to_vec(), sha256.as_deref()).map_err(js_error)?),
            None => None,
        };
        let mut x = self.x.try_borrow_mut().map_err(|_| busy())?;
        x.engine.set_adapter(adapter.as_ref()).map_err(js_error)
    }

    /// sha256 of the adapter in use, or `undefined` for the base model.
    pub fn adapter(&self) -> std::result::Result<Option<String>, JsValue> {
        Ok(self.x.try_borrow().map_err(|_| busy())?.engine.adapter.clone())
    }

    /// Which compute backend runs the model: `"webgpu"` or `"cpu"` (SIMD128).
    pub fn backend(&self) -> String {
        self.backend.into()
    }

    /// The GPU adapter's name, or why the CPU runs the model.
    pub fn device(&self) -> String {
        self.device.clone()
    }

    /// The model's name from its metadata.
    #[wasm_bindgen(js_name = modelName)]
    pub fn model_name(&self) -> String {
        self.name.clone()
    }

    /// Checks a schema (JSON) as extraction will, its prompt's length in this model's
    /// context included; returns that length in tokens or throws `invalid_schema`.
    #[wasm_bindgen(js_name = checkSchema)]
    pub fn check_schema(&self, schema: &str) -> std::result::Result<usize, JsValue> {
        let schema = Schema::from_json(schema).map_err(js_error)?;
        let x = self.x.try_borrow().map_err(|_| busy())?;
        x.check_schema(&schema).map_err(js_error)
    }

    /// Checks a schema (JSON) as `checkSchema` does and reads its prompt into the model's
    /// cache ahead of the first `extract` with it, which then starts at the text; resolves to
    /// the prompt's length in tokens.
    pub fn prepare(&self, schema: String) -> Promise {
        #[allow(clippy::await_holding_refcell_ref)] // see `run`
        self.run(move |x| async move {
            let schema = Schema::from_json(&schema).map_err(js_error)?;
            let tokens = x.borrow_mut().prepare(&schema).await.map_err(js_error)?;
            Ok(tokens.into())
        })
    }

    /// The name under which a store keeps `schema`'s prepared prompt (a hash of the prompt,
    /// the model, the adapter, the backend and the engine build), or `undefined` where the
    /// cache cannot leave the backend (WebGPU); throws `invalid_schema` as `checkSchema` does.
    #[wasm_bindgen(js_name = promptKey)]
    pub fn prompt_key(&self, schema: &str) -> std::result::Result<Option<String>, JsValue> {
        let schema = Schema::from_json(schema).map_err(js_error)?;
        let x = self.x.try_borrow().map_err(|_| busy())?;
        x.prompt_key(&schema).map_err(js_error)
    }

    /// Writes the cache of `schema`'s prompt, read by `prepare` (or by the last `extract`
    /// with it), into `file` (a `FileSystemSyncAccessHandle`, from its start) straight from
    /// wasm memory; returns the bytes written. Throws `stored_prompt` if it was not read.
    #[wasm_bindgen(js_name = savePrepared)]
    pub fn save_prepared(
        &self,
        schema: &str,
        file: &web_sys::FileSystemSyncAccessHandle,
    ) -> std::result::Result<f64, JsValue> {
        let schema = Schema::from_json(schema).map_err(js_error)?;
        let x = self.x.try_borrow().map_err(|_| busy())?;
        let mut at = 0.0;
        x.save_prepared(&schema, &mut |piece| {
            let options = web_sys::FileSystemReadWriteOptions::new();
            options.set_at_f64(at);
            let n = file
                .write_with_u8_array_and_options(piece, &options)
                .map_err(|e| Error::Io(format!("writing the prompt cache: {e:?}")))?;
            if n as usize != piece.len() {
                return Err(Error::Io(format!(
                    "writing the prompt cache: {n} of {} bytes",
                    piece.len()
                )));
            }
            at += n;
            Ok(())
        })
        .map_err(js_error)?;
        Ok(at)
    }

    /// As `prepare`, from a cache that `savePrepared` wrote (a `FileSystemSyncAccessHandle`,
    /// a Blob or a Uint8Array), read straight into wasm memory; returns the prompt's length
    /// in tokens. Throws `stored_prompt` unless it was made for this schema, model, adapter,
    /// backend and engine build.
    #[wasm_bindgen(js_name = loadPrepared)]
    pub fn load_prepared(&self, schema: &str, source: JsValue) -> std::result::Result<usize, JsValue> {
        let schema = Schema::from_json(schema).map_err(js_error)?;
        let source = JsBytes::new(source).map_err(js_error)?;
        let mut x = self.x.try_borrow_mut().map_err(|_| busy())?;
        x.load_prepared(&schema, &source).map_err(js_error)
    }

    /// Token ids of `text` as user text (no BOS, never control tokens).
    pub fn tokenize(&self, text: &str) -> std::result::Result<Vec<u32>, JsValue> {
        Ok(self.x.try_borrow().map_err(|_| busy())?.engine.tokenizer.encode(text))
    }

    /// Greedy generation. `on_token(id, text)` is called for every new token; returns
    /// `{text, tokens, prompt_tokens, prefill_ms, decode_ms, stopped_at_eos}`.
    pub fn generate(&self, prompt: String, max_tokens: usize, on_token: Option<Function>) -> Promise {
        #[allow(clippy::await_holding_refcell_ref)] // see `run`
        self.run(move |x| async move {
            let mut x = x.borrow_mut();
            let generation = x
                .engine
                .generate(&prompt, max_tokens, |id, piece| {
                    if let Some(f) = &on_token {
                        // A throwing callback must not abort generation.
                        let _ = f.call2(&JsValue::NULL, &id.into(), &piece.into());
                    }
                })
                .await
                .map_err(js_error)?;
            to_js(&generation)
        })
    }

    /// Extracts the entities of `schema` (JSON) from `text`. `on_entity(entity)` sees each
    /// entity as soon as it is final; returns `{entities, windows, decoded_tokens}`, offsets in
    /// UTF-16 units.
    /// `cancel`: an `Int32Array` over a `SharedArrayBuffer`; storing 1 in its first slot
    /// (from another thread) stops the extraction with the error code `cancelled`.
    /// `on_progress(done, total, share)`: windows whose entities are final, of all, and the
    /// estimated share of the work done, after every decoding step (see `Progress`).
    /// `batch`: windows decoded at once (the same entities whatever it is; default 8).
    pub fn extract(
        &self,
        text: String,
        schema: String,
        on_entity: Option<Function>,
        cancel: Option<Int32Array>,
        on_progress: Option<Function>,
        batch: Option<usize>,
    ) -> Promise {
        let last = self.last.clone();
        #[allow(clippy::await_holding_refcell_ref)] // see `run`
        self.run(move |x| async move {
            let mut x = x.borrow_mut();
            last.replace(None);
            let batch = batch.unwrap_or(DEFAULT_BATCH).max(1);
            let entities = extract(&mut x, &text, &schema, on_entity, cancel, on_progress, batch).await?;
            let result = extraction_js(&text, &entities);
            last.replace(Some((text, entities.entities)));
            result
        })
    }

    /// The last `extract`'s text and its entities scoring at least `min_score`, as a line of
    /// the eval JSONL files (`anote extract` and `anote eval` write the same):
    /// `{text, entities: [{label, start, end, text, score, source}]}`, offsets in code
    /// points. Throws `bad_input` when nothing has been extracted.
    #[wasm_bindgen(js_name = exportLast)]
    pub fn export_last(&self, min_score: f32) -> std::result::Result<JsValue, JsValue> {
        let last = self.last.try_borrow().map_err(|_| busy())?;
        let (text, entities) = last
            .as_ref()
            .ok_or_else(|| js_error(Error::BadInput("nothing has been extracted to export".into())))?;
        let map = OffsetMap::new(text);
        let entities: Vec<_> = entities
            .iter()
            .filter(|e| e.score >= min_score)
            .map(|e| map.entity(e, Unit::CodePoints))
            .collect();
        to_js(&serde_json::json!({ "text": text, "entities": entities }))
    }

    /// Redacts the text of the last `extract` with its entities (see [`redact`] for
    /// `operators`, `key` and the result); throws `bad_input` when there is none.
    #[wasm_bindgen(js_name = redactLast)]
    pub fn redact_last(&self, operators: JsValue, key: Option<String>) -> std::result::Result<JsValue, JsValue> {
        let last = self.last.try_borrow().map_err(|_| busy())?;
        let (text, entities) = last
            .as_ref()
            .ok_or_else(|| js_error(Error::BadInput("nothing has been extracted to redact".into())))?;
        redact_entities(text, entities, operators, key)
    }

    /// Scores extraction with `schema` (JSON) on `gold`, eval-format JSONL (code points), as
    /// `anote eval` does: `{scores, broken: [{line, message}], documents: [{id, predicted,
    /// missed, spurious}]}`, spans `{start, end, label, text}` in code points.
    /// `on_progress(done, total)` counts the lines; `cancel` as for `extract`.
    pub fn evaluate(
        &self,
        gold: String,
        schema: String,
        cancel: Option<Int32Array>,
        on_progress: Option<Function>,
    ) -> Promise {
        #[allow(clippy::await_holding_refcell_ref)] // see `run`
        self.run(move |x| async move {
            let schema = Schema::from_json(&schema).map_err(js_error)?;
            let mut x = x.borrow_mut();
            let cancelled = cancel_flag(cancel);
            let options = Options {
                cancelled: &cancelled,
                ..Options::default()
            };
            let predict = async |doc: &crate::ner::eval::Document| -> Result<Vec<Span>> {
                let text = doc.text.as_deref().unwrap_or_default();
                let found = x.extract(text, &schema, &options, |_| {}).await?;
                Ok(crate::ner::eval::code_point_spans(text, &found.entities))
            };
            let progress = |done: usize, total: usize| {
                if let Some(f) = &on_progress {
                    let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
                }
            };
            let evaluation = crate::ner::eval::evaluate(&gold, None, predict, progress)
                .await
                .map_err(js_error)?;
            to_js(&evaluation)
        })
    }
}

/// The extractor's cancellation check: `cancel[0] != 0`, set from another thread.
fn cancel_flag(cancel: Option<Int32Array>) -> impl Fn() -> bool {
    move || {
        cancel
            .as_ref()
            .is_some_and(|flag| Atomics::load(flag, 0).is_ok_and(|v| v != 0))
    }
}

async fn extract(
    x: &mut Extractor,
    text: &str,
    schema: &str,
    on_entity: Option<Function>,
    cancel: Option<Int32Array>,
    on_progress: Option<Function>,
    batch: usize,
) -> std::result::Result<Extraction, JsValue> {
    let schema = Schema::from_json(schema).map_err(js_error)?;
    let cancelled = cancel_flag(cancel);
    let progress = |p: Progress| {
        if let Some(f) = &on_progress {
            let _ = f.call3(&JsValue::NULL, &p.done.into(), &p.total.into(), &p.share.into());
        }
    };
    let options = Options {
        cancelled: &cancelled,
        progress: &progress,
        decoding: Settings {
            batch,
            ..Settings::default()
        },
    };
    let map = OffsetMap::new(text);
    x.extract(text, &schema, &options, |e| {
        if let (Some(f), Ok(v)) = (&on_entity, to_js(&map.entity(e, Unit::Utf16))) {
            let _ = f.call1(&JsValue::NULL, &v);
        }
    })
    .await
    .map_err(js_error)
}

/// `{entities, windows, decoded_tokens}` with UTF-16 offsets into `text`.
fn extraction_js(text: &str, r: &Extraction) -> std::result::Result<JsValue, JsValue> {
    let map = OffsetMap::new(text);
    let entities: Vec<_> = r.entities.iter().map(|e| map.entity(e, Unit::Utf16)).collect();
    let windows: Vec<(usize, usize)> = r
        .windows
        .iter()
        .map(|w| map.span(w.start, w.end, Unit::Utf16))
        .collect();
    to_js(&serde_json::json!({ "entities": entities, "windows": windows, "decoded_tokens": r.decoded_tokens }))
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

/// Redacts `text` given its entities (UTF-16 offsets, as `extract` returns them),
/// `operators`, a map from label to operator (`replace`, `mask:*:4`, `hash`, `pseudonym`;
/// the key `*` for every other label), and `key`, the secret of `hash` and `pseudonym`
/// (at least 16 bytes of text; the page keeps one per origin). Returns `{text, replacements}`: per replacement its label,
/// `start`/`end` in the original text and `redacted_start`/`redacted_end` in the redacted
/// one (UTF-16 units), operator and replacement; never an original value.
#[wasm_bindgen]
pub fn redact(
    text: &str,
    entities: JsValue,
    operators: JsValue,
    key: Option<String>,
) -> std::result::Result<JsValue, JsValue> {
    let bad = |e: serde_wasm_bindgen::Error| js_error(Error::BadInput(format!("entities: {e}")));
    let spans: Vec<JsSpan> = serde_wasm_bindgen::from_value(entities).map_err(bad)?;
    let map = OffsetMap::new(text);
    let byte = |i: usize| map.convert(i, Unit::Utf16, Unit::Bytes);
    let mut entities = Vec::new();
    for s in spans {
        let (Some(start), Some(end)) = (byte(s.start), byte(s.end)) else {
            return Err(js_error(Error::BadInput(format!(
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
    redact_entities(text, &entities, operators, key)
}

/// [`redact`] with entities in byte offsets.
fn redact_entities(
    text: &str,
    entities: &[Entity],
    operators: JsValue,
    key: Option<String>,
) -> std::result::Result<JsValue, JsValue> {
    let ops: HashMap<String, String> =
        serde_wasm_bindgen::from_value(operators).map_err(|e| js_error(Error::InvalidSchema(e.to_string())))?;
    let key = key.map(|k| Key::new(k.as_bytes())).transpose().map_err(js_error)?;
    let redactor = Redactor::from_operators(&ops, key).map_err(js_error)?;
    let mut r = redactor.redact(text, entities);
    let map = OffsetMap::new(text);
    let redacted = OffsetMap::new(&r.text);
    for rep in &mut r.replacements {
        (rep.start, rep.end) = map.span(rep.start, rep.end, Unit::Utf16);
        (rep.redacted_start, rep.redacted_end) = redacted.span(rep.redacted_start, rep.redacted_end, Unit::Utf16);
    }
    to_js(&r)
}

/// The prompt extraction gives the model for `text` (one window) and `schema` (JSON): the
/// schema prefix, then the document. For anchors that run the same prompt elsewhere.
#[wasm_bindgen(js_name = extractionPrompt)]
pub fn extraction_prompt(schema: &str, text: &str) -> std::result::Result<String, JsValue> {
    let schema = Schema::from_json(schema).map_err(js_error)?;
    Ok(crate::ner::prompt::prefix(&schema) + &crate::ner::prompt::document(text))
}

/// The built-in recognizers a schema type may name: `[{name, description}]`.
#[wasm_bindgen]
pub fn recognizers() -> std::result::Result<JsValue, JsValue> {
    let list: Vec<serde_json::Value> = crate::ner::recognizers::ALL
        .iter()
        .map(|r| serde_json::json!({ "name": r.name(), "description": r.description() }))
        .collect();
    to_js(&list)
}

/// Checks a schema (JSON) as extraction would; throws the typed error (`invalid_schema`).
#[wasm_bindgen(js_name = validateSchema)]
pub fn validate_schema(schema: &str) -> std::result::Result<(), JsValue> {
    Schema::from_json(schema).and_then(|s| s.validate()).map_err(js_error)
}

/// Runs our CPU kernels (the Q8 activation quantization against the plain loop, then the
/// Q8 and Q4_K/Q6_K products against f32 references; simd128 in this build):
/// `[[case, difference]]`; anything above 1e-5 is a bug.
#[wasm_bindgen(js_name = checkCpuKernels)]
pub fn check_cpu_kernels() -> std::result::Result<JsValue, JsValue> {
    let mut checks = crate::runtime::backend::q8::self_check();
    checks.extend(crate::runtime::backend::kquant::self_check().map_err(js_error)?);
    to_js(&checks)
}

/// Runs every WebGPU kernel against its CPU twin on this browser's adapter:
/// `{adapter, checks: [{kernel, case, max_rel_diff, tolerance}]}`; throws code `gpu` when
/// there is no WebGPU.
#[wasm_bindgen(js_name = checkKernels)]
pub async fn check_kernels() -> std::result::Result<JsValue, JsValue> {
    let gpu = Gpu::new(SOFTWARE_TOO).await.map_err(js_error)?;
    let checks = crate::runtime::backend::webgpu::ops::check_kernels(&gpu)
        .await
        .map_err(js_error)?;
    to_js(&serde_json::json!({ "adapter": gpu.adapter, "checks": checks }))
}
