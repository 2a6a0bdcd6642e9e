"""``tseg weights``: every preset's pretrained files, whether each is present, and where."""

from __future__ import annotations

import argparse

from .args import Subparsers


def cmd_weights(ns: argparse.Namespace) -> int:
    from ..config import build_config, to_flat
    from ..models.weights import weights_report

    rows = weights_report(
        values=to_flat(build_config(None, ns.overrides)), hash_files=not ns.no_hash
    )
    for r in rows:
        where = " in the Hugging Face cache" if r.get("cache") else ""
        state = f"present{where}" if r["present"] else f"MISSING{where and ' from the cache'}"
        if r.get("problem"):
            state = f"BROKEN{where}: {r['problem']}"
        print(f"[{r['preset']}] {r['name']} {r.get('file') or ''}: {state}")
        print(f"    config key: {r['config_key']}   path: {r['path'] or '(not set)'}")
        if r.get("sha256"):
            print(f"    sha256: {r['sha256']}")
        if not r["present"] and r.get("source"):
            print(f"    get it from: {r['source']}")
        if r.get("note"):
            print(f"    note: {r['note']}")
    if any(r.get("cache") for r in rows):
        print(
            "hub names are read from the Hugging Face cache (HF_HOME / HF_HUB_CACHE; docs/hub.md)"
        )
    return 1 if any(r.get("problem") for r in rows) else 0


def add_weights(sub: Subparsers) -> None:
    """The ``weights`` command's parser."""
    w = sub.add_parser(
        "weights",
        help="list every preset's pretrained files, whether each is present (hub names: in the "
        "Hugging Face cache) and where, sha256",
    )
    w.add_argument(
        "overrides",
        nargs="*",
        help="key=value, e.g. model.image.weights=/path/vit.npz or model.text.weights=ORG/NAME",
    )
    w.add_argument("--no-hash", action="store_true", help="skip sha256 of large files")
    w.set_defaults(func=cmd_weights)
