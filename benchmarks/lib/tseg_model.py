"""The benchmarks' inputs and TSEG: realistic phrases, a decoded image, a random-weight model."""

from __future__ import annotations

from typing import Any

import numpy as np

# The paper's architecture with random weights: timing needs no pretrained file, so nothing is
# read from the Hugging Face cache (the paper preset names hub weights by default).
PAPER_FROM_SCRATCH = ("model.preset=paper", "model.image.weights=none", "model.text.name=bert")


def phrases(n: int) -> list[str]:
    """n distinct referring expressions of realistic length (3 to 7 words)."""
    colours = ["red", "blue", "green", "white", "black", "yellow", "brown", "grey"]
    things = ["car", "dog", "cup", "man", "chair", "bus", "umbrella", "horse"]
    tails = ["", " on the left", " next to the table", " in the back"]
    out = [
        f"the {c} {t}{tails[(i + j) % len(tails)]}"
        for i, t in enumerate(things)
        for j, c in enumerate(colours)
    ]
    if n > len(out):
        raise ValueError(f"at most {len(out)} distinct phrases, asked for {n}")
    return out[:n]


def make_image(hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A decoded uint8 RGB image [H, W, 3]: smooth colour gradients plus noise."""
    h, w = hw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], axis=-1) * 200
    return (base + rng.random((h, w, 3)) * 55).astype(np.uint8)


def build_tseg(overrides: tuple[str, ...], corpus: list[str]) -> tuple[Any, Any]:
    """A randomly initialised TSEG and its config; its WordPiece vocabulary is trained on
    ``corpus``."""
    import torch

    from tseg.config import build_config
    from tseg.models.text_encoder import train_tokenizer
    from tseg.models.tseg import TSEG

    cfg = build_config(None, list(overrides))
    tokenizer = train_tokenizer(corpus, cfg.model.text.vocab_size)
    torch.manual_seed(0)
    model = TSEG(cfg.model, cfg.data.image_size, tokenizer, load_weights=False).eval()
    return model, cfg


def tseg_input(model: Any, image: np.ndarray) -> Any:
    """The image as Segmenter feeds it to the image encoder: [1, 3, h, w], normalised."""
    x = model.preprocess(image)[None]
    return (x - model.pixel_mean) / model.pixel_std
