"""Loader speed: images per second of the weak training loader on RefCOCO and PhraseCut formats.

Writes small fixtures in each dataset's on-disk format (64 JPEGs of 480 x 640 by default), then
times the real training data path (``tseg.train.make_loader``: TrainSet + WeakCollate) with the
paper's augmentation: 384 px crops, random rescale 0.5-2, horizontal flip, ``num_workers`` 0.
JPEG decoding alone is timed too, to show how much of the time the augmentation takes.

    python benchmarks/loader_speed.py [--images 64] [--epochs 3] [--workers 0]

Writes benchmarks/results/loader_speed.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/loader_speed.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402
from tseg.config import build_config  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.train import make_loader  # noqa: E402

H, W = 480, 640
WORDS = ["man", "woman", "dog", "car", "tree", "chair", "red", "blue", "left", "right", "big"]


def photo_like(rng: np.random.Generator) -> Image.Image:
    """A smooth random field plus mild noise: decodes like a photo, unlike pure noise."""
    small = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((W, H), Image.BICUBIC), dtype=np.int16)
    noisy = base + rng.integers(-12, 13, base.shape, dtype=np.int16)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def phrase(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(2, 5))).tolist())


def make_refcoco(root: Path, n: int, rng: np.random.Generator) -> Path:
    """refer-toolkit layout: refcoco/refs(unc).p, refcoco/instances.json, images/train2014."""
    (root / "refcoco").mkdir(parents=True)
    img_dir = root / "images" / "train2014"
    img_dir.mkdir(parents=True)
    images, anns, refs = [], [], []
    for i in range(1, n + 1):
        name = f"COCO_train2014_{i:012d}.jpg"
        photo_like(rng).save(img_dir / name, quality=90)
        images.append({"id": i, "file_name": name, "height": H, "width": W})
        for k in range(3):
            ann_id = i * 10 + k
            x, y = int(rng.integers(0, W - 100)), int(rng.integers(0, H - 100))
            anns.append(
                {
                    "id": ann_id,
                    "image_id": i,
                    "segmentation": [[x, y, x + 90, y, x + 90, y + 90, x, y + 90]],
                    "bbox": [x, y, 90, 90],
                    "category_id": 1,
                    "area": 8100.0,
                    "iscrowd": 0,
                }
            )
            sents = [f"{phrase(rng)} {i} {k} {j}" for j in range(2)]
            refs.append(
                {
                    "ref_id": ann_id,
                    "ann_id": ann_id,
                    "image_id": i,
                    "category_id": 1,
                    "split": "train",
                    "file_name": name,
                    "sent_ids": [ann_id * 10 + j for j in range(2)],
                    "sentences": [
                        {"sent": s, "raw": s, "tokens": s.split(), "sent_id": ann_id * 10 + j}
                        for j, s in enumerate(sents)
                    ],
                }
            )
    with open(root / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    (root / "refcoco" / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1}]})
    )
    return root


def make_phrasecut(root: Path, n: int, rng: np.random.Generator) -> Path:
    """VGPhraseCut_v0 layout: refer_train.json, image_data_split.json, images/<id>.jpg."""
    (root / "images").mkdir(parents=True)
    tasks, info = [], []
    for i in range(1, n + 1):
        photo_like(rng).save(root / "images" / f"{i}.jpg", quality=90)
        info.append({"image_id": i, "height": H, "width": W, "split": "train"})
        for k in range(5):
            x, y = float(rng.integers(0, W - 100)), float(rng.integers(0, H - 100))
            tasks.append(
                {
                    "task_id": f"{i}__{k}",
                    "image_id": i,
                    "phrase": f"{phrase(rng)} {i} {k}",
                    "instance_boxes": [[x, y, 90.0, 90.0]],
                    "Polygons": [[[[x, y], [x + 90, y], [x + 90, y + 90], [x, y + 90]]]],
                }
            )
    (root / "refer_train.json").write_text(json.dumps(tasks))
    (root / "image_data_split.json").write_text(json.dumps(info))
    return root


def measure(dataset: str, root: Path, epochs: int, workers: int) -> dict[str, Any]:
    cfg = build_config(
        None,
        [
            "model.preset=paper",  # 384 px
            f"data.dataset={dataset}",
            f"data.root={root}",
            "data.scale_min=0.5",
            "data.scale_max=2.0",
            "data.hflip=true",
            f"data.num_workers={workers}",
            "train.batch_size=32",
        ],
    )
    ds = build_dataset(cfg.data, "train")
    loader, tset, sampler = make_loader(cfg, ds, seed=0)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds.image(i)
    decode = len(ds) / (time.perf_counter() - t0)
    next(iter(loader))  # warm-up (imports, allocator)
    seen, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        tset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        for batch in loader:
            seen += batch["images"].shape[0]
    wall = time.perf_counter() - t0
    shape = list(batch["images"].shape)
    return {
        "images": seen,
        "wall_s": round(wall, 3),
        "images_per_s": round(seen / wall, 2),
        "decode_only_images_per_s": round(decode, 2),
        "batch_shape": shape,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "loader_speed.json")
    ns = p.parse_args(argv)
    record = provenance.start(
        provenance.command_line(__file__, argv),
        provenance.machine(torch_threads=torch.get_num_threads()),
    )
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {
            "refcoco": make_refcoco(Path(tmp) / "refer", ns.images, rng),
            "phrasecut": make_phrasecut(Path(tmp) / "VGPhraseCut_v0", ns.images, rng),
        }
        for name, root in roots.items():
            results[name] = measure(name, root, ns.epochs, ns.workers)
            print(f"{name}: {results[name]}")
    out = {
        **provenance.finish(record),
        "what": "weak training loader (TrainSet + WeakCollate), paper augmentation: 384 px, "
        "scale 0.5-2, hflip; 480x640 JPEGs",
        "num_workers": ns.workers,
        "epochs": ns.epochs,
        "results": results,
    }
    print(f"wrote {write_report(ns.out, out)}")


if __name__ == "__main__":
    main()
