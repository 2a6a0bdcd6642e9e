"""Inference: image(s) + expressions -> per-expression confidence, probability map and mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .checkpoint import load_checkpoint
from .config import InferenceConfig
from .crf import CRFConfig
from .data.transforms import eval_size, resize, to_tensor
from .models.tseg import TSEG
from .tta import TTAConfig, tta_probabilities


class InputError(ValueError):
    """An image or expression given to inference is unusable; the message names it."""


@dataclass
class Prediction:
    """One expression's result on one image."""

    expression: str
    confidence: (
        float  # sigmoid of the pooled score: how sure the model is the expression is present
    )
    probability: np.ndarray  # float32 [H, W] foreground probability at image resolution
    mask: np.ndarray  # bool [H, W]


# Images above this many pixels are refused before decoding (a decompression bomb is a few KB
# on disk and gigabytes in memory). Raise it with load_image(..., max_pixels=N) or --max-pixels.
MAX_PIXELS = 100_000_000


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 RGB. 16- and 32-bit grayscale are rescaled, not clipped at 255."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
        g = (a.clip(0, top) / top * 255.0).round().astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im)
        g = (np.nan_to_num(a).clip(0, 1) * 255).round().astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite transparent pixels on white rather than on whatever colour they hide.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(bg, rgba).convert("RGB"))
    return np.array(im.convert("RGB"))


def load_image(
    image: str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """A path, PIL image or array -> uint8 RGB [H, W, 3], honouring EXIF orientation."""
    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            raise InputError(f"image '{p}' does not exist")
        if p.stat().st_size == 0:
            raise InputError(f"image '{p}' is empty (0 bytes)")
        try:
            with Image.open(p) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise InputError(
                        f"image '{p}' is {w} x {h} = {w * h:,} pixels, above the limit of "
                        f"{max_pixels:,} (raise it with max_pixels / --max-pixels if you trust the file)"
                    )
                from PIL import ImageOps

                im = ImageOps.exif_transpose(im)
                return pil_to_rgb(im)
        except InputError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"image '{p}' could not be read: {e}") from None
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
            raise InputError(
                f"image array must be [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}"
            )
        a = a[:, :, :3]
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and a.min() >= 0 and a.max() <= 1:
                a = (a * 255).round()
            a = a.clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(a)
    raise InputError(f"unsupported image type {type(image).__name__}")


def check_expressions(expressions: list[str]) -> list[str]:
    if isinstance(expressions, str):
        expressions = [expressions]
    if not expressions:
        raise InputError("no expressions given: pass at least one referring expression")
    out = []
    for e in expressions:
        if not isinstance(e, str) or not e.strip():
            raise InputError(f"expression {e!r} is empty")
        out.append(e.strip())
    return out


def options_from_config(ic: InferenceConfig) -> dict:
    """Segmenter keyword arguments from an InferenceConfig."""
    try:
        scales = tuple(float(v) for v in ic.tta_scales.split(","))
    except ValueError:
        raise InputError(
            f"config key 'inference.tta_scales' = {ic.tta_scales!r} is not a list of numbers"
        ) from None
    crf = CRFConfig(
        iterations=ic.crf_iterations,
        gaussian_sxy=ic.crf_gaussian_sxy,
        gaussian_compat=ic.crf_gaussian_compat,
        bilateral_sxy=ic.crf_bilateral_sxy,
        bilateral_srgb=ic.crf_bilateral_srgb,
        bilateral_compat=ic.crf_bilateral_compat,
    )
    return {
        "tta": TTAConfig(scales=scales, flip=ic.tta_flip) if ic.tta else None,
        "crf": crf if ic.crf else None,
        "threshold": ic.threshold,
        "max_pixels": ic.max_pixels,
        "class_threshold": ic.class_threshold,
    }


class Segmenter:
    """A loaded model; text embeddings are cached per distinct expression across calls.

    Args:
        model: A TSEG model.
        device: Where to run it.
        tta: Multi-scale + flip test-time augmentation (None: one pass at the training size).
        crf: Dense-CRF refinement of each expression's map (None: off; needs the [crf] extra).
        threshold: Foreground threshold on the probability maps.
        max_pixels: Images with more pixels are refused before decoding.
    """

    def __init__(
        self,
        model: TSEG,
        device: str | torch.device = "cpu",
        tta: TTAConfig | None = None,
        crf: CRFConfig | None = None,
        threshold: float = 0.5,
        max_pixels: int = MAX_PIXELS,
        class_threshold: float = 0.5,
    ) -> None:
        self.model = model.to(device).eval()
        self.max_pixels = max_pixels
        self.class_threshold = class_threshold
        self.device = torch.device(device)
        self.tta, self.crf, self.threshold = tta, crf, threshold
        if crf is not None:
            from .crf import CRFUnavailable, crf_available

            if not crf_available():
                raise CRFUnavailable(
                    "dense CRF needs pydensecrf: pip install 'tseg[crf]' (package pydensecrf2)"
                )
        self._text_cache: dict[str, Tensor] = {}
        self.text_encoder_calls = 0  # how many batches went through the text encoder

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **kwargs) -> Segmenter:
        """Load a checkpoint; its ``inference`` config gives the defaults, ``kwargs`` override them."""
        model, cfg, _ = load_checkpoint(path, device)
        return cls(model, device, **{**options_from_config(cfg.inference), **kwargs})

    @torch.no_grad()
    def text_embeddings(self, expressions: list[str]) -> Tensor:
        """[L, D]; only expressions not seen before go through the text encoder."""
        new = [e for e in dict.fromkeys(expressions) if e not in self._text_cache]
        if new:
            self.text_encoder_calls += 1
            for e, y in zip(new, self.model.encode_text(new)):
                self._text_cache[e] = y
        return torch.stack([self._text_cache[e] for e in expressions])

    @torch.no_grad()
    def predict(
        self, image: str | Path | Image.Image | np.ndarray, expressions: list[str]
    ) -> list[Prediction]:
        """Segment one image with any number of expressions in one image-encoder pass."""
        return self.predict_batch([image], expressions)[0]

    @torch.no_grad()
    def predict_batch(self, images: list, expressions: list[str]) -> list[list[Prediction]]:
        """Segment many images with the same expressions."""
        expressions = check_expressions(expressions)
        arrays = [load_image(im, self.max_pixels) for im in images]
        y = self.text_embeddings(expressions)  # [L, D]
        patch = getattr(self.model.image_encoder, "patch_size", 16)
        results = []
        for a in arrays:
            if self.tta is not None:
                probs, conf_arr = tta_probabilities(
                    self.model, a, expressions, self.tta, text_embed_fn=self.text_embeddings
                )
                conf = conf_arr.tolist()
            else:
                probs, conf = self._single_pass(a, y, patch)
            if self.crf is not None:
                from .crf import refine

                probs = refine(a, probs, self.crf)
            results.append(
                [
                    Prediction(e, float(c), p, p > self.threshold)
                    for e, c, p in zip(expressions, conf, probs)
                ]
            )
        return results

    def _single_pass(self, a: np.ndarray, y: Tensor, patch: int) -> tuple[np.ndarray, list[float]]:
        """One image-encoder pass at the training resolution -> probs [L, H, W], confidences."""
        h, w = a.shape[:2]
        size = eval_size(h, w, self.model.input_size, patch)
        x = resize(to_tensor(a), size)[None].to(self.device)
        enc = self.model.encode_image(x)
        s = self.model.similarity(enc["x"], y)  # [1, N, L]
        conf = torch.sigmoid(self.model.pool(s)["scores"][0]).tolist()
        probs = self.model.masks_at(s, enc["grid"], (h, w))[0].float().cpu().numpy()  # [L, H, W]
        return probs, conf
