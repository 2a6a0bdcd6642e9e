"""Segment with an exported model on ONNX Runtime: numpy, tokenizers and onnxruntime only.

``OrtSegmenter(folder).maps(images, expressions)`` mirrors ``tseg.inference.Segmenter.maps``
step for step, and ``predict`` returns what ``Segmenter.predict`` returns (confidence,
probability map at image resolution, binary mask per expression), for a folder written by
``tseg export onnx``. Nothing here imports
torch, so a deployment needs neither torch nor transformers. Test-time augmentation and the
dense CRF are not available on this path.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..inputs import InputError, expressions_per_image, size_groups
from ..results import Maps, Prediction, Predicts
from . import ExportError
from .numpy_ops import eval_size, pool_scores, probability_maps, resize_image

META = "tseg_onnx.json"
FORMAT_VERSION = 1
REQUIRED = ("image_encoder", "text_encoder", "tau", "head", "size_lambda", "size_p", "gwp_eps",
            "cam_threshold", "threshold", "max_pixels")  # fmt: skip


def read_export_meta(folder: str | Path) -> dict[str, Any]:
    """The export folder's ``tseg_onnx.json``, checked for the files it names."""
    d = Path(folder)
    if not d.is_dir():
        raise ExportError(f"ONNX export folder '{d}' does not exist (make one: tseg export onnx)")
    if not (d / META).is_file():
        raise ExportError(f"'{d}' is not an ONNX export folder: '{META}' is missing")
    try:
        meta = json.loads((d / META).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"'{d / META}' is not valid JSON: {e}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"'{d / META}' has format version {meta.get('format_version')!r}; "
            f"this tseg reads version {FORMAT_VERSION}"
        )
    for key in REQUIRED:
        if key not in meta:
            raise ExportError(f"'{d / META}' has no '{key}' entry: re-export the checkpoint")
    for key in ("image_encoder", "text_encoder"):
        name = meta[key]["file"]
        if not (d / name).is_file():
            raise ExportError(f"ONNX export folder '{d}' is incomplete: '{name}' is missing")
    if not (d / meta["text_encoder"]["tokenizer"]).is_file():
        raise ExportError(
            f"ONNX export folder '{d}' is incomplete: '{meta['text_encoder']['tokenizer']}' is missing"
        )
    return meta


class OrtSegmenter(Predicts):
    """An exported model on ONNX Runtime; text embeddings are cached per distinct expression.

    Args:
        folder: a folder written by ``tseg export onnx``.
        threads: ONNX Runtime intra-op threads (0: its default, one per core).
        threshold: foreground threshold on the probability maps (None: the exported default).
        max_pixels: larger images are refused before decoding (None: the exported default).
        presence_threshold: confidence below which a mask is emptied, 0 = off (None: the
            exported default; exports made before it existed have 0).
        spinning: let ORT's worker threads busy-wait between operators (its own default; off
            here, see below; benchmarks/ort_threads.py compares).
    """

    def __init__(
        self,
        folder: str | Path,
        threads: int = 0,
        threshold: float | None = None,
        max_pixels: int | None = None,
        presence_threshold: float | None = None,
        spinning: bool = False,
    ) -> None:
        if threads < 0:
            raise InputError(f"threads = {threads} must be 0 (ONNX Runtime's default) or more")
        if not isinstance(spinning, bool):
            raise InputError(f"spinning = {spinning!r} must be True or False")
        for name, value in (("threshold", threshold), ("presence_threshold", presence_threshold)):
            if value is not None and not 0.0 <= value <= 1.0:  # NaN fails this test too
                raise InputError(f"{name} = {value} is out of range [0, 1]")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError(
                "the ONNX Runtime path needs onnxruntime: pip install onnxruntime (or 'tseg[onnx]')"
            ) from None
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.meta = meta = read_export_meta(folder)
        # fp32, or int8 graphs (tseg export onnx --precision int8); older exports have no key.
        self.precision = str(meta.get("precision", "fp32"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # ORT's worker threads busy-wait between operators by default; without it the int8
        # graphs ran faster on 2 threads and fp32 the same (benchmarks/results/ort_threads.json),
        # and the cores are left to other work between calls.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.log_severity_level = 3  # errors only; ORT warns about unused initialisers otherwise

        def session(name: str) -> Any:
            path = self.folder / name
            if not path.is_file():
                raise InputError(f"ONNX export '{self.folder}' has no '{name}'")
            try:
                return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - ORT raises its own classes (InvalidProtobuf, ...)
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise InputError(
                    f"ONNX graph '{path}' cannot be loaded (truncated or not an ONNX file?): "
                    f"{first[:200]}"
                ) from None

        self.image_session = session(meta["image_encoder"]["file"])
        self.text_session = session(meta["text_encoder"]["file"])
        text = meta["text_encoder"]
        self.tokenizer = Tokenizer.from_file(str(self.folder / text["tokenizer"]))
        self.tokenizer.no_truncation()
        self.tokenizer.enable_padding(pad_id=text["pad_id"], pad_token=text["pad_token"])
        self.max_length = int(text["max_length"])
        self.input_size = int(meta["image_encoder"]["input_size"])
        self.patch_size = int(meta["image_encoder"]["patch_size"])
        self.tau = float(meta["tau"])
        self.threshold = meta["threshold"] if threshold is None else threshold
        self.max_pixels = meta["max_pixels"] if max_pixels is None else max_pixels
        self.class_threshold = meta.get("class_threshold", 0.5)
        self.presence_threshold = (
            float(meta.get("presence_threshold", 0.0))
            if presence_threshold is None
            else presence_threshold
        )
        self._text_cache: dict[str, np.ndarray] = {}
        self.text_encoder_calls = 0

    def describe(self) -> str:
        """One line: the export folder, its precision and the checkpoint it came from."""
        source = self.meta.get("checkpoint", "?")
        return f"ONNX export '{self.folder}' ({self.precision}, from {source}) on ONNX Runtime"

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask [L, T] (int64), padded to the longest; expressions over
        ``max_length`` tokens are cut with a warning, as ``tseg.models.text_encoder`` does."""
        enc = self.tokenizer.encode_batch(texts)
        if len(enc[0].ids) > self.max_length:
            too_long = [t for t, e in zip(texts, enc) if sum(e.attention_mask) > self.max_length]
            warnings.warn(
                f"{len(too_long)} expression(s) longer than {self.max_length} tokens were "
                f"truncated, e.g. {too_long[0][:60]!r}",
                stacklevel=3,
            )
            self.tokenizer.enable_truncation(self.max_length)
            try:
                enc = self.tokenizer.encode_batch(texts)
            finally:
                self.tokenizer.no_truncation()
        ids = np.array([e.ids for e in enc], dtype=np.int64)  # [L, T]
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)  # [L, T]
        return ids, mask

    def text_embeddings(self, expressions: list[str]) -> np.ndarray:
        """[L, D] unit vectors; only expressions not seen before go through the text encoder."""
        new = [e for e in dict.fromkeys(expressions) if e not in self._text_cache]
        if new:
            self.text_encoder_calls += 1
            ids, mask = self.tokenize(new)
            (y,) = self.text_session.run(None, {"input_ids": ids, "attention_mask": mask})
            for e, v in zip(new, y):
                self._text_cache[e] = v
        if not expressions:  # an image with no expression, as Segmenter.text_embeddings
            return np.zeros((0, int(self.meta["embed_dim"])), dtype=np.float32)
        return np.stack([self._text_cache[e] for e in expressions])

    def input_shape(self, h: int, w: int) -> tuple[int, int]:
        """``TSEG.input_shape``: shorter side at the training size, sides multiples of the patch."""
        return eval_size(h, w, self.input_size, self.patch_size)

    def preprocess(self, a: np.ndarray) -> np.ndarray:
        """``TSEG.preprocess``: uint8 RGB [H, W, 3] -> the model input [3, h, w] in [0, 1]."""
        x = a.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)  # [3, H, W] in [0, 1]
        return resize_image(x, self.input_shape(*a.shape[:2]))

    def encode_image(self, batch: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Model inputs [B, 3, h, w] -> patch embeddings x [B, N, D] and their grid (h, w)."""
        (emb,) = self.image_session.run(None, {"images": np.ascontiguousarray(batch)})
        p = self.patch_size
        h, w = batch.shape[-2:]
        return emb, (-(-h // p), -(-w // p))  # ceil: what both image encoders produce

    def similarity(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Eq. 1 scaled by tau: x [B, N, D], y [L, D] -> S [B, N, L]."""
        return np.float32(self.tau) * (x @ y.T)

    def maps(
        self,
        images: list[np.ndarray],
        expressions: list[str] | list[list[str]],
        maps_for: list[int] | None = None,
    ) -> list[Maps]:
        """``Segmenter.maps`` without TTA and CRF, step for step: expressions through the text
        cache, images of one input size as one image-encoder batch, then per image similarity,
        pooled confidences and the head's maps at image resolution (tested against it)."""
        per_image, keep = expressions_per_image(len(images), expressions, maps_for)
        if any(per_image):  # encode the new expressions of all images first
            self.text_embeddings([t for ts in per_image for t in ts])
        m = self.meta
        out: list[Maps | None] = [None] * len(images)
        for members in size_groups(images, self.input_shape).values():
            x, (gh, gw) = self.encode_image(np.stack([self.preprocess(images[b]) for b in members]))
            for row, b in enumerate(members):
                h, w = images[b].shape[:2]
                s = self.similarity(x[row : row + 1], self.text_embeddings(per_image[b]))
                scores = pool_scores(s, m["head"], m["size_lambda"], m["size_p"], m["gwp_eps"])
                conf = 1.0 / (1.0 + np.exp(-scores[0].astype(np.float64)))  # [L]
                k = keep[b]
                s_grid = s[:, :, :k].transpose(0, 2, 1).reshape(1, k, gh, gw)  # [1, K, h, w]
                probs = probability_maps(s_grid, m["head"], (h, w), m["cam_threshold"])[0]
                out[b] = Maps(probs.astype(np.float32), conf.astype(np.float32))
        return out  # type: ignore[return-value]


__all__ = ["ExportError", "InputError", "OrtSegmenter", "Prediction", "read_export_meta"]
