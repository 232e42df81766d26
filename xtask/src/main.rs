//! Build chores for Anote NER, as `cargo xtask <command>` (the wgpu / rust-analyzer way):
//! everything a fresh machine needs, installed by the project itself.

mod anchor;
mod eval;
mod fuzz;
mod pack;
mod report;
mod serve;
mod setup;
mod train;
mod tune;
mod workspace;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use workspace::{cargo, crate_version, output, root, run_step, target_dir};

const USAGE: &str = "\
usage: cargo xtask <command>

  setup              install what is missing: wasm32 target, wasm-bindgen CLI (the Cargo.lock
                     version), Chromium + ChromeDriver, Node packages, the default model
  build-web          build the wasm engine into www/pkg (release, SIMD128)
  serve [--port N]   setup, build-web, then serve the page on http://127.0.0.1:8080
  test               setup, then fmt, clippy, unit + parity tests, the Python and Spark tests,
                     build-web and browser tests
  wheel              the Python package (abi3 wheel for this platform) -> target/wheels/
  pack               build-web, then the npm package -> target/npm/anote-ner-<version>.tgz
  test-browser       build-web, then only the browser tests (the page, the npm package in two apps)
  bench              setup, build-web, then speed and memory against wllama and against the
                     engine before batched decoding (built from git) -> docs/benchmarks.md,
                     then bench-spark
  bench-spark        redaction throughput of a local Spark job and the CLI -> docs/benchmarks-spark.md
  eval [--limit N] [--adapter default|none|patterns|both|formats|long] [--set NAME]
                     extraction quality on every dev set in ../shared/eval, fine-tuned and/or
                     base model -> docs/eval/*.json and docs/eval.md; formats: the answer
                     formats (lines, JSON, inline tags) compared on the same documents;
                     long: documents scored one by one and joined into longer texts;
                     --set: only that set, merged into the run the same command stored
  train [--minutes M] [--examples N] [--lr LR] [--batch B] [--device cpu|cuda] [--from CHECKPOINT|ADAPTER]
        [--ship-only] [-- EXAMPLE OPTIONS [+ EXAMPLE OPTIONS]...]
                     fine-tune the LoRA adapter (default: CPU, batch 2, 115 minutes, lr 3e-4) -> models/;
                     --from starts from another run's LoRA weights (target/train/run-*/checkpoint.pt,
                     or an adapter file such as models/anote-ner-lora.safetensors);
                     options after -- go to train/make_examples.py, one run of it (N examples)
                     per group that `+` separates (the shipped recipe: models/README.md);
                     --ship-only copies the last run's adapter to models/ (after an interrupted run)
  tune [--per-set N] [--diverse N] ADAPTER...
                     score adapters (files, `default`, `none`) on a split of the training sets that the
                     last run never showed the model: N documents of each original set (default 100)
                     and of each diverse one (default 30) -> target/train/tune/scores.md
  fuzz [--minutes N]  every cargo-fuzz target in fuzz/ for N minutes (default 10) from the
                     committed seeds, with the nightly toolchain -> docs/fuzz.md
  train [--rank R] --merge FILE:WEIGHT FILE:WEIGHT...
                     ships the weighted average of adapters, as one rank-R adapter (default 16)
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The flags each command takes; any other is refused, so that a typo (`eval --limt 5`)
/// does not silently run the full job.
const FLAGS: &[(&str, &[&str])] = &[
    ("serve", &["--port"]),
    ("eval", &["--limit", "--adapter", "--set"]),
    (
        "train",
        &[
            "--minutes",
            "--examples",
            "--lr",
            "--batch",
            "--device",
            "--from",
            "--ship-only",
            "--merge",
            "--rank",
        ],
    ),
    ("tune", &["--per-set", "--diverse"]),
    ("fuzz", &["--minutes"]),
];

fn check_flags(args: &[String]) -> Result<()> {
    let Some(command) = args.first() else {
        return Ok(());
    };
    let known = FLAGS.iter().find(|(c, _)| c == command).map_or(&[][..], |(_, f)| *f);
    // After `--` the options belong to another program (train/make_examples.py).
    for a in args[1..].iter().take_while(|a| *a != "--") {
        if a.starts_with('-') && !known.contains(&a.as_str()) {
            eprint!("{USAGE}");
            bail!("unknown flag {a} for `cargo xtask {command}`");
        }
    }
    Ok(())
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    check_flags(&args)?;
    match args.first().map(String::as_str) {
        Some("setup") => setup::all(&root),
        Some("build-web") => build_web(&root),
        Some("serve") => {
            let port = flag_value(&args, "--port")?.unwrap_or(8080);
            setup::all(&root)?;
            build_web(&root)?;
            serve::serve_forever(&root, port)
        }
        Some("test") => test(&root),
        Some("pack") => {
            setup::all(&root)?;
            build_web(&root)?;
            pack::pack(&root).map(drop)
        }
        Some("wheel") => {
            setup::all(&root)?;
            wheel(&root, "release").map(drop)
        }
        Some("test-browser") => {
            build_web(&root)?;
            browser_tests(&root)?;
            npm_consumer_tests(&root)
        }
        Some("bench") => bench(&root),
        Some("bench-spark") => {
            setup::all(&root)?;
            bench_spark(&root)
        }
        Some("fuzz") => fuzz::run(&root, flag_value(&args, "--minutes")?.unwrap_or(10.0)),
        Some("eval") => {
            let limit = flag_value(&args, "--limit")?;
            let adapter: Option<String> = flag_value(&args, "--adapter")?;
            let only: Option<String> = flag_value(&args, "--set")?;
            setup::all(&root)?;
            eval::run(&root, limit, adapter.as_deref().unwrap_or("both"), only.as_deref())
        }
        Some("train") if args.iter().any(|a| a == "--merge") => {
            let specs: Vec<String> = args.iter().skip_while(|a| *a != "--merge").skip(1).cloned().collect();
            train::merge(&root, &specs, flag_value(&args, "--rank")?.unwrap_or(16))
        }
        Some("train") if args.iter().any(|a| a == "--ship-only") => {
            train::ship(&root, &target_dir(&root).join("train/run/adapter.safetensors"))
        }
        Some("train") => {
            setup::all(&root)?;
            let options = train::Options {
                minutes: flag_value(&args, "--minutes")?.unwrap_or(115.0),
                examples: flag_value(&args, "--examples")?.unwrap_or(6000),
                lr: flag_value(&args, "--lr")?.unwrap_or(3e-4),
                batch: flag_value(&args, "--batch")?.unwrap_or(2),
                device: flag_value(&args, "--device")?.unwrap_or_else(|| "cpu".into()),
                init: flag_value(&args, "--from")?,
                // Everything after `--` goes to train/make_examples.py (e.g. `--specialize 0.4`).
                example_options: args.iter().skip_while(|a| *a != "--").skip(1).cloned().collect(),
            };
            train::run(&root, &options)
        }
        Some("tune") => {
            // The adapters are the arguments that are neither flags nor their values.
            let adapters: Vec<String> = args[1..]
                .iter()
                .enumerate()
                .filter(|(i, a)| !a.starts_with("--") && !args[*i].starts_with("--"))
                .map(|(_, a)| a.clone())
                .collect();
            setup::all(&root)?;
            tune::run(
                &root,
                &adapters,
                flag_value(&args, "--per-set")?.unwrap_or(100),
                flag_value(&args, "--diverse")?.unwrap_or(30),
            )
        }
        _ => {
            eprint!("{USAGE}");
            bail!("unknown command {:?}", args.first().map(String::as_str).unwrap_or(""))
        }
    }
}

/// The value after `flag` in `args`, parsed, if the flag is there.
fn flag_value<T: std::str::FromStr>(args: &[String], flag: &str) -> Result<Option<T>> {
    match args.iter().position(|a| a == flag) {
        Some(i) => {
            let value = args.get(i + 1).and_then(|v| v.parse().ok());
            value
                .map(Some)
                .with_context(|| format!("{flag} needs a value of its kind"))
        }
        None => Ok(None),
    }
}

/// The threaded browser build's flags: shared memory that the page's workers import, and
/// the thread-local storage exports wasm-bindgen's thread start-up needs (since
/// nightly-2025-10-03 `+atomics` alone no longer makes the memory shared). Its maximum is
/// what the engine may grow to: a shared memory's maximum is fixed when it is made.
const THREADS_RUSTFLAGS: &str = "-C target-feature=+atomics,+bulk-memory,+simd128 \
    -C link-args=--shared-memory -C link-args=--import-memory -C link-args=--max-memory=2147483648 \
    -C link-args=--export=__wasm_init_tls -C link-args=--export=__tls_size \
    -C link-args=--export=__tls_align -C link-args=--export=__tls_base";

/// The two wasm32 release builds, each through wasm-bindgen: `www/pkg` (single-threaded,
/// stable toolchain, SIMD128 via .cargo/config.toml) and `www/pkg-threads` (feature
/// `threads`: nightly, std rebuilt with atomics, in a target folder of its own).
/// No wasm-opt: Debian's binaryen 108 breaks wasm-bindgen's output, and candle's kernels
/// are already optimised by LLVM.
fn build_web(root: &Path) -> Result<()> {
    let single = ["build", "--lib", "--release", "--target", "wasm32-unknown-unknown"];
    run_step("build-web: cargo", cargo().current_dir(root).args(single))?;
    bindgen(root, &target_dir(root), "www/pkg")?;
    run_step("build-web: cargo (threads)", &mut threaded_cargo(root, "build"))?;
    bindgen(root, &threads_target(root), "www/pkg-threads")?;
    write_shell_manifest(root)
}

/// The threaded build's own target folder: its std and flags differ from the other builds'.
fn threads_target(root: &Path) -> PathBuf {
    target_dir(root).join("wasm-threads")
}

/// `cargo +nightly <subcommand>` of the threaded browser build (release, feature `threads`).
fn threaded_cargo(root: &Path, subcommand: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args([
            "+nightly",
            subcommand,
            "--lib",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .args([
            "--features",
            "threads",
            "-Z",
            "build-std=panic_abort,std",
            "--target-dir",
        ])
        .arg(threads_target(root))
        .env("RUSTFLAGS", THREADS_RUSTFLAGS);
    cmd
}

/// wasm-bindgen's JavaScript for the engine built under `target`, into `out` (`www/…`).
fn bindgen(root: &Path, target: &Path, out: &str) -> Result<()> {
    let wasm = target.join("wasm32-unknown-unknown/release/anote_ner.wasm");
    run_step(
        "build-web: wasm-bindgen",
        Command::new(setup::wasm_bindgen_bin())
            .current_dir(root)
            .args(["--target", "web", "--out-dir", out])
            .arg(&wasm),
    )?;
    let size = std::fs::metadata(root.join(out).join("anote_ner_bg.wasm"))?.len();
    println!(
        "xtask: [build-web] {out}/anote_ner_bg.wasm is {:.2} MB",
        size as f64 / 1e6
    );
    Ok(())
}

/// Writes `www/pkg/shell.js`: the files the service worker (`www/sw.js`) caches when it is
/// installed, so that the page works offline after one visit, and a build id (a hash of
/// their contents) that names the cache, so that a new build replaces the old files whole.
/// The model and adapter are not in it: the engine keeps them in OPFS when it loads them.
fn write_shell_manifest(root: &Path) -> Result<()> {
    use sha2::{Digest, Sha256};
    let mut files: Vec<String> = Vec::new();
    // The wasm builds' folders whole (the threaded one has wasm-bindgen's snippets below it).
    for (dir, url, deep) in [
        ("www", "", false),
        ("www/pkg", "pkg/", true),
        ("www/pkg-threads", "pkg-threads/", true),
        ("presets", "presets/", false),
    ] {
        shell_files(&root.join(dir), url, deep, &mut files)?;
    }
    files.sort();
    let mut hash = Sha256::new();
    for f in &files {
        let path = match f.strip_prefix("presets/") {
            Some(p) => root.join("presets").join(p),
            None => root.join("www").join(f),
        };
        hash.update(f.as_bytes());
        hash.update(std::fs::read(path)?);
    }
    let build: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let list: Vec<String> = std::iter::once("./".to_string())
        .chain(files)
        .map(|f| format!("  '{f}',"))
        .collect();
    let js = format!(
        "// Written by `cargo xtask build-web`: what the service worker caches at install.\n\
         self.ANOTE_BUILD = '{build}';\nself.ANOTE_SHELL = [\n{}\n];\n",
        list.join("\n")
    );
    std::fs::write(root.join("www/pkg/shell.js"), js)?;
    println!(
        "xtask: [build-web] www/pkg/shell.js: build {build}, {} files",
        list.len()
    );
    Ok(())
}

/// The page resources in `dir` (served under `url`) into `files`; `deep`: below it too.
fn shell_files(dir: &Path, url: &str, deep: bool, files: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if deep && entry.file_type()?.is_dir() {
            shell_files(&entry.path(), &format!("{url}{name}/"), true, files)?;
            continue;
        }
        let wanted = [".html", ".js", ".css", ".json", ".wasm"]
            .iter()
            .any(|e| name.ends_with(e));
        // The service worker is not a page resource, and the manifest cannot list itself.
        if wanted && name != "sw.js" && name != "shell.js" && !name.ends_with(".d.ts") {
            files.push(format!("{url}{name}"));
        }
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    setup::all(root)?;
    run_step(
        "test: rustfmt",
        cargo().current_dir(root).args(["fmt", "--all", "--check"]),
    )?;
    run_step(
        "test: clippy",
        cargo().current_dir(root).args([
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--features",
            "anote-ner/python",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run_step(
        "test: clippy (threaded wasm build)",
        threaded_cargo(root, "clippy").args(["--", "-D", "warnings"]),
    )?;
    // The test profile (opt-level 3, no LTO): one fat-LTO link per test binary would cost
    // minutes on two cores, and the tests run the real model, so they must be optimised.
    run_step(
        "test: native tests",
        quiet_vulkan(cargo().current_dir(root).args(["test", "--workspace"]))?,
    )?;
    python_tests(root)?;
    build_web(root)?;
    browser_tests(root)?;
    npm_consumer_tests(root)
}

/// The packed npm package installed into `tests/npm-consumer/`, built there with Vite and
/// used without a bundler (an import map), both in headless Chromium.
fn npm_consumer_tests(root: &Path) -> Result<()> {
    let tarball = pack::pack(root)?;
    let app = root.join("tests/npm-consumer");
    run_step(
        "test: npm consumer: install the package",
        Command::new("npm")
            .current_dir(&app)
            .args(["install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund"])
            .arg(&tarball),
    )?;
    let dist = target_dir(root).join("npm-consumer");
    run_step(
        "test: npm consumer: vite build",
        Command::new("node")
            .current_dir(&app)
            .arg(root.join("node_modules/vite/bin/vite.js"))
            .args(["build", "--logLevel", "warn", "--emptyOutDir", "--outDir"])
            .arg(&dist),
    )?;
    let built = serve::spawn_folder(root, &dist)?;
    let plain = serve::spawn_folder(root, &app)?;
    let pages = serde_json::json!([
        {"name": "Vite build", "url": format!("http://127.0.0.1:{}/", built.port)},
        {"name": "import map, no bundler", "url": format!("http://127.0.0.1:{}/importmap.html", plain.port)},
    ]);
    run_step(
        "test: npm consumer (headless Chromium)",
        Command::new("node")
            .current_dir(root)
            .arg("tests/npm-consumer/consumer.test.mjs")
            .env("ANOTE_CONSUMER_PAGES", pages.to_string()),
    )
}

/// Builds the Python package with maturin in `profile` into `target/wheels/`; returns the wheel.
fn wheel(root: &Path, profile: &str) -> Result<PathBuf> {
    let out = target_dir(root).join("wheels");
    let name = format!("anote_ner-{}-cp39-abi3-", crate_version(root)?);
    // An older build of the same version must not be the one installed.
    for entry in std::fs::read_dir(&out).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    run_step(
        "wheel: maturin",
        Command::new(setup::python_env(root).join("bin/maturin"))
            .current_dir(root)
            .args(["build", "--quiet", "--profile", profile, "--out"])
            .arg(&out),
    )?;
    let wheel = std::fs::read_dir(&out)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&name)))
        .context("maturin wrote no wheel")?;
    println!("xtask: [wheel] {}", wheel.display());
    Ok(wheel)
}

/// Builds the wheel in `profile` and installs it in target/pyenv.
fn install_wheel(root: &Path, profile: &str) -> Result<()> {
    let wheel = wheel(root, profile)?;
    run_step(
        "install the wheel",
        Command::new(setup::python_env(root).join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel),
    )
}

/// The wheel (test profile settings: see `[profile.pytest]`) installed in target/pyenv, then
/// pytest on the Python API and a local Spark job, beside the CLI `cargo test` just built, and
/// on the training scripts' schema variations.
fn python_tests(root: &Path) -> Result<()> {
    install_wheel(root, "pytest")?;
    let env = setup::python_env(root);
    run_step(
        "test: Python, Spark and training scripts",
        Command::new(env.join("bin/python"))
            .current_dir(root)
            .args(["-m", "pytest", "-q", "python/tests", "train/tests"])
            .env("ANOTE_CLI", target_dir(root).join("debug/anote")),
    )
}

/// Mesa's Vulkan drivers print an error for every device they open when there is no
/// `XDG_RUNTIME_DIR` (as on CI machines); a private one keeps the test log readable.
fn quiet_vulkan(cmd: &mut Command) -> Result<&mut Command> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("anote-xdg-runtime");
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        cmd.env("XDG_RUNTIME_DIR", dir);
    }
    Ok(cmd)
}

/// `anote …` built in the test profile, whose library `cargo test` has just compiled: a
/// release build (fat LTO, one codegen unit) would compile everything again, minutes on
/// CI's two cores. Same optimisation level, and Rust never reorders float arithmetic, so
/// its numbers are the release binary's.
fn anote_as_tested(root: &Path) -> Command {
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["run", "--quiet", "--profile", "test", "--bin", "anote", "--"]);
    cmd
}

/// Greedy ids of the native base model for `prompt`, the reference for the browser test.
fn native_greedy(root: &Path, prompt: &str, max_tokens: usize) -> Result<String> {
    let json = output(
        "test: native reference",
        anote_as_tested(root)
            .args(["--adapter", "none", "generate", "--json"])
            .args(["--prompt", prompt, "--max-tokens", &max_tokens.to_string()]),
    )?;
    Ok(json.trim().to_string())
}

fn browser_tests(root: &Path) -> Result<()> {
    // Kernels that round differently (fused multiply-adds natively, none in wasm) part at a
    // near tie: this prompt's first is its ninth step (" The boiling point" in wasm, " Water
    // boils" natively); "The capital of France is" had one at its fifth.
    let prompt = "Water boils at a temperature of";
    let expected = native_greedy(root, prompt, 8)?;
    // The page's evaluate tab must give `anote eval`'s numbers on the same file.
    let gold = root.join("tests/fixtures/gold_small.jsonl");
    let native_eval = output(
        "test: native eval reference",
        anote_as_tested(root)
            .args(["eval", "--json", "--preset", "pii", "--data"])
            .arg(&gold),
    )?;
    let sample = output(
        "test: native eval reference",
        anote_as_tested(root)
            .args(["eval", "--json", "--per-document", "--preset", "pii", "--data"])
            .arg(root.join("www/sample-gold.jsonl")),
    )?;
    // The page must put the CLI's entities at the same places in text that is not ASCII.
    let unicode = output(
        "test: native unicode reference",
        anote_as_tested(root)
            .args(["extract", "--preset", "pii"])
            .arg(root.join("tests/fixtures/unicode_mixed.txt")),
    )?;
    let screenshots = target_dir(root).join("screenshots");
    std::fs::create_dir_all(&screenshots)?;
    let server = serve::spawn(root, 0)?;
    let not_isolated = serve::spawn_not_isolated(root)?;
    let nginx = serve::spawn_nginx(root)?;
    run_step(
        "test: browser (headless Chromium)",
        Command::new("node")
            .current_dir(root)
            .arg("tests/browser/page.test.mjs")
            .env("ANOTE_URL", format!("http://127.0.0.1:{}/", server.port))
            .env(
                "ANOTE_NOT_ISOLATED_URL",
                format!("http://127.0.0.1:{}/", not_isolated.port),
            )
            .env("ANOTE_NGINX_URL", format!("http://127.0.0.1:{}/", nginx.port))
            .env("ANOTE_PROMPT", prompt)
            .env("ANOTE_NATIVE", expected)
            .env("ANOTE_GOLD", &gold)
            .env(
                "ANOTE_ADAPTER_GOLD",
                root.join("tests/fixtures/adapter_direction.jsonl"),
            )
            .env("ANOTE_SCREENSHOTS", screenshots)
            .env("ANOTE_NATIVE_EVAL", native_eval.trim())
            .env("ANOTE_NATIVE_SAMPLE_EVAL", sample.trim())
            .env("ANOTE_NATIVE_UNICODE", unicode.trim()),
    )
}

fn bench(root: &Path) -> Result<()> {
    setup::all(root)?;
    build_web(root)?;
    let tarball = pack::pack(root)?;
    run_step(
        "bench: native",
        cargo().current_dir(root).args(["build", "--release", "--bin", "anote"]),
    )?;
    let before = anchor::build(root)?;
    let server = serve::spawn(root, 0)?;
    let before_page = serve::spawn_checkout(&before.root)?;
    run_step(
        "bench",
        quiet_vulkan(&mut Command::new("node"))?
            .current_dir(root)
            .arg("bench/bench.mjs")
            .env("ANOTE_URL", format!("http://127.0.0.1:{}/", server.port))
            .env("ANOTE_ANCHOR_REV", anchor::REVISION)
            .env("ANOTE_ANCHOR_BIN", &before.bin)
            .env("ANOTE_ANCHOR_URL", format!("http://127.0.0.1:{}/", before_page.port))
            .env("ANOTE_NPM_TARBALL", &tarball)
            .env("ANOTE_BIN", target_dir(root).join("release/anote")),
    )?;
    bench_spark(root)
}

fn bench_spark(root: &Path) -> Result<()> {
    run_step(
        "bench-spark: native",
        cargo().current_dir(root).args(["build", "--release", "--bin", "anote"]),
    )?;
    install_wheel(root, "release")?;
    run_step(
        "bench-spark",
        Command::new(setup::python_env(root).join("bin/python"))
            .current_dir(root)
            .arg("bench/spark_bench.py")
            .env("ANOTE_BIN", target_dir(root).join("release/anote")),
    )
}
