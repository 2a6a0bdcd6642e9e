"""The segmentation service behind ``tseg serve``, apart from HTTP (so it is testable alone).

A fixed pool of worker threads takes admitted requests: each worker parses one request,
decodes its image (``imaging.decode_upload``), runs the model (one request at a time: both
backends cache text embeddings in a plain dict) and encodes the answer as JSON bytes. Admission
is a counter of ``workers + queue`` slots taken before the body is read and given back when
the request's work has ended (not when its client stopped waiting), so that the requests in
the server, and the memory they hold, never exceed what the options allow.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..inference.output import slug
from ..inputs import InputError, clean_expression
from ..results import Prediction
from . import imaging
from .options import ServeOptions

HERE = Path(__file__).parent
EXAMPLES = HERE / "examples"
MASK_FORMATS = ("png", "rle", "none")
FALLBACK_MODEL_SIDE = 512  # a model that does not say its input size is given this
log = logging.getLogger("tseg.serve")


class Model(Protocol):
    """What the service needs: ``tseg.inference.Segmenter`` and ``OrtSegmenter`` both have it."""

    def predict(self, image: np.ndarray, expressions: list[str]) -> list[Prediction]: ...


def model_input_size(model: Any) -> tuple[int | None, int]:
    """(shorter side, multiple) a model resizes its input to, as ``eval_size`` does: the
    ``OrtSegmenter``'s ``input_size`` and ``patch_size``, or those of the torch ``Segmenter``'s
    model and image encoder; (None, 1) when the model does not say.

    An image given at exactly that size is not resized again by the model.
    """
    side, multiple = None, 1
    for obj in (model, getattr(model, "model", None)):
        if isinstance(getattr(obj, "input_size", None), int):
            side = obj.input_size
            encoder = getattr(obj, "image_encoder", obj)
            p = getattr(encoder, "patch_size", getattr(obj, "patch_size", 1))
            multiple = p if isinstance(p, int) and p > 0 else 1
            break
    return side, multiple


@dataclass
class SegmentRequest:
    """One checked request."""

    image: bytes
    label: str
    expressions: list[str]
    mask_format: str = "png"
    overlay: bool = False
    zip: bool = False


@dataclass
class Stats:
    """Counts shown by /health."""

    served: int = 0
    failed: int = 0  # 500s
    rejected_busy: int = 0  # 503s: no slot free
    timed_out: int = 0  # 503/504s: past the request timeout


def split_expressions(text: str) -> list[str]:
    """One expression per line or comma-separated; blanks dropped."""
    return [e.strip() for e in re.split(r"[\n,]", text) if e.strip()]


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off", ""):  # fmt: skip
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise InputError(f"'{name}' must be true or false, got {str(value)[:40]!r}")


class SegmentService:
    """The model, its worker pool, admission and the request logic.

    Args:
        model: anything with ``predict(image, expressions)`` (torch or ONNX Runtime segmenter).
        backend: "torch" or "onnx", shown on the page and in /health.
        name: the model's path; its last part is shown on the page.
        options: the limits; see ``ServeOptions``.
    """

    def __init__(self, model: Model, backend: str, name: str, options: ServeOptions) -> None:
        self.model, self.backend, self.name, self.options = model, backend, name, options
        side, self.model_multiple = model_input_size(model)
        self.model_side = options.model_side or side or FALLBACK_MODEL_SIDE
        self.threshold = float(getattr(model, "threshold", 0.5))
        # The model's presence gate (a checkpoint's or export's inference.presence_threshold).
        self.presence_threshold = float(getattr(model, "presence_threshold", 0.0))
        examples = json.loads((EXAMPLES / "examples.json").read_text(encoding="utf-8"))
        self.examples: dict[str, list[str]] = {k: v["expressions"] for k, v in examples.items()}
        self.model_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(options.workers, thread_name_prefix="tseg-serve-worker")
        self._lock = threading.Lock()
        self._inside = 0  # admitted requests not yet finished
        self._seconds = 1.0  # running mean of one request's work, for Retry-After
        self.stats = Stats()

    # ---- admission ------------------------------------------------------------------------
    def try_admit(self) -> bool:
        """Take a slot if one is free; the caller must ``release`` it or ``submit`` with it."""
        with self._lock:
            if self._inside >= self.options.admitted:
                self.stats.rejected_busy += 1
                return False
            self._inside += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._inside -= 1

    @property
    def inside(self) -> int:
        return self._inside

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue's work spread over the workers."""
        with self._lock:
            wait = self._seconds * max(1, self._inside) / self.options.workers
        return int(min(120, max(1, math.ceil(wait))))

    def submit(self, job: Callable[[], bytes]) -> Future:
        """Run ``job`` on a worker with an admitted request's slot, released when it ends."""

        def timed() -> bytes:
            t = time.perf_counter()
            try:
                return job()
            finally:
                dt = time.perf_counter() - t
                with self._lock:
                    self._seconds = 0.8 * self._seconds + 0.2 * dt

        fut = self.pool.submit(timed)
        fut.add_done_callback(lambda _: self.release())  # also when cancelled before it ran
        return fut

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---- parsing --------------------------------------------------------------------------
    def _expressions(self, value: Any) -> list[str]:
        """Text (one per line or comma-separated) or a list of texts (one expression each)."""
        if isinstance(value, str):
            value = split_expressions(value)
        elif value is None:
            value = []
        elif not isinstance(value, list):
            raise InputError("'expressions' must be text or a list of texts")
        if not value:
            raise InputError("type at least one expression (one per line or comma-separated)")
        limit = self.options.max_expressions
        if len(value) > limit:
            raise InputError(f"{len(value)} expressions given; the server takes at most {limit}")
        return [clean_expression(e, self.options.max_expression_chars) for e in value]

    def _image_bytes(self, image: Any, example: Any, name: Any) -> tuple[bytes, str]:
        if example not in (None, ""):
            if not isinstance(example, str) or example not in self.examples:
                raise InputError(f"unknown example image {str(example)[:80]!r}")
            return (EXAMPLES / example).read_bytes(), example
        label = str(name or "upload")[:80]
        if image in (None, "", b""):
            raise InputError("choose an image first: upload one or pick an example")
        if isinstance(image, str):
            try:
                image = base64.b64decode(image, validate=True)
            except (binascii.Error, ValueError):
                raise InputError(f"'{label}': the upload is not valid base64") from None
        if not isinstance(image, bytes):
            raise InputError("'image' must be a base64 string")
        if len(image) > self.options.max_bytes:
            raise InputError(
                f"'{label}' is {len(image) / 1e6:.1f} MB, above the limit of "
                f"{self.options.max_bytes / 1e6:g} MB"
            )
        return image, label

    def _request(self, fields: dict[str, Any]) -> SegmentRequest:
        known = {"image", "example", "name", "expressions", "mask_format", "overlay", "zip"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InputError(
                f"unknown field {unknown[0][:40]!r}; the fields are {', '.join(sorted(known))}"
            )
        fmt = fields.get("mask_format", "png")
        if fmt not in MASK_FORMATS:
            raise InputError(f"'mask_format' = {str(fmt)[:20]!r}: choose png, rle or none")
        expressions = self._expressions(fields.get("expressions"))
        data, label = self._image_bytes(fields.get("image"), fields.get("example"), fields.get("name"))  # fmt: skip
        return SegmentRequest(
            data,
            label,
            expressions,
            fmt,
            _flag(fields.get("overlay", False), "overlay"),
            _flag(fields.get("zip", False), "zip"),
        )

    def parse_json(self, body: bytes) -> SegmentRequest:
        """A JSON body -> a checked request (InputError for anything wrong with it)."""
        try:
            obj = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError("the request body is not JSON") from None
        except RecursionError:  # json's C decoder stops at the interpreter's recursion limit
            raise InputError("the request body is JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise InputError("the request must be a JSON object")
        return self._request(obj)

    def parse_form(self, fields: list[tuple[str, Any]]) -> SegmentRequest:
        """Multipart fields (name, text or (filename, bytes)) -> a checked request."""
        out: dict[str, Any] = {}
        exprs: list[str] = []
        for key, value in fields:
            if key == "image" and isinstance(value, tuple):
                out["name"] = out.get("name") or value[0]
                value = value[1]
            elif isinstance(value, tuple):
                raise InputError(f"field {key[:40]!r} must be text, not a file")
            if key == "expressions":
                exprs += split_expressions(value)
            elif key in out and key != "name":
                raise InputError(f"field {key[:40]!r} is given twice")
            else:
                out[key] = value
        if exprs:
            out["expressions"] = exprs
        return self._request(out)

    # ---- the work ---------------------------------------------------------------------------
    def answer(self, req: SegmentRequest) -> bytes:
        """One request -> the JSON answer (bytes). Runs on a worker thread."""
        o = self.options
        dec = imaging.decode_upload(
            req.image, req.label, o.max_pixels, (self.model_side, self.model_multiple), req.overlay
        )
        req.image = b""  # the upload is no longer needed
        with self.model_lock:
            t = time.perf_counter()
            preds = self.model.predict(dec.model_image, req.expressions)
            seconds = time.perf_counter() - t
            self._trim_text_cache()
        size = imaging.longest_at_most(dec.width, dec.height, o.mask_side)  # (w, h)
        shown = None if dec.preview is None else (dec.preview.shape[1], dec.preview.shape[0])
        rows, files, overlay_masks = [], [], []
        for k, p in enumerate(preds):
            present = float(p.confidence) >= self.presence_threshold  # else "nothing here"
            mask = (imaging.upsample(p.probability, size) > self.threshold) & present  # [h, w]
            row: dict[str, Any] = {
                "expression": p.expression,
                "confidence": round(float(p.confidence), 6),
                "area": int(mask.sum()),
                "area_fraction": round(float(mask.mean()), 6),
                "colour": imaging.colour_hex(k),
                "file": f"mask_{k:02d}_{slug(p.expression)}.png",
            }
            if req.mask_format == "png" or req.zip:
                png = imaging.mask_png(mask)
                if req.mask_format == "png":
                    row["mask"] = imaging.b64(png)
                if req.zip:
                    files.append((row["file"], png))
            if req.mask_format == "rle":
                row["rle"] = imaging.coco_rle(mask)
            if shown is not None:
                overlay_masks.append(
                    (imaging.upsample(p.probability, shown) > self.threshold) & present
                )
            rows.append(row)
            del mask
        out: dict[str, Any] = {
            "width": dec.width,
            "height": dec.height,
            "mask_width": size[0],
            "mask_height": size[1],
            "mask_format": req.mask_format,
            "backend": self.backend,
            "seconds": round(seconds, 4),
            "results": rows,
        }
        if dec.preview is not None:
            conf = [p.confidence for p in preds]
            png = imaging.overlay_png(dec.preview, np.stack(overlay_masks), req.expressions, conf)
            out["overlay"] = imaging.b64(png)
        if req.zip:
            keys = ("expression", "confidence", "area", "area_fraction", "file")
            out["zip"] = imaging.b64(imaging.masks_zip(files, [{k: r[k] for k in keys} for r in rows]))  # fmt: skip
        return json.dumps(out).encode("utf-8")

    def _trim_text_cache(self) -> None:
        """Both backends keep every distinct expression's text embedding in a dict
        (``_text_cache``, oldest first) that clients could grow without end; keep the newest
        ``text_cache``. Called with the model lock held."""
        cache = getattr(self.model, "_text_cache", None)
        if isinstance(cache, dict) and len(cache) > self.options.text_cache:
            for key in list(cache)[: len(cache) - self.options.text_cache]:
                del cache[key]

    def answer_json(self, body: bytes) -> bytes:
        return self.answer(self.parse_json(body))

    def answer_form(self, fields: list[tuple[str, Any]]) -> bytes:
        return self.answer(self.parse_form(fields))

    def health(self) -> dict[str, Any]:
        o = self.options
        return {
            "status": "ok",
            "backend": self.backend,
            "model": Path(self.name).name or self.name,
            "workers": o.workers,
            "queue": o.queue,
            "in_flight": self._inside,
            "model_side": self.model_side,
            "mask_side": o.mask_side,
            "max_bytes": o.max_bytes,
            "max_pixels": o.max_pixels,
            **{f.name: getattr(self.stats, f.name) for f in dc_fields(self.stats)},
        }
