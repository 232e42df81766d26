//! `anote`: the command-line face of the engine (a thin layer over the library).

use std::path::PathBuf;
use std::process::ExitCode;

use anote_ner::gguf::Gguf;
use anote_ner::tokenizer::Tokenizer;
use anote_ner::{Engine, Error};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "anote", version, about = "Private entity extraction with a small local LLM")]
struct Cli {
    /// GGUF model file [default: $ANOTE_MODEL, else the default model in models/]
    #[arg(long, global = true)]
    model: Option<PathBuf>,
    /// CPU threads for the matrix kernels [default: physical cores]
    #[arg(long, global = true)]
    threads: Option<usize>,
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
}

fn default_model() -> PathBuf {
    if let Some(p) = std::env::var_os("ANOTE_MODEL") {
        return p.into();
    }
    let local = PathBuf::from("models").join(anote_ner::DEFAULT_MODEL_FILE);
    if local.exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(anote_ner::DEFAULT_MODEL_FILE)
}

fn open(path: &PathBuf) -> Result<std::fs::File, Error> {
    std::fs::File::open(path).map_err(|e| {
        Error::Io(format!(
            "{}: {e} (run `cargo xtask setup` to fetch the default model)",
            path.display()
        ))
    })
}

fn run(cli: Cli) -> Result<(), Error> {
    if let Some(n) = cli.threads {
        // candle sizes its thread pool from this variable on first use.
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    let path = cli.model.unwrap_or_else(default_model);
    match cli.command {
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
            let mut engine = Engine::load(&open(&path)?)?;
            let g = engine.generate(&prompt, max_tokens, |_, piece| {
                if !json {
                    use std::io::Write;
                    print!("{piece}");
                    let _ = std::io::stdout().flush();
                }
            })?;
            if json {
                println!("{}", serde_json::to_string(&g).map_err(|e| Error::Io(e.to_string()))?);
            } else {
                println!();
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}
