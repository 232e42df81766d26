//! `anote`: the command-line face of the engine (a thin layer over the library).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use anote_ner::api::prompt_store::PromptStore;
use anote_ner::ner::batch;
use anote_ner::ner::eval::{Document, Span};
use anote_ner::ner::extract::{Extractor, Options, Progress};
use anote_ner::ner::finetune;
use anote_ner::ner::prompt::{self, Format};
use anote_ner::ner::redact::{Key, Operator, Redaction, Redactor};
use anote_ner::ner::schema::Schema;
use anote_ner::ner::spans::{OffsetMap, Unit};
use anote_ner::runtime::backend::webgpu::{Gpu, GpuOptions};
use anote_ner::runtime::gguf::Gguf;
use anote_ner::runtime::model::Adapter;
use anote_ner::runtime::tokenizer::Tokenizer;
use anote_ner::{Engine, Error};
use clap::{Parser, Subcommand};
use pollster::block_on;
use std::collections::HashMap;

#[derive(Parser)]
#[command(name = "anote", version, about = "Private entity extraction with a small local LLM")]
struct Cli {
    /// GGUF model file [default: $ANOTE_MODEL, else the default model in models/]
    #[arg(long, global = true)]
    model: Option<PathBuf>,
    /// Fine-tuning adapter: a safetensors file, `none` for the base model, or `default`
    /// (the one shipped in models/, when the model is the base it was trained on)
    #[arg(long, global = true, default_value = "default")]
    adapter: String,
    /// CPU threads for the matrix kernels [default: physical cores]
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where the model runs: `cpu`, or `webgpu` (wgpu on Vulkan/Metal/DX12; an error if
    /// there is no GPU adapter)
    #[arg(long, global = true, default_value = "cpu")]
    backend: String,
    /// With `--backend webgpu`: time every GPU kernel and print where the time went (slower)
    #[arg(long, global = true)]
    gpu_profile: bool,
    /// Extraction: subtracted from the logit of ending the answer (higher: more entities,
    /// lower precision)
    #[arg(long, global = true, default_value_t = anote_ner::ner::batch::END_PENALTY)]
    end_penalty: f32,
    /// No progress on stderr (there is none either when stderr is not a terminal)
    #[arg(long, global = true)]
    quiet: bool,
    /// Extraction: windows decoded at once (1: one after another; the same entities either way)
    #[arg(long, global = true, default_value_t = anote_ner::ner::batch::DEFAULT_BATCH, value_parser = batch_size)]
    batch: usize,
    /// Extraction: keep the schema's prompt, once the model has read it, in DIR (its keys
    /// and values: the schema's, nothing of the texts; a file per schema, model, adapter
    /// and engine build, about 25 MB for the pii preset), and read it from there in later
    /// runs instead of from the model
    #[arg(long, global = true, value_name = "DIR")]
    prompt_cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the tokens of TEXT (user text: no BOS, never control tokens)
    Tokenize {
        /// Print token ids, space-separated, instead of pieces
        #[arg(long)]
        ids: bool,
        text: String,
    },
    /// Greedy continuation of a prompt; prints only the new text
    Generate {
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// Print token ids and timings as JSON
        #[arg(long)]
        json: bool,
    },
    /// Extract entities from FILE (or stdin) as JSON, offsets in Unicode code points
    Extract {
        #[command(flatten)]
        schema: SchemaArg,
        /// Input text file; `-` or nothing reads stdin
        file: Option<PathBuf>,
    },
    /// Redact FILE (or stdin): plain text out, or with --jsonl one {"id", "text"} per line in
    /// and {"id", "text", "replacements"} out (streaming, progress on stderr). The output
    /// holds no original value; a line that fails is reported and skipped, and the exit code
    /// is then 2
    Redact {
        #[command(flatten)]
        schema: SchemaArg,
        /// Operator per label, e.g. PERSON=pseudonym PHONE_NUMBER=mask:*:4 EMAIL_ADDRESS=hash
        #[arg(long = "op", value_name = "LABEL=OP")]
        ops: Vec<String>,
        /// Operator for labels without --op: replace, mask[:C[:N]], hash, pseudonym
        #[arg(long, default_value = "replace")]
        default_op: String,
        /// The secret of hash and pseudonym (at least 16 bytes): the same key gives the same
        /// replacements in every run [default: $ANOTE_KEY; pseudonym without a key: a new key
        /// for this run]
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Also write the re-identification table here (JSONL: id, label, original,
        /// replacement), readable only by its owner
        #[arg(long, value_name = "FILE")]
        mapping: Option<PathBuf>,
        /// With --jsonl: write each line that failed here (JSONL: line, code, message)
        #[arg(long, value_name = "FILE", requires = "jsonl")]
        errors: Option<PathBuf>,
        /// Input and output are JSONL documents
        #[arg(long)]
        jsonl: bool,
        file: Option<PathBuf>,
    },
    /// Extract over a gold JSONL file and print strict and partial P/R/F1
    Eval {
        /// Gold JSONL: {"id", "text", "entities": [{"start", "end", "label"}]} (code points)
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        schema: SchemaArg,
        /// Write predictions here, in the same JSONL format
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only the first N documents
        #[arg(long)]
        limit: Option<usize>,
        /// Only the pattern recognizers (no model)
        #[arg(long)]
        patterns_only: bool,
        /// Score this predictions JSONL (as --out writes it, matched by "id") instead of
        /// extracting: another run's output, or another system's
        #[arg(long, conflicts_with_all = ["patterns_only", "unconstrained", "out"])]
        predictions: Option<PathBuf>,
        /// Ask for the answer in this format (lines, json or tags), decode it without the
        /// grammar and ground it afterwards: the answer-format comparison in docs/eval.md
        #[arg(long, value_name = "FORMAT")]
        unconstrained: Option<Format>,
        /// Print the scores as JSON
        #[arg(long)]
        json: bool,
        /// Also list each document's missed and spurious spans (strict)
        #[arg(long)]
        per_document: bool,
    },
    /// Fine-tuning data: JSONL {"schema", "docs": [{"text", "entities"}]} in, JSONL
    /// {"ids", "answers"} out (token ids of prompt and answers, as the extractor spells them)
    RenderTraining { file: Option<PathBuf> },
    /// Print the JSON Schema of the schema format (for editors that validate JSON)
    JsonSchema,
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct SchemaArg {
    /// Schema JSON file
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Built-in schema: pii or conll
    #[arg(long)]
    preset: Option<String>,
}

impl SchemaArg {
    fn load(&self) -> Result<Schema, Error> {
        match (&self.schema, &self.preset) {
            (Some(p), _) => {
                Schema::from_json(&std::fs::read_to_string(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?)
            }
            (None, Some(name)) => Schema::preset(name),
            (None, None) => Err(Error::InvalidSchema("give --schema FILE or --preset NAME".into())),
        }
    }
}

/// Progress for someone waiting at a terminal: `what done/total` with the time left, on
/// one rewritten stderr line; nothing when stderr is not a terminal (a log must not fill
/// with carriage returns) or with `--quiet`.
fn progress(quiet: bool, what: &'static str) -> Box<dyn Fn(Progress)> {
    if quiet || !interactive() {
        return Box::new(|_| {});
    }
    // The pace is measured from the first step on: that step also read the schema's prompt
    // and the first windows, which the share counts for little.
    let first = std::cell::Cell::new(None);
    Box::new(move |p: Progress| {
        if p.total <= 1 {
            return;
        }
        if p.share > 0.0 && first.get().is_none() {
            first.set(Some((std::time::Instant::now(), p.share)));
        }
        let left = match first.get() {
            Some((start, at)) if p.share > at && p.share < 1.0 => {
                let secs = start.elapsed().as_secs_f64() / (p.share - at) * (1.0 - p.share);
                format!(", about {secs:.0} s left")
            }
            _ => String::new(),
        };
        eprint!("\r{what} {}/{} ({:.0} %){left}   ", p.done, p.total, 100.0 * p.share);
        if p.done == p.total {
            eprintln!();
        }
    })
}

/// Whether stderr is a terminal someone watches.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// A file's text, or stdin's for `-` or no file.
fn read_input(file: Option<PathBuf>) -> Result<String, Error> {
    match file.filter(|f| f.as_os_str() != "-") {
        Some(f) => std::fs::read_to_string(&f).map_err(|e| Error::Io(format!("{}: {e}", f.display()))),
        None => std::io::read_to_string(std::io::stdin()).map_err(io),
    }
}

fn io(e: impl std::fmt::Display) -> Error {
    Error::Io(e.to_string())
}

/// Where `anote eval` gets its entities.
enum Predictor {
    /// The model, decoding as set.
    Model(Box<Extractor>, batch::Settings),
    Patterns,
    /// Spans by document id, read from a predictions file.
    Stored(HashMap<String, Vec<Span>>),
}

fn stored_predictions(file: &PathBuf) -> Result<HashMap<String, Vec<Span>>, Error> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io(format!("{}: {e}", file.display())))?;
    let mut by_id = HashMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let doc =
            Document::parse(line, false).map_err(|e| Error::BadGold(format!("{}:{}: {e}", file.display(), n + 1)))?;
        if doc.id.is_null() {
            return Err(Error::BadGold(format!(
                "{}:{}: a prediction needs an \"id\"",
                file.display(),
                n + 1
            )));
        }
        by_id.insert(doc.id.to_string(), doc.spans);
    }
    Ok(by_id)
}

/// Scores the predictor's entities on a gold file (the library's evaluation loop).
fn eval(
    mut predictor: Predictor,
    data: &PathBuf,
    schema: &Schema,
    out: Option<&PathBuf>,
    limit: Option<usize>,
    report: Report,
    progress: Box<dyn Fn(Progress)>,
) -> Result<(), Error> {
    use std::io::Write;
    let gold = std::fs::read_to_string(data).map_err(|e| Error::Io(format!("{}: {e}", data.display())))?;
    let mut writer = match out {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(io)?)),
        None => None,
    };
    let mut latencies = Vec::new();
    let mut answer_tokens = 0;
    let predict = async |doc: &Document| -> Result<Vec<Span>, Error> {
        let text = doc.text.as_deref().unwrap_or_default();
        let t0 = std::time::Instant::now();
        let entities = match &mut predictor {
            Predictor::Model(x, decoding) => {
                let options = Options {
                    decoding: *decoding,
                    ..Options::default()
                };
                let found = x.extract(text, schema, &options, |_| {}).await?;
                answer_tokens += found.decoded_tokens;
                found.entities
            }
            Predictor::Patterns => anote_ner::ner::extract::pattern_entities(text, schema),
            // A document the other system left out found nothing.
            Predictor::Stored(by_id) => return Ok(by_id.get(&doc.id.to_string()).cloned().unwrap_or_default()),
        };
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        if let Some(w) = &mut writer {
            let map = OffsetMap::new(text);
            let pred: Vec<_> = entities.iter().map(|e| map.entity(e, Unit::CodePoints)).collect();
            writeln!(
                w,
                "{}",
                serde_json::json!({"id": doc.id, "text": text, "entities": pred})
            )
            .map_err(io)?;
        }
        Ok(anote_ner::ner::eval::code_point_spans(text, &entities))
    };
    let evaluation = block_on(anote_ner::ner::eval::evaluate(&gold, limit, predict, |done, total| {
        progress(Progress::counted(done, total))
    }))?;
    latencies.sort_by(f64::total_cmp);
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let p95 = latencies
        .get((latencies.len() * 95 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    for b in &evaluation.broken {
        eprintln!("{}:{}: skipped: {}", data.display(), b.line, b.message);
    }
    // What the prompt costs: the schema prefix (once per schema) and the answers.
    let prefix_tokens = match &predictor {
        Predictor::Model(x, decoding) => Some((x, decoding)),
        _ => None,
    }
    .map(|(x, decoding)| {
        let format = decoding.free_format.unwrap_or(Format::Lines);
        x.engine
            .tokenizer
            .encode_prompt(&prompt::prefix_in(schema, format))
            .len()
    });
    let answer_tokens = answer_tokens as f64 / latencies.len().max(1) as f64;
    if report.json {
        let mut out = serde_json::json!({"scores": evaluation.scores, "latency_ms": {"mean": mean, "p95": p95},
            "broken": evaluation.broken, "prefix_tokens": prefix_tokens, "answer_tokens": {"mean": answer_tokens}});
        if report.per_document {
            out["documents"] = serde_json::json!(evaluation.documents);
        }
        println!("{out}");
        return Ok(());
    }
    print!("{}", evaluation.scores.table());
    println!("\nper-document latency: mean {mean:.0} ms, p95 {p95:.0} ms");
    if report.per_document {
        let spans = |v: &[anote_ner::ner::eval::Labelled]| -> String {
            let each: Vec<String> = v.iter().map(|l| format!("{} {:?}", l.label, l.text)).collect();
            each.join(", ")
        };
        let differ: Vec<_> = evaluation
            .documents
            .iter()
            .filter(|d| !d.missed.is_empty() || !d.spurious.is_empty())
            .collect();
        println!(
            "\n{} of {} documents differ from gold (strict):",
            differ.len(),
            evaluation.documents.len()
        );
        for d in differ {
            println!(
                "{}: missed [{}], spurious [{}]",
                d.id,
                spans(&d.missed),
                spans(&d.spurious)
            );
        }
    }
    Ok(())
}

/// How `anote eval` reports.
struct Report {
    json: bool,
    /// Each document's misses and spurious spans too.
    per_document: bool,
}

/// `models/<file>`: in the working directory if there, else in the source tree.
fn in_models(file: &str) -> PathBuf {
    let local = PathBuf::from("models").join(file);
    if local.exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(file)
}

fn default_model() -> PathBuf {
    match std::env::var_os("ANOTE_MODEL") {
        Some(p) => p.into(),
        None => in_models(anote_ner::DEFAULT_MODEL_FILE),
    }
}

/// Loads the model and applies the adapter `choice` names (see `--adapter`); `profile`: see
/// `--gpu-profile`. `whole`: the embedding in memory, for free generation, whose every step
/// reads all of it (extraction looks a few rows up, and leaves it in the file).
fn load_engine(path: &PathBuf, choice: &str, backend: &str, profile: bool, whole: bool) -> Result<Engine, Error> {
    let file = std::sync::Arc::new(open(path)?);
    let mut engine = match backend {
        "cpu" if whole => Engine::load(&*file)?,
        "cpu" => Engine::open(&*file, file.clone())?,
        "webgpu" => {
            let gpu = block_on(Gpu::new(GpuOptions {
                allow_software: true,
                profile,
                ..Default::default()
            }))?;
            eprintln!("webgpu: {}", gpu.adapter);
            Engine::load_webgpu(&*file, Rc::new(gpu))?
        }
        other => return Err(Error::Gpu(format!("unknown backend {other:?}: cpu or webgpu"))),
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())));
    match choice {
        "none" => {}
        "default" => {
            if let Some((file, _)) = anote_ner::default_adapter() {
                if !engine.use_shipped_adapter(&read(&in_models(&file))?)? {
                    eprintln!("note: the shipped adapter was trained on another base model; running without it")
                }
            }
        }
        path => engine.set_adapter(Some(&Adapter::from_bytes(&read(&PathBuf::from(path))?, None)?))?,
    }
    Ok(engine)
}

fn open(path: &PathBuf) -> Result<std::fs::File, Error> {
    std::fs::File::open(path).map_err(|e| {
        Error::Io(format!(
            "{}: {e} (run `cargo xtask setup` to fetch the default model)",
            path.display()
        ))
    })
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    if let Some(n) = cli.threads {
        // candle sizes its thread pool from this variable on first use.
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    let path = cli.model.clone().unwrap_or_else(default_model);
    let settings = Settings::from(&cli);
    match cli.command {
        Command::JsonSchema => {
            let schema = anote_ner::ner::schema::json_schema();
            println!("{}", serde_json::to_string_pretty(&schema).map_err(io)?);
        }
        Command::RenderTraining { file } => {
            use std::io::Write;
            let tokenizer = Tokenizer::from_gguf(&Gguf::parse(&open(&path)?)?)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for (n, line) in read_input(file)?
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let example: finetune::Example =
                    serde_json::from_str(line).map_err(|e| Error::BadGold(format!("line {}: {e}", n + 1)))?;
                let seq = finetune::render(&tokenizer, &example)?;
                writeln!(out, "{}", serde_json::to_string(&seq).map_err(io)?).map_err(io)?;
            }
        }
        Command::Tokenize { ids, text } => {
            let tokenizer = Tokenizer::from_gguf(&Gguf::parse(&open(&path)?)?)?;
            let tokens = tokenizer.encode(&text);
            let out: Vec<String> = if ids {
                tokens.iter().map(u32::to_string).collect()
            } else {
                tokens
                    .iter()
                    .map(|&t| tokenizer.piece(t).unwrap_or("").to_string())
                    .collect()
            };
            println!("{}", out.join(" "));
        }
        Command::Generate {
            prompt,
            max_tokens,
            json,
        } => {
            let mut engine = load_engine(&path, &cli.adapter, &cli.backend, cli.gpu_profile, true)?;
            let g = block_on(engine.generate(&prompt, max_tokens, |_, piece| {
                if !json {
                    use std::io::Write;
                    print!("{piece}");
                    let _ = std::io::stdout().flush();
                }
            }))?;
            if json {
                println!("{}", serde_json::to_string(&g).map_err(io)?);
            } else {
                println!();
            }
        }
        Command::Extract { schema, file } => {
            let schema = schema.load()?;
            let text = read_input(file)?;
            anote_ner::ner::extract::check_size(&text)?;
            let mut x = extractor(&path, &settings)?;
            prepare(&mut x, &schema, cli.prompt_cache.as_deref())?;
            let bar = progress(cli.quiet, "window");
            let options = Options {
                progress: &*bar,
                decoding: settings.decoding,
                ..Options::default()
            };
            let r = block_on(x.extract(&text, &schema, &options, |_| {}))?;
            let map = OffsetMap::new(&text);
            let entities: Vec<_> = r.entities.iter().map(|e| map.entity(e, Unit::CodePoints)).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"entities": entities})).map_err(io)?
            );
        }
        Command::Redact {
            schema,
            ops,
            default_op,
            key_file,
            mapping,
            errors,
            jsonl,
            file,
        } => {
            let schema = schema.load()?;
            let redactor = redactor(&default_op, &ops, key_file.as_ref())?;
            // One text is read (and refused when too large) before the model loads.
            let (input, file) = match jsonl {
                true => (None, file),
                false => (Some(read_input(file)?), None),
            };
            if let Some(text) = &input {
                anote_ner::ner::extract::check_size(text)?;
            }
            let mut x = extractor(&path, &settings)?;
            x.check_schema(&schema)?;
            prepare(&mut x, &schema, cli.prompt_cache.as_deref())?;
            let mut mapping = mapping.as_ref().map(private_file).transpose()?;
            if let Some(input) = input {
                let bar = progress(cli.quiet, "window");
                let options = Options {
                    progress: &*bar,
                    decoding: settings.decoding,
                    ..Options::default()
                };
                let entities = block_on(x.extract(&input, &schema, &options, |_| {}))?.entities;
                let r = redactor.redact(&input, &entities);
                if let Some(m) = &mut mapping {
                    write_mapping(m, &serde_json::Value::Null, &input, &r)?;
                }
                print!("{}", r.text);
                return Ok(ExitCode::SUCCESS);
            }
            let job = RedactJob {
                x: &mut x,
                schema: &schema,
                redactor: &redactor,
                // Lines keep a count of their own.
                options: Options {
                    decoding: settings.decoding,
                    ..Options::default()
                },
            };
            let failed = redact_jsonl(file, job, mapping.as_mut(), errors.as_ref(), cli.quiet)?;
            return Ok(if failed { ExitCode::from(2) } else { ExitCode::SUCCESS });
        }
        Command::Eval {
            data,
            schema,
            out,
            limit,
            patterns_only,
            predictions,
            unconstrained,
            json,
            per_document,
        } => {
            let schema = schema.load()?;
            let predictor = match (patterns_only, predictions) {
                (_, Some(file)) => Predictor::Stored(stored_predictions(&file)?),
                (true, None) => Predictor::Patterns,
                (false, None) => {
                    let decoding = batch::Settings {
                        free_format: unconstrained,
                        ..settings.decoding
                    };
                    let mut x = extractor(&path, &settings)?;
                    // An unconstrained format asks with a prompt of its own.
                    if unconstrained.is_none() {
                        prepare(&mut x, &schema, cli.prompt_cache.as_deref())?;
                    }
                    Predictor::Model(Box::new(x), decoding)
                }
            };
            eval(
                predictor,
                &data,
                &schema,
                out.as_ref(),
                limit,
                Report { json, per_document },
                progress(cli.quiet, "document"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The redactor `--default-op`, `--op` and the key ask for. The key comes from `key_file`,
/// else `$ANOTE_KEY`; pseudonyms without one get a key made for this run.
fn redactor(default_op: &str, ops: &[String], key_file: Option<&PathBuf>) -> Result<Redactor, Error> {
    let mut per_label = HashMap::new();
    for op in ops {
        let (label, op) = op
            .split_once('=')
            .ok_or_else(|| Error::InvalidSchema(format!("--op {op}: expected LABEL=OP")))?;
        per_label.insert(label.to_string(), op.parse::<Operator>()?);
    }
    let default: Operator = default_op.parse()?;
    let key = match (key_file, std::env::var_os("ANOTE_KEY")) {
        (Some(f), _) => Some(Key::new(
            &std::fs::read(f).map_err(|e| Error::Io(format!("{}: {e}", f.display())))?,
        )?),
        (None, Some(k)) => Some(Key::new(k.as_encoded_bytes())?),
        (None, None) if Redactor::wants_pseudonyms(&default, &per_label) => {
            eprintln!(
                "note: no key given (--key-file or $ANOTE_KEY): pseudonyms use a key made for this run, so \
                 another run gives the same values other pseudonyms"
            );
            Some(Key::generate()?)
        }
        (None, None) => None,
    };
    Redactor::new(default, per_label, key)
}

/// A new file only its owner can read (the re-identification table, a list of failures
/// that quotes the input).
fn private_file(path: &PathBuf) -> Result<std::io::BufWriter<std::fs::File>, Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    eprintln!(
        "warning: {} will hold original values: keep it as safe as the input",
        path.display()
    );
    Ok(std::io::BufWriter::new(file))
}

/// One line of the re-identification table per replacement.
fn write_mapping(
    out: &mut impl std::io::Write,
    id: &serde_json::Value,
    text: &str,
    r: &Redaction,
) -> Result<(), Error> {
    for x in &r.replacements {
        let row = serde_json::json!({"id": id, "label": x.label, "original": &text[x.start..x.end],
            "replacement": x.replacement});
        writeln!(out, "{row}").map_err(io)?;
    }
    Ok(())
}

/// Lines of `redact --jsonl` extracted together: their windows share the model's steps.
const JSONL_GROUP: usize = 16;

/// What `redact --jsonl` does to each group of lines.
struct RedactJob<'a> {
    x: &'a mut Extractor,
    schema: &'a Schema,
    redactor: &'a Redactor,
    options: Options<'a>,
}

/// `redact --jsonl`: one `{"id", "text"}` per line in, one `{"id", "text", "replacements"}`
/// per line out, in order; a line that fails is reported (and listed in `errors`) and
/// skipped. Returns whether any failed.
fn redact_jsonl(
    file: Option<PathBuf>,
    mut job: RedactJob,
    mapping: Option<&mut std::io::BufWriter<std::fs::File>>,
    errors: Option<&PathBuf>,
    quiet: bool,
) -> Result<bool, Error> {
    use std::io::{BufRead, Write};
    let input: Box<dyn BufRead> = match file.filter(|f| f.as_os_str() != "-") {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(&f).map_err(|e| Error::Io(format!("{}: {e}", f.display())))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut out = JsonlOut {
        stdout: std::io::stdout().lock(),
        mapping,
        errors: errors.map(private_file).transpose()?,
        lines_in: 0,
        failed: 0,
        status: !quiet && interactive(),
    };
    let mut group = Vec::with_capacity(JSONL_GROUP);
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line.map_err(io)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.lines_in += 1;
        group.push((n + 1, document_of(&line)));
        if group.len() == JSONL_GROUP {
            out.redact_group(std::mem::take(&mut group), &mut job)?;
        }
    }
    out.redact_group(group, &mut job)?;
    eprintln!(
        "{}redact: {} lines in, {} out, {} failed",
        if out.status { "\r" } else { "" },
        out.lines_in,
        out.lines_in - out.failed,
        out.failed
    );
    for f in out.mapping.into_iter().chain(out.errors.as_mut()) {
        f.flush().map_err(io)?;
    }
    Ok(out.failed > 0)
}

/// A `redact --jsonl` line's id and text.
type IdAndText = (serde_json::Value, String);

/// The id and text of a `redact --jsonl` line.
fn document_of(line: &[u8]) -> Result<IdAndText, Error> {
    let line = std::str::from_utf8(line).map_err(|e| Error::BadInput(format!("not UTF-8: {e}")))?;
    let doc: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::BadInput(e.to_string()))?;
    let text = doc["text"]
        .as_str()
        .ok_or_else(|| Error::BadInput("the line needs a \"text\" string".into()))?
        .to_string();
    Ok((doc["id"].clone(), text))
}

/// Where `redact --jsonl` writes.
struct JsonlOut<'a> {
    stdout: std::io::StdoutLock<'static>,
    mapping: Option<&'a mut std::io::BufWriter<std::fs::File>>,
    errors: Option<std::io::BufWriter<std::fs::File>>,
    lines_in: usize,
    failed: usize,
    /// Whether to keep a count on stderr.
    status: bool,
}

impl JsonlOut<'_> {
    /// Extracts from the readable lines of `group` (line number, document) together, then
    /// writes each line's result in order.
    fn redact_group(
        &mut self,
        group: Vec<(usize, Result<IdAndText, Error>)>,
        job: &mut RedactJob,
    ) -> Result<(), Error> {
        let texts: Vec<&str> = group
            .iter()
            .filter_map(|(_, d)| d.as_ref().ok())
            .map(|d| d.1.as_str())
            .collect();
        // An error of the whole group (the model failing) is every line's.
        let mut found = match block_on(job.x.extract_many(&texts, job.schema, &job.options, |_, _| {})) {
            Ok(found) => found,
            Err(e) => texts.iter().map(|_| Err(e.clone())).collect(),
        }
        .into_iter();
        for (n, doc) in group {
            let result = doc.and_then(|(id, text)| {
                let entities = found.next().expect("one result per readable line")?.entities;
                Ok((id, job.redactor.redact(&text, &entities), text))
            });
            match result {
                Ok((id, r, text)) => self.write(&id, &text, &r)?,
                Err(e) => self.fail(n, &e)?,
            }
        }
        if self.status {
            eprint!(
                "\rredacted {} lines, {} failed",
                self.lines_in - self.failed,
                self.failed
            );
        }
        Ok(())
    }

    fn write(&mut self, id: &serde_json::Value, text: &str, r: &Redaction) -> Result<(), Error> {
        use std::io::Write;
        // Offsets in code points, like every JSONL file here: into the original text and
        // into the redacted one.
        let (original, redacted) = (OffsetMap::new(text), OffsetMap::new(&r.text));
        let replacements: Vec<serde_json::Value> = r
            .replacements
            .iter()
            .map(|x| {
                let (start, end) = original.span(x.start, x.end, Unit::CodePoints);
                let (rs, re) = redacted.span(x.redacted_start, x.redacted_end, Unit::CodePoints);
                serde_json::json!({"label": x.label, "start": start, "end": end, "redacted_start": rs,
                    "redacted_end": re, "operator": x.operator, "replacement": x.replacement})
            })
            .collect();
        let out = serde_json::json!({"id": id, "text": r.text, "replacements": replacements});
        writeln!(self.stdout, "{out}")
            .and_then(|_| self.stdout.flush())
            .map_err(io)?;
        if let Some(m) = self.mapping.as_mut() {
            write_mapping(m, id, text, r)?;
        }
        Ok(())
    }

    fn fail(&mut self, line: usize, e: &Error) -> Result<(), Error> {
        use std::io::Write;
        self.failed += 1;
        // Over the count line, if there is one.
        let over = if self.status { "\r" } else { "" };
        eprintln!("{over}line {line}: skipped: error [{}]: {e}", e.code());
        if let Some(f) = self.errors.as_mut() {
            let row = serde_json::json!({"line": line, "code": e.code(), "message": e.to_string()});
            writeln!(f, "{row}").map_err(io)?;
        }
        Ok(())
    }
}

/// The global options an extractor is made and run with.
struct Settings {
    adapter: String,
    backend: String,
    gpu_profile: bool,
    decoding: batch::Settings,
}

impl From<&Cli> for Settings {
    fn from(cli: &Cli) -> Settings {
        Settings {
            adapter: cli.adapter.clone(),
            backend: cli.backend.clone(),
            gpu_profile: cli.gpu_profile,
            decoding: batch::Settings {
                batch: cli.batch,
                end_penalty: cli.end_penalty,
                free_format: None,
            },
        }
    }
}

fn extractor(model: &PathBuf, s: &Settings) -> Result<Extractor, Error> {
    Ok(Extractor::new(load_engine(
        model,
        &s.adapter,
        &s.backend,
        s.gpu_profile,
        false,
    )?))
}

/// With `--prompt-cache DIR`: reads `schema`'s prompt into `x` from DIR's copy, else from
/// the model, keeping a copy ([`PromptStore::prepare`]).
fn prepare(x: &mut Extractor, schema: &Schema, dir: Option<&Path>) -> Result<(), Error> {
    match dir {
        Some(dir) => block_on(PromptStore::new(dir).prepare(x, schema, &mut |note| eprintln!("note: {note}"))),
        None => Ok(()),
    }
}

/// `--batch`: 1 to 256.
fn batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err(format!("{s} is not a number from 1 to 256")),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}
