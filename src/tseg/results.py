"""The results every inference path returns, without torch: ``Maps`` (one image's maps before
thresholding), ``Prediction`` (one expression's mask) and ``Predicts``, the ``predict`` /
``predict_batch`` that the torch ``Segmenter`` and the ONNX Runtime ``OrtSegmenter`` share on
top of their ``maps``, so both check input and threshold alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .inputs import check_expressions, load_image


@dataclass
class Maps:
    """One image's result before thresholding: what every inference path returns.

    ``probabilities`` holds the maps of the first K expressions asked for (all of them unless
    the caller wanted fewer, e.g. presence scoring's absent expressions only need confidences).
    """

    probabilities: np.ndarray  # float32 [K, H, W] foreground probabilities at image resolution
    confidences: np.ndarray  # float32 [L]: sigmoid of each expression's pooled score


@dataclass
class Prediction:
    """One expression's result on one image."""

    expression: str
    confidence: float  # sigmoid of the pooled score
    probability: np.ndarray  # float32 [H, W] foreground probability at image resolution
    mask: np.ndarray  # bool [H, W]


class Predicts:
    """``predict`` and ``predict_batch`` on top of the ``maps(images, expressions)`` method of
    every inference path (the torch ``Segmenter``, ``OrtSegmenter``): user input checked (the
    images decoded, the expressions stripped), the maps thresholded."""

    threshold: float  # foreground threshold on the probability maps
    max_pixels: int  # larger images are refused before decoding
    presence_threshold: float  # confidence below which a mask is emptied (0: off)

    def predict(
        self, image: str | Path | Image.Image | np.ndarray, expressions: list[str]
    ) -> list[Prediction]:
        """Segment one image with any number of expressions in one image-encoder pass."""
        return self.predict_batch([image], expressions)[0]

    def predict_batch(self, images: list, expressions: list[str]) -> list[list[Prediction]]:
        """Segment many images with the same expressions; images of one size share a batch.

        An expression whose confidence is below ``presence_threshold`` gets an empty mask (the
        presence gate, ``tseg.eval.presence``); its probability map is kept as computed.
        """
        expressions = check_expressions(expressions)
        arrays = [load_image(im, self.max_pixels) for im in images]
        return [
            [
                Prediction(e, float(c), p, self._mask(p, float(c)))
                for e, c, p in zip(expressions, m.confidences, m.probabilities)
            ]
            for m in self.maps(arrays, expressions)
        ]

    def _mask(self, p: np.ndarray, confidence: float) -> np.ndarray:
        """The map cut at ``threshold``, or empty below the presence gate. (One pass over the
        map, not two: with 64 expressions on a 640 x 480 photo the maps are 20 M pixels.)"""
        if confidence < self.presence_threshold:
            return np.zeros(p.shape, dtype=bool)
        return p > self.threshold
