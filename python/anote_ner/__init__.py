"""Anote NER: named entities and PII found and redacted by a small language model that runs
on this machine. No text leaves the process; nothing is downloaded.

    from anote_ner import Extractor
    x = Extractor(preset="pii")
    x.extract("Mail ana@example.com")           # [Entity(label='EMAIL_ADDRESS', start=5, end=20, ...)]
    x.redact("Call Ana Silva", operators={"PERSON": "pseudonym"}, key=team_key).text

Offsets are Python `str` indices. Errors of the engine are `AnoteError`, whose `code` is the
stable identifier the CLI prints. `anote_ner.spark` runs the same engine over DataFrames.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Union

from . import _native
from ._native import AnoteError

__all__ = [
    "AnoteError",
    "Entity",
    "Extractor",
    "Redacted",
    "Replacement",
    "PRESETS",
    "RECOGNIZERS",
    "default_model",
]

PRESETS: List[str] = list(_native.PRESETS)
#: The built-in recognizers a schema type may name (`"recognizer": NAME`), each with what it finds.
RECOGNIZERS: Dict[str, str] = dict(_native.RECOGNIZERS)

SchemaLike = Union[Mapping[str, object], str, os.PathLike]


@dataclass(frozen=True)
class Entity:
    """A span of the text: `text == source_text[start:end]`."""

    label: str
    start: int
    end: int
    text: str
    score: float
    #: "model" or "pattern" (a validated recognizer: e-mail, card number...)
    source: str


@dataclass(frozen=True)
class Replacement:
    """Where a redacted span was (`start:end` in the original text) and where its
    replacement is (`redacted_start:redacted_end` in the redacted text)."""

    label: str
    start: int
    end: int
    redacted_start: int
    redacted_end: int
    operator: str
    replacement: str
    #: The original value, only with `mapping=True`: keep such output as safe as the input.
    original: Optional[str] = None


@dataclass(frozen=True)
class Redacted:
    text: str
    entities: List[Replacement]


def default_model() -> Path:
    """`$ANOTE_MODEL`, else the model `cargo xtask setup` put in the source tree's `models/`."""
    env = os.environ.get("ANOTE_MODEL")
    return Path(env) if env else Path(_native.MODELS_DIR) / _native.DEFAULT_MODEL_FILE


def _schema_json(preset: Optional[str], schema: Optional[SchemaLike]) -> str:
    if schema is None:
        return _native.schema_json(preset=preset)
    if preset is not None:
        raise ValueError("give preset= or schema=, not both")
    if isinstance(schema, Mapping):
        text = json.dumps(schema)
    elif isinstance(schema, str) and schema.lstrip().startswith("{"):
        text = schema
    else:
        text = Path(schema).read_text(encoding="utf-8")
    return _native.schema_json(schema=text)


def _key_bytes(key: Union[str, bytes, None]) -> Optional[bytes]:
    if key is None:
        env = os.environb.get(b"ANOTE_KEY")
        return env if env else None
    return key.encode() if isinstance(key, str) else bytes(key)


def _texts(texts: Iterable[str]) -> List[str]:
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, not str")
    return texts


class Extractor:
    """A model and a schema, ready to extract.

    model: a GGUF file (default: `default_model()`). adapter: "default" (the fine-tuned
    adapter shipped with the package, applied when the model is the base it was trained on),
    "none", or a safetensors file. preset ("pii", "conll") or schema (a dict, JSON text or a
    JSON file; labels may be natural language, "date of birth"). threads: kernel threads,
    set by the first Extractor of a process (default: every core). batch: windows decoded
    together. prompt_cache: a folder where the schema's prompt, once the model has read it,
    is kept (its keys and values: the schema's, nothing of the texts; about 25 MB for the pii
    preset) and read back by later processes instead of from the model; a copy that cannot be
    read or written costs only time (a RuntimeWarning says why).
    """

    def __init__(
        self,
        model: Union[str, os.PathLike, None] = None,
        adapter: str = "default",
        preset: Optional[str] = None,
        schema: Optional[SchemaLike] = None,
        threads: Optional[int] = None,
        batch: int = 16,
        prompt_cache: Union[str, os.PathLike, None] = None,
        *,
        _engine: Optional[_native.Engine] = None,
    ) -> None:
        if preset is None and schema is None:
            raise ValueError(f"give preset= (one of {', '.join(PRESETS)}) or schema=")
        self._schema = _schema_json(preset, schema)
        if _engine is None:
            path = Path(model) if model is not None else default_model()
            if not path.is_file():
                raise FileNotFoundError(
                    f"no model at {path}: run `cargo xtask setup` in the anote-ner source tree to fetch "
                    "the default model, or pass model= or set $ANOTE_MODEL to a GGUF file"
                )
            cache = os.path.expanduser(os.fspath(prompt_cache)) if prompt_cache is not None else None
            _engine = _native.Engine(str(path), adapter, batch, threads, cache)
        self._engine = _engine
        # Fails now, not at the first text, when the schema's prompt leaves no room for one.
        self._engine.check_schema(self._schema)

    @property
    def schema(self) -> dict:
        return json.loads(self._schema)

    @property
    def model_name(self) -> str:
        return self._engine.model_name

    @property
    def adapter(self) -> Optional[str]:
        """sha256 of the adapter in use, None for the base model."""
        return self._engine.adapter

    def with_schema(self, preset: Optional[str] = None, schema: Optional[SchemaLike] = None) -> "Extractor":
        """Another schema over the same loaded model."""
        return Extractor(preset=preset, schema=schema, _engine=self._engine)

    def prepare(self) -> int:
        """Reads the schema's prompt now (from `prompt_cache` where it holds it), so that the
        next extraction starts at the text: a service can do this before its first request.
        Returns the prompt's length in tokens."""
        return self._engine.prepare(self._schema)

    def extract(self, text: str) -> List[Entity]:
        return self._one(self.extract_many([text], return_errors=True)[0])

    def extract_many(
        self, texts: Iterable[str], return_errors: bool = False
    ) -> List[Union[List[Entity], AnoteError]]:
        """Entities of each text, their windows decoded together. A text that cannot be read
        (too large) raises, or with `return_errors` gets its AnoteError in its place."""
        found = self._engine.extract_many(_texts(texts), self._schema)
        return _results(found, lambda r: [Entity(*e) for e in r], return_errors)

    def redact(
        self,
        text: str,
        operators: Optional[Mapping[str, str]] = None,
        key: Union[str, bytes, None] = None,
        mapping: bool = False,
    ) -> Redacted:
        """`text` with every entity replaced. operators: label -> "replace" (`<LABEL>`),
        "mask", "mask:#:4" (character, last N kept), "hash" or "pseudonym"; "*" is every other
        label (default: replace). key: the secret of hash and pseudonym, at least 16 bytes
        (default: $ANOTE_KEY); equal keys give equal pseudonyms in every process. The result
        holds no original value unless `mapping` is true."""
        return self._one(self.redact_many([text], operators, key, mapping, return_errors=True)[0])

    def redact_many(
        self,
        texts: Iterable[str],
        operators: Optional[Mapping[str, str]] = None,
        key: Union[str, bytes, None] = None,
        mapping: bool = False,
        return_errors: bool = False,
    ) -> List[Union[Redacted, AnoteError]]:
        ops = dict(operators) if operators is not None else {"*": "replace"}
        found = self._engine.redact_many(_texts(texts), self._schema, ops, _key_bytes(key), mapping)
        return _results(found, lambda r: Redacted(r[0], [Replacement(*x) for x in r[1]]), return_errors)

    @staticmethod
    def _one(result):
        if isinstance(result, AnoteError):
            raise result
        return result


def _results(found: list, make, return_errors: bool) -> list:
    """`make(r)` of each native result; its errors raised, or kept with `return_errors`."""
    out = []
    for r in found:
        if isinstance(r, AnoteError):
            if not return_errors:
                raise r
            out.append(r)
        else:
            out.append(make(r))
    return out
