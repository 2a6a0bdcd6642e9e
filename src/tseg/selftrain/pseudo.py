"""``tseg pseudo-label``: the teacher's refined, filtered masks of every training image.

For each image and each of its expressions (image-level text, as weak training reads it):

    Segmenter.maps (TTA optional) -> refined by pseudo.refine (none | crf | pamr)
    pair kept   if the teacher's confidence >= pseudo.min_confidence and the mask is not empty
    foreground  p >= t                (t = pseudo.threshold, or chosen on val for this refinement)
    ignore      (1 - ignore_band) t <= p < t   (just below the threshold: the label is uncertain)
    background  the rest

Shards of ``pseudo.shard_size`` images go to ``tseg.selftrain.store``'s layout, each written
whole or not at all; a second run with the same teacher, data and options continues at the
first missing shard. Under torchrun, process r labels shards r, r + W, ...
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .. import distributed
from ..checkpoint import WEIGHTS, load_checkpoint
from ..coco_masks import annotation, encode, instances, write_json_atomic
from ..config import Config, parse_override, set_key, validate
from ..data import build_dataset
from ..data.registry import no_masks_reason
from ..errors import DatasetError
from ..eval.pairs import choose_mask_threshold
from ..inference.segmenter import Segmenter
from .store import FORMAT, MANIFEST, first_difference, identity, read_json, shard_path

VAL_IMAGES = 100  # val images the threshold of a refinement is chosen on


def pseudo_segmenter(model: Any, cfg: Config, device: torch.device) -> Segmenter:
    """The teacher with the pseudo section's refinement and TTA, without a presence gate (the
    confidence filter plays its part)."""
    pc = cfg.pseudo
    return Segmenter(
        model,
        device,
        cfg.inference,
        tta=pc.tta,
        crf=pc.refine == "crf",
        pamr=pc.refine == "pamr",
        presence_threshold=0.0,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _options(cfg: Config) -> dict[str, Any]:
    """What the masks depend on besides the teacher and the data."""
    pc = cfg.pseudo
    # What the student does with them (rounds, its steps and start) does not change the masks.
    skip = ("shard_size", "rounds", "student_steps", "student_init")
    out = {k: v for k, v in asdict(pc).items() if k not in skip}
    if pc.refine == "crf":
        out["crf"] = asdict(cfg.inference.crf)
    if pc.refine == "pamr":
        out["pamr"] = asdict(cfg.inference.pamr)
    if pc.tta:
        out["tta_scales"] = list(cfg.inference.tta.scales)
        out["tta_flip"] = cfg.inference.tta.flip
    return out


def choose_threshold(seg: Segmenter, cfg: Config, teacher_threshold: float) -> dict[str, Any]:
    """pseudo.threshold, or the best mIoU on the first val images for this refinement (the
    project's protocol for raw maps, ``eval.choose_threshold``), or the teacher's where val has
    no masks."""
    if cfg.pseudo.threshold:
        return {"threshold": cfg.pseudo.threshold, "chosen": "pseudo.threshold"}
    if no_masks_reason(cfg.data, "val") is not None:
        return {"threshold": teacher_threshold, "chosen": "the teacher's inference.threshold"}
    chosen = choose_mask_threshold(
        seg, build_dataset(cfg.data, "val"), cfg.eval.batch_size, VAL_IMAGES
    )
    return {**chosen, "chosen": f"val, first {VAL_IMAGES} images"}


def label_pairs(
    probs: np.ndarray, conf: np.ndarray, texts: list[str], threshold: float, band: float, cfg: Any
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One image's maps [K, H, W] and confidences [K] -> its kept pairs (RLE) and counts."""
    kept, counts = [], {"pairs": len(texts), "low_confidence": 0, "empty": 0}
    for text, p, c in zip(texts, probs, conf):
        if c < cfg.min_confidence:
            counts["low_confidence"] += 1
            continue
        fg = p >= threshold
        if not fg.any():
            counts["empty"] += 1
            continue
        # Relative to the threshold: refined maps are chosen at thresholds from 0.1 to 0.9.
        ignore = (p >= (1.0 - band) * threshold) & ~fg if band > 0 else None
        kept.append(
            annotation(
                fg,
                expression=text,
                score=round(float(c), 5),
                ignore=encode(ignore) if ignore is not None else None,
                ignored=int(ignore.sum()) if ignore is not None else 0,
            )
        )
    return kept, counts


def _file_name(ds: Any, i: int) -> str:
    """Image ``i``'s file as the dataset names it (COCO's ``file_name``), else its index."""
    path_of = getattr(ds, "image_path", None)
    return str(path_of(i)) if callable(path_of) else str(i)


def _shard(
    images: list[dict[str, Any]], pairs: list[list[dict[str, Any]]], counts: dict[str, int]
) -> dict[str, Any]:
    """A COCO instances file: categories are the shard's expressions."""
    info = {"description": "tseg pseudo masks", "format": FORMAT, "counts": counts}
    return instances(images, pairs, info)


def _start_manifest(out: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """The folder's manifest: a new one, or the one of the run being continued (the same
    teacher, data and options; anything else is refused, naming the first difference)."""
    if not (out / MANIFEST).is_file():
        write_json_atomic(out / MANIFEST, fresh)
        return fresh
    old = read_json(out / MANIFEST, "pseudo-mask manifest")
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise DatasetError(f"'{out}' holds another kind of manifest: choose an empty --out")
    for part in ("teacher", "data", "options"):
        diff = first_difference(old.get(part, {}), fresh[part])
        if diff is not None:
            raise DatasetError(
                f"'{out}' holds pseudo masks of another {part} ({diff}): continue it with the "
                "same command, or choose another --out"
            )
    for key in ("images", "shard_size"):
        if old.get(key) != fresh[key]:
            raise DatasetError(
                f"'{out}' was started with {key} = {old.get(key)}, now {fresh[key]}: continue it "
                "with the same command, or choose another --out"
            )
    return old


def pseudo_label(
    run: str | Path,
    out: str | Path,
    overrides: list[str] | None = None,
    split: str = "train",
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Pseudo masks of ``split`` from the teacher ``run`` (a run or checkpoint folder) into
    ``out``; returns the manifest.

    ``overrides`` are ``key=value`` changes to the teacher's config: ``pseudo.*`` (what to make),
    ``data.*`` (which data: by default the teacher's), ``inference.crf.*`` / ``inference.pamr.*``.
    """
    dev = distributed.pick_device(device, distributed.local_rank())
    created = distributed.init(dev)
    try:
        return _pseudo_label(run, Path(out), overrides or [], split, dev, progress)
    finally:
        distributed.cleanup(created)


def _pseudo_label(
    run: str | Path,
    out: Path,
    overrides: list[str],
    split: str,
    device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    t0 = time.time()
    model, cfg, ckpt = load_checkpoint(run, device)
    for o in overrides:
        set_key(cfg, *parse_override(o))
    validate(cfg)
    teacher_threshold = cfg.inference.threshold
    ds = build_dataset(cfg.data, split)
    n = len(ds) if not cfg.pseudo.max_images else min(cfg.pseudo.max_images, len(ds))
    size = cfg.pseudo.shard_size
    fresh = {
        "format": FORMAT,
        "teacher": {"checkpoint": str(ckpt.resolve()), "weights_sha256": _sha256(ckpt / WEIGHTS)},
        "data": identity(cfg.data, split),
        "options": _options(cfg),
        "images": n,
        "shard_size": size,
        "shards": (n + size - 1) // size,
        "complete": False,
    }
    seg = pseudo_segmenter(model, cfg, device)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        manifest = _start_manifest(out, fresh)
        if "threshold" not in manifest:  # chosen once; a continued run keeps it
            manifest["threshold"] = choose_threshold(seg, cfg, teacher_threshold)
            write_json_atomic(out / MANIFEST, manifest)
    distributed.barrier()
    manifest = read_json(out / MANIFEST, "pseudo-mask manifest")
    threshold = manifest["threshold"]["threshold"]
    band = cfg.pseudo.ignore_band
    rank, world = distributed.rank(), distributed.world_size()
    mine = [k for k in range(manifest["shards"]) if k % world == rank]
    todo = [k for k in mine if not shard_path(out, k).is_file()]
    bar = tqdm(
        total=sum(min(n, (k + 1) * size) - k * size for k in todo),
        desc=f"pseudo-label ({cfg.pseudo.refine})",
        disable=not (progress and distributed.is_main()),
        dynamic_ncols=True,
    )
    bs = cfg.eval.batch_size
    for k in todo:
        images, pairs = [], []
        counts = {"pairs": 0, "low_confidence": 0, "empty": 0, "area": 0, "ignored": 0}
        for start in range(k * size, min(n, (k + 1) * size), bs):
            idxs = list(range(start, min(n, (k + 1) * size, start + bs)))
            pics = [ds.image(i) for i in idxs]
            texts = [ds.expressions(i) for i in idxs]
            for i, pic, ts, m in zip(idxs, pics, texts, seg.maps(pics, texts)):
                kept, c = label_pairs(
                    m.probabilities, m.confidences, ts, threshold, band, cfg.pseudo
                )
                for key in c:
                    counts[key] += c[key]
                counts["area"] += sum(p["area"] for p in kept)
                counts["ignored"] += sum(p["ignored"] for p in kept)
                h, w = pic.shape[:2]
                images.append(
                    {
                        "id": i,
                        "height": h,
                        "width": w,
                        "file_name": _file_name(ds, i),
                        "expressions": ts,
                    }
                )
                pairs.append(kept)
            bar.update(len(idxs))
        write_json_atomic(shard_path(out, k), _shard(images, pairs, counts))
    bar.close()
    seconds = distributed.all_gather_object(round(time.time() - t0, 1))
    distributed.barrier()
    if distributed.is_main():
        manifest = read_json(out / MANIFEST, "pseudo-mask manifest")
        missing = [k for k in range(manifest["shards"]) if not shard_path(out, k).is_file()]
        if not missing:  # the statistics of every shard, whichever run wrote it
            stats: dict[str, Any] = {}
            for k in range(manifest["shards"]):
                shard = read_json(shard_path(out, k), "pseudo-mask shard")
                for key, v in shard["info"]["counts"].items():
                    stats[key] = stats.get(key, 0) + v
            stats["kept"] = stats["pairs"] - stats["low_confidence"] - stats["empty"]
            stats["ignored_fraction_of_kept_area"] = round(
                stats["ignored"] / max(1, stats["ignored"] + stats["area"]), 4
            )
            manifest["stats"] = stats
            runs = manifest.get("seconds", [])
            manifest["seconds"] = [*runs, max(seconds)]
            manifest["complete"] = True
            write_json_atomic(out / MANIFEST, manifest)
    distributed.barrier()
    return read_json(out / MANIFEST, "pseudo-mask manifest")
