"""A Pascal VOC 2012 + SBD fixture in the VOCdevkit layout: JPEGs, palette and SBD labels, the
ImageSets lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 12, 16
VAL_IDS = ["2007_000033", "2007_000042"]
TRAIN_IDS = ["2007_000032", "2008_000002"]
AUG_IDS = TRAIN_IDS + ["2008_000003"]  # SBD adds images without VOC labels


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved), 256 RGB entries."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def label_for(image_id: str) -> np.ndarray:
    """Person rectangle with a 255 border, dog on the right for odd ids."""
    lab = np.zeros((H, W), dtype=np.uint8)
    lab[2:8, 2:8] = 255
    lab[3:7, 3:7] = 15
    if int(image_id[-1]) % 2:
        lab[:, 12:] = 12
    return lab


def save_palette_png(path: Path, labels: np.ndarray) -> None:
    im = Image.fromarray(labels, mode="P")
    im.putpalette(voc_palette())
    im.save(path)


def make_voc(root: Path) -> Path:
    """Write VOC2012/{JPEGImages,SegmentationClass,SegmentationClassAug,ImageSets}."""
    voc = root / "VOC2012"
    for sub in (
        "JPEGImages",
        "SegmentationClass",
        "SegmentationClassAug",
        "ImageSets/Segmentation",
    ):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for image_id in sorted(set(VAL_IDS + AUG_IDS)):
        Image.new("RGB", (W, H), (10, 20, 30)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        # SBD-converted labels are plain grayscale PNGs of class indices.
        Image.fromarray(label_for(image_id), mode="L").save(
            voc / "SegmentationClassAug" / f"{image_id}.png"
        )
        if image_id in VAL_IDS + TRAIN_IDS:
            save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", label_for(image_id))
    sets = voc / "ImageSets" / "Segmentation"
    (sets / "val.txt").write_text("\n".join(VAL_IDS) + "\n")
    (sets / "train.txt").write_text("\n".join(TRAIN_IDS) + "\n")
    # DeepLab-style list: image and label paths.
    (sets / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in AUG_IDS)
    )
    return root
