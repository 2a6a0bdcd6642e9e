"""What pretraining buys on `shapes`: an equal training budget, and paraphrases (issue #5).

Rows (MPA, the demo settings of each preset, the same budget: CPU seconds of one thread, which is
wall-clock time on a quiet core):
- `tiny`: ViT and BERT trained from scratch (tokenizer trained on the shapes vocabulary);
- `offline`: ImageNet EfficientNet-Lite0 hybrid + all-MiniLM-L6-v2, frozen (the preset's default);
- `offline`, MiniLM fine-tuned at the full learning rate (`train.text_lr_scale=1`).

Each row's step count is set so that its training takes the budget in CPU seconds of one thread
(robust to whatever else runs on the machine): two short calibration runs measure CPU seconds
per step first, and the actual training CPU time is reported beside it. Every model is
evaluated on `test` and on `paraphrase` (the same images, every content word replaced by a synonym
that never occurs in training). A last table asks how much of the paraphrase gap MiniLM itself
explains: for each colour and shape word, is its synonym nearer to it than to the other seven?

    python benchmarks/pretraining.py                 # 300 s per row (~25 min on 2 cores)
    python benchmarks/pretraining.py --budget-s 60   # a quick look

Writes benchmarks/results/pretraining.json and pretraining.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/pretraining.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402
from tseg.checkpoint import load_checkpoint  # noqa: E402
from tseg.config import build_config, recipe_overrides, to_dict  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.data.synthetic.shapes import COLOURS, PARAPHRASES, SHAPES  # noqa: E402
from tseg.distributed import pick_device  # noqa: E402
from tseg.eval import evaluate_pairs  # noqa: E402
from tseg.inference import Segmenter  # noqa: E402
from tseg.models.encoders import build_text_encoder  # noqa: E402
from tseg.train import train  # noqa: E402

ROWS: dict[str, list[str]] = {
    "tiny (from scratch)": recipe_overrides("demo/tiny"),
    "offline (pretrained, MiniLM frozen)": recipe_overrides("demo/offline"),
    "offline (pretrained, MiniLM fine-tuned)": [
        *recipe_overrides("demo/offline"),
        "train.text_lr_scale=1",
    ],
}
CALIBRATION_STEPS = {"tiny (from scratch)": 50}  # others: 10


def cpu_seconds(overrides: list[str], out: Path) -> dict[str, Any]:
    """Train with the given overrides; returns the result and the process CPU time it took."""
    cfg = build_config(None, [*overrides, f"train.out_dir={out}"])
    c0 = time.process_time()
    res = train(cfg, progress=False, evaluate_splits=())
    return {"cfg": cfg, "result": res, "cpu_s": time.process_time() - c0}


def run_row(name: str, overrides: list[str], budget_s: float, work: Path) -> dict[str, Any]:
    # One thread, budget in CPU seconds: on a shared machine wall time depends on what else
    # runs, CPU time of a single-threaded process hardly does. Seconds per step is the slope
    # between two short runs, so start-up costs (model build, data set-up) cancel out.
    overrides = [*overrides, "train.threads=1"]
    k = CALIBRATION_STEPS.get(name, 10)
    a = cpu_seconds([*overrides, f"train.steps={k}"], work / "calibration_a")
    b = cpu_seconds([*overrides, f"train.steps={2 * k}"], work / "calibration_b")
    sps = max((b["cpu_s"] - a["cpu_s"]) / k, 1e-6)
    steps = max(1, int(budget_s / sps))
    print(f"{name}: {sps:.3f} CPU s/step -> {steps} steps", flush=True)
    run = cpu_seconds([*overrides, f"train.steps={steps}"], work / "run")
    cfg, res = run["cfg"], run["result"]
    device = pick_device(cfg.train.device)
    model, _, _ = load_checkpoint(res["checkpoint"], device)
    row: dict[str, Any] = {
        "overrides": overrides,
        "calibrated_cpu_s_per_step": round(sps, 4),
        "steps": steps,
        "train_cpu_s": round(run["cpu_s"], 1),
        "train_wall_s": res["train_time_s"],
        "config": to_dict(cfg),
    }
    for split in ("test", "paraphrase"):
        row[split] = evaluate_pairs(Segmenter(model, device), build_dataset(cfg.data, split))
    row["paraphrase_over_seen"] = row["paraphrase"]["miou"] / max(row["test"]["miou"], 1e-9)
    print(
        f"  test mIoU {100 * row['test']['miou']:.1f}, paraphrase {100 * row['paraphrase']['miou']:.1f}"
        f" ({row['paraphrase_over_seen']:.2f}), {run['cpu_s']:.0f} CPU s",
        flush=True,
    )
    return row


def synonym_retrieval() -> dict[str, Any]:
    """MiniLM (mean-pooled, as the offline preset uses it): is each colour/shape word's synonym
    nearer (cosine) to that word than to the other words of its group?"""
    cfg = build_config(None, ["model.preset=offline"])
    enc = build_text_encoder(cfg.model.text, None, True).eval()

    def embed(words: list[str]) -> torch.Tensor:
        tok = enc.tokenize(words)
        with torch.no_grad():
            return F.normalize(enc(tok["input_ids"], tok["attention_mask"]), dim=-1)  # [W, D]

    out: dict[str, Any] = {}
    for group, words in (("colours", list(COLOURS)), ("shapes", list(SHAPES))):
        sim = embed([PARAPHRASES[w] for w in words]) @ embed(words).T  # [W, W]
        nearest = sim.argmax(1)
        out[group] = {
            "top1": float((nearest == torch.arange(len(words))).float().mean()),
            "nearest": {PARAPHRASES[w]: words[int(j)] for w, j in zip(words, nearest)},
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Equal training budget of {report['budget_s']:.0f} CPU seconds (one thread) per row on "
        "`shapes` (MPA, demo settings; "
        f"commit `{report['commit'][:10]}`, {report['machine']['cpu']}, "
        "1 thread). IoU in %.",
        "",
        "| model | steps | training CPU s | test mIoU | paraphrase mIoU | paraphrase / seen |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in report["rows"].items():
        lines.append(
            f"| {name} | {r['steps']} | {r['train_cpu_s']:.0f} | {100 * r['test']['miou']:.1f} | "
            f"{100 * r['paraphrase']['miou']:.1f} | {r['paraphrase_over_seen']:.2f} |"
        )
    s = report["synonym_retrieval"]
    lines += [
        "",
        "MiniLM on its own: a synonym's nearest word among its group of eight is the right one for "
        f"{100 * s['colours']['top1']:.0f}% of colours and {100 * s['shapes']['top1']:.0f}% of shapes "
        f"(e.g. {', '.join(f'{k} -> {v}' for k, v in list(s['colours']['nearest'].items())[:4])}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--budget-s", type=float, default=300.0, help="training CPU seconds (one thread) per row"
    )
    ap.add_argument("--work", default="runs/bench_pretraining", help="where the models go")
    ap.add_argument("--out", default=str(RESULTS), help="where pretraining.json/.md go")
    args = ap.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    t0 = time.time()
    report: dict[str, Any] = {
        "budget_s": args.budget_s,
        **provenance.start(
            provenance.command_line(__file__, argv),
            provenance.machine(torch_threads=torch.get_num_threads()),
        ),
        "synonym_retrieval": synonym_retrieval(),
        "rows": {},
    }
    for i, (name, ov) in enumerate(ROWS.items()):
        report["rows"][name] = run_row(name, ov, args.budget_s, work / f"row{i}")
    report["wall_time_s"] = round(time.time() - t0, 1)
    provenance.finish(report)
    write_report(out / "pretraining.json", report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
