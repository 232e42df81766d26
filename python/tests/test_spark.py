"""A real Spark job in local mode over a generated corpus in several partitions: every row
comes back, no original value is left, a person gets one pseudonym in every partition, bad
rows get an error instead of failing the job, and the results equal the CLI's."""

import json
import os
import random
import sys

import pytest

pyspark = pytest.importorskip("pyspark")
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql.functions import spark_partition_id  # noqa: E402

from anote_ner import spark as anote_spark  # noqa: E402
from conftest import KEY  # noqa: E402

PEOPLE = ["Olga Petrova", "Ahmed Khan", "Maria Garcia", "John Smith", "Chen Wei", "Fatima Okafor"]
TEMPLATES = [
    "Dear {name}, your order shipped today. Questions? Write to {email}.",
    "Please call {name} at {phone} before Friday.",
    "Meeting notes: {name} will send the report to {email} by Monday.",
    "{name} ({email}) asked for a refund on invoice 4471.",
]
OPERATORS = {"PERSON": "pseudonym", "*": "replace"}


def corpus(n: int) -> list:
    """(id, text, the personal values in it)."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        name = PEOPLE[i % len(PEOPLE)]
        first, last = name.lower().split()
        values = {"name": name, "email": f"{first}.{last}@example.com", "phone": f"+1 415 555 {1000 + i:04d}"}
        template = rng.choice(TEMPLATES)
        secrets = [v for k, v in values.items() if "{" + k + "}" in template]
        rows.append((f"doc-{i}", template.format(**values), secrets))
    return rows


@pytest.fixture(scope="module")
def spark():
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("anote-ner-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_redaction_job_over_partitions(spark, cli, tmp_path):
    generated = corpus(24)
    rows = [(i, t) for i, t, _ in generated]
    bad = [("null", None), ("huge", "x" * (2 * 1024 * 1024 + 1))]
    df = spark.createDataFrame(rows + bad, "id string, text string").repartition(4)
    df = df.withColumn("partition", spark_partition_id())
    out = anote_spark.redact(df, operators=OPERATORS, key=KEY).collect()

    by_id = {r["id"]: r for r in out}
    assert sorted(by_id) == sorted(i for i, _ in rows + bad)
    assert len({r["partition"] for r in out}) == 4
    assert by_id["null"]["error"] == "bad_input" and by_id["null"]["text"] is None
    assert by_id["huge"]["error"] == "input_too_large" and by_id["huge"]["text"] is None
    assert "text_original" not in out[0].asDict()

    originals = dict(rows)
    pseudonyms = {}  # person -> {replacement: partitions}
    for id_, text, secrets in generated:
        r = by_id[id_]
        assert r["error"] is None
        for secret in secrets:
            assert secret not in r["text"], (secret, r["text"])
        for e in r["entities"]:
            assert r["text"][e["redacted_start"] : e["redacted_end"]] == e["replacement"]
            assert set(e.asDict()) == {"label", "start", "end", "redacted_start", "redacted_end", "operator", "replacement"}
            if e["label"] == "PERSON":
                value = originals[id_][e["start"] : e["end"]]
                pseudonyms.setdefault(value, {}).setdefault(e["replacement"], set()).add(r["partition"])
    for person in PEOPLE:
        assert len(pseudonyms[person]) == 1, (person, pseudonyms[person])
        assert len(next(iter(pseudonyms[person].values()))) >= 2, "the person should be in several partitions"

    # The CLI on the same corpus, with the same key and operators, writes the same.
    key_file = tmp_path / "team.key"
    key_file.write_text(KEY)
    jsonl = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows)
    ops = ["--op", "PERSON=pseudonym", "--default-op", "replace", "--key-file", str(key_file)]
    for line in cli(["redact", "--preset", "pii", *ops, "--jsonl", "-"], jsonl).splitlines():
        theirs = json.loads(line)
        ours = by_id[theirs["id"]]
        assert ours["text"] == theirs["text"]
        assert [e.asDict() for e in ours["entities"]] == theirs["replacements"]


def test_extraction_job_and_kept_originals(spark, tmp_path):
    rows = [(i, t) for i, t, _ in corpus(3)]
    df = spark.createDataFrame(rows, "id string, text string")
    schema = {"labels": [{"label": "Person Name", "description": "a person's name"}]}
    prompts = tmp_path / "prompts"
    found = {r["id"]: r for r in anote_spark.extract(df, schema=schema, prompt_cache=str(prompts)).collect()}
    # The workers kept the schema's prompt for the next job: one file, whatever their number.
    assert [p.suffix for p in prompts.iterdir()] == [".prompt"]
    for id_, text in rows:
        r = found[id_]
        assert r["text"] == text and r["error"] is None
        names = [e["text"] for e in r["entities"] if e["label"] == "Person Name"]
        assert any(p in names for p in PEOPLE), r["entities"]
        assert all(text[e["start"] : e["end"]] == e["text"] for e in r["entities"])

    kept = anote_spark.redact(df, operators={"*": "mask"}, keep_original=True).collect()
    assert sorted((r["id"], r["text_original"]) for r in kept) == sorted(rows)
    with pytest.raises(Exception) as e:
        anote_spark.redact(df, operators={"*": "pseudonym"}, key=None)
    assert getattr(e.value, "code", None) == "bad_key"
