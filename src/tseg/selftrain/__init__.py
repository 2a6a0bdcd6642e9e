"""Self-training: a second stage that learns from the weak model's own refined masks.

    teacher (train.mode=weak) --tseg pseudo-label--> pseudo masks (refined, filtered, with ignore
    pixels; COCO RLE shards + manifest) --train.mode=pseudo--> student --> (next round's teacher)

``pseudo.py`` makes the pseudo masks, ``store.py`` writes and reads their folder (and holds the
dataset the student trains on, which never reads a ground-truth mask), ``rounds.py`` chains the
stages (``tseg self-train``).
"""

from .pseudo import pseudo_label
from .rounds import self_train
from .store import PseudoMaskDataset, PseudoMasks

__all__ = ["PseudoMaskDataset", "PseudoMasks", "pseudo_label", "self_train"]
