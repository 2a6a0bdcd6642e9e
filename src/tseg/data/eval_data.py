"""What ``tseg eval`` asks of the data: a checkpoint's data config pointed at other data, and
the classes of the semantic protocol on a dataset.

``override_data`` gives ``tseg eval CHECKPOINT --dataset --dataset-root --annotations`` its data
config; ``semantic_classes`` the class names the semantic and zero-shot protocols score (VOC's
20, a COCO file's categories). See docs/own_data.md."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tseg.config import DataConfig
from tseg.data.base import DatasetError

__all__ = ["override_data", "semantic_classes"]


def override_data(
    data: DataConfig,
    dataset: str | None,
    root: str | None,
    image_dir: str | None = None,
    annotations: str | None = None,
) -> DataConfig:
    """A checkpoint's data config pointed at other data (``tseg eval --dataset --dataset-root``,
    ``--annotations FILE``).

    Raises:
        DatasetError: ``dataset`` is given without ``root`` or ``annotations``.
    """
    if not (dataset or root or image_dir or annotations):
        return data
    if dataset and dataset != data.dataset and not (root or annotations):
        raise DatasetError(
            f"--dataset {dataset}: give its folder with --dataset-root (or a COCO file with "
            "--annotations)"
        )
    changes: dict[str, Any] = {"dataset": dataset or data.dataset}
    if root or annotations:
        # the checkpoint's data.root must not prefix another dataset's relative paths
        changes["shards" if changes["dataset"] == "webdataset" else "root"] = root or ""
    if image_dir is not None or dataset:
        changes["image_dir"] = image_dir or ""
    if annotations is not None or dataset or root:
        changes["annotations"] = annotations or ""
    return replace(data, **changes)


def semantic_classes(ds: Any, classes_file: str | None = None) -> dict[str, list[str]]:
    """The classes of the semantic protocol on ``ds`` -> {class: names given to the model}.

    VOC: the 20 classes (names from the packaged synonyms or ``classes_file``). A dataset with
    ``class_names`` (COCO): each class its own name, or the names in ``classes_file`` (a YAML
    mapping every class to a list of names).

    Raises:
        DatasetError: ``ds`` has no per-class label map, or the file does not fit its classes.
    """
    from tseg.data.paper.voc import VocDataset
    from tseg.data.zeroshot import load_class_names

    if isinstance(ds, VocDataset):
        return load_class_names(classes_file)
    names = getattr(ds, "class_names", None)
    if names is None or not callable(getattr(ds, "label_map", None)):
        raise DatasetError(
            f"the semantic protocol needs a dataset with per-class masks (coco, voc); "
            f"{type(ds).__name__} has none"
        )
    if classes_file:
        return load_class_names(classes_file, classes=tuple(names))
    return {c: [c] for c in names}
