"""The one road from image(s) and expressions to probability maps: ``Segmenter.maps``.

``tseg segment``, ``tseg eval`` (pairs and every protocol), ``tseg serve``, the benchmarks and
training's evaluation all call it; ``tseg.export.ort_segmenter.OrtSegmenter.maps`` mirrors it in
numpy on ONNX Runtime (tested against it). One call:

    expressions --text cache (one text-encoder pass per new expression)--> y [L, D]
    images --model.preprocess--> inputs; inputs of one size run as one batch (``_run_pass``):
        encode_image -> x [B, N, D]; per image S = tau x . y [1, N, L] (eq. 1)
        confidences = sigmoid(pooled scores) [L]; maps = head's masks, upsampled [K, H, W]
    TTA (``inference.tta``): the passes of each image at several scales, and flipped with
        "left"/"right" swapped, averaged at image resolution (see ``tseg.inference.tta``)
    PAMR (``inference.pamr``): each image's maps refined on its colours, in torch on the model's
        device (``tseg.inference.pamr``)
    CRF (``inference.crf``): each map refined on the image (``tseg.inference.crf``)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import load_checkpoint
from ..config import CRFConfig, InferenceConfig, PAMRConfig, TTAConfig, with_inference
from ..data.base import swap_left_right
from ..inputs import expressions_per_image, size_groups
from ..models.tseg import TSEG
from ..results import Maps, Predicts
from . import crf as crf_module
from . import pamr as pamr_module
from . import precision as precision_module

TEXT_CHUNK = 256  # expressions per text-encoder call


class Segmenter(Predicts):
    """A model and its inference options; text embeddings are cached per distinct expression.

    Args:
        model: A TSEG model (put in eval mode on ``device``).
        device: Where to run it.
        inference: The options (a checkpoint's ``inference`` config; default: the defaults).
        **changes: Options changed on top of ``inference``: ``threshold``, ``max_pixels``,
            ``presence_threshold``,
            ``class_threshold``, ``tta``, ``crf`` and ``pamr`` (a TTAConfig / CRFConfig /
            PAMRConfig, True / False to switch the configured one on or off, None for off), or
            dotted keys such as ``tta.scales``. Every value is checked by the config's own rules.
    """

    def __init__(
        self,
        model: TSEG,
        device: str | torch.device = "cpu",
        inference: InferenceConfig | None = None,
        labels: dict[str, str] | None = None,
        **changes: Any,
    ) -> None:
        self.device = torch.device(device)
        # ``labels`` name the changed values in error messages (the CLI's flags, as typed).
        self.options = with_inference(inference or InferenceConfig(), changes, labels)
        # A threshold given here holds for any options; otherwise the one stored for them.
        self._threshold_given = "threshold" in changes
        # int8: a quantized copy; the caller's model (a training run's) is left as it is.
        model = model.to(self.device).eval()
        self.model = precision_module.prepare(
            model, self.precision, self.device, self.text_precision
        )
        if self.crf is not None:
            crf_module.require()
        self._text_cache: dict[str, Tensor] = {}
        self.text_encoder_calls = 0  # how many batches went through the text encoder

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", **changes: Any
    ) -> Segmenter:
        """Load a checkpoint; its ``inference`` config gives the defaults, ``changes`` override
        them (``threshold=0.3``, ``tta=True``, ``crf=None``, ``tta=TTAConfig(scales=[1, 2])``).

        ``path``: a checkpoint folder, a run folder, or a TSEG model's Hub name (``org/name``,
        see ``from_pretrained``)."""
        model, cfg, _ = load_checkpoint(path, device)
        return cls(model, device, cfg.inference, **changes)

    @classmethod
    def from_pretrained(
        cls, name: str | Path, device: str | torch.device = "cpu", **changes: Any
    ) -> Segmenter:
        """A TSEG model by its Hugging Face Hub name (``org/name``, as ``tseg export hf`` wrote
        it) or a local folder, as transformers' ``from_pretrained``.

        The repo comes through huggingface_hub's cache (``HF_HOME``/``HF_HUB_CACHE``; fetched
        when online, the cache only with ``HF_HUB_OFFLINE=1``). Only ``model.safetensors``,
        YAML and JSON are read: no code from the repo is run. ``changes`` as ``from_checkpoint``.
        """
        return cls.from_checkpoint(name, device, **changes)

    @property
    def tta(self) -> TTAConfig | None:
        """The test-time augmentation in use, or None."""
        return self.options.tta if self.options.tta.enabled else None

    @property
    def crf(self) -> CRFConfig | None:
        """The CRF refinement in use, or None."""
        return self.options.crf if self.options.crf.enabled else None

    @property
    def pamr(self) -> PAMRConfig | None:
        """The PAMR refinement in use, or None."""
        return self.options.pamr if self.options.pamr.enabled else None

    @property
    def setting(self) -> str:
        """plain, tta, pamr or crf: which stored mask threshold these options use."""
        return self.options.setting

    @property
    def threshold(self) -> float:
        """The mask threshold: the one given, else the checkpoint's for ``setting``
        (``inference.threshold`` for one plain pass, ``inference.thresholds.<setting>``)."""
        if self._threshold_given:
            return self.options.threshold
        return self.options.threshold_for(self.setting)

    @property
    def max_pixels(self) -> int:
        return self.options.max_pixels

    @property
    def presence_threshold(self) -> float:
        return self.options.presence_threshold

    @property
    def class_threshold(self) -> float:
        return self.options.class_threshold

    @property
    def precision(self) -> str:
        """fp32, bf16 or int8 (``tseg.inference.precision``)."""
        return self.options.precision

    @property
    def text_precision(self) -> str:
        """The text tower's precision (``inference.text_precision``, else ``precision``)."""
        return self.options.text_precision or self.options.precision

    def describe(self) -> dict[str, Any]:
        """What the results are computed with (printed by ``tseg eval``)."""
        tta, crf, pamr = self.tta, self.crf, self.pamr
        return {
            "tta": {"scales": list(tta.scales), "flip": tta.flip} if tta is not None else False,
            "crf": {k: v for k, v in asdict(crf).items() if k != "enabled"} if crf else False,
            "pamr": {k: v for k, v in asdict(pamr).items() if k != "enabled"} if pamr else False,
            "threshold": self.threshold,
            "presence_threshold": self.presence_threshold,
            "precision": self.precision,
            "text_precision": self.text_precision,
        }

    # --- the one road ----------------------------------------------------------------------

    @torch.no_grad()
    def text_embeddings(self, expressions: Sequence[str]) -> Tensor:
        """[L, D]; only expressions not seen before go through the text encoder."""
        new = [e for e in dict.fromkeys(expressions) if e not in self._text_cache]
        for start in range(0, len(new), TEXT_CHUNK):
            part = new[start : start + TEXT_CHUNK]
            self.text_encoder_calls += 1
            with precision_module.autocast(self.text_precision, self.device):
                ys = self.model.encode_text(part).float()  # [L, D]
            for e, y in zip(part, ys):
                self._text_cache[e] = y
        if not expressions:  # an image with no expression (a dataset may have some)
            return torch.empty(0, self.model.text_proj.out_features, device=self.device)
        return torch.stack([self._text_cache[e] for e in expressions])

    @torch.no_grad()
    def maps(
        self,
        images: Sequence[np.ndarray],
        expressions: Sequence[str] | Sequence[Sequence[str]],
        maps_for: Sequence[int] | None = None,
    ) -> list[Maps]:
        """Probability maps and confidences of decoded images, with TTA and CRF as configured.

        Args:
            images: uint8 RGB [H, W, 3] arrays (``load_image`` makes them), any sizes.
            expressions: the same L expressions for every image, or one list per image
                (dataset text is taken as is; ``predict`` checks user input).
            maps_for: per image, how many leading expressions need a map; the others only get
                a confidence (presence scoring's absent expressions). Default: all.

        Returns:
            One ``Maps`` per image: probabilities float32 [K, H, W], confidences float32 [L].
        """
        per_image, keep = expressions_per_image(len(images), expressions, maps_for)
        if self.tta is None:
            out = self._plain(images, per_image, keep)
        else:
            out = [self._tta(im, t, k) for im, t, k in zip(images, per_image, keep)]
        if self.pamr is not None:
            for m, image in zip(out, images):
                if len(m.probabilities):
                    m.probabilities = pamr_module.refine(
                        image, m.probabilities, self.pamr, self.device
                    )
        if self.crf is not None:
            for m, image in zip(out, images):
                if len(m.probabilities):
                    m.probabilities = crf_module.refine(image, m.probabilities, self.crf)
        return out

    def _plain(
        self, images: Sequence[np.ndarray], texts: list[list[str]], keep: list[int]
    ) -> list[Maps]:
        """One pass per image at the training size; images of one input size run as a batch."""
        if any(texts):  # encode the new expressions of all images first, TEXT_CHUNK at a time
            self.text_embeddings([t for ts in texts for t in ts])
        model = self.model
        out: list[Maps | None] = [None] * len(images)
        for members in size_groups(images, model.input_shape).values():
            batch = torch.stack([model.preprocess(images[b]) for b in members]).to(self.device)
            rows = _run_pass(
                model,
                self.precision,
                batch,
                [self.text_embeddings(texts[b]) for b in members],
                [images[b].shape[:2] for b in members],
                [keep[b] for b in members],
            )
            for b, (probs, conf) in zip(members, rows):
                out[b] = Maps(probs.float().cpu().numpy(), conf.float().cpu().numpy())
        return out  # type: ignore[return-value]

    def _tta(self, image: np.ndarray, texts: list[str], keep: int) -> Maps:
        """The TTA passes of one image, averaged at its resolution (``tseg.inference.tta``)."""
        cfg, model = self.options.tta, self.model
        h, w = image.shape[:2]
        # A flipped view needs "left"/"right" swapped so the text still names the same object;
        # texts the swap leaves unchanged are encoded once for both orientations.
        views = [texts, [swap_left_right(e) for e in texts]] if cfg.flip else [texts]
        row = {t: i for i, t in enumerate(dict.fromkeys(t for v in views for t in v))}
        y_unique = self.text_embeddings(list(row)).to(self.device)
        ys = [y_unique[[row[t] for t in v]] for v in views]  # [L, D] per orientation
        prob_sum = torch.zeros(keep, h, w, device=self.device)
        conf_sum = torch.zeros(len(texts), device=self.device)
        passes = 0
        for scale in cfg.scales:
            x = model.preprocess(image, scale).to(self.device)
            # Both orientations go through the image encoder as one batch.
            batch = torch.stack([x, x.flip(-1)]) if cfg.flip else x[None]
            rows = _run_pass(model, self.precision, batch, ys, [(h, w)] * len(ys), [keep] * len(ys))
            for i, (probs, conf) in enumerate(rows):
                conf_sum += conf
                probs = probs.float()
                prob_sum += probs.flip(-1) if i == 1 else probs  # back to the original side
                passes += 1
        probs = (prob_sum / passes).clamp(0.0, 1.0).cpu().numpy()
        return Maps(probs, (conf_sum / passes).cpu().numpy())


def _run_pass(
    model: TSEG,
    precision: str,
    batch: Tensor,
    ys: list[Tensor],
    sizes: list[tuple[int, int]],
    keep: list[int],
) -> list[tuple[Tensor, Tensor]]:
    """One image-encoder pass over model inputs of one size -> per row (maps, confidences).

    Args:
        precision: fp32, bf16 (the image encoder under autocast) or int8 (``model`` quantized).
        batch: [B, 3, h, w] in [0, 1], as ``model.preprocess`` makes them.
        ys: per row, its text embeddings [L_b, D].
        sizes: per row, the (H, W) to return the maps at.
        keep: per row, how many leading expressions get a map.

    Returns:
        Per row: maps [K_b, H_b, W_b] (the head's probability maps) and confidences [L_b].
    """
    with precision_module.autocast(precision, batch.device):
        enc = model.encode_image(batch)
    x = enc["x"].float()  # [B, N, D]; bf16 under autocast, the rest runs in fp32
    out = []
    for b, (y, size, k) in enumerate(zip(ys, sizes, keep)):
        s = model.similarity(x[b : b + 1], y.to(batch.device))  # [1, N, L]
        conf = torch.sigmoid(model.pool(s)["scores"][0])  # [L]
        if k:
            probs = model.masks_at(s[:, :, :k], enc["grid"], tuple(size))[0]  # [K, H, W]
        else:  # confidences only (presence scoring): no map to upsample
            probs = s.new_zeros((0, *size))
        out.append((probs, conf))
    return out
