"""The registry of datasets: each ``data.dataset`` name, how to build it and check its files.

One ``DatasetSpec`` per name, registered with ``register``; everything that lists or dispatches
on dataset names reads ``DATASETS``: the config's choice of ``data.dataset``, ``build_dataset``,
``check_dataset`` and the choices of ``tseg data check``, ``tseg data convert``,
``no_masks_reason`` (train / eval / self-train on data without masks) and the table of
docs/datasets.md (``markdown_table``). The built-in datasets are the ``register`` lines at the
end of this module; adding one is a new loader file and one such line (docs/extending.md).

The specs point at their loaders through ``lazy("package.module:function")``, imported on first call,
so that reading the names (``tseg --help``, a config's validation) loads no loader (numpy,
PIL, pycocotools, torch).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tseg.config import DataConfig
from tseg.data.base import DatasetError, RefDataset

if TYPE_CHECKING:  # the report module imports the loaders it checks with; never at run time
    from tseg.data.check.report import CheckOptions, CheckReport

__all__ = [
    "DATASETS",
    "KINDS",
    "DatasetSpec",
    "get",
    "lazy",
    "markdown_table",
    "names",
    "no_masks_reason",
    "register",
]

#: paper: the datasets of the paper's tables; own: a user's own data formats (docs/own_data.md);
#: synthetic: generated in memory (``shapes``).
KINDS: tuple[str, ...] = ("paper", "own", "synthetic")

Builder = Callable[[DataConfig, str], RefDataset]
Checker = Callable[[str, "str | os.PathLike[str]", "CheckOptions"], "CheckReport"]
NoMasks = Callable[[DataConfig, str], "str | None"]

#: What to do instead of evaluating on a split without masks (``no_masks_reason``).
ELSEWHERE = (
    "evaluate the checkpoint on data with masks: tseg eval CHECKPOINT --dataset coco "
    "--dataset-root FOLDER"
)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the registry.

    Attributes:
        name: The ``data.dataset`` value.
        kind: One of ``KINDS``.
        build: ``build(cfg, split) -> RefDataset``: the split ("train", "val" or a split name)
            of the dataset ``cfg`` (a ``DataConfig``) describes.
        check: ``check(name, root, options) -> CheckReport`` for ``tseg data check`` (options:
            ``tseg.data.check.CheckOptions``); None: the dataset has no check (``shapes``).
        weak: True when the dataset has no masks at all (images with text only).
        doc: One line for the table of docs/datasets.md.
        no_masks: ``no_masks(cfg, split) -> reason or None``, for a dataset whose splits may or
            may not have masks (``hf``: a mask column); None: ``weak`` decides.
    """

    name: str
    kind: str
    build: Builder
    check: Checker | None = None
    weak: bool = False
    doc: str = ""
    no_masks: NoMasks | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a dataset needs a name")
        if self.kind not in KINDS:
            raise ValueError(
                f"dataset {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}"
            )


#: Every registered dataset by name, in registration order (the order names are listed in).
DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` to the registry and return it.

    Raises:
        ValueError: A dataset of that name is registered already (and ``replace`` is False).
    """
    if spec.name in DATASETS and not replace:
        raise ValueError(f"dataset {spec.name!r} is registered already")
    DATASETS[spec.name] = spec
    return spec


def get(name: str) -> DatasetSpec:
    """The spec of dataset ``name``.

    Raises:
        DatasetError: No dataset of that name (the message lists the registered ones).
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise DatasetError(
            f"config key 'data.dataset' = {name!r}: unknown dataset "
            f"(available: {', '.join(DATASETS)})"
        )
    return spec


def names(kind: str | None = None, *, checked: bool = False) -> tuple[str, ...]:
    """The registered names, of one kind when ``kind`` is given, with a check when ``checked``."""
    return tuple(
        s.name
        for s in DATASETS.values()
        if (kind is None or s.kind == kind) and (not checked or s.check is not None)
    )


def lazy(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` as a function that imports the module when first called.

    The registry holds these instead of the loaders so that importing it stays light.
    """
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError(f"lazy({target!r}): expected 'package.module:function'")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    call.__name__ = attr
    call.__qualname__ = f"lazy({module}:{attr})"
    call.__module__ = module
    return call


def no_masks_reason(cfg: DataConfig, split: str) -> str | None:
    """Why split ``split`` of ``cfg`` has no masks to evaluate on, or None when it has them.

    A weak dataset never holds masks; one with ``no_masks`` (``hf``: a split has them when it
    exists and has a mask column) decides per split. An unknown name has masks as far as this
    is concerned: building it raises the error that names the registered ones.
    """
    spec = DATASETS.get(cfg.dataset)
    if spec is None:
        return None
    if spec.weak:
        return f"data.dataset={cfg.dataset} has no masks; {ELSEWHERE}"
    return spec.no_masks(cfg, split) if spec.no_masks is not None else None


def markdown_table() -> str:
    """The table of every registered dataset, as docs/datasets.md shows it (tests/test_docs.py
    checks that the page holds what this gives)."""
    rows = [
        "| `data.dataset` | kind | masks | `tseg data check` | what it is |",
        "|---|---|---|---|---|",
    ]
    for s in DATASETS.values():
        masks = "no" if s.weak else ("per split" if s.no_masks is not None else "yes")
        rows.append(f"| `{s.name}` | {s.kind} | {masks} | {'yes' if s.check else 'no'} | {s.doc} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- built-in datasets
# One register call per dataset (docs/extending.md); their order is the order names are listed in.

register(DatasetSpec(
    "shapes", "synthetic",
    build=lazy("tseg.data.synthetic.shapes:build"),
    doc="coloured shapes rendered in memory, with exact masks (no download)",
))  # fmt: skip
register(DatasetSpec(
    "refcoco", "paper",
    build=lazy("tseg.data.paper.refcoco:build"),
    check=lazy("tseg.data.check.refcoco:check_refcoco"),
    doc="RefCOCO: the refer toolkit's files, COCO train2014 images",
))  # fmt: skip
register(DatasetSpec(
    "refcoco+", "paper",
    build=lazy("tseg.data.paper.refcoco:build"),
    check=lazy("tseg.data.check.refcoco:check_refcoco"),
    doc="RefCOCO+: as RefCOCO, without location words",
))  # fmt: skip
register(DatasetSpec(
    "refcocog", "paper",
    build=lazy("tseg.data.paper.refcoco:build"),
    check=lazy("tseg.data.check.refcoco:check_refcoco"),
    doc="RefCOCOg: longer expressions, umd or google splits",
))  # fmt: skip
register(DatasetSpec(
    "grefcoco", "paper",
    build=lazy("tseg.data.paper.grefcoco:build"),
    check=lazy("tseg.data.check.refcoco:check_grefcoco"),
    doc="gRefCOCO: expressions for several objects or none",
))  # fmt: skip
register(DatasetSpec(
    "phrasecut", "paper",
    build=lazy("tseg.data.paper.phrasecut:build"),
    check=lazy("tseg.data.check.phrasecut:check_phrasecut"),
    doc="PhraseCut: phrases on Visual Genome images",
))  # fmt: skip
register(DatasetSpec(
    "voc", "paper",
    build=lazy("tseg.data.paper.voc:build"),
    check=lazy("tseg.data.check.voc:check_voc"),
    doc="Pascal VOC 2012 + SBD: the 20 class names as text",
))  # fmt: skip
register(DatasetSpec(
    "imagefolder", "own",
    build=lazy("tseg.data.own.imagefolder:build"),
    check=lazy("tseg.data.check.own:check_imagefolder"),
    weak=True,
    doc="Hugging Face ImageFolder: images and a metadata file of texts",
))  # fmt: skip
register(DatasetSpec(
    "coco_captions", "own",
    build=lazy("tseg.data.own.coco_captions:build"),
    check=lazy("tseg.data.check.own:check_coco_captions"),
    weak=True,
    doc="COCO captions files, in any COCO layout",
))  # fmt: skip
register(DatasetSpec(
    "coco", "own",
    build=lazy("tseg.data.own.coco:build"),
    check=lazy("tseg.data.check.own:check_coco"),
    doc="COCO instances: category names as text, masks (official layout, CVAT, Roboflow, ...)",
))  # fmt: skip
register(DatasetSpec(
    "webdataset", "own",
    build=lazy("tseg.data.own.shards:build"),
    check=lazy("tseg.data.check.own:check_webdataset"),
    weak=True,
    doc="WebDataset tar shards (`data.shards`), read or streamed",
))  # fmt: skip
register(DatasetSpec(
    "hf", "own",
    build=lazy("tseg.data.own.hf:build"),
    check=lazy("tseg.data.check.own:check_hf"),
    no_masks=lazy("tseg.data.own.hf:no_masks_reason"),
    doc="Hugging Face `datasets`: masks where a split has a mask column",
))  # fmt: skip
