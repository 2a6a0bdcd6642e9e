"""What the weak formats (images with text, no masks) share: reading expressions and refusing masks.

``imagefolder``, ``coco_captions`` and ``webdataset`` hold image-level text only. Weak training
reads ``image`` and ``expressions`` and never ``masks`` (``tseg.data.pipeline``), so these
datasets implement the ``RefDataset`` protocol with a ``masks`` that raises a ``DatasetError``
saying where masks come from instead. Every format turns its text into expressions with
``clean_expressions``: the same rules, and the same messages naming the file and row, for all.
A streamed source gives the text of its first samples for the vocabulary through
``FirstTexts`` (``tseg.data.stream``, ``tseg.data.own.hf_stream``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np

from tseg.data.base import DatasetError, normalize_expression

__all__ = [
    "IMAGE_EXTENSIONS",
    "FirstTexts",
    "TEXT_KEYS",
    "RecordError",
    "WeakDataset",
    "clean_expressions",
    "expressions_from_record",
    "merge_expressions",
]

#: Image file suffixes the weak formats read (lower case, with the dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")

#: Where a record (a metadata row, a sample's JSON) may hold its text: a list of expressions, or
#: one string (Hugging Face's ``text`` column, a ``caption``).
TEXT_KEYS: tuple[str, ...] = ("expressions", "text", "caption")


class RecordError(DatasetError):
    """One record (a metadata row, an annotation, a sample) is unusable.

    ``kind`` names the problem for the counts of ``tseg data check``: ``missing image``,
    ``empty expression list``, ``non-string expression``, ``empty expression``, ``no text`` or
    ``malformed record``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def clean_expressions(value: Any, where: str) -> list[str]:
    """A non-empty list of non-empty strings -> the distinct ones, stripped, in order.

    Two expressions are the same when ``normalize_expression`` makes them equal; the first
    spelling is kept.

    Raises:
        RecordError: Not a list, an empty list, a non-string or an empty string (the message
            starts with ``where`` and says which item).
    """
    if not isinstance(value, list):
        raise RecordError(
            f"{where}: expressions must be a list of strings, got {value!r:.80}",
            "malformed record",
        )
    if not value:
        raise RecordError(f"{where}: the expression list is empty", "empty expression list")
    out: dict[str, str] = {}
    for j, text in enumerate(value):
        if not isinstance(text, str):
            raise RecordError(
                f"{where}: expression {j} is not a string: {text!r:.80}", "non-string expression"
            )
        key = normalize_expression(text)
        if not key:
            raise RecordError(f"{where}: expression {j} is empty", "empty expression")
        out.setdefault(key, text.strip())
    return list(out.values())


def expressions_from_record(record: dict[str, Any], where: str) -> list[str]:
    """The expressions of one record: ``expressions`` (a list), else ``text`` or ``caption``.

    Raises:
        RecordError: None of the keys is there, or its value is not valid text.
    """
    for key in TEXT_KEYS:
        if key in record:
            value = record[key]
            if key == "expressions":
                return clean_expressions(value, f"{where}: '{key}'")
            if not isinstance(value, str):
                raise RecordError(
                    f"{where}: '{key}' must be a string, got {value!r:.80}",
                    "non-string expression",
                )
            return clean_expressions([value], f"{where}: '{key}'")
    raise RecordError(
        f"{where}: no text: expected a key {', '.join(repr(k) for k in TEXT_KEYS)}", "no text"
    )


def merge_expressions(groups: Iterable[list[str]]) -> list[str]:
    """Several records of one image -> its distinct expressions, in first-seen order."""
    out: dict[str, str] = {}
    for group in groups:
        for text in group:
            out.setdefault(normalize_expression(text), text)
    return list(out.values())


class WeakDataset:
    """Base of the weak formats: ``masks`` explains that there are none.

    Subclasses set ``self.name`` (the ``data.dataset`` value) and ``self.source`` (the folder or
    shards) and implement ``__len__``, ``image`` and ``expressions``.
    """

    name = "weak"
    source: object = ""

    def masks(self, idx: int) -> np.ndarray:
        """Weak data holds no masks: always raises.

        Raises:
            DatasetError: Always; it names the dataset and where masks come from.
        """
        raise DatasetError(
            f"{self.name} at {self.source}: no masks (image-level text only); evaluate on data "
            "with masks, e.g. tseg eval CHECKPOINT --dataset coco --dataset-root FOLDER"
        )


class FirstTexts:
    """The expressions of a source's first ``limit`` good samples, in shard order, read on first
    use without decoding an image (``good_texts``): the text a streamed run trains its
    from-scratch vocabulary (and tf-idf ground truth) on, as ``RefDataset.expressions`` gives
    it otherwise. Samples without usable text are skipped, as the stream skips them."""

    limit = 20000
    _texts: list[list[str]] | None = None

    def good_texts(self) -> Iterator[list[str]]:
        """Every good sample's expressions, in shard order."""
        raise NotImplementedError

    def _read(self) -> list[list[str]]:
        if self._texts is None:
            self._texts = list(islice(self.good_texts(), self.limit))
        return self._texts

    def __len__(self) -> int:
        return len(self._read())

    def expressions(self, idx: int) -> list[str]:
        return list(self._read()[idx])
