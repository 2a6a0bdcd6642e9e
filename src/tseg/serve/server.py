"""Running ``tseg serve``: load the model, bind the socket, serve the app on uvicorn.

uvicorn bounds what it can: idle keep-alive connections (``timeout_keep_alive``), open
connections (``limit_concurrency``: past it, uvicorn answers 503 itself), the listen backlog.
It has no deadline for a request's headers, so a client that connects and sends nothing (or a
header a byte a minute) would hold its connection for ever; ``protocol_class`` adds one.
Nothing here imports torch: ``tseg serve EXPORT_DIR`` runs where torch is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ..inputs import InputError
from .options import ServeOptions, from_arguments
from .service import Model, SegmentService


def load_model(path: str | Path, backend: str = "auto", threads: int = 0) -> tuple[Model, str]:
    """A Segmenter (torch) for a checkpoint, or an OrtSegmenter for a ``tseg export onnx`` folder.

    ``backend="auto"`` picks onnx when the folder holds ``tseg_onnx.json``.
    """
    from ..export.ort_segmenter import META

    if backend == "auto":
        backend = "onnx" if (Path(path) / META).is_file() else "torch"
    if backend == "onnx":
        from ..export.ort_segmenter import OrtSegmenter

        return OrtSegmenter(path, threads=threads), "onnx"
    if backend != "torch":
        raise ValueError(f"backend {backend!r}: choose auto, torch or onnx")
    import torch

    from ..inference import Segmenter

    if threads:
        torch.set_num_threads(threads)
    return Segmenter.from_checkpoint(path), "torch"


def protocol_class(header_timeout: float) -> type:
    """uvicorn's h11 protocol, closing a connection that has not sent complete request headers
    within ``header_timeout`` seconds of connecting or of its previous response."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport) -> None:  # noqa: ANN001 - asyncio's signature
            super().connection_made(transport)
            self._arm_header_timer(None)

        def on_response_complete(self) -> None:
            done = self.cycle
            super().on_response_complete()
            self._arm_header_timer(done)

        def _arm_header_timer(self, cycle: object) -> None:
            self.loop.call_later(header_timeout, self._header_deadline, cycle)

        def _header_deadline(self, cycle: object) -> None:
            # Still the cycle we armed for: no request's headers have arrived since.
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket (port 0: any free port); InputError when that is impossible."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    except UnicodeError:  # getaddrinfo's IDNA encoding: an empty or over-long label
        raise InputError(
            f"--host {host[:80]!r} is not a host name or address (an empty label or one over 63 "
            "characters)"
        ) from None
    return sock


def make_server(service: SegmentService, quiet: bool = False):
    """A uvicorn ``Server`` for the service's app, with the service's bounds."""
    import uvicorn

    from .app import build_app

    o = service.options
    config = uvicorn.Config(
        build_app(service),
        http=protocol_class(o.header_timeout),
        timeout_keep_alive=o.keep_alive,  # type: ignore[arg-type] - a float works
        limit_concurrency=o.limit_concurrency,
        backlog=o.backlog,
        lifespan="off",
        access_log=not quiet,
        log_level="warning" if quiet else "info",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def serving(service: SegmentService, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve in a background thread (tests, benchmarks); yields the base URL, then stops."""
    sock = bind(host, port, service.options.backlog)
    server = make_server(service, quiet=True)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread stopped before it started")
            thread.join(0.02)
        h, p = sock.getsockname()[:2]
        yield f"http://{h}:{p}/"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def serve(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    backend: str = "auto",
    threads: int = 0,
    options: ServeOptions | None = None,
    quiet: bool = False,
) -> int:
    """Load the model and serve until Ctrl-C."""
    from PIL import Image

    options = options or ServeOptions()
    if threads < 0:
        raise InputError(f"--threads = {threads} must be 0 (library default) or more")
    sock = bind(host, port, options.backlog)  # before loading: a taken port fails at once
    try:
        model, kind = load_model(model_path, backend, threads)
        service = SegmentService(model, kind, str(model_path), options)
        # Pillow refuses images above its own limit when opening them, before our check from
        # the header could; with --max-pixels above it, ours is the one that counts.
        if Image.MAX_IMAGE_PIXELS is not None and options.max_pixels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = options.max_pixels
        server = make_server(service, quiet)
        h, p = sock.getsockname()[:2]
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {host}; the server has no authentication", file=sys.stderr)  # fmt: skip
        o = options
        print(
            f"tseg serve: http://{h}:{p}/  (backend {kind}, model {model_path}, {o.workers} "
            f"workers, queue {o.queue}, images to {service.model_side} px, masks up to "
            f"{o.mask_side} px); Ctrl-C stops"
        )
        sys.stdout.flush()
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            service.close()
    finally:
        sock.close()
    return 0


def serve_from_arguments(ns: argparse.Namespace) -> int:
    """``tseg serve`` with the flags of ``options.add_arguments``."""
    return serve(ns.model, ns.host, ns.port, ns.backend, ns.threads, from_arguments(ns), ns.quiet)
