"""Training on a shared CPU: seconds per step alone and beside one single-threaded CPU-bound
process, for the thread policies tseg could use.

    python benchmarks/shared_cpu.py            # about 8 minutes; nothing else may run
    python benchmarks/shared_cpu.py --quick

Each run is the real ``tseg train`` on the demo recipe (configs/demo/offline.yaml, shortened:
``--steps`` steps, logging every step, a 16-image val split, no threshold search) in its own
process; seconds per step are the median of the differences of log.jsonl's ``time_s`` after
``--skip`` steps. The competitor, started before the run and killed after it, is one process
keeping one core busy: ``python`` (a pure-Python loop, ``while True: pass``) or ``torch`` (a
single-threaded torch process multiplying 512 x 512 matrices in a loop, as another training
job with ``train.threads=1`` would). Policies:

* ``2 threads``: ``train.threads=2``, a fixed team of one thread per core (tseg before).
* ``2 threads, OMP_WAIT_POLICY=PASSIVE``: the same team, its waiting threads sleeping.
* ``1 thread``: ``train.threads=1``.
* ``tseg default``: ``train.threads=0``, the thread governor (tseg.threads).

Writes benchmarks/results/shared_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/shared_cpu.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402

POLICIES: dict[str, tuple[list[str], dict[str, str]]] = {
    "2 threads": (["train.threads=2"], {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (["train.threads=2"], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "1 thread": (["train.threads=1"], {}),
    "tseg default": (["train.threads=0"], {}),
}


def tseg_command() -> list[str]:
    return [sys.executable, "-m", "tseg.cli"]


def step_seconds(log: Path, skip: int) -> tuple[list[float], list[int]]:
    """Seconds between successive logged steps after ``skip`` steps, and the threads logged."""
    recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "step" in r and "time_s" in r]
    times = [r["time_s"] for r in recs]
    threads = [r["threads"] for r in recs if "threads" in r]
    return [b - a for a, b in zip(times[skip:], times[skip + 1 :])], threads


COMPETITORS = {
    "python": "while True: pass",
    "torch": "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True: a @ a",
}


def run_one(
    policy: str, competitor: str | None, steps: int, skip: int, cap_s: float, out: Path
) -> dict[str, Any]:
    """One ``tseg train`` run under ``policy``, alone or beside ``competitor``."""
    overrides, env_extra = POLICIES[policy]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
    env.update(env_extra)
    cmd = [
        *tseg_command(),
        "train",
        str(ROOT / "configs" / "demo" / "offline.yaml"),
        f"train.steps={steps}",
        "train.log_every=1",
        "eval.choose_threshold=false",
        "data.val_size=16",
        "data.test_size=16",
        *overrides,
        "--out",
        str(out),
        "--quiet",
    ]
    busy = None
    if competitor:
        busy = subprocess.Popen([sys.executable, "-c", COMPETITORS[competitor]])
        time.sleep(3.0)  # torch's import is over before the run starts
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=cap_s)
        finished = proc.returncode == 0
        if not finished:
            raise RuntimeError(f"{policy}: tseg train failed: {proc.stderr[-2000:]}")
    except subprocess.TimeoutExpired:
        finished = False  # the steps logged so far still count
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    wall = time.perf_counter() - t
    deltas, threads = step_seconds(out / "log.jsonl", skip)
    if not deltas:
        raise RuntimeError(f"{policy}: fewer than {skip + 2} steps logged in {cap_s} s")
    return {
        "seconds_per_step": round(statistics.median(deltas), 4),
        "steps_timed": len(deltas),
        "finished": finished,
        "wall_s": round(wall, 1),
        "threads_logged": sorted(set(threads)),
    }


def markdown(r: dict[str, Any]) -> str:
    m, comps = r["machine"], r["competitors"]
    lines = [
        f"Training on a shared CPU ({m['cpu']}, {m['cores']} cores; commit `{r['commit'][:10]}`; "
        f"load average before {r['load_average_before']}, after {r['load_average_after']}). "
        f"`{r['command']}`: the demo recipe, {r['steps']} steps, median seconds per step after "
        f"{r['skip']}; beside one busy process: `python` a pure-Python loop, `torch` a "
        "single-threaded torch matmul loop.",
        "",
        "| policy | alone s/step | "
        + " | ".join(f"beside `{c}`: s/step (slow-down)" for c in comps)
        + " | threads used (alone / beside) |",
        "|---|---|" + "---|" * len(comps) + "---|",
    ]
    for name, row in r["policies"].items():
        cells = []
        for c in comps:
            x = row[c]
            note = "" if x["finished"] else f", stopped at {r['cap_s']} s"
            cells.append(f"{x['seconds_per_step']} ({row['slowdown'][c]:.2f}x{note})")
        used = " / ".join(str(row[k]["threads_logged"] or "-") for k in ("alone", *comps))
        lines.append(
            f"| {name} | {row['alone']['seconds_per_step']} | " + " | ".join(cells) + f" | {used} |"
        )
    for c, t in r["targets"].items():
        lines += [
            "",
            f"Target: tseg default at most 2.5x slower beside one busy `{c}` process: "
            f"{t['value']:.2f}x ({'met' if t['met'] else 'missed'}).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=5, help="steps not timed at the start")
    ap.add_argument("--cap", type=float, default=150.0, help="seconds a run may take")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument(
        "--competitors", nargs="+", default=list(COMPETITORS), choices=list(COMPETITORS)
    )
    ap.add_argument("--quick", action="store_true", help="12 steps, 60 s cap")
    ap.add_argument("--out", default=str(RESULTS / "shared_cpu.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.skip, a.cap = 12, 3, 60.0
    r: dict[str, Any] = {
        **provenance.start(provenance.command_line(__file__, argv)),
        "steps": a.steps,
        "skip": a.skip,
        "cap_s": a.cap,
        "competitors": a.competitors,
        "policies": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.policies:
            row: dict[str, Any] = {}
            for competitor in (None, *a.competitors):
                key = competitor or "alone"
                out = Path(tmp) / f"{len(r['policies'])}-{key}"
                row[key] = run_one(name, competitor, a.steps, a.skip, a.cap, out)
                print(f"{name} {key}: {row[key]}", file=sys.stderr, flush=True)
            alone = row["alone"]["seconds_per_step"]
            row["slowdown"] = {
                c: round(row[c]["seconds_per_step"] / alone, 3) for c in a.competitors
            }
            r["policies"][name] = row
    provenance.finish(r)
    d = r["policies"].get("tseg default")
    r["targets"] = {
        c: {"value": v, "goal": "<= 2.5", "met": v <= 2.5}
        for c, v in (d["slowdown"] if d else {}).items()
    }
    write_report(Path(a.out), r, markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
