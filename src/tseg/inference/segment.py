"""``tseg segment``: image files and expressions in, mask PNGs, overlays and scores out.

``segment_files`` is the whole command: it reads the expressions (or the zero-shot class names),
collects the image files, decodes them in worker processes ahead of the model, runs each through
``Segmenter.predict`` and writes the results (``tseg.inference.output``). Under torchrun each
process takes its share of the images and every image's output is written once.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import distributed
from ..checkpoint import load_checkpoint
from ..data.zeroshot import flatten_class_names, load_class_names
from ..errors import InputError
from ..imageio import MAX_PIXELS, check_expressions, load_image
from .output import write_index, write_prediction, write_zero_shot
from .segmenter import Segmenter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class SegmentReport:
    """What ``segment_files`` did (summed over processes under torchrun)."""

    images: int  # image files found
    main: bool  # this process prints the summary (rank 0)
    written: int  # results written
    failed: int  # files that could not be read (each reported on stderr)
    # With a single image: where its results went and (confidence, expression) per expression.
    folder: Path | None = None
    scores: list[tuple[float, str]] = field(default_factory=list)


def segment_files(
    checkpoint: str | Path,
    images: str,
    expressions: list[str] | None = None,
    expressions_file: str | None = None,
    classes: str | None = None,
    out: str | Path = "segment_out",
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
    inference: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> SegmentReport:
    """Segment a file, a folder's images or a glob pattern's files; write one folder per image.

    Args:
        checkpoint: a checkpoint or run folder.
        images: an image, a folder of images (sorted) or a glob pattern like 'photos/*.jpg'.
        expressions, expressions_file: the expressions, given and / or one per line of a file.
        classes: zero-shot semantic segmentation instead (section 4.6): 'cat,dog' or a YAML
            file of class -> names; writes a class-label PNG per image.
        out: the output folder.
        device: auto | cpu | cuda.
        workers: processes decoding images ahead of the model (None: ``default_workers()``;
            0: in this process).
        progress: show a progress bar over several images.
        inference: changes to the checkpoint's ``inference`` config (``threshold``,
            ``tta.enabled``, ``class_threshold``, ...), checked by the config's rules.
        labels: names of those values in error messages (the CLI's flags).
    """
    class_names = read_classes(classes) if classes else None
    if class_names is not None:
        exprs = check_expressions(flatten_class_names(class_names)[0])
    else:
        exprs = check_expressions(read_expressions(expressions or [], expressions_file))
    paths = collect_images(images)
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise InputError(f"--workers = {workers} must be 0 (decode in this process) or more")
    stems = output_stems(paths)  # over all images, before sharding, so ranks agree
    single = len(paths) == 1
    out = Path(out)
    report = SegmentReport(images=len(paths), main=True, written=0, failed=0)
    # Under torchrun (WORLD_SIZE > 1) each rank segments its share of the images.
    with distributed.shard_from_env() as shard:
        where = distributed.pick_device(device)  # under torchrun: GPU LOCAL_RANK
        model, cfg, _ = load_checkpoint(checkpoint, where)
        seg = Segmenter(model, where, cfg.inference, labels, **(inference or {}))
        mine = shard.take(range(len(paths)))
        # Workers decode (and check) the next images while this process runs the model.
        loader = image_loader([paths[i] for i in mine], seg.max_pixels, workers)
        bar = tqdm(loader, desc="segment", disable=single or not progress or not shard.is_main)
        written, failed = 0, 0
        errors: list[tuple[int, str]] = []  # (index into paths, message) of unreadable files
        for k, image, error in bar:
            if error is not None:  # one unreadable file is reported and skipped
                tqdm.write(f"error: {error}", file=sys.stderr)
                failed += 1
                errors.append((mine[k], error))
                continue
            preds = seg.predict(image, exprs)
            stem = stems[mine[k]]
            if class_names is not None:
                d = write_zero_shot(out, stem, image, preds, class_names, seg.class_threshold)
            else:
                d = write_prediction(out, stem, image, preds)
            written += 1
            if single:
                report.folder, report.scores = d, [(p.confidence, p.expression) for p in preds]
        counts = shard.gather((written, failed))
        all_errors = dict(shard.gather_keyed([(i, (i, e)) for i, e in errors]))
        report.main = shard.is_main
        # Not when nothing was written: a run that read no image leaves no folder behind.
        if shard.is_main and sum(c[0] for c in counts):
            write_index(out, paths, stems, all_errors)
    report.written, report.failed = (sum(c[j] for c in counts) for j in range(2))
    return report


def read_expressions(expressions: list[str], file: str | None) -> list[str]:
    """The given expressions, then the non-empty lines of ``file``."""
    out = list(expressions)
    if file:
        p = Path(file)
        if not p.is_file():
            raise InputError(f"expressions file '{p}' does not exist")
        out += [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def read_classes(spec: str) -> dict[str, list[str]]:
    """A YAML file (class -> list of names) or comma-separated class names -> {class: names}."""
    p = Path(spec)
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file():
        import yaml

        if not p.is_file():
            raise InputError(f"classes file '{p}' does not exist")
        try:
            keys = list((yaml.safe_load(p.read_text(encoding="utf-8")) or {}).keys())
        except (yaml.YAMLError, AttributeError) as e:
            raise InputError(
                f"classes file '{p}' is not a YAML mapping of class -> names: {e}"
            ) from None
        return load_class_names(p, classes=keys)
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise InputError("--classes is empty: give names like 'cat,dog' or a YAML file")
    return {c: [c] for c in names}


def collect_images(spec: str) -> list[Path]:
    """A file, a folder (its images, sorted) or a glob pattern -> image paths."""
    p = Path(spec)
    if p.is_dir():
        paths = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise InputError(f"folder '{p}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths
    if p.is_file():
        return [p]
    if any(c in spec for c in "*?["):
        paths = sorted(Path(q) for q in glob.glob(spec, recursive=True) if Path(q).is_file())
        if not paths:
            raise InputError(f"pattern '{spec}' matches no file")
        return paths
    raise InputError(f"image '{p}' does not exist")


def output_stems(paths: list[Path]) -> list[str]:
    """Output folder names: two images with the same name in different folders get a, a_1."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        n = seen.get(path.stem, 0)
        seen[path.stem] = n + 1
        stems.append(path.stem if n == 0 else f"{path.stem}_{n}")
    return stems


class ImageFiles(Dataset):
    """Image files decoded by DataLoader workers: item i -> (i, uint8 RGB [H, W, 3] or None, error).

    A file that cannot be used yields its ``InputError`` message (which names the file) instead
    of raising, so one bad file does not stop the others.
    """

    def __init__(self, paths: list[Path], max_pixels: int = MAX_PIXELS) -> None:
        self.paths, self.max_pixels = list(paths), max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return i, load_image(self.paths[i], self.max_pixels), None
        except InputError as e:
            return i, None, str(e)


def _first(batch: list):
    """collate_fn for batch_size 1: keep the decoded uint8 array as is (images differ in size)."""
    return batch[0]


def default_workers() -> int:
    """Decoding processes for ``tseg segment``: up to 4, never more than the CPUs."""
    return min(4, os.cpu_count() or 1)


def image_loader(paths: list[Path], max_pixels: int = MAX_PIXELS, workers: int = 0) -> DataLoader:
    """Decode ``paths`` in order with ``workers`` (>= 0) processes (0: in this process)."""
    return DataLoader(
        ImageFiles(paths, max_pixels),
        batch_size=1,
        shuffle=False,
        # One image gains nothing from a worker process: the model waits for it either way.
        num_workers=min(workers, len(paths)) if len(paths) > 1 else 0,
        collate_fn=_first,
    )
