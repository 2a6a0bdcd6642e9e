"""The demo's figures, recorded: `tseg demo --preset P --seed S` for each seed, with its metrics,
wall time, commit and machine load, in benchmarks/results/demo_<preset>.json (and .md).

    python benchmarks/demo_seeds.py --preset offline --seeds 0      # the demo's figures (docs/results.md)
    python benchmarks/demo_seeds.py --preset tiny --seeds 0 1 2     # does the tiny recipe learn?
    python benchmarks/demo_seeds.py --preset tiny --seeds 0 1 2 --jobs 3   # side by side

Each seed runs as its own `tseg demo` process (the command a user types); the wall time is the
demo's own, so run it on a quiet machine when the time matters (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/demo_seeds.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402

SPLITS = ("val", "test")
FIGURES = ("miou", "oiou", "prec@0.5", "prec@0.7", "prec@0.9", "pointm", "pairs")


def run_seed(preset: str, seed: int, work: Path) -> dict[str, Any]:
    out = work / f"{preset}_s{seed}"
    # Always from scratch: tseg demo resumes a finished run in seconds, and a resumed run's wall
    # time (and its figures' commit) would not be this run's.
    if out.exists():
        shutil.rmtree(out)
    cmd = ["tseg", "demo", "--preset", preset, "--seed", str(seed), "--out", str(out), "--quiet"]
    exe = Path(sys.executable).parent / "tseg"
    load = provenance.load_average()
    t = time.time()
    subprocess.run([str(exe), *cmd[1:]], check=True)
    wall = time.time() - t
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    row: dict[str, Any] = {
        "seed": seed,
        "command": " ".join(cmd),
        "wall_time_s": round(wall, 1),
        "demo_wall_time_s": metrics.get("wall_time_s"),
        "train_time_s": metrics.get("train_time_s"),
        "steps": metrics.get("steps"),
        "load_average_before": load,
        "load_average_after": provenance.load_average(),
    }
    if "threshold" in metrics:
        row["threshold"] = metrics["threshold"]["threshold"]
    for split in SPLITS:
        row[split] = {k: metrics[split].get(k) for k in FIGURES}
    if "teacher" in metrics:  # a self-training demo: the figures above are the student's
        row["teacher"] = {s: {k: metrics["teacher"][s].get(k) for k in FIGURES} for s in SPLITS}
        row["teacher"]["threshold"] = metrics["teacher"]["threshold"]["threshold"]
        row["pseudo"] = metrics.get("pseudo")
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"`tseg demo --preset {report['preset']}` (commit `{report['commit'][:10]}`, "
        f"{report['machine']['cpu']}). IoU in %; wall time of the whole demo (training, "
        "evaluation, overlays).",
        "",
        "| seed | val mIoU | test mIoU | test P@0.5 | test P@0.7 | mask threshold | wall time | "
        "load average before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        stages = [("teacher, ", r["teacher"]), ("student, ", r)] if "teacher" in r else [("", r)]
        for who, m in stages:
            v, t = m["val"], m["test"]
            lines.append(
                f"| {who}{r['seed']} | {100 * v['miou']:.1f} | {100 * t['miou']:.1f} | "
                f"{100 * t['prec@0.5']:.1f} | {100 * t['prec@0.7']:.1f} | "
                f"{m.get('threshold', 0.5)} | {r['wall_time_s'] / 60:.1f} min | "
                f"{r['load_average_before'][0]:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="offline", help="a recipe of configs/demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument(
        "--jobs", type=int, default=1, help="seeds run side by side (their wall times then share)"
    )
    ap.add_argument("--work", default="runs/demo_seeds")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    report: dict[str, Any] = {
        "preset": args.preset,
        **provenance.start(
            provenance.command_line(__file__, argv),
            provenance.machine(omp_num_threads=os.environ.get("OMP_NUM_THREADS")),
        ),
    }
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # each seed is its own process
        report["runs"] = list(
            pool.map(lambda s: run_seed(args.preset, s, Path(args.work)), args.seeds)
        )
    provenance.finish(report)
    write_report(Path(args.out) / f"demo_{args.preset}.json", report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
