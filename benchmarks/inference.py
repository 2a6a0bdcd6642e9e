"""Inference figures: mIoU without/with CRF and TTA, and time per image with a warm text cache.

    python benchmarks/inference.py runs/demo            # a checkpoint trained on `shapes`

Accuracy: the checkpoint's `shapes` test split through `Segmenter` with each option.
Speed: time per image for 1 and 16 expressions (text cache warm, median of repeats) for the
checkpoint and for an untrained `paper` preset (ViT-S/16 at 384 px, BERT-Small; weights do not
change the cost). Writes benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/inference.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402
from benchmarks.lib.timing import median_s  # noqa: E402
from benchmarks.lib.tseg_model import PAPER_FROM_SCRATCH  # noqa: E402
from tseg.checkpoint import load_checkpoint  # noqa: E402
from tseg.config import CRFConfig, TTAConfig, build_config  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.eval.metrics import SegmentationMeter  # noqa: E402
from tseg.inference import Segmenter  # noqa: E402
from tseg.inference.crf import crf_available  # noqa: E402
from tseg.train import build_model  # noqa: E402


def accuracy(seg: Segmenter, ds, n: int) -> dict[str, float]:
    meter = SegmentationMeter()
    for i in range(n):
        preds = seg.predict(ds.image(i), ds.expressions(i))
        for p, gt in zip(preds, ds.masks(i)):
            meter.update(p.mask, gt)
    return meter.compute()


def time_per_image(seg: Segmenter, image: np.ndarray, exprs: list[str], repeats: int) -> float:
    """Median seconds of ``seg.predict`` after a warm-up call that fills the text cache."""
    return median_s(lambda: seg.predict(image, exprs), repeats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("checkpoint")
    ap.add_argument("--images", type=int, default=100, help="test images for the accuracy rows")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(RESULTS / "inference.json"))
    args = ap.parse_args(argv)
    model, cfg, ckpt = load_checkpoint(args.checkpoint)
    ds = build_dataset(cfg.data, "test")
    report: dict = {
        **provenance.start(provenance.command_line(__file__, argv)),
        "checkpoint": str(ckpt),
        "images": args.images,
        "threads": torch.get_num_threads(),
    }
    options = {"plain": {}, "tta": {"tta": TTAConfig()}}
    if crf_available():
        options["crf"] = {"crf": CRFConfig()}
        options["tta+crf"] = {"tta": TTAConfig(), "crf": CRFConfig()}
    report["accuracy"] = {}
    for name, kw in options.items():
        t = time.perf_counter()
        report["accuracy"][name] = accuracy(Segmenter(model, **kw), ds, args.images)
        report["accuracy"][name]["seconds"] = round(time.perf_counter() - t, 1)
        print(name, f"mIoU {100 * report['accuracy'][name]['miou']:.1f}", flush=True)
    vocab = sorted({e for i in range(50) for e in ds.expressions(i)})[:16]
    report["seconds_per_image"] = {}
    paper_cfg = build_config(
        None,  # random weights: the cost is the architecture's (no hub weights needed)
        [*PAPER_FROM_SCRATCH, "data.train_size=50"],
    )
    paper = build_model(paper_cfg, build_dataset(paper_cfg.data, "train")).eval()
    rng = np.random.default_rng(0)
    for name, m, size in (("tiny", model, ds.image(0).shape[0]), ("paper", paper, 384)):
        image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        seg = Segmenter(m)
        for n in (1, 16):
            s = time_per_image(seg, image, vocab[:n], args.repeats)
            report["seconds_per_image"][f"{name}_L{n}"] = round(s, 5)
            print(f"{name} L={n}: {1000 * s:.1f} ms/image", flush=True)
    write_report(Path(args.out), provenance.finish(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
