"""What the commands' arguments share: argparse types, choices and help texts read from a
registry only when argparse needs them (so ``tseg --help`` imports no registry), and the
``[CONFIG] [key=value ...]`` split."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: What ``ArgumentParser.add_subparsers`` returns; each command module adds its parsers to it.
Subparsers = argparse._SubParsersAction


class Choices:
    """argparse ``choices`` read from a registry the first time they are needed. (Give the
    argument a ``metavar``: argparse lists choices in its usage line as it adds an argument.)"""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load, self._names = load, None

    def _all(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(self._load())
        return self._names

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())


class Described(str):
    """A help text that lists a registry's entries, written when argparse formats it (which
    expands every help text with ``%``)."""

    def __new__(cls, intro: str, load: Callable[[], dict[str, str]]) -> Described:
        text = super().__new__(cls, intro)
        text._load = load
        return text

    def __mod__(self, params: Any) -> str:
        return str(self) + "; ".join(f"{k}: {v}" for k, v in self._load().items())


def out_path(text: str) -> str:
    """An argparse type for output folders: an empty name would write into the working folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name (it would write into the working folder)")
    return text


def count(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def registry_module(name: str) -> Any:
    """``tseg.<name>``, imported when a value is first checked or a help text shown."""
    return importlib.import_module(f"tseg.{name}")


def registry_names(module: str, attr: str) -> Choices:
    """The keys of ``module.attr`` (a registry dict or a tuple of names), read lazily."""
    return Choices(lambda: getattr(registry_module(module), attr))


def device_option() -> dict[str, Any]:
    """``--device``'s keyword arguments: the choices of the config key ``train.device``."""
    choices = Choices(lambda: importlib.import_module("tseg.config").choices("train.device"))
    return {"choices": choices, "metavar": "DEVICE", "help": "%(choices)s (default %(default)s)"}


def split_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the first argument is a YAML path unless it is an override."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args
