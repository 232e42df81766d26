//! The Python API's native half, `anote_ner._native` (the `python` feature, built by
//! maturin: `cargo xtask wheel`). The typed Python half is `python/anote_ner/`.
//!
//! The engine is not `Send` (its caches share buffers through `Rc`), so each [`Engine`]
//! owns a thread that loads the model and runs every extraction; Python waits for the
//! answer with the GIL released, and Ctrl-C cancels the extraction between decoding steps.
//! Offsets cross here as Python `str` indices (code points).

use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeWarning};
use pyo3::prelude::*;

use crate::api::prompt_store::PromptStore;
use crate::error::{Error, Result};
use crate::ner::batch::Settings;
use crate::ner::extract::{Extraction, Extractor, Options};
use crate::ner::redact::{Key, Redactor};
use crate::ner::schema::Schema;
use crate::ner::spans::{Entity, OffsetMap, Unit};
use crate::runtime::model::Adapter;

// Named `anote_ner.AnoteError`, where Python finds it again: Spark pickles the classes a job
// refers to by that name.
create_exception!(
    anote_ner,
    AnoteError,
    PyException,
    "An engine error; `code` is the stable identifier the CLI prints (`input_too_large`, `invalid_schema`...)."
);

/// The shipped adapter (`adapter="default"`), checked against `models/manifest.json` when applied.
const SHIPPED_ADAPTER: &[u8] = include_bytes!("../../models/anote-ner-lora.safetensors");

fn anote_error(py: Python<'_>, e: &Error) -> PyErr {
    let err = AnoteError::new_err(e.to_string());
    // Setting an attribute on a fresh exception object cannot fail.
    let _ = err.value(py).setattr("code", e.code());
    err
}

/// An entity as Python gets it: (label, start, end, text, score, source).
type PyEntity = (String, usize, usize, String, f32, &'static str);
/// A replacement: (label, start, end, redacted_start, redacted_end, operator, replacement,
/// original — only when asked for).
type PyReplacement = (String, usize, usize, usize, usize, &'static str, String, Option<String>);

fn py_entities(text: &str, entities: &[Entity]) -> Vec<PyEntity> {
    let map = OffsetMap::new(text);
    entities
        .iter()
        .map(|e| {
            let (start, end) = map.span(e.start, e.end, Unit::CodePoints);
            let source = match e.source {
                crate::ner::spans::Source::Model => "model",
                crate::ner::spans::Source::Pattern => "pattern",
            };
            (e.label.clone(), start, end, e.text.clone(), e.score, source)
        })
        .collect()
}

/// Work for the engine thread.
type Job = Box<dyn FnOnce(&mut Extractor) + Send>;

/// A loaded model on its own thread.
#[pyclass(frozen, module = "anote_ner._native")]
struct Engine {
    jobs: Sender<Job>,
    /// Read by the extractor between decoding steps; set when Python is interrupted.
    cancel: Arc<AtomicBool>,
    /// Windows decoded at once.
    batch: usize,
    /// Where schema prompts read once are kept for the next process.
    prompts: Option<Arc<PromptStore>>,
    #[pyo3(get)]
    model_name: String,
    /// sha256 of the adapter in use, `None` for the base model.
    #[pyo3(get)]
    adapter: Option<String>,
}

#[pymethods]
impl Engine {
    /// Loads `model` (a GGUF file) with `adapter`: `"default"` (the shipped one, when the
    /// model is its base), `"none"`, or a safetensors file. `threads` sizes the kernels'
    /// thread pool; only the first engine of a process can set it. `prompt_cache`: a
    /// folder that keeps each schema's prompt once read ([`PromptStore`]).
    #[new]
    #[pyo3(signature = (model, adapter, batch, threads=None, prompt_cache=None))]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        adapter: String,
        batch: usize,
        threads: Option<usize>,
        prompt_cache: Option<PathBuf>,
    ) -> PyResult<Engine> {
        if let Some(n) = threads {
            // candle sizes its thread pool from this variable on first use.
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, loaded) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name("anote-engine".into())
            .spawn(move || {
                let mut x = match load(&model, &adapter) {
                    Ok(x) => x,
                    Err(e) => return drop(ready.send(Err(e))),
                };
                let _ = ready.send(Ok((x.engine.name.clone(), x.engine.adapter.clone())));
                for job in inbox {
                    job(&mut x);
                }
            })
            .map_err(|e| anote_error(py, &Error::Io(format!("cannot start the engine thread: {e}"))))?;
        let (model_name, adapter) = wait(py, loaded, &cancel)?.map_err(|e| anote_error(py, &e))?;
        Ok(Engine {
            jobs,
            cancel,
            batch: batch.max(1),
            prompts: prompt_cache.map(|dir| Arc::new(PromptStore::new(dir))),
            model_name,
            adapter,
        })
    }

    /// Checks that `schema` (JSON) fits the model's context with room for a window;
    /// returns its prompt's length in tokens.
    fn check_schema(&self, py: Python<'_>, schema: &str) -> PyResult<usize> {
        let schema = parse_schema(py, schema)?;
        self.run(py, move |x| x.check_schema(&schema))
    }

    /// Reads `schema`'s prompt now (from the prompt cache where it holds it), so that the
    /// next extraction with it starts at the text; returns its length in tokens.
    fn prepare(&self, py: Python<'_>, schema: &str) -> PyResult<usize> {
        let schema = parse_schema(py, schema)?;
        let prompts = self.prompts.clone();
        let (tokens, notes) = self.run(py, move |x| match prompts {
            Some(store) => {
                let notes = read_prompt(x, &store, &schema)?;
                Ok((x.check_schema(&schema)?, notes))
            }
            None => Ok((pollster::block_on(x.prepare(&schema))?, Vec::new())),
        })?;
        warn_all(py, notes)?;
        Ok(tokens)
    }

    /// Entities of each text: a list of entity tuples, or an `AnoteError` (not raised) for
    /// a text that cannot be read. Raises for what stops the whole run.
    fn extract_many(&self, py: Python<'_>, texts: Vec<String>, schema: &str) -> PyResult<Vec<Py<PyAny>>> {
        let (texts, found) = self.extract(py, texts, parse_schema(py, schema)?)?;
        texts
            .iter()
            .zip(found)
            .map(|(text, r)| match r {
                Ok(x) => Ok(py_entities(text, &x.entities).into_pyobject(py)?.into_any().unbind()),
                Err(e) => Ok(anote_error(py, &e).into_value(py).into_any()),
            })
            .collect()
    }

    /// Each text redacted: `(text, [replacement tuples])`, or an `AnoteError` in its place.
    /// `operators` maps labels (and `*`, every other label) to `replace`, `mask[:C[:N]]`,
    /// `hash` or `pseudonym`; `key` is the secret of the last two; `mapping` adds each
    /// original value to its replacement.
    #[pyo3(signature = (texts, schema, operators, key, mapping))]
    fn redact_many(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        schema: &str,
        operators: HashMap<String, String>,
        key: Option<&[u8]>,
        mapping: bool,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let schema = parse_schema(py, schema)?;
        let redactor = redactor(py, &operators, key)?;
        let (texts, found) = self.extract(py, texts, schema)?;
        texts
            .iter()
            .zip(found)
            .map(|(text, r)| match r {
                Ok(x) => Ok(py_redaction(text, &redactor.redact(text, &x.entities), mapping)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()),
                Err(e) => Ok(anote_error(py, &e).into_value(py).into_any()),
            })
            .collect()
    }
}

impl Engine {
    /// Runs `f` on the engine thread and waits for it with the GIL released.
    fn run<T: Send + 'static>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Extractor) -> Result<T> + Send + 'static,
    ) -> PyResult<T> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send(Box::new(move |x| drop(reply.send(f(x)))))
            .map_err(|_| anote_error(py, &Error::Compute("the engine thread has stopped".into())))?;
        wait(py, answer, &self.cancel)?.map_err(|e| anote_error(py, &e))
    }

    /// The texts, given back, and what was found in each.
    fn extract(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        schema: Schema,
    ) -> PyResult<(Vec<String>, Vec<Result<Extraction>>)> {
        let (cancel, batch, prompts) = (self.cancel.clone(), self.batch, self.prompts.clone());
        let (texts, found, notes) = self.run(py, move |x| {
            // Without a prompt cache the extraction reads the prompt as it needs it.
            let notes = match &prompts {
                Some(store) => read_prompt(x, store, &schema)?,
                None => Vec::new(),
            };
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let options = Options {
                cancelled: &|| cancel.load(Ordering::Relaxed),
                decoding: Settings {
                    batch,
                    ..Settings::default()
                },
                ..Options::default()
            };
            let found = pollster::block_on(x.extract_many(&refs, &schema, &options, |_, _| {}))?;
            Ok((texts, found, notes))
        })?;
        warn_all(py, notes)?;
        Ok((texts, found))
    }
}

/// Reads `schema`'s prompt into `x` through `store`; returns what the store had to say (a
/// copy it could not read or write).
fn read_prompt(x: &mut Extractor, store: &PromptStore, schema: &Schema) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    pollster::block_on(store.prepare(x, schema, &mut |note| notes.push(note)))?;
    Ok(notes)
}

/// Each note as a `RuntimeWarning`: a prompt not read from, or not kept in, the prompt
/// cache cost only time.
fn warn_all(py: Python<'_>, notes: Vec<String>) -> PyResult<()> {
    for note in notes {
        PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &CString::new(note)?, 1)?;
    }
    Ok(())
}

/// Waits for the engine thread's answer without holding the GIL. A signal (Ctrl-C) sets
/// `cancel`, waits for the engine to stop and raises the signal's exception.
fn wait<T: Send>(py: Python<'_>, answer: Receiver<T>, cancel: &AtomicBool) -> PyResult<T> {
    let mut answer = answer;
    loop {
        let (back, got) = py.detach(move || {
            let got = answer.recv_timeout(Duration::from_millis(100));
            (answer, got)
        });
        answer = back;
        match got {
            Ok(v) => return Ok(v),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anote_error(py, &Error::Compute("the engine thread has stopped".into())))
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    cancel.store(true, Ordering::Relaxed);
                    let _ = py.detach(move || answer.recv());
                    cancel.store(false, Ordering::Relaxed);
                    return Err(interrupt);
                }
            }
        }
    }
}

fn load(model: &PathBuf, adapter: &str) -> Result<Extractor> {
    let file = std::fs::File::open(model).map_err(|e| Error::Io(format!("{}: {e}", model.display())))?;
    let file = Arc::new(file);
    let mut engine = crate::Engine::open(&*file, file.clone())?;
    match adapter {
        "none" => {}
        "default" => {
            engine.use_shipped_adapter(SHIPPED_ADAPTER)?;
        }
        path => {
            let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{path}: {e}")))?;
            engine.set_adapter(Some(&Adapter::from_bytes(&bytes, None)?))?;
        }
    }
    Ok(Extractor::new(engine))
}

fn parse_schema(py: Python<'_>, json: &str) -> PyResult<Schema> {
    Schema::from_json(json).map_err(|e| anote_error(py, &e))
}

fn py_redaction(text: &str, r: &crate::ner::redact::Redaction, mapping: bool) -> (String, Vec<PyReplacement>) {
    let (original, redacted) = (OffsetMap::new(text), OffsetMap::new(&r.text));
    let replacements = r
        .replacements
        .iter()
        .map(|x| {
            let (start, end) = original.span(x.start, x.end, Unit::CodePoints);
            let (rs, re) = redacted.span(x.redacted_start, x.redacted_end, Unit::CodePoints);
            let value = mapping.then(|| text[x.start..x.end].to_string());
            (
                x.label.clone(),
                start,
                end,
                rs,
                re,
                x.operator,
                x.replacement.clone(),
                value,
            )
        })
        .collect();
    (r.text.clone(), replacements)
}

/// A built-in schema's JSON, or `schema` (JSON) checked and normalised.
#[pyfunction]
#[pyo3(signature = (preset=None, schema=None))]
fn schema_json(py: Python<'_>, preset: Option<&str>, schema: Option<&str>) -> PyResult<String> {
    let parsed = match (preset, schema) {
        (Some(name), None) => Schema::preset(name),
        (None, Some(json)) => Schema::from_json(json),
        _ => Err(Error::InvalidSchema("give a preset or a schema, not both".into())),
    }
    .map_err(|e| anote_error(py, &e))?;
    serde_json::to_string(&parsed).map_err(|e| anote_error(py, &Error::InvalidSchema(e.to_string())))
}

/// Checks redaction operators and key as `redact_many` would, before any text is read.
#[pyfunction]
#[pyo3(signature = (operators, key=None))]
fn check_operators(py: Python<'_>, operators: HashMap<String, String>, key: Option<&[u8]>) -> PyResult<()> {
    redactor(py, &operators, key).map(drop)
}

fn redactor(py: Python<'_>, operators: &HashMap<String, String>, key: Option<&[u8]>) -> PyResult<Redactor> {
    let key = key.map(Key::new).transpose().map_err(|e| anote_error(py, &e))?;
    Redactor::from_operators(operators, key).map_err(|e| anote_error(py, &e))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("AnoteError", m.py().get_type::<AnoteError>())?;
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(schema_json, m)?)?;
    m.add_function(wrap_pyfunction!(check_operators, m)?)?;
    m.add("DEFAULT_MODEL_FILE", crate::DEFAULT_MODEL_FILE)?;
    // Where `cargo xtask setup` puts the model: the default when $ANOTE_MODEL is not set.
    m.add("MODELS_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/models"))?;
    m.add(
        "PRESETS",
        crate::ner::schema::PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
    )?;
    m.add("MAX_TEXT_BYTES", crate::ner::extract::MAX_TEXT_BYTES)?;
    m.add(
        "RECOGNIZERS",
        crate::ner::recognizers::ALL
            .iter()
            .map(|r| (r.name(), r.description()))
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}
