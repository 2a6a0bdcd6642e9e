"""Inference: image(s) + expressions -> per-expression confidence, probability map and mask."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .checkpoint import load_checkpoint
from .config import InferenceConfig
from .crf import CRFConfig
from .data.transforms import eval_size, resize, to_tensor
from .imageio import (  # noqa: F401  (re-exported: tseg.inference is the public entry point)
    MAX_PIXELS,
    InputError,
    Prediction,
    check_expressions,
    load_image,
    open_image,
    pil_to_rgb,
)
from .models.tseg import TSEG
from .tta import TTAConfig, tta_probabilities


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
        results = []
        for a in arrays:
            probs, conf = self.probabilities(a, expressions)
            results.append(
                [
                    Prediction(e, float(c), p, p > self.threshold)
                    for e, c, p in zip(expressions, conf, probs)
                ]
            )
        return results

    @torch.no_grad()
    def probabilities(
        self, image: np.ndarray, expressions: list[str], refine_first: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The probability path shared by ``tseg segment`` and ``tseg eval``.

        Args:
            image: uint8 RGB [H, W, 3].
            expressions: L expressions (not checked: callers pass dataset text as is).
            refine_first: with CRF on, refine only the first k maps (evaluation scores absent
                expressions for their confidence only); None refines all.

        Returns:
            (probs float32 [L, H, W], confidences float32 [L]), after TTA and CRF if enabled.
        """
        if self.tta is not None:
            probs, conf = tta_probabilities(
                self.model, image, expressions, self.tta, text_embed_fn=self.text_embeddings
            )
        else:
            probs, conf = single_pass(
                self.model, image, self.text_embeddings(expressions), self.device
            )
        if self.crf is not None:
            from .crf import refine

            k = len(expressions) if refine_first is None else refine_first
            if k:
                probs = probs.copy()
                probs[:k] = refine(image, probs[:k], self.crf)
        return probs, conf


@torch.no_grad()
def single_pass(
    model: TSEG, image: np.ndarray, text_emb: Tensor, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """One image-encoder pass: image [H, W, 3], text embeddings [L, D] -> probs [L, H, W], conf [L].

    The image is resized as in training (shorter side at the model's input size); the maps are
    the head's probability maps at the original size, the confidences sigmoid(pooled score).
    """
    h, w = image.shape[:2]
    patch = getattr(model.image_encoder, "patch_size", 16)
    size = eval_size(h, w, model.input_size, patch)
    x = resize(to_tensor(image), size)[None].to(device)
    enc = model.encode_image(x)
    s = model.similarity(enc["x"], text_emb.to(device))  # [1, N, L]
    conf = torch.sigmoid(model.pool(s)["scores"][0])  # [L]
    probs = model.masks_at(s, enc["grid"], (h, w))[0]  # [L, H, W]
    return probs.float().cpu().numpy(), conf.float().cpu().numpy()


class ImageFiles(Dataset):
    """Image files decoded by DataLoader workers: item i -> (i, uint8 RGB [H, W, 3] or None, error).

    A file that cannot be used yields its ``InputError`` message (which names the file) instead
    of raising, so one bad file does not stop the others.
    """

    def __init__(self, paths: list[Path], max_pixels: int = MAX_PIXELS) -> None:
        self.paths, self.max_pixels = list(paths), max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return i, load_image(self.paths[i], self.max_pixels), None
        except InputError as e:
            return i, None, str(e)


def _first(batch: list):
    """collate_fn for batch_size 1: keep the decoded uint8 array as is (images differ in size)."""
    return batch[0]


def default_workers() -> int:
    """Decoding processes for ``tseg segment``: up to 4, never more than the CPUs."""
    return min(4, os.cpu_count() or 1)


def image_loader(paths: list[Path], max_pixels: int = MAX_PIXELS, workers: int = 0) -> DataLoader:
    """Decode ``paths`` in order with ``workers`` processes (0: in this process)."""
    if workers < 0:
        raise InputError(f"--workers = {workers} must be 0 (decode in-process) or more")
    return DataLoader(
        ImageFiles(paths, max_pixels),
        batch_size=1,
        shuffle=False,
        # One image gains nothing from a worker process: the model waits for it either way.
        num_workers=min(workers, len(paths)) if len(paths) > 1 else 0,
        collate_fn=_first,
    )
