"""``tseg segment``: image files and expressions in, mask PNGs, overlays and scores out (or one
COCO instances file: ``out_format="coco"``, ``tseg.coco_masks``).

``segment_files`` is the whole command: it reads the expressions (or the zero-shot class names),
collects the image files, decodes them in worker processes ahead of the model (those three:
``tseg.inference.files``), runs each through the model's ``predict`` and writes the results
(``tseg.inference.output``). The model is a checkpoint (``Segmenter``, torch; under torchrun
each process takes its share of the images and every image's output is written once) or a
folder written by ``tseg export onnx`` (``OrtSegmenter``, ONNX Runtime on the CPU), which writes
the same files without importing torch: this module imports torch, the checkpoint code and tqdm
only on the paths that use them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..export.ort_segmenter import META as EXPORT_META
from ..export.ort_segmenter import OrtSegmenter, read_export_meta
from ..inputs import check_expressions
from ..results import Predicts
from .files import (
    collect_images,
    decoded_images,
    default_workers,
    image_loader,
    output_stems,
    read_classes,
    read_expressions,
)
from .output import coco_annotations, write_coco, write_index, write_prediction, write_zero_shot


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
    coco: Path | None = None  # out_format="coco": the instances file written


def is_export_folder(model: str | Path) -> bool:
    """Whether ``model`` is a folder written by ``tseg export onnx`` (as ``tseg serve`` tells)."""
    return (Path(model) / EXPORT_META).is_file()


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
    out_format: str = "png",
) -> SegmentReport:
    """Segment a file, a folder's images or a glob pattern's files; write one folder per image
    (or, with ``out_format="coco"``, one COCO instances file).

    Args:
        checkpoint: a checkpoint or run folder, or a folder written by ``tseg export onnx``
            (then ONNX Runtime runs it on the CPU, without torch; TTA, CRF, a precision and a
            GPU are refused: ``export_options``).
        images: an image, a folder of images (sorted) or a glob pattern like 'photos/*.jpg'.
        expressions, expressions_file: the expressions, given and / or one per line of a file.
        classes: zero-shot semantic segmentation instead (section 4.6): 'cat,dog' or a YAML
            file of class -> names; writes a class-label PNG per image.
        out: the output folder.
        device: auto | cpu | cuda.
        workers: processes decoding images ahead of the model (None: ``default_workers()``;
            0: in this process). A single image is always decoded in this process.
        progress: show a progress bar over several images.
        inference: changes to the checkpoint's ``inference`` config (``threshold``,
            ``tta.enabled``, ``class_threshold``, ...), checked by the config's rules.
        labels: names of those values in error messages (the CLI's flags).
        out_format: "png": per image a folder of mask PNGs, an overlay and scores.json, and
            ``index.json``; "coco": ``out/instances.json`` alone, every image's masks as RLE
            with the expression as the category (``tseg.inference.output.write_coco``).
    """
    if out_format not in ("png", "coco"):
        raise InputError(f"--format = {out_format!r}: choose png or coco")
    if out_format == "coco" and classes:
        raise InputError(
            "--format coco writes one mask per expression; --classes writes class-label PNGs "
            "(use --format png)"
        )
    export = is_export_folder(checkpoint)
    changes = export_options(inference or {}, labels, device) if export else None
    class_names = read_classes(classes) if classes else None
    if class_names is not None:
        from ..data.zeroshot import flatten_class_names

        exprs = check_expressions(flatten_class_names(class_names)[0])
    else:
        exprs = check_expressions(read_expressions(expressions or [], expressions_file))
    paths = collect_images(images)
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise InputError(f"--workers = {workers} must be 0 (decode in this process) or more")
    stems = output_stems(paths)  # over all images, before sharding, so ranks agree
    job = _Job(paths, stems, exprs, class_names, Path(out), workers, progress, out_format == "coco")
    if changes is not None:
        return _segment_export(job, Path(checkpoint), changes)
    return _segment_torch(job, checkpoint, device, inference, labels)


@dataclass
class _Job:
    """What both paths of ``segment_files`` segment and where they write it."""

    paths: list[Path]
    stems: list[str]
    exprs: list[str]
    class_names: dict[str, list[str]] | None
    out: Path
    workers: int
    progress: bool
    coco: bool = False  # one instances file instead of the folders
    # coco: (index into paths, (height, width), annotations) of each image segmented here
    results: list[tuple[int, tuple[int, int], list[dict[str, Any]]]] = field(default_factory=list)

    @property
    def single(self) -> bool:
        return len(self.paths) == 1


def _segment_torch(
    job: _Job,
    checkpoint: str | Path,
    device: str,
    inference: Mapping[str, Any] | None,
    labels: Mapping[str, str] | None,
) -> SegmentReport:
    from tqdm import tqdm

    from .. import distributed
    from ..checkpoint import load_checkpoint
    from ..threads import ThreadGovernor
    from .segmenter import Segmenter

    paths = job.paths
    report = SegmentReport(images=len(paths), main=True, written=0, failed=0)
    # Under torchrun (WORLD_SIZE > 1) each rank segments its share of the images.
    with distributed.shard_from_env() as shard:
        where = distributed.pick_device(device)  # under torchrun: GPU LOCAL_RANK
        # On the CPU, threads follow the cores other processes leave idle (tseg.threads), as
        # in training; loading the model is the first measurement interval.
        governor = ThreadGovernor() if where.type == "cpu" else None
        model, cfg, _ = load_checkpoint(checkpoint, where)
        seg = Segmenter(model, where, cfg.inference, labels, **(inference or {}))
        mine = shard.take(range(len(paths)))
        # Workers decode (and check) the next images while this process runs the model.
        loader = image_loader([paths[i] for i in mine], seg.max_pixels, job.workers)
        bar = tqdm(
            loader, desc="segment", disable=job.single or not job.progress or not shard.is_main
        )

        def decoded() -> Iterator[tuple[int, np.ndarray | None, str | None]]:
            for n, (k, a, e) in enumerate(bar):
                if governor is not None:
                    governor.update(force=n == 0)  # re-measured every few seconds
                yield mine[k], a, e

        written, failed, errors = _segment_decoded(
            job, seg, seg.class_threshold, decoded(), report, tqdm.write
        )
        counts = shard.gather((written, failed))
        all_errors = dict(shard.gather_keyed([(i, (i, e)) for i, e in errors]))
        results = shard.gather_keyed([(r[0], r) for r in job.results]) if job.coco else []
        report.main = shard.is_main
        # Not when nothing was written: a run that read no image leaves no folder behind.
        if shard.is_main and sum(c[0] for c in counts):
            _finish(job, report, all_errors, results)
    report.written, report.failed = (sum(c[j] for c in counts) for j in range(2))
    return report


def _segment_decoded(
    job: _Job,
    seg: Predicts,
    class_threshold: float,
    decoded: Iterable[tuple[int, np.ndarray | None, str | None]],
    report: SegmentReport,
    say: Any,
) -> tuple[int, int, list[tuple[int, str]]]:
    """Predict and write each decoded image (index into ``job.paths``, array or None, error);
    an unreadable file is reported through ``say`` and skipped. Returns (written, failed,
    [(index, message)] of the unreadable files)."""
    written, failed = 0, 0
    errors: list[tuple[int, str]] = []
    for i, image, error in decoded:
        if error is not None:  # one unreadable file is reported and skipped
            say(f"error: {error}", file=sys.stderr)
            failed += 1
            errors.append((i, error))
            continue
        preds = seg.predict(image, job.exprs)
        stem = job.stems[i]
        if job.coco:  # kept for the one file written at the end
            job.results.append((i, image.shape[:2], coco_annotations(preds)))
            written += 1
            continue
        if job.class_names is not None:
            d = write_zero_shot(job.out, stem, image, preds, job.class_names, class_threshold)
        else:
            d = write_prediction(job.out, stem, image, preds)
        written += 1
        if job.single:
            report.folder, report.scores = d, [(p.confidence, p.expression) for p in preds]
    return written, failed, errors


# The inference options an ONNX export takes at run time; the rest is fixed when exporting or
# needs torch (each refused by name in ``export_options``).
EXPORT_CHANGES = ("threshold", "presence_threshold", "max_pixels", "class_threshold")


def export_options(
    changes: Mapping[str, Any], labels: Mapping[str, str] | None, device: str
) -> dict[str, Any]:
    """The inference changes for an ONNX export folder, checked by the config's rules; a
    precision, TTA, CRF or a GPU is refused with one line naming the flag."""
    labels = labels or {}

    def name(key: str) -> str:
        return labels.get(f"inference.{key}", f"inference.{key} = {changes[key]!r}")

    if device not in ("auto", "cpu"):
        raise InputError(
            f"--device {device}: an ONNX export runs on the CPU (ONNX Runtime's CPU provider); "
            "leave --device out, or segment with the checkpoint on the GPU"
        )
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise InputError("an ONNX export is segmented in one process: run it without torchrun")
    for key, value in changes.items():
        if key == "precision" or key == "text_precision":
            raise InputError(
                f"{name(key)}: an ONNX export's precision is chosen when exporting: "
                "tseg export onnx --precision int8"
            )
        if key.startswith("tta") and (key != "tta.enabled" or value):
            raise InputError(
                f"{name(key)}: an ONNX export runs without test-time augmentation "
                "(segment with the checkpoint for --tta)"
            )
        if key.startswith("crf") and (key != "crf.enabled" or value):
            raise InputError(
                f"{name(key)}: an ONNX export runs without the CRF "
                "(segment with the checkpoint for --crf)"
            )
        if key.startswith("pamr") and (key != "pamr.enabled" or value):
            raise InputError(
                f"{name(key)}: an ONNX export runs without PAMR "
                "(segment with the checkpoint for --pamr)"
            )
        if key not in EXPORT_CHANGES and key not in ("tta.enabled", "crf.enabled", "pamr.enabled"):
            raise InputError(f"{name(key)}: not an option of an ONNX export")
    kept = {k: v for k, v in changes.items() if k in EXPORT_CHANGES}
    if kept:  # the config's checks and messages, as the torch path gives them
        from ..config import InferenceConfig, with_inference

        checked = with_inference(InferenceConfig(), kept, labels)
        kept = {k: getattr(checked, k) for k in kept}
    return kept


def _segment_export(job: _Job, folder: Path, changes: dict[str, Any]) -> SegmentReport:
    """``segment_files`` on ONNX Runtime: no torch, one process, the same files written."""
    report = SegmentReport(images=len(job.paths), main=True, written=0, failed=0)
    max_pixels = changes.get("max_pixels") or int(read_export_meta(folder)["max_pixels"])
    with decoded_images(job.paths, max_pixels, job.workers) as decoded:
        # The decoding processes (several images) start before ONNX Runtime's threads exist.
        seg = OrtSegmenter(
            folder,
            threshold=changes.get("threshold"),
            max_pixels=max_pixels,
            presence_threshold=changes.get("presence_threshold"),
        )
        class_threshold = changes.get("class_threshold", seg.class_threshold)
        say: Any = print
        if not job.single and job.progress:
            from tqdm import tqdm

            decoded = tqdm(decoded, total=len(job.paths), desc="segment")
            say = tqdm.write
        written, failed, errors = _segment_decoded(job, seg, class_threshold, decoded, report, say)
    report.written, report.failed = written, failed
    if written:  # a run that read no image leaves no folder behind
        _finish(job, report, dict(errors), job.results)
    return report


def _finish(
    job: _Job,
    report: SegmentReport,
    errors: dict[int, str],
    results: list[tuple[int, tuple[int, int], list[dict[str, Any]]]],
) -> None:
    """What is written once, after every image: ``index.json``, or the COCO file."""
    if job.coco:
        report.coco = write_coco(job.out, job.paths, results)
    else:
        write_index(job.out, job.paths, job.stems, errors)
