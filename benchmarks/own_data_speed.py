"""Loader speed on a user's own data: ImageFolder (map-style) and WebDataset shards (streamed), 1 and
4 workers, with the paper's augmentation (384 px crops, random rescale 0.5-2, horizontal flip).

Writes ``--images`` photo-like 480 x 640 JPEGs with three phrases each as an ImageFolder, converts
that folder to shards with ``tseg data convert``'s library function (JPEG bytes copied, so both
formats decode the same files), then times batches of 32 per second of:

* ``imagefolder``: the existing training path (``tseg.train.make_loader``: TrainSet + WeakCollate);
* ``webdataset``: ``ShardStream`` + ``StreamLoader`` over the shards (``--shard-size`` samples
  each), split across the workers as in training.

With ``--gpu-step`` (and a CUDA device) it also times one weak training step of the paper preset
(ViT-S/16 at 384 px, batch 32): the images per second the loader must sustain so that the GPU
never waits on data. The JSON records the commit, the command line and the machine's load
average before and after, so a figure taken on a busy machine can be recognised as such.

    python benchmarks/own_data_speed.py [--images 256] [--epochs 2] [--workers 1 4] [--gpu-step]

Writes benchmarks/results/own_data_speed.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/own_data_speed.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402
from benchmarks.loader_speed import photo_like, phrase  # noqa: E402
from tseg.config import build_config  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.data.convert import convert  # noqa: E402
from tseg.data.pipeline import WeakCollate  # noqa: E402
from tseg.data.stream import ShardStream, StreamLoader, WeakTransform  # noqa: E402
from tseg.train import make_loader  # noqa: E402

PAPER_AUGMENTATION = [
    "model.preset=paper",
    "model.image.weights=none",  # random weights: only the step's cost is measured
    "model.text.name=bert",
    "data.scale_min=0.5",
    "data.scale_max=2.0",
    "data.hflip=true",
]


def make_folder(root: Path, n: int, rng: np.random.Generator) -> Path:
    """n JPEGs in two subfolders and a metadata.jsonl with three phrases per image."""
    rows = []
    for i in range(n):
        name = f"part{i % 2}/{i:06d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        photo_like(rng).save(root / name, quality=90)
        rows.append(
            json.dumps(
                {"file_name": name, "expressions": [phrase(rng) + f" {i} {k}" for k in range(3)]}
            )
        )
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return root


def _rate(batches: Any, epochs: int, start_epoch: Any) -> dict[str, Any]:
    seen, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        for batch in start_epoch(epoch, batches):
            seen += batch["images"].shape[0]
    wall = time.perf_counter() - t0
    return {"images": seen, "wall_s": round(wall, 3), "images_per_s": round(seen / wall, 2)}


def measure_folder(root: Path, workers: int, epochs: int) -> dict[str, Any]:
    cfg = build_config(None, [*PAPER_AUGMENTATION, "data.dataset=imagefolder", f"data.root={root}",
                              f"data.num_workers={workers}", "train.batch_size=32"])  # fmt: skip
    loader, tset, sampler = make_loader(cfg, build_dataset(cfg.data, "train"), seed=0)

    def epoch_batches(epoch: int, _: Any) -> Any:
        tset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        return loader

    return _rate(None, epochs, epoch_batches)


def measure_stream(shards: str, workers: int, epochs: int) -> dict[str, Any]:
    cfg = build_config(None, PAPER_AUGMENTATION)
    stream = ShardStream(shards, WeakTransform(cfg.data), WeakCollate(), 32, slots=max(1, workers))
    loader = StreamLoader(stream, num_workers=workers)
    return _rate(None, epochs, lambda epoch, _: loader.epoch())


def step_time(
    overrides: list[str], device: torch.device, steps: int = 10, warmup: int = 3
) -> dict[str, Any]:
    """Seconds per weak training step (forward, backward, optimiser) on ``device``, batch 32.

    ``gpu_step`` runs it for the paper preset on CUDA (bf16 autocast); tests run it on a micro
    model on the CPU.
    """
    from tseg.models.text_encoder import train_tokenizer
    from tseg.models.tseg import TSEG
    from tseg.train import OBJECTIVES, build_optimizer

    cfg = build_config(None, [*overrides, "train.batch_size=32"])
    texts = [f"thing number {i}" for i in range(96)]  # ~3 expressions per image, deduplicated
    tokenizer = train_tokenizer(texts, cfg.model.text.vocab_size)
    model = TSEG(cfg.model, cfg.data.image_size, tokenizer).to(device)
    opt = build_optimizer(model, cfg.train)
    size = cfg.data.image_size
    batch = {
        "images": torch.rand(32, 3, size, size),
        "texts": texts,
        "targets": (torch.rand(32, len(texts)) < 0.03).float(),
    }
    cuda = device.type == "cuda"
    times = []
    for i in range(steps + warmup):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = OBJECTIVES["weak"].loss(model, batch, device)["loss"]
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    step = float(np.median(times))
    return {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "amp": "bf16" if cuda else "none",
        "step_s": round(step, 4),
        "images_per_s_needed": round(32 / step, 1),
    }


def gpu_step() -> dict[str, Any] | None:
    """The paper preset's step on CUDA: the images/s the loader must sustain (None: no GPU)."""
    if not torch.cuda.is_available():
        return None
    return step_time(["model.preset=paper"], torch.device("cuda"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    p.add_argument("--shard-size", type=int, default=32)
    p.add_argument("--gpu-step", action="store_true", help="also time a paper-preset GPU step")
    p.add_argument("--out", type=Path, default=RESULTS / "own_data_speed.json")
    ns = p.parse_args(argv)
    record = provenance.start(
        provenance.command_line(__file__, argv),
        provenance.machine(torch_threads=torch.get_num_threads()),
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "folder", ns.images, np.random.default_rng(0))
        ds = build_dataset(
            build_config(None, ["data.dataset=imagefolder", f"data.root={folder}"]).data, "train"
        )
        shards = convert(ds, Path(tmp) / "shards", shard_size=ns.shard_size, progress=False)[
            "data.shards"
        ]
        for workers in ns.workers:
            for name, run in (("imagefolder", lambda w: measure_folder(folder, w, ns.epochs)),
                              ("webdataset", lambda w: measure_stream(shards, w, ns.epochs))):  # fmt: skip
                results[f"{name}/workers={workers}"] = row = run(workers)
                print(f"{name} workers={workers}: {row}")
    gpu = gpu_step() if ns.gpu_step else None
    out = {
        **provenance.finish(record),
        "what": "images per second of weak training batches (32) from own-data formats, paper augmentation "
        "(384 px, scale 0.5-2, hflip), 480x640 JPEGs",
        "images": ns.images,
        "epochs": ns.epochs,
        "shard_size": ns.shard_size,
        "results": results,
        "gpu_step": gpu,
    }
    print(f"wrote {write_report(ns.out, out)}")


if __name__ == "__main__":
    main()
