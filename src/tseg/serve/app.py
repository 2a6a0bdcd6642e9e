"""``tseg serve``: a local web demo on the standard library's ``http.server``.

One page (``page.html``, no external assets, so it works offline) and one JSON endpoint:

    GET  /                      the page
    GET  /examples/NAME         a packaged example image
    POST /api/segment           {"image": base64 bytes | "example": NAME, "expressions": "a\\nb"}
                                -> {"overlay", "results": [...], "zip", "seconds"} or {"error"}

Why not Gradio: it would pull in about a hundred packages (FastAPI, uvicorn, pandas, ...) for one
form; the standard library serves this page with no new dependency, and the page is plain
HTML + fetch, so it is easy to read and to test in a browser. Bad input (not an image, too many
bytes or pixels, no expression) is answered with a message the page shows; every other
exception becomes a 500 with its message, and the server keeps running.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import json
import re
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..imageio import InputError, Prediction, open_image
from ..viz import colour, overlay

HERE = Path(__file__).parent
EXAMPLES = HERE / "examples"
MAX_EXPRESSIONS = 16
MAX_EXPRESSION_CHARS = 200
OVERLAY_SIDE = 768  # the overlay shown in the page is at most this long (masks stay full size)


class Model(Protocol):
    """What the demo needs: ``tseg.inference.Segmenter`` and ``OrtSegmenter`` both have it."""

    def predict(self, image: np.ndarray, expressions: list[str]) -> list[Prediction]: ...


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


def split_expressions(text: str) -> list[str]:
    """One expression per line or comma-separated; blanks dropped, limits checked."""
    if not isinstance(text, str):
        raise InputError("'expressions' must be text")
    out = [e.strip() for e in re.split(r"[\n,]", text) if e.strip()]
    if not out:
        raise InputError("type at least one expression (one per line or comma-separated)")
    if len(out) > MAX_EXPRESSIONS:
        raise InputError(f"{len(out)} expressions given; the demo takes at most {MAX_EXPRESSIONS}")
    for e in out:
        if len(e) > MAX_EXPRESSION_CHARS:
            raise InputError(
                f"expression '{e[:40]}...' is {len(e)} characters long; "
                f"the limit is {MAX_EXPRESSION_CHARS}"
            )
    return out


def _png(a: np.ndarray | Image.Image) -> bytes:
    pic = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def overlay_picture(image: np.ndarray, preds: list[Prediction]) -> Image.Image:
    """``tseg.viz.overlay`` at a size for the page: small images enlarged (readable legend),
    large ones shrunk to ``OVERLAY_SIDE`` (nearest neighbour for the masks)."""
    h, w = image.shape[:2]
    masks = np.stack([p.mask for p in preds])  # [L, H, W]
    if max(h, w) > OVERLAY_SIDE:
        f = OVERLAY_SIDE / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        image = np.array(Image.fromarray(image).resize(size, Image.BILINEAR))
        masks = np.stack(
            [
                np.array(Image.fromarray(m.astype(np.uint8)).resize(size, Image.NEAREST))
                for m in masks
            ]
        ).astype(bool)
    scale = max(1, 320 // max(1, min(image.shape[:2])))
    labels = [p.expression for p in preds]
    return overlay(image, masks, labels, [p.confidence for p in preds], scale=scale)


def result_payload(image: np.ndarray, preds: list[Prediction], seconds: float) -> dict[str, Any]:
    """The JSON answer: overlay PNG, one row per expression (with its mask PNG), a zip of all."""
    from ..output import slug

    rows, zbuf = [], io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, p in enumerate(preds):
            name = f"mask_{k:02d}_{slug(p.expression)}.png"
            png = _png(p.mask.astype(np.uint8) * 255)
            z.writestr(name, png)
            r, g, b = colour(k)
            rows.append(
                {
                    "expression": p.expression,
                    "confidence": round(float(p.confidence), 6),
                    "area_fraction": round(float(p.mask.mean()), 6),
                    "colour": f"#{r:02x}{g:02x}{b:02x}",
                    "file": name,
                    "mask": _b64(png),
                }
            )
        scores = [{k: v for k, v in r.items() if k not in ("mask", "colour")} for r in rows]
        z.writestr("scores.json", json.dumps(scores, indent=1))
    return {
        "overlay": _b64(_png(overlay_picture(image, preds))),
        "results": rows,
        "zip": _b64(zbuf.getvalue()),
        "seconds": round(seconds, 4),
    }


class DemoApp:
    """The model, the limits and the request logic, apart from HTTP plumbing (so it is testable).

    Args:
        model: anything with ``predict(image, expressions)`` (torch or ONNX Runtime segmenter).
        backend: "torch" or "onnx", shown on the page.
        name: the model's path; its last part is shown on the page.
        max_bytes: largest accepted image file.
        max_pixels: largest accepted image, checked from its header before decoding.
    """

    def __init__(
        self,
        model: Model,
        backend: str,
        name: str,
        max_bytes: int = 10_000_000,
        max_pixels: int = 25_000_000,
    ) -> None:
        self.model, self.name, self.backend = model, name, backend
        self.max_bytes, self.max_pixels = int(max_bytes), int(max_pixels)
        self.lock = threading.Lock()  # one prediction at a time: the text cache is shared
        self.examples: dict[str, list[str]] = json.loads(
            (EXAMPLES / "examples.json").read_text(encoding="utf-8")
        )
        self.examples = {k: v["expressions"] for k, v in self.examples.items()}
        self.page = self._render_page()

    def _render_page(self) -> bytes:
        buttons = "".join(
            f'<button type="button" data-name="{html.escape(n)}" title="{html.escape(n)}">'
            f'<img src="examples/{html.escape(n)}" alt="{html.escape(n)}"></button>'
            for n in self.examples
        )
        values = {
            "__MODEL__": html.escape(Path(self.name).name or self.name),
            "__BACKEND__": html.escape(self.backend),
            "__MAX_MB__": f"{self.max_bytes / 1e6:g}",
            "__MAX_PIXELS__": f"{self.max_pixels:,}",
            "__MAX_EXPRESSIONS__": str(MAX_EXPRESSIONS),
            "__MAX_BYTES__": str(self.max_bytes),
            # "</" cannot end the script element from inside a JSON string this way.
            "__EXAMPLES_JSON__": json.dumps(self.examples).replace("</", "<\\/"),
            "__EXAMPLES__": buttons,
        }
        text = (HERE / "page.html").read_text(encoding="utf-8")
        for k, v in values.items():
            text = text.replace(k, v)
        return text.encode("utf-8")

    def max_body(self) -> int:
        """Largest request body: the base64 image (4/3 of its bytes) plus the expressions."""
        return self.max_bytes * 4 // 3 + 64_000

    def decode_image(self, request: dict[str, Any]) -> np.ndarray:
        """The request's image (uploaded bytes or an example name) -> uint8 RGB [H, W, 3]."""
        if request.get("example"):
            name = str(request["example"])
            if name not in self.examples:
                raise InputError(f"unknown example image {name!r}")
            data, label = (EXAMPLES / name).read_bytes(), name
        elif request.get("image"):
            label = str(request.get("name") or "upload")[:80]
            try:
                data = base64.b64decode(request["image"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise InputError(f"'{label}': the upload is not valid base64") from None
        else:
            raise InputError("choose an image first: upload one or pick an example")
        if len(data) > self.max_bytes:
            raise InputError(
                f"'{label}' is {len(data) / 1e6:.1f} MB, above the limit of "
                f"{self.max_bytes / 1e6:g} MB"
            )
        try:
            im = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError:
            raise InputError(
                f"'{label}' is not an image this demo can read (try PNG or JPEG)"
            ) from None
        except (OSError, Image.DecompressionBombError) as e:
            raise InputError(f"'{label}' could not be read: {e}") from None
        with im:
            return open_image(im, label, self.max_pixels)  # checks pixels, then decodes

    def segment(self, request: dict[str, Any]) -> dict[str, Any]:
        """One POST /api/segment body -> the JSON answer; bad input raises InputError."""
        if not isinstance(request, dict):
            raise InputError("the request must be a JSON object")
        expressions = split_expressions(request.get("expressions", ""))
        image = self.decode_image(request)
        with self.lock:
            t = time.perf_counter()
            preds = self.model.predict(image, expressions)
            seconds = time.perf_counter() - t
        return result_payload(image, preds, seconds)


def _handler(app: DemoApp, quiet: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tseg-serve"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            if not quiet:
                sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: dict[str, Any]) -> None:
            self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, app.page, "text/html; charset=utf-8")
            elif path.startswith("/examples/") and path[len("/examples/") :] in app.examples:
                data = (EXAMPLES / path[len("/examples/") :]).read_bytes()
                self._send(200, data, "image/png")
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._json(404, {"error": f"no page {path!r}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/api/segment":
                self._json(404, {"error": f"no endpoint {self.path!r}"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if length < 0:  # read(-1) would wait for the client to close the connection
                self.close_connection = True
                self._json(411, {"error": "the request has no valid Content-Length"})
                return
            if length > app.max_body():
                self._drain(length)
                limit = app.max_bytes / 1e6
                self._json(413, {"error": f"the upload is too large: the limit is {limit:g} MB"})
                return
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
                self._json(200, app.segment(request))
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._json(400, {"error": "the request body is not JSON"})
            except Exception as e:  # noqa: BLE001 - keep serving; say what went wrong
                kind = type(e).__name__
                # Ours, or tseg.inference's from the torch backend: the input's fault.
                if isinstance(e, ValueError) and kind == "InputError":
                    self._json(400, {"error": str(e)})
                    return
                self.log_error("segment failed: %s: %s", kind, e)
                self._json(500, {"error": f"the model failed on this input ({kind}: {e})"})

        def _drain(self, length: int) -> None:
            """Read and drop an oversized body (up to 256 MB) so the browser sees the answer
            rather than a reset connection; anything larger closes the connection."""
            if length > 256_000_000:
                self.close_connection = True
                return
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)

    return Handler


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 0, quiet: bool = False):
    """A ThreadingHTTPServer for ``app`` (not yet serving); port 0 picks a free port."""
    server = ThreadingHTTPServer((host, port), _handler(app, quiet))
    server.daemon_threads = True
    return server


def serve(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    backend: str = "auto",
    threads: int = 0,
    max_bytes: int = 10_000_000,
    max_pixels: int = 25_000_000,
    quiet: bool = False,
) -> int:
    """Load the model and serve the demo until Ctrl-C."""
    if max_bytes <= 0 or max_pixels <= 0:
        raise InputError("--max-mb and --max-pixels must be positive")
    if threads < 0:
        raise InputError(f"--threads = {threads} must be 0 (library default) or more")
    model, kind = load_model(model_path, backend, threads)
    app = DemoApp(model, kind, str(model_path), max_bytes, max_pixels)
    try:
        server = make_server(app, host, port, quiet)
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    h, p = server.server_address[:2]
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}; the demo has no authentication", file=sys.stderr)
    print(f"tseg serve: http://{h}:{p}/  (backend {kind}, model {model_path}); Ctrl-C stops")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
