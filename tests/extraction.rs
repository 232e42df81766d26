//! The extraction pipeline: grounding guarantees on a tiny random model (whatever it
//! decodes, labels come from the schema and spans from the text), bad input, prefix
//! reuse, the real model on a PII sentence, and scoring equal to `score.py`.

mod common;

use pollster::block_on;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use anote_ner::ner::batch::Settings;
use anote_ner::ner::decode::{self, Grammar};
use anote_ner::ner::eval::{Scorer, Span};
use anote_ner::ner::extract::{pattern_entities, Extractor, Options};
use anote_ner::ner::prompt::{self, Format};
use anote_ner::ner::schema::Schema;
use anote_ner::ner::spans::{Entity, OffsetMap, Source, Unit};
use anote_ner::runtime::gguf::Gguf;
use anote_ner::runtime::model::{Adapter, Compute, KvCache, KvSnapshot, LanguageModel};
use anote_ner::runtime::tokenizer::Tokenizer;
use anote_ner::Engine;
use common::TinyGemma;

fn tiny_extractor() -> Extractor {
    Extractor::new(
        Engine::load(
            TinyGemma {
                context: 8192,
                ..Default::default()
            }
            .bytes()
            .as_slice(),
        )
        .unwrap(),
    )
}

fn tiny_schema() -> Schema {
    Schema::from_json(
        r#"{"labels": [{"label": "ab", "description": "a"}, {"label": "cd"}, {"label": "e", "examples": ["bad"]}]}"#,
    )
    .unwrap()
}

/// A stand-in language model whose logits for the allowed tokens come from `score(position,
/// ids)`: it drives the decoder down chosen grammar paths (the decoder is what is tested).
struct ScriptedLm {
    cache: KvCache,
    score: Box<Scores>,
    /// How many tokens each ask for logits offered, in order.
    asked: Arc<Mutex<Vec<usize>>>,
}

/// Logits for the allowed `ids` at a position.
type Scores = dyn Fn(usize, &[u32]) -> Vec<f32>;

impl ScriptedLm {
    fn new(score: impl Fn(usize, &[u32]) -> Vec<f32> + 'static) -> ScriptedLm {
        ScriptedLm {
            cache: KvCache::new(0, 1),
            score: Box::new(score),
            asked: Arc::default(),
        }
    }

    /// Pseudo-random logits: arbitrary grammar paths, which the grounding guarantees must survive.
    fn random(seed: u64) -> ScriptedLm {
        ScriptedLm::new(move |pos, ids| {
            ids.iter()
                .map(|&i| {
                    ((seed ^ (pos as u64 * 7919) ^ (i as u64 * 104729)).wrapping_mul(0x9E3779B97F4A7C15) >> 40) as f32
                })
                .collect()
        })
    }

    /// Wants `script[k]` as the k-th token after position `first`, and checks the grammar allows it.
    fn teacher(script: Vec<u32>, first: usize) -> ScriptedLm {
        ScriptedLm::new(move |pos, ids| {
            let want = script[pos - first];
            assert!(ids.contains(&want), "the grammar forbids the taught token {want}");
            ids.iter().map(|&i| if i == want { 1.0 } else { 0.0 }).collect()
        })
    }
}

impl LanguageModel for ScriptedLm {
    fn forward_hidden<'a>(&'a mut self, tokens: &'a [u32]) -> Compute<'a, Vec<f32>> {
        self.cache.advance(tokens.len());
        Box::pin(std::future::ready(Ok(vec![self.cache.len() as f32])))
    }
    fn logits<'a>(&'a self, hidden: &'a [f32]) -> Compute<'a, Vec<f32>> {
        // Free decoding (the answer-format comparison) weighs every token.
        let all: Vec<u32> = (0..self.vocab_size() as u32).collect();
        Box::pin(std::future::ready(Ok((self.score)(hidden[0] as usize, &all))))
    }
    fn logits_for<'a>(&'a self, hidden: &'a [f32], ids: &'a [u32]) -> Compute<'a, Vec<f32>> {
        self.asked.lock().unwrap().push(ids.len());
        Box::pin(std::future::ready(Ok((self.score)(hidden[0] as usize, ids))))
    }
    fn position(&self) -> usize {
        self.cache.len()
    }
    fn max_context(&self) -> usize {
        8192
    }
    fn vocab_size(&self) -> usize {
        262_144
    }
    fn truncate(&mut self, position: usize) {
        self.cache.truncate(position)
    }
    fn snapshot(&mut self) -> KvSnapshot {
        self.cache.snapshot()
    }
    fn restore(&mut self, s: &KvSnapshot) -> anote_ner::Result<()> {
        self.cache.restore(s)
    }
    fn set_adapter(&mut self, _: Option<&Adapter>) -> anote_ner::Result<()> {
        unreachable!("no adapter in these tests")
    }
    fn backend(&self) -> &'static str {
        "scripted"
    }
}

/// Where the answer starts: the tokens of the extractor's prompt for `text` (schema prefix
/// in `format`, then the document).
fn answer_start(tok: &Tokenizer, schema: &Schema, format: Format, text: &str) -> usize {
    tok.encode_prompt(&prompt::prefix_in(schema, format)).len() + tok.encode(&prompt::document(text)).len()
}

/// An engine around a scripted model.
fn scripted_engine(tokenizer: Tokenizer, model: ScriptedLm) -> Engine {
    Engine {
        tokenizer,
        model: Box::new(model),
        architecture: "scripted".into(),
        name: "scripted".into(),
        fingerprint: String::new(),
        adapter: None,
    }
}

/// The entities extracted from `text` with `schema` (JSON) when the model answers exactly
/// `answer`, token by token (the real model's tokenizer, a scripted model).
fn extract_answering(schema: &str, text: &str, answer: &[(&str, &str)]) -> Vec<Entity> {
    scripted_extraction(schema, text, answer).0
}

/// [`extract_answering`]'s entities, with how many tokens each ask for logits offered and
/// how many tokens the answer has.
fn scripted_extraction(schema: &str, text: &str, answer: &[(&str, &str)]) -> (Vec<Entity>, Vec<usize>, usize) {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap();
    let schema = Schema::from_json(schema).unwrap();
    let script = decode::answer_tokens(&tok, answer);
    let taught = script.len();
    let first = answer_start(&tok, &schema, Format::Lines, text);
    let model = ScriptedLm::teacher(script, first);
    let asked = model.asked.clone();
    let engine = scripted_engine(tok, model);
    let entities = block_on(Extractor::new(engine).extract(text, &schema, &Options::default(), |_| {}))
        .unwrap()
        .entities;
    let asked = asked.lock().unwrap().clone();
    (entities, asked, taught)
}

/// Each entity as (label, text, source).
fn labelled(entities: &[Entity]) -> Vec<(&str, &str, Source)> {
    entities
        .iter()
        .map(|e| (e.label.as_str(), e.text.as_str(), e.source))
        .collect()
}

#[test]
fn every_entity_is_grounded_whatever_the_model_decodes() {
    let tiny = Engine::load(TinyGemma::default().bytes().as_slice()).unwrap();
    let mut x = Extractor::new(Engine {
        model: Box::new(ScriptedLm::random(3)),
        ..tiny
    });
    let schema = tiny_schema();
    let pool = [
        "a", "b", "c", "d", "e", "o", "s", " ", "é", "<", ">", "abc", " ab", "😀", "東", "\n", ":", "e\u{301}", "ab cd",
    ];
    let mut seed = 11u64;
    let mut total = 0;
    for _ in 0..40 {
        let words: Vec<&str> = (0..30)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                pool[(seed >> 33) as usize % pool.len()]
            })
            .collect();
        let text = words.join(if seed.is_multiple_of(3) { "" } else { " " });
        let mut streamed = Vec::new();
        let r = block_on(x.extract(&text, &schema, &Options::default(), |e| streamed.push(e.clone()))).unwrap();
        streamed.sort_by_key(|e| e.start);
        assert_eq!(
            streamed, r.entities,
            "the stream (in discovery order) and the result differ"
        );
        let map = OffsetMap::new(&text);
        for e in &r.entities {
            total += 1;
            assert!(schema.get(&e.label).is_some(), "label {} is not in the schema", e.label);
            assert_eq!(&text[e.start..e.end], e.text, "span does not match the text");
            assert!(!e.text.trim().is_empty() && e.text.trim() == e.text);
            for unit in [Unit::CodePoints, Unit::Utf16] {
                let (s, t) = (
                    map.convert(e.start, Unit::Bytes, unit).unwrap(),
                    map.convert(e.end, Unit::Bytes, unit).unwrap(),
                );
                assert_eq!(map.convert(s, unit, Unit::Bytes), Some(e.start));
                assert_eq!(map.convert(t, unit, Unit::Bytes), Some(e.end));
            }
        }
        for pair in r.entities.windows(2) {
            assert!(pair[0].end <= pair[1].start, "overlapping entities");
        }
        let unread = |(i, c): &(usize, char)| !c.is_whitespace() && !r.windows.iter().any(|w| w.contains(i));
        assert!(
            !text.char_indices().any(|c| unread(&c)),
            "a character the model never read"
        );
    }
    assert!(
        total > 0,
        "the random model never produced an entity: the test would prove nothing"
    );
}

#[test]
fn the_grammar_admits_every_answer_fine_tuning_teaches() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap();
    // The address block's second line is indented and ends in CRLF: the answer spells each
    // run of whitespace as one space, and the span still maps to the exact document range.
    let text = "Ahmed Khan (42) moved on 2024-01-02 to 12 Oak St\n   Leeds LS1 4AP\r\n, tel +44 20 7946 0018 😀 東京.";
    let gold = [
        ("PERSON", "Ahmed Khan"),
        ("AGE", "42"),
        ("DATE", "2024-01-02"),
        ("ADDRESS", "12 Oak St\n   Leeds LS1 4AP"),
        ("PHONE", "+44 20 7946 0018"),
        ("CITY", "東京"),
    ];
    let labels: Vec<String> = ["ADDRESS", "AGE", "CITY", "DATE", "PERSON", "PHONE"]
        .map(String::from)
        .to_vec();
    let script = decode::answer_tokens(&tok, &gold);
    let taught = script.len();
    let mut model = ScriptedLm::teacher(script, 5);
    let grammar = Grammar::new(&tok, &labels, text);
    let mut decoder = decode::Decoder::new(decode::Limits {
        max_tokens: 200,
        end_penalty: 0.0,
    });
    let mut lines = Vec::new();
    // The prompt (5 tokens) with the first step, then each chosen token with the next.
    let mut input = vec![0; 5];
    while decoder.allowed(&grammar, &|_, _| true) {
        let logits = block_on(model.forward_logits_for(&input, decoder.ids())).unwrap();
        let Some(token) = decoder.choose(&grammar, &logits, |l| {
            lines.push(l);
            true
        }) else {
            break;
        };
        input = vec![token];
    }
    let decoded = decoder.decoded();
    assert_eq!(decoded, taught);
    assert_eq!(lines.len(), gold.len());
    for (line, (label, span)) in lines.iter().zip(gold) {
        assert_eq!(labels[line.label], label);
        let start = text.find(span).unwrap();
        assert_eq!(line.at, [(start, start + span.len())], "{span}");
        assert_eq!(line.text, decode::spell(span));
    }
    // The final empty line ends decoding without being fed back.
    assert_eq!(model.position(), 5 + taught - 1, "decoding stopped early");
}

#[test]
fn a_step_offers_its_tokens_in_the_same_order_every_time() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap();
    let text = "Ahmed Khan moved to 12 Oak St, Leeds LS1 4AP on 2 January 2024; tel +44 20 7946 0018.";
    let labels: Vec<String> = ["ADDRESS", "DATE", "PERSON", "PHONE"].map(String::from).to_vec();
    // Two grammars of one text (each built its own maps) offer the same tokens in the same
    // order at every step of the same answer: the label's tokens, then the span's.
    let steps = || {
        let grammar = Grammar::new(&tok, &labels, text);
        let mut decoder = decode::Decoder::new(decode::Limits {
            max_tokens: 8,
            end_penalty: 0.0,
        });
        let mut offered = Vec::new();
        while decoder.allowed(&grammar, &|_, _| true) {
            offered.push(decoder.ids().to_vec());
            // The same choice in both: the highest token id offered.
            let logits: Vec<f32> = decoder.ids().iter().map(|&id| id as f32).collect();
            if decoder.choose(&grammar, &logits, |_| true).is_none() {
                break;
            }
        }
        offered
    };
    let (a, b) = (steps(), steps());
    assert!(a.iter().filter(|ids| ids.len() > 2).count() > 2, "{a:?}");
    assert_eq!(a, b);
}

#[test]
fn a_step_the_grammar_leaves_one_token_for_is_taken_without_the_model() {
    let (got, asked, taught) = scripted_extraction(
        r#"{"labels": [{"label": "PERSON"}, {"label": "CITY"}]}"#,
        "Maria Gonzalez called from Lyon.",
        &[("PERSON", "Maria Gonzalez"), ("CITY", "Lyon")],
    );
    assert_eq!(
        labelled(&got),
        [
            ("PERSON", "Maria Gonzalez", Source::Model),
            ("CITY", "Lyon", Source::Model)
        ]
    );
    // The colon after each label is the only token its step allows: the answer's other
    // tokens were each chosen among several, the colons appended without asking.
    assert!(asked.iter().all(|&n| n > 1), "asked with one token: {asked:?}");
    assert!(asked.len() <= taught - 2, "{} asks for {taught} tokens", asked.len());
}

#[test]
fn a_text_labelled_once_is_labelled_where_it_recurs_as_a_whole_name() {
    let text = "Maria Gonzalez called from Lyon. Maria Gonzalez met Maria Gonzalezova at the Lyon Biennale in Lyon.";
    // The model names each once; the extractor labels the repeats.
    let got = extract_answering(
        r#"{"labels": [{"label": "PERSON"}, {"label": "CITY"}]}"#,
        text,
        &[("PERSON", "Maria Gonzalez"), ("CITY", "Lyon")],
    );
    let found: Vec<(&str, usize)> = got.iter().map(|e| (e.label.as_str(), e.start)).collect();
    // Not inside "Gonzalezova", nor in "the Lyon Biennale", a longer name.
    assert_eq!(found, [("PERSON", 0), ("CITY", 27), ("PERSON", 33), ("CITY", 94)]);
    assert!(got
        .iter()
        .all(|e| text[e.start..e.end] == e.text && e.source == Source::Model));
}

#[test]
fn a_model_span_not_shaped_like_its_recognizers_type_is_no_entity() {
    // A postcode and "mail" are no phone number and no e-mail address; the answer goes on
    // past them, and the recognizer still finds the real phone number.
    let got = extract_answering(
        r#"{"labels": [{"label": "PHONE_NUMBER", "recognizer": "phone"}, {"label": "CITY"}, {"label": "EMAIL", "recognizer": "email"}]}"#,
        "Taxi to 34736 Lyon, call 0688 843 79 56 or e-mail us.",
        &[("PHONE_NUMBER", "34736"), ("CITY", "Lyon"), ("EMAIL", "mail")],
    );
    assert_eq!(
        labelled(&got),
        [
            ("CITY", "Lyon", Source::Model),
            ("PHONE_NUMBER", "0688 843 79 56", Source::Pattern)
        ]
    );
}

#[test]
fn a_custom_type_that_names_the_quantity_recognizer_gets_every_amount() {
    // The model finds no dose and calls a drug one; the dose type names the quantity
    // recognizer, which finds each dose, and a drug's name (no number in it) is no dose.
    let got = extract_answering(
        r#"{"labels": [{"label": "medication"}, {"label": "dose", "recognizer": "quantity"}]}"#,
        "Started metformin 500 mg twice daily; paracetamol 1 g as needed, max 4 g a day.",
        &[("medication", "metformin"), ("dose", "paracetamol")],
    );
    assert_eq!(
        labelled(&got),
        [
            ("medication", "metformin", Source::Model),
            ("dose", "500 mg", Source::Pattern),
            ("dose", "1 g", Source::Pattern),
            ("dose", "4 g", Source::Pattern)
        ]
    );
}

#[test]
fn a_model_span_keeps_what_a_pattern_entity_leaves_of_it() {
    // The honorific recognizer takes "Dr." and the phone one "(37) 788-063": the person's
    // name stays an entity (dropping it would leave it unredacted), and "Office" is no phone number.
    let got = extract_answering(
        r#"{"labels": [{"label": "TITLE", "recognizer": "honorific"}, {"label": "PERSON"}, {"label": "PHONE_NUMBER", "recognizer": "phone"}]}"#,
        "Please correct it to Dr. Berta Szöllössy, (37) 788-063-Office",
        &[
            ("PERSON", "Dr. Berta Szöllössy"),
            ("PHONE_NUMBER", "(37) 788-063-Office"),
        ],
    );
    assert_eq!(
        labelled(&got),
        [
            ("TITLE", "Dr.", Source::Pattern),
            ("PERSON", "Berta Szöllössy", Source::Model),
            ("PHONE_NUMBER", "(37) 788-063", Source::Pattern)
        ]
    );
}

#[test]
fn a_line_that_cannot_be_placed_is_never_let_end() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap();
    let schema = Schema::from_json(r#"{"labels": [{"label": "PERSON"}, {"label": "CITY"}]}"#).unwrap();
    let text = "Maria Gonzalez called from Lyon.";
    // The model names Maria Gonzalez a second time (the text has her once), then ends the
    // line as if it were new: that step must not be on offer, so the repeat cannot be
    // written and refused (refusing it used to end the answer).
    let script = decode::answer_tokens(&tok, &[("PERSON", "Maria Gonzalez"), ("PERSON", "Maria Gonzalez")]);
    let newline = tok.lookup("\n").unwrap();
    let end_of_list = tok.lookup("\n\n").unwrap();
    let first = answer_start(&tok, &schema, Format::Lines, text);
    let offered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = offered.clone();
    let model = ScriptedLm::new(move |pos, ids| {
        let want = script[pos - first];
        if want == newline {
            seen.lock().unwrap().push(ids.contains(&newline));
        }
        // Where the wanted token is not allowed, the list ends.
        let want = if ids.contains(&want) { want } else { end_of_list };
        ids.iter().map(|&i| if i == want { 1.0 } else { 0.0 }).collect()
    });
    let got = block_on(Extractor::new(scripted_engine(tok, model)).extract(text, &schema, &Options::default(), |_| {}))
        .unwrap();
    let found: Vec<(&str, usize)> = got.entities.iter().map(|e| (e.label.as_str(), e.start)).collect();
    assert_eq!(found, [("PERSON", 0)]);
    assert_eq!(
        *offered.lock().unwrap(),
        [true, false],
        "newline offered after the first and the repeated span"
    );
}

#[test]
fn free_answers_in_every_format_are_grounded_like_constrained_ones() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let gguf = Gguf::parse(&file).unwrap();
    let schema = Schema::from_json(r#"{"labels": [{"label": "PERSON"}, {"label": "CITY"}]}"#).unwrap();
    let text = "Maria Gonzalez called from Lyon.";
    // Each answer also names a label outside the schema, a span outside the text, and a
    // span already named (dropped, and the answer goes on).
    let answers = [
        (
            Format::Lines,
            "PERSON: Maria Gonzalez\nDOG: Lyon\nPERSON: Maria Gonzalez\nCITY: Paris\nCITY: Lyon",
        ),
        (
            Format::Json,
            r#"[{"type": "PERSON", "text": "Maria Gonzalez"}, {"type": "DOG", "text": "Lyon"}, {"type": "PERSON", "text": "Maria Gonzalez"}, {"type": "CITY", "text": "Paris"}, {"type": "CITY", "text": "Lyon"}]"#,
        ),
        (
            Format::Tags,
            "<PERSON>Maria Gonzalez</PERSON> called from <DOG>Lyon</DOG> <PERSON>Maria Gonzalez</PERSON> <CITY>Paris</CITY> <CITY>Lyon</CITY>.",
        ),
    ];
    for (format, answer) in answers {
        let tok = Tokenizer::from_gguf(&gguf).unwrap();
        let script = tok.encode(&format!("{answer}\n\n"));
        let first = answer_start(&tok, &schema, format, text);
        let mut x = Extractor::new(scripted_engine(tok, ScriptedLm::teacher(script, first)));
        let free = Options {
            decoding: Settings {
                free_format: Some(format),
                ..Settings::default()
            },
            ..Options::default()
        };
        let got = block_on(x.extract(text, &schema, &free, |_| {})).unwrap();
        let found: Vec<(&str, &str, usize)> = got
            .entities
            .iter()
            .map(|e| (e.label.as_str(), e.text.as_str(), e.start))
            .collect();
        assert_eq!(
            found,
            [("PERSON", "Maria Gonzalez", 0), ("CITY", "Lyon", 27)],
            "{format:?}"
        );
    }
}

#[test]
fn the_cached_schema_prefix_gives_the_same_result_as_a_fresh_one() {
    let schema = tiny_schema();
    let text = "abc eos bad abc";
    let mut warm = tiny_extractor();
    let first = block_on(warm.extract(text, &schema, &Options::default(), |_| {})).unwrap();
    block_on(warm.extract("cab ode", &schema, &Options::default(), |_| {})).unwrap();
    let again = block_on(warm.extract(text, &schema, &Options::default(), |_| {})).unwrap();
    let fresh = block_on(tiny_extractor().extract(text, &schema, &Options::default(), |_| {})).unwrap();
    assert_eq!(first.entities, again.entities);
    assert_eq!(first.entities, fresh.entities);
    // Read ahead (as the page does while its user pastes), the prompt is in the cache and
    // the extraction that follows finds the same.
    let mut prepared = tiny_extractor();
    let tokens = block_on(prepared.prepare(&schema)).unwrap();
    assert_eq!(prepared.engine.model.position(), tokens);
    let after = block_on(prepared.extract(text, &schema, &Options::default(), |_| {})).unwrap();
    assert_eq!(first.entities, after.entities);
}

/// `schema`'s prepared prompt cache as `save_prepared` writes it.
fn saved(x: &Extractor, schema: &Schema) -> Vec<u8> {
    let mut bytes = Vec::new();
    x.save_prepared(schema, &mut |piece| {
        bytes.extend_from_slice(piece);
        Ok(())
    })
    .unwrap();
    bytes
}

#[test]
fn a_saved_prompt_cache_loads_into_a_fresh_engine_as_it_was_computed() {
    let schema = tiny_schema();
    let text = "abc eos bad abc";
    let mut first = tiny_extractor();
    let key = first.prompt_key(&schema).unwrap().expect("a CPU model saves its cache");
    let tokens = block_on(first.prepare(&schema)).unwrap();
    let bytes = saved(&first, &schema);
    let next = block_on(first.engine.model.forward(&[270])).unwrap();
    let expected = block_on(first.extract(text, &schema, &Options::default(), |_| {})).unwrap();

    let mut second = tiny_extractor();
    assert_eq!(second.prompt_key(&schema).unwrap(), Some(key));
    assert_eq!(second.load_prepared(&schema, &bytes.as_slice()).unwrap(), tokens);
    assert_eq!(second.engine.model.position(), tokens);
    assert_eq!(
        block_on(second.engine.model.forward(&[270])).unwrap(),
        next,
        "the same bits"
    );
    let found = block_on(second.extract(text, &schema, &Options::default(), |_| {})).unwrap();
    assert_eq!(found.entities, expected.entities);
    assert_eq!(saved(&second, &schema), bytes, "what was read writes back the same");

    // Another schema, a cut or altered file, another adapter: refused, and nothing is cached.
    let other = Schema::from_json(r#"{"labels": [{"label": "ab"}]}"#).unwrap();
    let mut altered = bytes.clone();
    altered[30] ^= 1; // inside the key
    let mut adapted = tiny_extractor();
    let pairs = common::projections(6);
    let adapter = Adapter::from_bytes(&common::adapter_file(&adapted.engine.fingerprint, &pairs, 0.5), None).unwrap();
    adapted.engine.set_adapter(Some(&adapter)).unwrap();
    assert_ne!(adapted.prompt_key(&schema).unwrap(), first.prompt_key(&schema).unwrap());
    for (x, schema, bytes) in [
        (&mut tiny_extractor(), &other, &bytes[..]),
        (&mut tiny_extractor(), &schema, &bytes[..bytes.len() - 4]),
        (&mut tiny_extractor(), &schema, &bytes[..20]),
        (&mut tiny_extractor(), &schema, &altered[..]),
        (&mut adapted, &schema, &bytes[..]),
    ] {
        assert_eq!(x.load_prepared(schema, &bytes).unwrap_err().code(), "stored_prompt");
        assert_eq!(
            x.save_prepared(schema, &mut |_| Ok(())).unwrap_err().code(),
            "stored_prompt",
            "nothing was cached"
        );
    }
}

#[test]
fn bad_input_is_an_error_or_a_correct_result() {
    let mut x = tiny_extractor();
    let schema = tiny_schema();
    assert!(block_on(x.extract("", &schema, &Options::default(), |_| {}))
        .unwrap()
        .entities
        .is_empty());
    let ws = block_on(x.extract(" \n\t  ", &schema, &Options::default(), |_| {})).unwrap();
    assert!(ws.entities.is_empty() && ws.windows.is_empty());
    let huge = "abc ".repeat(600_000);
    assert_eq!(
        block_on(x.extract(&huge, &schema, &Options::default(), |_| {}))
            .unwrap_err()
            .code(),
        "input_too_large"
    );
    // A long text is read whole, window by window, with progress (the browser test pastes 1 MB
    // into the page, watches the progress and cancels).
    let seen = std::cell::RefCell::new(Vec::new());
    let counted = Options {
        progress: &|p| seen.borrow_mut().push(p),
        ..Options::default()
    };
    let mb = "Ab cd e. ".repeat(2000);
    let r = block_on(x.extract(&mb, &schema, &counted, |_| {})).unwrap();
    let seen = seen.borrow();
    // Every window's end is told, in order, and the share moves between them (decoding
    // steps), never back, from 0 to 1.
    let total = r.windows.len();
    assert!(seen.iter().all(|p| p.total == total));
    let done: Vec<usize> = seen.iter().map(|p| p.done).collect();
    let mut told: Vec<usize> = done.clone();
    told.dedup();
    assert_eq!(told, (0..=total).collect::<Vec<_>>());
    assert!(seen.len() > total + 1, "no report between windows");
    assert!(seen.windows(2).all(|w| w[1].share >= w[0].share));
    assert_eq!((seen[0].share, seen.last().unwrap().share), (0.0, 1.0));
    assert!(
        seen.iter().any(|p| p.done == 0 && p.share > 0.0),
        "nothing moved before the first window ended"
    );
    assert_eq!(r.windows.last().unwrap().end, mb.trim_end().len());
    let controls = "<eos><bos><start_of_turn>user\n<end_of_turn></s>".repeat(20);
    for e in block_on(x.extract(&controls, &schema, &Options::default(), |_| {}))
        .unwrap()
        .entities
    {
        assert_eq!(&controls[e.start..e.end], e.text);
    }
    // A long sentence is read in overlapping windows that cover all of it.
    let long = "abc bad eos ".repeat(400);
    let r = block_on(x.extract(&long, &schema, &Options::default(), |_| {})).unwrap();
    assert!(r.windows.len() > 1);
    assert!(r.windows.windows(2).all(|p| p[1].start < p[0].end));
    assert_eq!(
        (r.windows[0].start, r.windows.last().unwrap().end),
        (0, long.trim_end().len())
    );
    let bad = Schema {
        labels: vec![],
        ..tiny_schema()
    };
    assert_eq!(
        block_on(x.extract("abc", &bad, &Options::default(), |_| {}))
            .unwrap_err()
            .code(),
        "invalid_schema"
    );
}

#[test]
fn real_model_and_recognizers_on_a_pii_sentence() {
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let mut x = Extractor::new(Engine::load(&file).unwrap());
    let text =
        "Please call Ahmed Khan on +44 20 7946 0018 at the Manchester office, or write to ahmed.khan@example.com.";
    let r = block_on(x.extract(text, &Schema::preset("pii").unwrap(), &Options::default(), |_| {})).unwrap();
    let got = labelled(&r.entities);
    println!("{got:?}");
    assert!(got.contains(&("PHONE_NUMBER", "+44 20 7946 0018", Source::Pattern)));
    assert!(got.contains(&("EMAIL_ADDRESS", "ahmed.khan@example.com", Source::Pattern)));
    assert!(
        got.contains(&("PERSON", "Ahmed Khan", Source::Model)),
        "the model missed the person"
    );
}

/// Recognizers on the PII dev set: scored by our scorer and by `score.py`, which must agree,
/// and strict micro-F1 ≥ 0.95 over the labels they cover.
#[test]
fn recognizer_scores_on_the_pii_dev_set_equal_score_py() {
    let gold_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval/presidio_synth_v2/dev.jsonl");
    let schema = Schema::preset("pii").unwrap();
    let mut scorer = Scorer::default();
    let mut covered = Scorer::default();
    let covered_labels = [
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "IP_ADDRESS",
        "US_SSN",
        "DOMAIN_NAME",
    ];
    let mut pred_lines = String::new();
    for line in std::fs::read_to_string(&gold_path).unwrap().lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = doc["text"].as_str().unwrap();
        let map = OffsetMap::new(text);
        let cp = |b| map.convert(b, Unit::Bytes, Unit::CodePoints).unwrap();
        let pred: Vec<serde_json::Value> = pattern_entities(text, &schema)
            .iter()
            .map(|e| serde_json::json!({"start": cp(e.start), "end": cp(e.end), "label": e.label}))
            .collect();
        let p = serde_json::json!({"id": doc["id"], "entities": pred});
        scorer.add(&common::gold_spans(&doc), &common::gold_spans(&p));
        let keep = |s: &Vec<Span>| {
            s.iter()
                .filter(|x| covered_labels.contains(&x.2.as_str()))
                .cloned()
                .collect::<Vec<_>>()
        };
        covered.add(&keep(&common::gold_spans(&doc)), &keep(&common::gold_spans(&p)));
        pred_lines += &format!("{p}\n");
    }
    let pred_path = std::env::temp_dir().join(format!("anote-pred-{}.jsonl", std::process::id()));
    std::fs::write(&pred_path, pred_lines).unwrap();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval/score.py"))
        .args(["--json", "--gold"])
        .arg(&gold_path)
        .arg("--pred")
        .arg(&pred_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = scorer.finish();
    for (mode, summary) in [("strict", &ours.strict), ("partial", &ours.partial)] {
        let r = &reference[mode];
        assert!(
            (r["micro"]["f1"].as_f64().unwrap() - summary.micro.f1).abs() < 1e-9,
            "{mode} micro F1"
        );
        assert!(
            (r["macro"]["f1"].as_f64().unwrap() - summary.macro_f1).abs() < 1e-9,
            "{mode} macro F1"
        );
        for (label, m) in &summary.per_label {
            assert_eq!(
                r["per_label"][label]["tp"].as_u64().unwrap() as usize,
                m.tp,
                "{mode} {label}"
            );
        }
    }
    // `anote eval --predictions` scores a stored predictions file the same way.
    let cli = Command::new(env!("CARGO_BIN_EXE_anote"))
        .args(["eval", "--json", "--preset", "pii", "--data"])
        .arg(&gold_path)
        .arg("--predictions")
        .arg(&pred_path)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    for mode in ["strict", "partial"] {
        let (theirs, ours) = (&reference[mode]["micro"]["f1"], &cli["scores"][mode]["micro"]["f1"]);
        assert!(
            (theirs.as_f64().unwrap() - ours.as_f64().unwrap()).abs() < 1e-9,
            "--predictions {mode}"
        );
    }
    let f1 = covered.finish().strict.micro.f1;
    println!("recognizers, strict micro-F1 over the labels they cover: {f1:.3}");
    assert!(f1 >= 0.95, "recognizer F1 {f1}");
}

#[test]
fn training_sequences_are_the_extractors_prompt_and_answer_tokens() {
    use anote_ner::ner::finetune::{render, Doc, Example, GoldSpan};
    let file = std::fs::File::open(common::real_model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap();
    let schema = Schema::from_json(r#"{"labels": [{"label": "PERSON"}, {"label": "CITY"}]}"#).unwrap();
    let span = |start, end, label: &str| GoldSpan {
        start,
        end,
        label: label.into(),
    };
    let example = Example {
        schema: schema.clone(),
        docs: vec![
            Doc {
                // Code-point offsets: the emoji is one code point, four bytes.
                text: "😀 Ana met Bo in Oslo.".into(),
                entities: vec![span(16, 20, "CITY"), span(2, 5, "PERSON"), span(10, 12, "ORG")],
            },
            Doc {
                text: "Nothing here.".into(),
                entities: vec![],
            },
        ],
    };
    let seq = render(&tok, &example).unwrap();
    let prefix = tok.encode_prompt(&anote_ner::ner::prompt::prefix(&schema));
    assert_eq!(seq.ids[..prefix.len()], prefix[..]);
    let answers: Vec<String> = seq.answers.iter().map(|r| tok.decode(&seq.ids[r.clone()])).collect();
    // Sorted by position; ORG is not in the schema, so it is left out.
    assert_eq!(answers, ["PERSON: Ana\nCITY: Oslo\n\n", "\n"]);
    let between = tok.decode(&seq.ids[seq.answers[0].end..seq.answers[1].start]);
    assert_eq!(between, "Text:\nNothing here.\nEntities:\n");

    let outside = Example {
        schema,
        docs: vec![Doc {
            text: "Ana".into(),
            entities: vec![span(0, 9, "PERSON")],
        }],
    };
    assert_eq!(render(&tok, &outside).unwrap_err().code(), "bad_gold");
}

#[test]
fn a_schema_whose_prompt_cannot_fit_the_context_is_refused_before_any_work() {
    let mut x = tiny_extractor();
    let long = "guideline ".repeat(99);
    let types: Vec<String> = (0..64)
        .map(|i| format!(r#"{{"label": "T{i}", "description": "{long}"}}"#))
        .collect();
    // Within every per-field limit, so the schema alone validates.
    let schema = Schema::from_json(&format!(r#"{{"labels": [{}]}}"#, types.join(","))).unwrap();
    let e = x.check_schema(&schema).unwrap_err();
    assert_eq!(e.code(), "invalid_schema");
    assert!(e.to_string().contains("tokens; the limit is"), "{e}");
    let e = block_on(x.extract("ab cd", &schema, &Options::default(), |_| {})).unwrap_err();
    assert_eq!(e.code(), "invalid_schema", "{e}");
    assert_eq!(block_on(x.prepare(&schema)).unwrap_err().code(), "invalid_schema");
    assert!(x.check_schema(&tiny_schema()).unwrap() > 0);
}

#[test]
fn natural_language_labels_pass_through_the_prompt_and_the_grammar() {
    let text = "Booked a table at Chez Panisse for Ann, born 12 April 1990.";
    let schema =
        r#"{"labels": [{"label": "Restaurant Name", "description": "a restaurant"}, {"label": "date of birth"}]}"#;
    let got = extract_answering(
        schema,
        text,
        &[("Restaurant Name", "Chez Panisse"), ("date of birth", "12 April 1990")],
    );
    assert_eq!(
        labelled(&got),
        [
            ("Restaurant Name", "Chez Panisse", Source::Model),
            ("date of birth", "12 April 1990", Source::Model)
        ]
    );
    let prompt = prompt::prefix(&Schema::from_json(schema).unwrap());
    assert!(prompt.contains("- Restaurant Name: a restaurant"), "{prompt}");
}
