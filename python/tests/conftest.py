"""Shared fixtures: the real model through the installed wheel, and the CLI built from the
same source (`cargo xtask test` sets $ANOTE_CLI) to compare results with."""

import os
import subprocess
from pathlib import Path

import pytest

from anote_ner import Extractor

ROOT = Path(__file__).resolve().parents[2]
KEY = "a-team-key-of-at-least-16-bytes"


@pytest.fixture(scope="session")
def pii() -> Extractor:
    return Extractor(preset="pii", threads=1)


@pytest.fixture(scope="session")
def cli():
    """Runs `anote ARGS` on stdin, returns stdout."""
    binary = os.environ.get("ANOTE_CLI") or str(ROOT / "target/debug/anote")
    if not Path(binary).is_file():
        pytest.fail(f"no anote CLI at {binary}: set $ANOTE_CLI (cargo xtask test does)")

    def run(args, stdin: str, env=None) -> str:
        done = subprocess.run(
            [binary, "--threads", "1", *args],
            input=stdin.encode(),
            capture_output=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    return run
