"""Writing a benchmark's report: its JSON (provenance checked) and markdown, tables, progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.lib import provenance

RESULTS = Path(__file__).resolve().parents[1] / "results"


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` whole or not at all (a run killed mid-write keeps its last file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_report(path: Path, report: dict[str, Any], markdown: str | None = None) -> Path:
    """``report`` to ``path`` (JSON) and ``markdown`` beside it as ``.md``; refuses a report
    whose provenance is incomplete (``provenance.check``)."""
    problems = provenance.check(report)
    if problems:
        raise ValueError(f"{path}: provenance: " + "; ".join(problems))
    path = Path(path)
    write_json(path, report)
    if markdown is not None:
        path.with_suffix(".md").write_text(markdown, encoding="utf-8")
    return path


def md_table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A markdown table's lines: the header, its rule, one line per row."""
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
