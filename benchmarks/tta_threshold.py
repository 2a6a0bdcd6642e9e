"""A mask threshold per inference setting (issue 26): `tseg eval RUN --split test --tta` against
the plain pass, with TTA's own threshold (0.5 until chosen) and after `--tta --choose-threshold`
on val, for each checkpoint given (the demo's teacher and its student), written to
benchmarks/results/tta_threshold.json.

    python benchmarks/tta_threshold.py runs/demo_seeds/offline_s0/teacher \
        runs/demo_seeds/offline_s0/round1/student --max-images 100

Each checkpoint is copied first: choosing a threshold writes it into the checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import RESULTS, git_commit, machine  # noqa: E402

from tseg.cli import main  # noqa: E402


def tseg_eval(*args: str) -> dict[str, Any]:
    """`tseg eval ARGS --device cpu`, its JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval", *args, "--device", "cpu"])
    if code:
        raise SystemExit(f"tseg eval {' '.join(args)} exited {code}")
    return json.loads(out.getvalue())


def figures(result: dict[str, Any], split: str = "test") -> dict[str, Any]:
    return {
        "threshold": result["inference"]["threshold"],
        "miou": round(result[split]["miou"], 4),
        "prec@0.7": round(result[split]["prec@0.7"], 4),
    }


def measure(ckpt: Path, max_images: int) -> dict[str, Any]:
    n = ["--max-images", str(max_images)]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "ckpt"
        shutil.copytree(ckpt, copy)
        plain = tseg_eval(str(copy), "--split", "test", *n)
        tta = tseg_eval(str(copy), "--split", "test", "--tta", *n)
        chosen = tseg_eval(str(copy), "--split", "val", "test", "--tta", "--choose-threshold", *n)
    return {
        "checkpoint": str(ckpt),
        "plain": figures(plain),
        "tta": {**figures(tta), "tta": tta["inference"]["tta"]},
        "tta_chosen_on_val": {**figures(chosen), "chosen": chosen["threshold"]},
    }


def main_(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--max-images", type=int, default=100)
    ap.add_argument("--out", type=Path, default=RESULTS / "tta_threshold.json")
    ns = ap.parse_args(argv)
    load = list(os.getloadavg())
    rows = [measure(c, ns.max_images) for c in ns.checkpoints]
    record = {
        "command": "python benchmarks/tta_threshold.py "
        + " ".join(map(str, ns.checkpoints))
        + f" --max-images {ns.max_images}",
        "commit": git_commit(),
        "machine": machine(),
        "load_average_before": [round(v, 2) for v in load],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "images": f"the first {ns.max_images} of val (choice) and of test",
        "rows": rows,
    }
    ns.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    for r in rows:
        print(r["checkpoint"], "plain", r["plain"], "tta", r["tta"]["miou"], "chosen",
              r["tta_chosen_on_val"])  # fmt: skip


if __name__ == "__main__":
    main_()
