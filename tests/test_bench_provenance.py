"""Every committed benchmark result says where it comes from (benchmarks/lib/provenance.py): the
full commit and dirty flag, the command, the machine and the load average before and after; a
field left null only with a provenance_note saying it was not recorded. The committed tables
(.md) are what the scripts' markdown() writes from the JSON beside them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import (
    demo_seeds,
    folder_speed,
    grid,
    ort_threads,
    precision,
    pretraining,
    selftrain,
    shared_cpu,
    speed,
    start,
)
from benchmarks.lib import provenance
from benchmarks.lib.report import RESULTS, md_table, write_report

RESULT_FILES = sorted(RESULTS.glob("*.json"))
ROOT = Path(__file__).resolve().parents[1]


def _has_history() -> bool:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--is-shallow-repository"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return out == "false"


def test_there_are_results():
    assert len(RESULT_FILES) >= 18


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_every_result_records_its_provenance(path):
    report = json.loads(path.read_text(encoding="utf-8"))
    assert provenance.check(report) == []
    if report["commit"] is not None and _has_history():
        # The commit, and every commit the note names, is one of this repository's.
        for sha in {
            report["commit"],
            *re.findall(r"\b[0-9a-f]{40}\b", report.get("provenance_note", "")),
        }:
            assert provenance.full_commit(sha) == sha, sha


def _complete() -> dict:
    return {
        "commit": "a" * 40,
        "dirty": False,
        "command": "python benchmarks/x.py",
        "machine": {"cpu": "x"},
        "load_average_before": [0.1, 0.2, 0.3],
        "load_average_after": [0.1, 0.2, 0.3],
    }


def test_check_accepts_null_only_with_a_note_naming_it():
    assert provenance.check(_complete()) == []
    r = {**_complete(), "dirty": None, "load_average_after": None}
    assert len(provenance.check(r)) == 2
    r["provenance_note"] = "not recorded: dirty (the script did not record it)"
    assert provenance.check(r) == ["load_average_after is null and provenance_note does not say it was not recorded"]  # fmt: skip
    r["provenance_note"] += "; not recorded: load_average_after"
    assert provenance.check(r) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"commit": "5d8560f"}, "40 hex"),
        ({"commit": "unknown"}, "40 hex"),
        ({"dirty": "yes"}, "dirty"),
        ({"command": ""}, "command"),
        ({"machine": {}}, "machine"),
        ({"load_average_before": [1.0, 2.0]}, "three numbers"),
    ],
)
def test_check_names_a_bad_field(change, problem):
    problems = provenance.check({**_complete(), **change})
    assert len(problems) == 1 and problem in problems[0]
    r = _complete()
    del r["machine"]
    assert provenance.check(r) == ["no 'machine'"]


def test_start_and_finish_on_this_checkout(tmp_path):
    r = provenance.finish(provenance.start("python benchmarks/x.py --y"))
    assert provenance.check(r) == []
    assert r["machine"]["cores"] >= 1 and r["machine"]["cpu"] and r["machine"]["python"]
    if _has_history():
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]) and isinstance(r["dirty"], bool)
    path = write_report(tmp_path / "x.json", r, "table\n")
    assert json.loads(path.read_text()) == r and (tmp_path / "x.md").read_text() == "table\n"


def test_write_report_refuses_an_incomplete_report(tmp_path):
    with pytest.raises(ValueError, match="load_average_after"):
        write_report(tmp_path / "x.json", {k: v for k, v in _complete().items() if k != "load_average_after"})  # fmt: skip
    assert not (tmp_path / "x.json").exists()


def test_finish_notes_what_it_could_not_know(monkeypatch):
    monkeypatch.setenv("TSEG_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    r = provenance.finish(provenance.start(None), {"command": "given by no one"})
    assert r["commit"] == "0123456789abcdef0123456789abcdef01234567" and r["dirty"] is None
    assert "dirty" in r["provenance_note"] and "given by no one" in r["provenance_note"]
    assert provenance.check(r) == []
    monkeypatch.setenv("TSEG_COMMIT", "0123456789abcdef0123456789abcdef01234567+dirty")
    assert provenance.git_state()["dirty"] is True


def test_command_line_names_the_script_from_the_root():
    line = provenance.command_line(ROOT / "benchmarks" / "grid.py", ["--out", "a b"])
    assert line == "python benchmarks/grid.py --out 'a b'"


def test_md_table():
    assert md_table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]


# JSON -> markdown: each committed table is what its script writes from the JSON beside it.
# accuracy.md and accuracy_tiny.md are not: selftrain.py adds its row to accuracy.json only, and
# accuracy_tiny.md was written by an earlier markdown().
TABLES = {
    "demo_offline": demo_seeds,
    "demo_tiny": demo_seeds,
    "folder_speed": folder_speed,
    "grid": grid,
    "ort_threads": ort_threads,
    "precision": precision,
    "precision_1thread": precision,
    "pretraining": pretraining,
    "selftrain": selftrain,
    "shared_cpu": shared_cpu,
    "speed": speed,
    "start": start,
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_committed_tables_are_the_scripts_markdown_of_the_json(name):
    report = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    assert TABLES[name].markdown(report) == (RESULTS / f"{name}.md").read_text(encoding="utf-8")
