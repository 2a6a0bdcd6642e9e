"""Where a result comes from: the fields every ``benchmarks/results/*.json`` records.

    report = {**provenance.start(provenance.command_line(__file__, argv)), ...}
    ...  # measure
    provenance.finish(report)  # the load average after, and a note for anything unknown

The fields, at the top level of the report:

- ``commit``: the checkout's HEAD, 40 hex digits (``$TSEG_COMMIT`` where the tree has no git
  history, e.g. a copy on a GPU machine; a ``+dirty`` suffix there sets ``dirty``);
- ``dirty``: whether tracked files (other than ``benchmarks/results/``) differed from that commit;
- ``command``: the command line that produced the file;
- ``machine``: CPU model, cores, platform, Python and library versions, plus what the script adds;
- ``load_average_before`` / ``load_average_after``: ``os.getloadavg()`` around the measurement.

A field that could not be known is ``null`` and ``provenance_note`` says why (``check`` holds a
report to that; the test of every committed result runs it).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIELDS = (
    "commit",
    "dirty",
    "command",
    "machine",
    "load_average_before",
    "load_average_after",
)
NOTE = "provenance_note"
HEX40 = re.compile(r"[0-9a-f]{40}")
# Versions recorded when installed (read from package metadata: nothing is imported).
LIBRARIES = ("torch", "transformers", "timm", "numpy", "onnxruntime")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def full_commit(ref: str) -> str | None:
    """``ref`` (a short or full hash, a branch) as the 40-hex commit it names, or None."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out if HEX40.fullmatch(out) else None
    return None


def git_state() -> dict[str, Any]:
    """``{"commit": 40 hex or None, "dirty": bool or None}`` of this checkout (or $TSEG_COMMIT)."""
    given = os.environ.get("TSEG_COMMIT", "").strip()
    if given:
        ref, _, flag = given.partition("+")
        sha = ref if HEX40.fullmatch(ref) else full_commit(ref)
        return {"commit": sha, "dirty": True if flag == "dirty" else None}
    try:
        sha = _git("rev-parse", "HEAD")
        # Results are outputs, not code: a chain of benchmarks rewrites them as it goes.
        changed = _git(
            "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"
        )
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(changed)}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, two decimals."""
    return [round(v, 2) for v in os.getloadavg()]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


#: The instruction sets that decide which precision is fast (bf16 and int8 units).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """Which of ``CPU_FLAGS`` /proc/cpuinfo lists (empty where it cannot be read): two
    "AMD EPYC" machines with and without AVX512-BF16 gave 2x different matmul peaks."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in CPU_FLAGS if f in have]
    return []


def machine(**extra: Any) -> dict[str, Any]:
    """The machine and software a figure was measured on; ``extra`` adds the script's own
    fields (threads used, pinned CPUs, GPUs...)."""
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return {**out, **extra}


def command_line(script: str | Path, argv: list[str] | None = None) -> str:
    """``python benchmarks/<script> ARGS`` as a shell line (``argv``: the script's arguments,
    default ``sys.argv[1:]``)."""
    path = Path(script).resolve()
    with contextlib.suppress(ValueError):
        path = path.relative_to(ROOT)
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", str(path), *map(str, args)])


def start(command: str | None, machine_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields known when a run starts (all but ``load_average_after``)."""
    return {
        **git_state(),
        "command": command,
        "machine": machine() if machine_info is None else machine_info,
        "load_average_before": load_average(),
    }


def finish(report: dict[str, Any], why: dict[str, str] | None = None) -> dict[str, Any]:
    """Record the load average after the run and, for any field left null, a note saying why
    (``why``: field -> reason, beside the usual ones); returns ``report``."""
    report["load_average_after"] = load_average()
    unknown = [k for k in FIELDS if report.get(k) is None]
    if unknown and not report.get(NOTE):
        reasons = {
            "commit": "no git history here and no $TSEG_COMMIT",
            "dirty": "no git history here, or $TSEG_COMMIT without '+dirty'",
            **(why or {}),
        }
        report[NOTE] = "not recorded: " + "; ".join(
            f"{k} ({reasons.get(k, 'unknown')})" for k in unknown
        )
    return report


def check(report: Any) -> list[str]:
    """What is wrong with a report's provenance (empty: nothing). Every field must be present;
    null only where ``provenance_note`` names it as not recorded."""
    if not isinstance(report, dict):
        return ["the report is not a JSON object"]
    problems = [f"no {k!r}" for k in FIELDS if k not in report]
    note = report.get(NOTE)
    if note is not None and (not isinstance(note, str) or not note.strip()):
        problems.append(f"{NOTE} is not a sentence")
        note = None
    for k in FIELDS:
        if (
            k in report
            and report[k] is None
            and not (note and "not recorded" in note and k in note)
        ):
            problems.append(f"{k} is null and {NOTE} does not say it was not recorded")
    c = report.get("commit")
    if c is not None and not (isinstance(c, str) and HEX40.fullmatch(c)):
        problems.append(f"commit {c!r} is not 40 hex digits")
    if report.get("dirty") is not None and not isinstance(report.get("dirty"), bool):
        problems.append("dirty is not true, false or null")
    cmd = report.get("command")
    if cmd is not None and not (isinstance(cmd, str) and cmd.strip()):
        problems.append("command is not a command line")
    m = report.get("machine")
    if m is not None and not (isinstance(m, dict) and m):
        problems.append("machine is not a description")
    for k in ("load_average_before", "load_average_after"):
        v = report.get(k)
        ok = isinstance(v, list) and len(v) == 3
        if v is not None and not (ok and all(isinstance(x, (int, float)) for x in v)):
            problems.append(f"{k} is not three numbers")
    return problems
