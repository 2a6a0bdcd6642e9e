"""The bounds of ``tseg serve``: one dataclass, its command-line flags and their checks.

Standard library only, so ``tseg --help`` can list the flags without importing the server.
Memory is bounded by these numbers, not by what a client uploads (docs/deployment.md works the
bound out): at most ``workers + queue`` requests are admitted at once, each holding a body of at
most ``max_bytes``; at most ``workers`` images are decoded at once, each refused above
``max_pixels`` before decoding and shrunk to the model's input size before the model runs; masks
are made at most ``mask_side`` pixels long; the model keeps at most ``text_cache`` text
embeddings.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields

from ..errors import InputError


@dataclass(frozen=True)
class ServeOptions:
    """Limits, timeouts and sizes of one server (seconds, bytes, pixels)."""

    max_bytes: int = 10_000_000  # largest image file (the base64 JSON body may be 4/3 of it)
    max_pixels: int = 25_000_000  # checked from the image header, before decoding
    max_expressions: int = 16
    max_expression_chars: int = 200
    mask_side: int = 1024  # masks are at most this long (never larger than the image)
    model_side: int = 0  # shorter side the image is shrunk to for the model (0: the model's own)
    text_cache: int = 4096  # text embeddings the model keeps (one per distinct expression)
    workers: int = 2  # threads that decode, run the model (one at a time) and encode
    queue: int = 8  # admitted requests waiting for a worker; more: 503 + Retry-After
    request_timeout: float = 60.0  # waiting for a worker + running; then 503 (waited) / 504 (ran)
    body_timeout: float = 30.0  # the whole body must arrive within this after the headers
    header_timeout: float = 10.0  # complete request headers within this of connecting
    keep_alive: float = 5.0  # idle keep-alive connections are closed after this
    limit_concurrency: int = 256  # open connections; beyond it uvicorn answers 503 itself
    backlog: int = 2048  # the listening socket's queue of connections not yet accepted

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = self.problem(f.name, getattr(self, f.name))
            if problem:
                raise InputError(f"serve option {f.name} = {getattr(self, f.name)!r} {problem}")

    @staticmethod
    def problem(name: str, v: object) -> str | None:
        """What is wrong with ``v`` for the field ``name``, or None."""
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return "must be a finite number"
        if isinstance(ServeOptions.__dataclass_fields__[name].default, float):
            return None if v > 0 else "must be positive"  # seconds
        if v != int(v):
            return "must be a whole number"
        if name == "max_bytes" and v < 100:
            return "is too small (at least 100 bytes)"
        low = 0 if name == "model_side" else 1
        return None if v >= low else f"must be at least {low}"

    @property
    def max_body(self) -> int:
        """Largest request body: the base64 image (4/3 of its bytes) plus the other fields."""
        return self.max_bytes * 4 // 3 + 64_000

    @property
    def admitted(self) -> int:
        """Requests in the server at once (running or queued)."""
        return self.workers + self.queue


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``tseg serve`` flags (the model path, address and backend included)."""
    d = ServeOptions()
    p.add_argument("model", help="a checkpoint or run folder, or a folder from tseg export onnx")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free)")
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="auto (default): onnx for an export folder, torch for a checkpoint",
    )
    p.add_argument("--threads", type=int, default=0, help="model CPU threads (0: library default)")
    p.add_argument("--quiet", action="store_true", help="no access log")
    g = p.add_argument_group("bounds (memory is bounded by these, not by the uploads)")
    g.add_argument("--max-mb", type=float, default=d.max_bytes / 1e6, help="largest upload in MB (default 10)")  # fmt: skip
    g.add_argument("--max-pixels", type=int, default=d.max_pixels, help="largest image (default 25,000,000)")  # fmt: skip
    g.add_argument("--mask-side", type=int, default=d.mask_side, help=f"longest side of the returned masks (default {d.mask_side})")  # fmt: skip
    g.add_argument("--model-side", type=int, default=d.model_side, help="shorter side the image is shrunk to before the model (default 0: the model's input size)")  # fmt: skip
    g.add_argument("--text-cache", type=int, default=d.text_cache, help=f"distinct expressions whose text embedding is kept (default {d.text_cache})")  # fmt: skip
    g.add_argument("--workers", type=int, default=d.workers, help=f"worker threads; the model itself runs one request at a time (default {d.workers})")  # fmt: skip
    g.add_argument("--queue", type=int, default=d.queue, help=f"requests waiting for a worker before 503 (default {d.queue})")  # fmt: skip
    g.add_argument("--request-timeout", type=float, default=d.request_timeout, help=f"seconds to wait for and run the model (default {d.request_timeout:g})")  # fmt: skip
    g.add_argument("--body-timeout", type=float, default=d.body_timeout, help=f"seconds to receive a request body (default {d.body_timeout:g})")  # fmt: skip
    g.add_argument("--header-timeout", type=float, default=d.header_timeout, help=f"seconds to receive request headers (default {d.header_timeout:g})")  # fmt: skip
    g.add_argument("--keep-alive", type=float, default=d.keep_alive, help=f"idle keep-alive timeout in seconds (default {d.keep_alive:g})")  # fmt: skip
    g.add_argument("--limit-concurrency", type=int, default=d.limit_concurrency, help=f"open connections before uvicorn's own 503 (default {d.limit_concurrency})")  # fmt: skip
    g.add_argument("--backlog", type=int, default=d.backlog, help=f"listen backlog (default {d.backlog})")  # fmt: skip


def from_arguments(ns: argparse.Namespace) -> ServeOptions:
    """The parsed flags -> checked options (an InputError names a bad flag)."""
    if not math.isfinite(ns.max_mb) or ns.max_mb <= 0:
        raise InputError(f"--max-mb = {ns.max_mb:g} must be a positive number")
    values = {"max_bytes": round(ns.max_mb * 1_000_000)}  # --max-mb; the others by name
    values.update({f.name: getattr(ns, f.name) for f in fields(ServeOptions) if hasattr(ns, f.name)})  # fmt: skip
    for name, value in values.items():
        problem = ServeOptions.problem(name, value)
        if problem:
            flag = "--max-mb" if name == "max_bytes" else "--" + name.replace("_", "-")
            raise InputError(f"{flag} = {ns.max_mb if name == 'max_bytes' else value:g} {problem}")
    if ns.threads < 0:
        raise InputError(f"--threads = {ns.threads} must be 0 (library default) or more")
    if not 0 <= ns.port <= 65535:  # uvicorn would listen on port % 65536 without a word
        raise InputError(f"--port = {ns.port} must be in [0, 65535] (0: any free port)")
    return ServeOptions(**values)
