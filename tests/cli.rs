//! The `anote` command as a user runs it: JSONL corpora with bad lines, keys, the
//! mapping file, the prompt cache. On a tiny generated model (the recognizers find what is
//! checked here), so each run takes milliseconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TinyGemma;

/// A folder of its own for each test: the tiny model, a schema, inputs and outputs.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anote-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = TinyGemma {
        context: 8192,
        ..Default::default()
    };
    std::fs::write(dir.join("tiny.gguf"), tiny.bytes()).unwrap();
    std::fs::write(
        dir.join("schema.json"),
        r#"{"labels": [{"label": "EMAIL", "recognizer": "email"}, {"label": "CARD", "recognizer": "credit_card"}]}"#,
    )
    .unwrap();
    dir
}

fn anote(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_anote"))
        .current_dir(dir)
        .env_remove("ANOTE_KEY")
        .args(["--model", "tiny.gguf", "--adapter", "none"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A run that refuses its arguments exits before reading: a broken pipe is its answer.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const EMAILS: [&str; 3] = ["ann@example.com", "bob@example.org", "cy@example.net"];

#[test]
fn a_jsonl_run_skips_bad_lines_reports_them_and_processes_the_rest() {
    let dir = workdir("jsonl");
    let input = [
        format!(r#"{{"id": 1, "text": "Write to {}."}}"#, EMAILS[0]),
        String::new(),
        "{not json".into(),
        r#"{"id": 3, "txt": "no text field"}"#.into(),
        format!(r#"{{"id": 4, "text": "Card 4111 1111 1111 1111, mail {}"}}"#, EMAILS[1]),
        "\u{0}".into(),
        format!(r#"{{"id": 6, "text": "{}"}}"#, EMAILS[2]),
    ];
    let mut bytes = input.join("\n").into_bytes();
    bytes.extend(b"\n{\"id\": 7, \"text\": \"\xff\"}\n");
    let out = anote(
        &dir,
        &[
            "redact",
            "--schema",
            "schema.json",
            "--jsonl",
            "--errors",
            "errors.jsonl",
        ],
        &bytes,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let docs = lines(&out.stdout);
    let ids: Vec<i64> = docs.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 4, 6], "{stderr}");
    for (d, original) in docs.iter().zip(EMAILS) {
        let text = d["text"].as_str().unwrap();
        assert!(!d.to_string().contains(original), "{d}");
        assert!(!d.to_string().contains("4111"), "{d}");
        for r in d["replacements"].as_array().unwrap() {
            assert!(r.get("original").is_none(), "{r}");
            let (a, b) = (
                r["redacted_start"].as_u64().unwrap(),
                r["redacted_end"].as_u64().unwrap(),
            );
            let replaced: String = text.chars().skip(a as usize).take((b - a) as usize).collect();
            assert_eq!(replaced, r["replacement"].as_str().unwrap());
        }
    }
    // Line numbers count every line, blank ones included.
    let errors = lines(&std::fs::read(dir.join("errors.jsonl")).unwrap());
    let failed: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(failed, [3, 4, 6, 8], "{stderr}");
    assert!(errors.iter().all(|e| e["code"] == "bad_input"), "{errors:?}");
    assert!(stderr.contains("line 3: skipped"), "{stderr}");
    assert!(stderr.contains("7 lines in, 3 out, 4 failed"), "{stderr}");
}

#[test]
fn keyed_operators_need_a_key_and_agree_across_processes() {
    let dir = workdir("keys");
    std::fs::write(dir.join("key.txt"), "a shared secret of more than 16 bytes\n").unwrap();
    let text = format!("Mail {} and {} again.", EMAILS[0], EMAILS[0]);
    let redact = |args: &[&str]| {
        let mut all = vec!["redact", "--schema", "schema.json"];
        all.extend(args);
        anote(&dir, &all, text.as_bytes())
    };
    let no_key = redact(&["--default-op", "hash"]);
    assert_eq!(no_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("error [bad_key]"));

    let keyed = |op: &str| {
        let out = redact(&["--default-op", op, "--key-file", "key.txt"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let (hashed, pseudonymised) = (keyed("hash"), keyed("pseudonym"));
    assert_eq!(hashed, keyed("hash"), "two processes, one key, one hash");
    assert_eq!(pseudonymised, keyed("pseudonym"));
    assert!(!hashed.contains(EMAILS[0]) && !pseudonymised.contains(EMAILS[0]));
    let p: Vec<&str> = pseudonymised
        .split_whitespace()
        .filter(|w| w.starts_with("EMAIL_"))
        .collect();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0], p[1], "{pseudonymised}");

    // Without a key, pseudonyms get one made for the run, and say so.
    let once = redact(&["--default-op", "pseudonym"]);
    assert!(String::from_utf8_lossy(&once.stderr).contains("a key made for this run"));
    assert_ne!(String::from_utf8(once.stdout).unwrap(), pseudonymised);
}

#[test]
fn the_mapping_is_written_only_when_asked_and_only_for_its_owner() {
    let dir = workdir("mapping");
    let input = format!(r#"{{"id": "a", "text": "Write to {}."}}"#, EMAILS[0]);
    let out = anote(
        &dir,
        &[
            "redact",
            "--schema",
            "schema.json",
            "--jsonl",
            "--mapping",
            "mapping.jsonl",
        ],
        input.as_bytes(),
    );
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(EMAILS[0]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: mapping.jsonl will hold original values"));
    let mapping = lines(&std::fs::read(dir.join("mapping.jsonl")).unwrap());
    assert_eq!(mapping[0]["original"], EMAILS[0]);
    assert_eq!(mapping[0]["id"], "a");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("mapping.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn eval_skips_malformed_gold_lines_and_scores_a_missing_prediction_as_empty() {
    let dir = workdir("eval");
    let gold = [
        r#"{"id": "a", "text": "mail ann@example.com", "entities": [{"start": 5, "end": 20, "label": "EMAIL"}]}"#,
        r#"{"id": "b", "text": "mail bob@example.org", "entities": [{"start": 5, "end": 20, "label": "EMAIL"}]}"#,
        r#"{"id": "c", "text": "short", "entities": [{"start": 3, "end": 99, "label": "EMAIL"}]}"#,
        r#"{"id": "d", "text": "short", "entities": [{"start": 4, "end": 2, "label": "EMAIL"}]}"#,
    ];
    std::fs::write(dir.join("gold.jsonl"), gold.join("\n")).unwrap();
    // The other system answered for "a" only.
    std::fs::write(dir.join("pred.jsonl"), gold[0]).unwrap();
    let out = anote(
        &dir,
        &[
            "eval",
            "--data",
            "gold.jsonl",
            "--schema",
            "schema.json",
            "--predictions",
            "pred.jsonl",
            "--json",
        ],
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let broken: Vec<u64> = r["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["line"].as_u64().unwrap())
        .collect();
    assert_eq!(broken, [3, 4]);
    assert_eq!(r["scores"]["documents"], 2);
    let micro = &r["scores"]["strict"]["micro"];
    assert_eq!((micro["tp"].as_u64(), micro["n_gold"].as_u64()), (Some(1), Some(2)));
    assert!(stderr.contains("gold.jsonl:3: skipped"), "{stderr}");
}

#[test]
fn json_schema_prints_the_schema_format_that_docs_hold() {
    let out = anote(&workdir("json-schema"), &["json-schema"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema.schema.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == docs,
        "docs/schema.schema.json is stale: cargo run --bin anote -- json-schema > docs/schema.schema.json"
    );
}

#[test]
fn a_prompt_cache_holds_a_file_per_schema_that_later_runs_read_instead_of_the_model() {
    let dir = workdir("prompt-cache");
    std::fs::write(dir.join("in.txt"), format!("Mail {} or {}.", EMAILS[0], EMAILS[1])).unwrap();
    std::fs::write(
        dir.join("other.json"),
        r#"{"labels": [{"label": "EMAIL", "recognizer": "email"}, {"label": "NAME"}]}"#,
    )
    .unwrap();
    let extract = |schema: &str| {
        let out = anote(
            &dir,
            &["--prompt-cache", "cache", "extract", "--schema", schema, "in.txt"],
            b"",
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let files = || {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
    };
    let (first, _) = extract("schema.json");
    assert!(first.contains(EMAILS[1]), "{first}");
    let [kept] = &files()[..] else { panic!("{:?}", files()) };
    let name = kept.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with(".prompt") && name.len() == 64 + 7, "{name}");
    #[cfg(unix)]
    let identity = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.len())
    };
    #[cfg(unix)]
    let before = identity(kept);

    // A second run reads the copy and leaves it as it is.
    let (second, notes) = extract("schema.json");
    assert_eq!(second, first);
    assert!(notes.is_empty(), "{notes}");
    #[cfg(unix)]
    assert_eq!(identity(kept), before, "the copy was written again");

    // A copy cut short is refused, the prompt read from the model and kept whole again.
    let whole = std::fs::metadata(kept).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(kept)
        .unwrap()
        .set_len(whole / 2)
        .unwrap();
    let (third, notes) = extract("schema.json");
    assert_eq!(third, first);
    assert!(notes.contains("reading the prompt from the model"), "{notes}");
    assert_eq!(std::fs::metadata(kept).unwrap().len(), whole);

    // Another schema has a copy of its own.
    extract("other.json");
    assert_eq!(files().len(), 2, "{:?}", files());
}
