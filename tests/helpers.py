"""Helpers several test files share that build no fixture data: a tseg command in a fresh
interpreter (which modules it loaded), a folder's files, and one WordPiece vocabulary per set of
texts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# The packages that a light command must not load.
HEAVY = ("torch", "transformers", "timm", "tokenizers", "safetensors", "numpy", "PIL")

# A fresh interpreter runs the command and reports which heavy packages and tseg modules it loaded.
PROBE = f"""
import json, sys
from tseg.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:  # --help exits through argparse
    rc = e.code
loaded = {{m.split(".")[0] for m in sys.modules}}
tseg = sorted(m for m in sys.modules if m.startswith("tseg"))
print(json.dumps({{"rc": rc, "heavy": sorted(loaded & {set(HEAVY)!r}), "tseg": tseg}}))
"""


def run_cli(*args: str) -> dict:
    """``tseg ARGS`` in a fresh interpreter: its exit code, the heavy packages and the tseg
    modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def tree(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` (relative path -> bytes), to compare two outputs."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


_VOCABULARIES: dict = {}


def one_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs compared here share one vocabulary (the WordPiece trainer may number tied pieces
    differently from one call to the next; see test_distributed); call it before the runs."""
    from tokenizers import Tokenizer

    import tseg.train.build as build  # on use: importing helpers loads no training code

    real = build.train_tokenizer

    def train_tokenizer(texts, vocab_size):
        key = (tuple(texts), vocab_size)
        if key not in _VOCABULARIES:
            _VOCABULARIES[key] = real(texts, vocab_size).backend_tokenizer.to_str()
        return build.wrap_tokenizer(Tokenizer.from_str(_VOCABULARIES[key]))

    monkeypatch.setattr(build, "train_tokenizer", train_tokenizer)
