"""``tseg eval``: a checkpoint on some splits under one protocol, sharded under torchrun.

The protocols are a registry, ``PROTOCOLS`` (name -> the dataset it reads and the function that
scores it), so a new evaluation is one function and one entry; ``tseg eval --protocol`` offers
its names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import distributed
from ..checkpoint import load_checkpoint, store_inference
from ..config import DataConfig
from ..data import RefDataset, build_dataset
from ..data.eval_data import override_data, semantic_classes
from ..errors import DatasetError
from ..inference.segmenter import Segmenter
from .pairs import choose_mask_threshold, choose_presence, evaluate_pairs
from .protocols import evaluate_phrasecut, evaluate_semantic, evaluate_voc


@dataclass
class EvalRequest:
    """The options of one evaluation; each protocol reads those it has."""

    max_images: int = 0  # only the first N images (0: all)
    presence: bool = False  # pairs: also report presence ROC AUC
    batch_size: int | None = (
        None  # pairs: images per ``Segmenter.maps`` call (None: eval.batch_size)
    )
    classes: str | None = None  # voc / semantic: YAML of class -> names (None: the packaged /
    # the dataset's class names)
    # *-zeroshot: drop classes below this confidence (None: the Segmenter's class_threshold,
    # i.e. the checkpoint's inference.class_threshold, as tseg segment --classes uses)
    confidence_threshold: float | None = None
    # pairs: choose inference.presence_threshold on the (first) split and store it in the
    # checkpoint (``tseg.eval.pairs.choose_presence``)
    choose_presence: bool = False
    # pairs: choose inference.threshold (the mask threshold) on the first split and store it
    choose_threshold: bool = False
    shard: distributed.Shard = field(default_factory=distributed.Shard)


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol: the dataset it evaluates on and how it scores a split of it."""

    dataset: str | None  # a ``data.dataset`` name; None: the checkpoint's (or ``--dataset``)
    run: Callable[[Segmenter, RefDataset, EvalRequest], dict[str, Any]]
    help: str


def _class_threshold(seg: Segmenter, r: EvalRequest) -> float:
    return seg.class_threshold if r.confidence_threshold is None else r.confidence_threshold


PROTOCOLS: dict[str, Protocol] = {
    "pairs": Protocol(
        None,
        lambda seg, ds, r: evaluate_pairs(
            seg, ds, r.batch_size, r.max_images, presence=r.presence, shard=r.shard
        ),
        "every (image, expression) of the checkpoint's dataset: mIoU, oIoU, P@k",
    ),
    "phrasecut": Protocol(
        "phrasecut",
        lambda seg, ds, r: evaluate_phrasecut(seg, ds, r.max_images, shard=r.shard),
        "official per-task metrics (mean and cumulative IoU, P@k with a strict >)",
    ),
    "voc": Protocol(
        "voc",
        lambda seg, ds, r: evaluate_voc(seg, ds, r.classes, max_images=r.max_images, shard=r.shard),
        "semantic segmentation mIoU from the 20 class names",
    ),
    "voc-zeroshot": Protocol(
        "voc",
        lambda seg, ds, r: evaluate_voc(
            seg,
            ds,
            r.classes,
            zero_shot=True,
            confidence_threshold=_class_threshold(seg, r),
            max_images=r.max_images,
            shard=r.shard,
        ),
        "the same, dropping low-confidence classes first (section 4.6)",
    ),
    "semantic": Protocol(
        None,
        lambda seg, ds, r: evaluate_semantic(
            seg, ds, semantic_classes(ds, r.classes), max_images=r.max_images, shard=r.shard
        ),
        "the same on a dataset's own classes (coco, voc)",
    ),
    "semantic-zeroshot": Protocol(
        None,
        lambda seg, ds, r: evaluate_semantic(
            seg,
            ds,
            semantic_classes(ds, r.classes),
            zero_shot=True,
            confidence_threshold=_class_threshold(seg, r),
            max_images=r.max_images,
            shard=r.shard,
        ),
        "and dropping its low-confidence classes",
    ),
}


def evaluate_checkpoint(
    checkpoint: str | Path,
    splits: list[str],
    protocol: str = "pairs",
    device: str = "auto",
    dataset: str | None = None,
    dataset_root: str | None = None,
    image_dir: str | None = None,
    request: EvalRequest | None = None,
    inference: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: str | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint or run folder; returns what ``tseg eval`` prints.

    Args:
        splits: the splits to evaluate, each under ``protocol`` (a key of ``PROTOCOLS``).
        dataset, dataset_root, image_dir: other data than the checkpoint's: a ``data.dataset``
            (pairs, semantic), its folder (any protocol) and image folder.
        request: the protocol's options (``EvalRequest``).
        inference: changes to the checkpoint's ``inference`` config (``tta.enabled``, ...);
            ``labels`` name them in error messages (the CLI's flags).
        annotations: a COCO file to evaluate on (``data.annotations``; with ``dataset`` coco).

    Returns:
        {"checkpoint", "inference": the options used, ["ranks"], ["protocol"], split: metrics}.
        Under torchrun (WORLD_SIZE > 1) each rank evaluates a share of the images and every
        rank returns the metrics of all of them.
    """
    proto = PROTOCOLS[protocol]
    request = request or EvalRequest()
    with distributed.shard_from_env() as shard:
        where = distributed.pick_device(device)  # under torchrun: GPU LOCAL_RANK
        model, cfg, ckpt = load_checkpoint(checkpoint, where)
        seg = Segmenter(model, where, cfg.inference, labels, **(inference or {}))
        head: dict[str, Any] = {"checkpoint": str(ckpt), "inference": seg.describe()}
        if shard.world_size > 1:
            head["ranks"] = shard.world_size
        if protocol != "pairs":
            head["protocol"] = protocol
        request = replace(
            request, shard=shard, batch_size=request.batch_size or cfg.eval.batch_size
        )
        out: dict[str, Any] = {}
        if request.choose_presence or request.choose_threshold:
            # Chosen on the first split, stored in the checkpoint, used for every split.
            if protocol != "pairs":
                raise DatasetError("--choose-* options work with --protocol pairs")
            ds = _dataset(
                protocol, proto, cfg.data, splits[0], dataset, dataset_root, image_dir, annotations
            )
            if request.choose_threshold:
                chosen = choose_mask_threshold(seg, ds, request.batch_size, request.max_images)
                cfg.inference.set_threshold(seg.setting, chosen["threshold"])
                out["threshold"] = {"chosen_on": splits[0], "setting": seg.setting, **chosen}
            if request.choose_presence:
                choice = choose_presence(seg, ds, request.batch_size, request.max_images)
                cfg.inference.presence_threshold = round(choice.threshold, 6)
                out["presence_threshold"] = {"chosen_on": splits[0], **asdict(choice)}
                out["presence_threshold"]["threshold"] = cfg.inference.presence_threshold
            if shard.rank == 0:
                out["stored_in"] = str(store_inference(ckpt, cfg) / "config.yaml")
            chosen_keys = {"threshold", "presence_threshold"}
            changes = {k: v for k, v in (inference or {}).items() if k not in chosen_keys}
            seg = Segmenter(model, where, cfg.inference, labels, **changes)
            head["inference"] = seg.describe()
        for split in splits:
            ds = _dataset(
                protocol, proto, cfg.data, split, dataset, dataset_root, image_dir, annotations
            )
            out[split] = proto.run(seg, ds, request)
    return {**head, **out}


def _dataset(
    name: str,
    proto: Protocol,
    data: DataConfig,
    split: str,
    dataset: str | None,
    root: str | None,
    image_dir: str | None,
    annotations: str | None = None,
) -> RefDataset:
    """The split a protocol evaluates: of the checkpoint's dataset, or of the one given."""
    if proto.dataset is None:
        return build_dataset(override_data(data, dataset, root, image_dir, annotations), split)
    if root:
        return build_dataset(DataConfig(dataset=proto.dataset, root=root), split)
    if data.dataset != proto.dataset:
        raise DatasetError(
            f"--protocol {name} evaluates on {proto.dataset}, but the checkpoint was trained "
            f"on {data.dataset!r}: give the {proto.dataset} folder with --dataset-root"
        )
    return build_dataset(data, split)
