"""`cargo xtask bench-spark` (and `cargo xtask bench`): redaction throughput of a local Spark
job at 1 and 2 executor slots against one CLI process on the same corpus, and the time a
Python worker takes to load the model. Writes docs/benchmarks-spark.md.

Environment: ANOTE_BIN (the release CLI), run with the Python of target/pyenv and the release
wheel installed.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession

from anote_ner import Extractor
from anote_ner import spark as anote_spark

DOCS = 150
CORPUS = Path("../shared/eval/presidio_synth_v2/dev.jsonl")
KEY = "benchmark-key-0123456789"
OPERATORS = {"PERSON": "pseudonym", "*": "replace"}


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def cli(rows: list, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        jsonl, key = Path(tmp) / "corpus.jsonl", Path(tmp) / "key"
        jsonl.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
        key.write_text(KEY)
        t0 = time.perf_counter()
        subprocess.run(
            [os.environ["ANOTE_BIN"], "--threads", str(threads), "redact", "--preset", "pii", "--op", "PERSON=pseudonym",
             "--default-op", "replace", "--key-file", str(key), "--jsonl", str(jsonl)],
            check=True, capture_output=True,
        )
        return {"what": f"CLI, one process, `--threads {threads}`", "secs": time.perf_counter() - t0}


def spark_job(rows: list, slots: int) -> dict:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master(f"local[{slots}]").appName("anote-bench")
        .config("spark.ui.enabled", "false").getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = spark.createDataFrame(rows, "id string, text string").repartition(slots * 4)
        df.count()
        # Each Python worker loads the model once: time it where it happens.
        def load(_):
            t0 = time.perf_counter()
            Extractor(preset="pii", threads=1)
            yield os.getpid(), time.perf_counter() - t0

        loads = spark.sparkContext.parallelize(range(slots), slots).mapPartitions(load).collect()
        t0 = time.perf_counter()
        out = anote_spark.redact(df, operators=OPERATORS, key=KEY, threads=1).collect()
        secs = time.perf_counter() - t0
        assert len(out) == len(rows) and all(r["error"] is None for r in out)
        return {
            "what": f"Spark `local[{slots}]`, {slots * 4} partitions, 1 thread per task",
            "secs": secs,
            "load": sum(s for _, s in loads) / len(loads),
        }
    finally:
        spark.stop()


def main() -> None:
    rows = [(d["id"], d["text"]) for d in map(json.loads, CORPUS.read_text().splitlines()[:DOCS])]
    size = sum(len(t.encode()) for _, t in rows)
    results = [cli(rows, 1), cli(rows, 2), spark_job(rows, 1), spark_job(rows, 2)]
    for r in results:
        print(json.dumps(r), flush=True)
    table = "\n".join(
        f"| {r['what']} | {r['secs']:.1f} | {len(rows) / r['secs']:.2f} | {size / r['secs']:.0f} | "
        + (f"{r['load']:.2f} s |" if "load" in r else "— |")
        for r in results
    )
    base = results[0]["secs"]
    md = f"""# Benchmarks: Python and Spark

Reproduce with `cargo xtask bench-spark` (also part of `cargo xtask bench`). It writes this file. One run on one
machine, shared and noisy: compare rows of the same run.

- Machine: {os.cpu_count()} × {cpu()}.
- Corpus: the first {len(rows)} documents of `{CORPUS}` ({size / 1000:.1f} KB), redacted with the `pii` preset,
  `PERSON` pseudonymised, every other label replaced, under one key; the wheel and the CLI are release builds.
- Spark: `anote_ner.spark.redact` over a DataFrame in 4 partitions per slot, timed from the job's start to the last
  row collected, each Python worker's model load included (once per worker: it keeps the model for the next
  partitions). The model load column is the mean time a Python worker took to load the model and adapter
  (`Extractor(preset="pii")`), measured by a job of its own.

| run | seconds | documents/s | bytes/s | model load per worker |
|---|---|---|---|---|
{table}

Documents per second against the CLI on one thread: Spark `local[1]` {base / results[2]['secs']:.2f}× (what running
as a Spark map stage adds or saves: row transfer to Python and back, against the CLI's own start), Spark `local[2]`
{base / results[3]['secs']:.2f}×, the CLI on two threads {base / results[1]['secs']:.2f}×. How this scales out on a cluster:
`docs/scale.md`.
"""
    Path("docs/benchmarks-spark.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
