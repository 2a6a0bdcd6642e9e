"""The report of ``tseg data check``: what was counted, what to fix, and how problems are worded.

``CheckReport`` collects a check's counts, problems (with where to get the files) and warnings;
``format()`` is what ``tseg data check`` prints. ``CheckOptions`` is what the command was asked
for beyond the dataset and its folder, as every registered check receives it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CheckOptions", "CheckReport", "Problems", "compare", "list_paths"]

_MAX_LISTED = 5


@dataclass(frozen=True)
class CheckOptions:
    """What ``tseg data check`` was asked for, beyond the dataset and its folder.

    Attributes:
        split_by: RefCOCO* only: ``unc``, ``umd`` or ``google`` (None: the dataset's default).
        image_dir: The image folder if not the default (resolved under the root already).
        splits: Splits to check (None: all, or every split found).
        check_images: Also check that every image (and VOC label) file exists, or decodes.
        strict_polygons: PhraseCut: the loader's ``data.phrasecut_strict_polygons``.
        text_column: hf: ``data.text_column`` ("" = found by name).
    """

    split_by: str | None = None
    image_dir: str | None = None
    splits: list[str] | None = None
    check_images: bool = True
    strict_polygons: bool = True
    text_column: str = ""


@dataclass
class CheckReport:
    """Result of ``check_dataset``.

    Attributes:
        dataset: Dataset name (with its splitBy for RefCOCO*).
        root: The folder that was checked.
        problems: What must be fixed before the dataset can be used.
        warnings: What looks unusual but does not prevent loading.
        missing: Every missing file or folder (also described in ``problems``).
        counts: Counts found, ``{split: {quantity: n}}``.
        expected: Published counts, same layout (empty when there is no reference).
    """

    dataset: str
    root: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    expected: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was read, e.g. which columns

    @property
    def ok(self) -> bool:
        """True when there is no problem (warnings allowed)."""
        return not self.problems

    def add_missing(self, path: Path, hint: str, kind: str = "file") -> None:
        """Record a missing file (or folder, ``kind``) as a problem, with how to get it."""
        self.missing.append(path)
        self.problems.append(f"missing {kind} {path}\n    -> {hint}")

    def format(self) -> str:
        """A report a user can act on: counts, then each problem with its fix."""
        status = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [f"{self.dataset} at {self.root}: {status}"]
        if self.counts:
            quantities = sorted({q for c in self.counts.values() for q in c})
            lines.append("  " + "split".ljust(10) + "".join(q.rjust(24) for q in quantities))
            for split, counts in self.counts.items():
                cells = []
                for q in quantities:
                    if q not in counts:
                        cells.append("-".rjust(24))
                        continue
                    exp = self.expected.get(split, {}).get(q)
                    cell = f"{counts[q]:,}" + ("" if exp is None else f" (expected {exp:,})")
                    cells.append(cell.rjust(24))
                lines.append("  " + split.ljust(10) + "".join(cells))
            if not self.expected:
                lines.append("  (no published numbers to compare with)")
        lines.extend(f"  {note}" for note in self.notes)
        for title, items in (("Problems", self.problems), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  - {item}" for item in items)
        return "\n".join(lines)


def compare(report: CheckReport, split: str, source: str, hint: str) -> None:
    """A problem for every count of ``split`` that differs from the published one."""
    fewer, more = [], []
    for quantity, exp in report.expected.get(split, {}).items():
        got = report.counts.get(split, {}).get(quantity)
        if got is not None and got != exp:
            (fewer if got < exp else more).append(f"{got:,} {quantity} (expected {exp:,})")
    if fewer:
        report.problems.append(
            f"{split}: {', '.join(fewer)}, fewer than published ({source}): an incomplete "
            f"download, or files of another release\n    -> {hint}"
        )
    if more:
        report.problems.append(
            f"{split}: {', '.join(more)}, more than published ({source}): files of another "
            f"release or dataset\n    -> {hint}"
        )


def list_paths(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    more = len(paths) - _MAX_LISTED
    return shown + (f" and {more:,} more" if more > 0 else "")


class Problems:
    """Problems of one split, counted by kind with the first few examples of each."""

    EXAMPLES = 3

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.EXAMPLES:
            shown.append(message)

    def report(self, report: CheckReport, split: str, as_warning: tuple[str, ...] = ()) -> None:
        """One line per kind into ``report``'s problems (or warnings, for ``as_warning``)."""
        for kind, n in self.counts.items():
            lines = "\n    ".join(self.examples[kind])
            text = f"{split}: {kind}: {n:,}, e.g.\n    {lines}"
            (report.warnings if kind in as_warning else report.problems).append(text)
