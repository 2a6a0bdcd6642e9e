"""Inference figures: mIoU without/with CRF and TTA, and time per image with a warm text cache.

    python benchmarks/inference.py runs/demo            # a checkpoint trained on `shapes`

Accuracy: the checkpoint's `shapes` test split through `Segmenter` with each option.
Speed: time per image for 1 and 16 expressions (text cache warm, median of repeats) for the
checkpoint and for an untrained `paper` preset (ViT-S/16 at 384 px, BERT-Small; weights do not
change the cost). Writes benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tseg.checkpoint import load_checkpoint
from tseg.config import CRFConfig, TTAConfig, build_config
from tseg.data import build_dataset
from tseg.eval.metrics import SegmentationMeter
from tseg.inference import Segmenter
from tseg.inference.crf import crf_available
from tseg.train import build_model


def accuracy(seg: Segmenter, ds, n: int) -> dict[str, float]:
    meter = SegmentationMeter()
    for i in range(n):
        preds = seg.predict(ds.image(i), ds.expressions(i))
        for p, gt in zip(preds, ds.masks(i)):
            meter.update(p.mask, gt)
    return meter.compute()


def time_per_image(seg: Segmenter, image: np.ndarray, exprs: list[str], repeats: int) -> float:
    seg.predict(image, exprs)  # warm-up; fills the text cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        seg.predict(image, exprs)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("checkpoint")
    ap.add_argument("--images", type=int, default=100, help="test images for the accuracy rows")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference.json"))
    args = ap.parse_args(argv)
    model, cfg, ckpt = load_checkpoint(args.checkpoint)
    ds = build_dataset(cfg.data, "test")
    report: dict = {
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
        [
            "model.preset=paper",
            "model.image.weights=none",
            "model.text.name=bert",
            "data.train_size=50",
        ],
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
    Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
