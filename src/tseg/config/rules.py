"""The rules a config value must pass, written beside its field: ``rule(default, Range(...))``.

A field's rules live in its dataclass field's metadata, so a rule cannot name a key that does
not exist. ``Between`` is the one kind of rule that spans several keys (``tseg.config.between``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Upper bounds of counts and sizes: far above any real run, and far below what overflows a
# C integer (an int key given 1e30 reached islice and torch as an OverflowError).
MANY = 10**9
WIDTH = 65536  # widths, heads and channels of a layer
SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (None: unbounded on that side)."""

    lo: float | None = None
    hi: float | None = None

    def error(self, value: Any) -> str | None:
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            lo = self.lo if self.lo is not None else "-inf"
            return f" is out of range [{lo}, {self.hi if self.hi is not None else 'inf'}]"
        return None


@dataclass(frozen=True)
class Test:
    """A rule that is not a range: ``test(value)`` must hold; ``what`` says what it wants."""

    test: Callable[[Any], bool]
    what: str

    def error(self, value: Any) -> str | None:
        return None if self.test(value) else f": {self.what}"


@dataclass(frozen=True)
class OneOf:
    """One of ``allowed``: a tuple, or a function giving a registry's names (read when first
    checked: the registries import torch, which a config alone does not need)."""

    allowed: tuple[str, ...] | Callable[[], tuple[str, ...]]

    def names(self) -> tuple[str, ...]:
        return self.allowed() if callable(self.allowed) else self.allowed

    def error(self, value: Any) -> str | None:
        names = self.names()
        return None if value in names else f": choose one of {', '.join(names)}"


Rule = Range | Test | OneOf


def rule(default: Any, *rules: Rule) -> Any:
    """A dataclass field with its default and the rules every value of it must pass."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"rules": rules})
    return field(default=default, metadata={"rules": rules})


def registry(module: str, name: str) -> Callable[[], tuple[str, ...]]:
    """The names of a registry dict (e.g. the pooling heads), imported when first read."""

    def names() -> tuple[str, ...]:
        return tuple(getattr(importlib.import_module(module), name))

    return names


# Strings: a path or a name. A NUL byte reached os calls as "embedded null byte" (ValueError).
TEXT = Test(lambda v: "\x00" not in v and len(v) <= 4096, "must be at most 4096 characters, no NUL")
NAME = Test(lambda v: bool(v.strip()) and "\x00" not in v and len(v) <= 4096, "must not be empty")
UNIT = Range(0.0, 1.0)  # a probability or a fraction


@dataclass(frozen=True)
class Between:
    """A rule between config keys: ``test(*values)`` must hold, else ``message`` (formatted
    with the values, ``{0}``, ``{1}``, ...) is the error."""

    keys: tuple[str, ...]
    test: Callable[..., bool]
    message: str
