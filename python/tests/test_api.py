"""The Python API on the real model: offsets as str indices, redaction without original
values, errors with the CLI's codes, the GIL released while the model runs."""

import json
import threading
import warnings

import pytest

from anote_ner import RECOGNIZERS, AnoteError, Entity, Extractor, default_model
from conftest import KEY


def test_an_email_is_found_with_str_offsets(pii):
    assert pii.extract("Mail ana@example.com") == [
        Entity("EMAIL_ADDRESS", 5, 20, "ana@example.com", 1.0, "pattern")
    ]


def test_offsets_index_the_python_string_beyond_ascii(pii):
    text = "😀 Écrivez à José Álvarez: jose.alvarez@example.org, tél. +34 912 345 678."
    found = pii.extract(text)
    assert {e.label for e in found} >= {"PERSON", "EMAIL_ADDRESS"}
    for e in found:
        assert text[e.start : e.end] == e.text, e


def test_extraction_equals_the_cli(pii, cli):
    texts = [
        "Dear Mrs. Olga Petrova, your card 4111 1111 1111 1111 was charged on 2024-03-05.",
        "Contact José Álvarez at jose.alvarez@example.org or +34 912 345 678 😀.",
    ]
    for text, ours in zip(texts, pii.extract_many(texts)):
        theirs = json.loads(cli(["extract", "--preset", "pii"], text))
        assert [(e.label, e.start, e.end, e.text) for e in ours] == [
            (e["label"], e["start"], e["end"], e["text"]) for e in theirs["entities"]
        ]


def test_redaction_holds_no_original_value_unless_asked(pii):
    text = "Call Ana Silva on +1 415 555 0100 or write to ana.silva@example.com."
    ops = {"PERSON": "pseudonym", "PHONE_NUMBER": "mask:#:2", "*": "replace"}
    r = pii.redact(text, operators=ops, key=KEY)
    originals = [text[e.start : e.end] for e in r.entities]
    assert "Ana Silva" in originals and "ana.silva@example.com" in originals
    for value in originals:
        assert value not in r.text
        assert all(value not in str(v) for e in r.entities for v in vars(e).values())
    for e in r.entities:
        assert r.text[e.redacted_start : e.redacted_end] == e.replacement
        assert e.original is None
    person = next(e for e in r.entities if e.label == "PERSON")
    assert person.replacement.startswith("PERSON_")
    # The same key names the same person the same way in another text; another key does not.
    again = pii.redact("Ana Silva wrote back.", operators=ops, key=KEY)
    assert again.entities[0].replacement == person.replacement
    other = pii.redact("Ana Silva wrote back.", operators=ops, key=KEY + "x")
    assert other.entities[0].replacement != person.replacement
    mapped = pii.redact(text, operators=ops, key=KEY, mapping=True)
    assert [e.original for e in mapped.entities] == originals


def test_natural_language_labels(pii):
    x = pii.with_schema(
        schema={
            "labels": [
                {"label": "date of birth", "description": "the day a person was born"},
                {"label": "Person Name", "description": "a person's name"},
            ]
        }
    )
    assert x.adapter == pii.adapter
    found = x.extract("Maria Lopez was born on 12 March 1984.")
    assert ("Person Name", "Maria Lopez") in {(e.label, e.text) for e in found}
    assert {e.label for e in found} <= {"date of birth", "Person Name"}


def test_the_listed_recognizers_fill_the_types_that_name_them(pii):
    assert {"email", "money", "quantity"} <= set(RECOGNIZERS)
    assert all(RECOGNIZERS.values())
    x = pii.with_schema(
        schema={
            "labels": [
                {"label": "dose", "recognizer": "quantity"},
                {"label": "price", "recognizer": "money"},
            ]
        }
    )
    found = x.extract("Take 500 mg twice a day; a box costs $12.50.")
    assert [(e.label, e.text) for e in found if e.source == "pattern"] == [
        ("dose", "500 mg"),
        ("price", "$12.50"),
    ]


def test_errors_carry_the_cli_codes(pii):
    with pytest.raises(AnoteError) as e:
        pii.with_schema(schema={"labels": []})
    assert e.value.code == "invalid_schema"
    with pytest.raises(AnoteError) as e:
        pii.redact("Ana Silva", operators={"*": "pseudonym"}, key=None)
    assert e.value.code == "bad_key"
    with pytest.raises(AnoteError) as e:
        pii.redact("Ana Silva", operators={"*": "blur"})
    assert e.value.code == "invalid_schema"
    too_large = "a" * (2 * 1024 * 1024 + 1)
    with pytest.raises(AnoteError) as e:
        pii.extract(too_large)
    assert e.value.code == "input_too_large"
    # Many texts: the bad one gets its error in its place, the others their entities.
    ok, bad = pii.extract_many(["Mail ana@example.com", too_large], return_errors=True)
    assert ok[0].label == "EMAIL_ADDRESS" and bad.code == "input_too_large"
    with pytest.raises(TypeError):
        pii.extract_many(["fine", None])
    with pytest.raises(FileNotFoundError, match="cargo xtask setup"):
        Extractor(model="/nowhere/model.gguf", preset="pii")
    with pytest.raises(ValueError):
        Extractor(model=str(default_model()))


def test_the_gil_is_released_while_the_model_runs(pii):
    texts = ["Dear Mrs. Olga Petrova, your card was charged on 2024-03-05 in Berlin."] * 4
    done = threading.Event()
    result = []

    def work():
        result.append(pii.extract_many(texts))
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    # Python code runs on this thread while the other one waits for the engine: with the GIL
    # held by the extraction this loop could not advance until it ended.
    spins = 0
    while not done.is_set():
        spins += 1
        done.wait(0.001)
    worker.join()
    assert spins > 50, spins
    assert all(any(e.text == "Olga Petrova" for e in r) for r in result[0])


def test_a_prompt_cache_keeps_the_schema_prompt_for_the_next_engine(pii, tmp_path):
    text = "Dear Mrs. Olga Petrova, your card 4111 1111 1111 1111 was charged on 2024-03-05."
    found = pii.extract(text)
    first = Extractor(preset="pii", threads=1, prompt_cache=tmp_path)
    # Read ahead of any text, and kept for the engines after it.
    assert first.prepare() == pii.prepare() > 100
    [kept] = list(tmp_path.iterdir())
    assert kept.suffix == ".prompt" and len(kept.stem) == 64, kept.name
    assert first.extract(text) == found
    written = kept.stat()
    # A later engine reads it instead of the model: it neither warns nor writes it again.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Extractor(preset="pii", threads=1, prompt_cache=tmp_path).extract(text) == found
    assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    # A copy cut short is refused with a warning, read from the model and written whole again.
    whole = kept.read_bytes()
    kept.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(RuntimeWarning, match="reading the prompt from the model"):
        assert Extractor(preset="pii", threads=1, prompt_cache=tmp_path).extract(text) == found
    assert kept.read_bytes() == whole
