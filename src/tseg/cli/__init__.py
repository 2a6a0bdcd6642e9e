"""Command-line interface: ``tseg train | eval | segment | pseudo-label | self-train | demo |
weights | export | serve | data``.

Each command parses its arguments and calls one library function; ``main(argv) -> int`` so every
command is callable from a test. Expected failures (``tseg.errors.TsegError``: a bad config,
missing file, unreadable image, wrong checkpoint) print one ``error:`` line and return 2. Nothing
heavy is imported before a command runs: ``tseg --help`` and ``tseg data check`` never load
torch, and choices that come from a registry (protocols, datasets, demo recipes) are read only
when a value is checked or a command's help is shown.

Each command group is a module that holds its command functions and adds its parsers
(``add_*``): ``train`` (train, pseudo-label, self-train, demo), ``infer`` (eval, segment and
their shared inference flags), ``weights``, ``export`` (export, serve) and ``data``; ``args``
holds the argument types and lazy choices they share. This module assembles the parser and
runs a command; ``__main__`` is ``python -m tseg.cli`` (torchrun).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import TrainingInterrupted, TsegError
from .args import count, out_path
from .data import add_data, cmd_data_check, cmd_data_convert
from .export import add_export, add_serve, cmd_export, cmd_export_hf, cmd_serve
from .infer import (
    add_eval,
    add_inference_flags,
    add_segment,
    cmd_eval,
    cmd_segment,
    inference_changes,
)
from .train import (
    add_demo,
    add_pseudo_label,
    add_self_train,
    add_train,
    cmd_demo,
    cmd_pseudo_label,
    cmd_self_train,
    cmd_train,
)
from .weights import add_weights, cmd_weights

__all__ = [
    "add_inference_flags",
    "build_parser",
    "cmd_data_check",
    "cmd_data_convert",
    "cmd_demo",
    "cmd_eval",
    "cmd_export",
    "cmd_export_hf",
    "cmd_pseudo_label",
    "cmd_self_train",
    "cmd_segment",
    "cmd_serve",
    "cmd_train",
    "cmd_weights",
    "count",
    "inference_changes",
    "main",
    "out_path",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tseg", description="Text-grounded segmentation learned without pixel labels."
    )
    p.add_argument("--version", action="version", version=f"tseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    # In the order ``tseg --help`` lists them.
    add_train(sub)
    add_eval(sub)
    add_segment(sub)
    add_pseudo_label(sub)
    add_self_train(sub)
    add_demo(sub)
    add_weights(sub)
    add_export(sub)
    add_serve(sub)
    add_data(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    listed = {"train": "args", "self-train": "args", "pseudo-label": "overrides"}
    if extra and ns.command in listed and not any(a.startswith("-") for a in extra):
        # `tseg train a=b --quiet c=d`: argparse fills the positional list once, so the
        # overrides after an option come back unparsed; they continue the list, in order.
        setattr(ns, listed[ns.command], [*getattr(ns, listed[ns.command]), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(ns.func(ns) or 0)
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except TsegError as e:  # expected failures: one line that names the thing
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: an --out that is a file, no permission, ...
        if e.filename is None:
            raise
        where = f"'{e.filename}'" + (f" -> '{e.filename2}'" if e.filename2 else "")
        print(f"error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
