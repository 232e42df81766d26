"""Anote NER over Spark DataFrames, as a map stage: each Python worker loads the model once
and reuses it for every partition it is given (Spark reuses its Python workers).

    from anote_ner import spark as anote_spark
    safe = anote_spark.redact(df, column="text", operators={"PERSON": "pseudonym", "*": "replace"}, key=team_key)

Rows that cannot be read (null, not a string, too large) keep going through the job: their
`error` column holds the code and the text column is null. See docs/scale.md for clusters.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from pyspark import SparkFiles
from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

import anote_ner
from anote_ner import AnoteError, Extractor, SchemaLike

__all__ = ["redact", "extract", "ENTITY", "REDACTED_ENTITY"]

#: An entity of `extract`'s `entities` column (offsets are string indices).
ENTITY = StructType(
    [
        StructField("label", StringType(), False),
        StructField("start", IntegerType(), False),
        StructField("end", IntegerType(), False),
        StructField("text", StringType(), False),
        StructField("score", FloatType(), False),
        StructField("source", StringType(), False),
    ]
)

#: A replacement of `redact`'s `entities` column: never the original value.
REDACTED_ENTITY = StructType(
    [
        StructField("label", StringType(), False),
        StructField("start", IntegerType(), False),
        StructField("end", IntegerType(), False),
        StructField("redacted_start", IntegerType(), False),
        StructField("redacted_end", IntegerType(), False),
        StructField("operator", StringType(), False),
        StructField("replacement", StringType(), False),
    ]
)

#: Rows handed to the engine at once: their windows are decoded together.
ROWS_PER_CALL = 16

#: The engines this Python worker has loaded, by (model, adapter, threads, batch, prompt_cache).
_ENGINES: dict = {}


def redact(
    df: DataFrame,
    column: str = "text",
    preset: Optional[str] = "pii",
    schema: Optional[SchemaLike] = None,
    operators: Optional[Mapping[str, str]] = None,
    key: Union[str, bytes, None] = None,
    keep_original: bool = False,
    model: Optional[str] = None,
    adapter: str = "default",
    threads: Optional[int] = None,
    batch: int = 16,
    prompt_cache: Optional[str] = None,
) -> DataFrame:
    """`df` with `column` redacted, plus `entities` (array of REDACTED_ENTITY) and `error`
    (null or a code). The original text is gone unless `keep_original` keeps it in
    `<column>_original`. operators and key as in `Extractor.redact` (key: default $ANOTE_KEY
    of the driver; it travels to the executors with the job). model: a path on the
    executors, or the name of a file shipped with `--files` (default: $ANOTE_MODEL there).
    threads: kernel threads per task (default: spark.task.cpus). prompt_cache: a folder on the
    executors where each worker keeps the schema's prompt once read, for the workers after it
    (see `Extractor`)."""
    schema_json = anote_ner._schema_json(None if schema is not None else preset, schema)
    ops = dict(operators) if operators is not None else {"*": "replace"}
    key_bytes = anote_ner._key_bytes(key)
    # Refuses a bad operator or a missing key here rather than in every row.
    anote_ner._native.check_operators(ops, key_bytes)
    added = [StructField("entities", ArrayType(REDACTED_ENTITY), True), StructField("error", StringType(), True)]
    if keep_original:
        added.insert(0, StructField(f"{column}_original", df.schema[column].dataType, True))

    def redact_rows(x: Extractor, texts: List[str]) -> list:
        out = []
        for r in x.redact_many(texts, ops, key_bytes, return_errors=True):
            if isinstance(r, AnoteError):
                out.append(r)
            else:
                rows = [(e.label, e.start, e.end, e.redacted_start, e.redacted_end, e.operator, e.replacement) for e in r.entities]
                out.append((r.text, rows))
        return out

    def row(value: object, result: object) -> Tuple[object, list]:
        kept = [value] if keep_original else []
        if isinstance(result, str):  # an error code
            return None, kept + [None, result]
        text, entities = result
        return text, kept + [entities, None]

    return _map(df, column, added, _Settings(model, adapter, threads, batch, prompt_cache, schema_json), redact_rows, row)


def extract(
    df: DataFrame,
    column: str = "text",
    preset: Optional[str] = None,
    schema: Optional[SchemaLike] = None,
    model: Optional[str] = None,
    adapter: str = "default",
    threads: Optional[int] = None,
    batch: int = 16,
    prompt_cache: Optional[str] = None,
) -> DataFrame:
    """`df` plus `entities` (array of ENTITY) and `error` (null or a code); `column` as it was.
    The other arguments as in `redact`."""
    if preset is None and schema is None:
        raise ValueError("give preset= or schema=")
    schema_json = anote_ner._schema_json(preset, schema)
    added = [StructField("entities", ArrayType(ENTITY), True), StructField("error", StringType(), True)]

    def extract_rows(x: Extractor, texts: List[str]) -> list:
        out = []
        for r in x.extract_many(texts, return_errors=True):
            if isinstance(r, AnoteError):
                out.append(r)
            else:
                out.append([(e.label, e.start, e.end, e.text, e.score, e.source) for e in r])
        return out

    def row(value: object, result: object) -> Tuple[object, list]:
        if isinstance(result, str):
            return value, [None, result]
        return value, [result, None]

    return _map(df, column, added, _Settings(model, adapter, threads, batch, prompt_cache, schema_json), extract_rows, row)


class _Settings:
    """What a worker needs to get its extractor (pickled into the job)."""

    def __init__(
        self,
        model: Optional[str],
        adapter: str,
        threads: Optional[int],
        batch: int,
        prompt_cache: Optional[str],
        schema: str,
    ):
        self.model, self.adapter, self.threads, self.batch = model, adapter, threads, batch
        self.prompt_cache, self.schema = prompt_cache, schema

    def extractor(self) -> Extractor:
        engine_key = (self.model, self.adapter, self.threads, self.batch, self.prompt_cache)
        engine = _ENGINES.get(engine_key)
        if engine is None:
            x = Extractor(
                _model_path(self.model),
                self.adapter,
                schema=self.schema,
                threads=self.threads,
                batch=self.batch,
                prompt_cache=self.prompt_cache,
            )
            _ENGINES[engine_key] = x._engine
            return x
        return Extractor(schema=self.schema, _engine=engine)


def _model_path(model: Optional[str]) -> str:
    if model is None:
        return str(anote_ner.default_model())
    if os.path.exists(model):
        return model
    # A file shipped with `spark-submit --files` (or SparkContext.addFile).
    shipped = SparkFiles.get(os.path.basename(model))
    return shipped if os.path.exists(shipped) else model


def _map(df: DataFrame, column: str, added: List[StructField], settings: _Settings, run, row) -> DataFrame:
    """Maps every partition of `df` through `run(extractor, texts)` ROWS_PER_CALL rows at a
    time; `row(value, result)` gives the new value of `column` and the `added` columns,
    `result` being the run's result or an error code."""
    names = df.schema.names
    if column not in names:
        raise ValueError(f"no column {column!r} in {names}")
    clash = [f.name for f in added if f.name in names]
    if clash:
        raise ValueError(f"the DataFrame already has the columns {clash} that this adds")
    index = names.index(column)
    if settings.threads is None:
        settings.threads = int(df.sparkSession.conf.get("spark.task.cpus", "1"))
    fields = list(df.schema.fields)
    fields[index] = StructField(column, StringType(), True)
    out_schema = StructType(fields + added)

    def partition(rows: Iterable) -> Iterator[tuple]:
        x = None
        for chunk in _chunks(rows, ROWS_PER_CALL):
            values = [r[index] for r in chunk]
            readable = [i for i, v in enumerate(values) if isinstance(v, str)]
            results: List[object] = ["bad_input"] * len(chunk)
            if readable:
                x = x or settings.extractor()
                for i, r in zip(readable, run(x, [values[i] for i in readable])):
                    results[i] = r.code if isinstance(r, AnoteError) else r
            for r, value, result in zip(chunk, values, results):
                new, extra = row(value, result)
                fields = list(r)
                fields[index] = new
                yield tuple(fields + extra)

    return df.sparkSession.createDataFrame(df.rdd.mapPartitions(partition), out_schema)


def _chunks(rows: Iterable, n: int) -> Iterator[list]:
    chunk = []
    for r in rows:
        chunk.append(r)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
