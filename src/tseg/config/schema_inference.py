"""The ``inference`` section: defaults stored with every checkpoint, and the TTA, CRF and PAMR
sections a ``Segmenter`` also takes as objects made in code (which check themselves when made).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .rules import UNIT, OneOf, Range, Test, rule
from .values import check, coerce


@dataclass
class TTAConfig:
    """Test-time augmentation: multi-scale and flipped passes, averaged (``tseg.inference.tta``).

    A TTAConfig made in code is on (``Segmenter(model, tta=TTAConfig(scales=[1, 2]))``); the
    ``inference.tta`` section of a config is off unless ``enabled``.

    Attributes:
        scales: multiples of the model's input size (shorter side) to run the image at.
        flip: also run every scale on the horizontally flipped image (with left/right swapped).
        enabled: run the passes.
    """

    # Bounded: a scale of 1e30 (or inf) asked torch for an image of that size.
    scales: list[float] = rule(
        [1.0, 0.5, 1.5, 2.0],
        Test(
            lambda v: 0 < len(v) <= 16 and all(0 < x <= 8 for x in v),
            "every scale must be positive and at most 8 (and there must be 1 to 16)",
        ),
    )
    flip: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        self.scales = coerce("inference.tta.scales", self.scales, list[float])
        check(self, "inference.tta")


@dataclass
class CRFConfig:
    """Dense CRF parameters (``tseg.inference.crf``; defaults: Araslanov & Roth, 2020).

    A CRFConfig made in code is on; the ``inference.crf`` section of a config is off unless
    ``enabled``.

    Attributes:
        iterations: mean-field iterations; 0 returns the (clipped) input probabilities.
        gaussian_sxy: spatial std (pixels) of the appearance-free smoothness kernel.
        gaussian_compat: weight of the smoothness kernel.
        bilateral_sxy: spatial std (pixels) of the appearance kernel.
        bilateral_srgb: colour std (0-255 units) of the appearance kernel.
        bilateral_compat: weight of the appearance kernel.
        clip: probabilities are clipped to [clip, 1] before -log, so unaries stay finite.
        enabled: refine the maps (needs the [crf] extra).
    """

    iterations: int = rule(10, Range(0, 1000))
    gaussian_sxy: float = rule(3.0, Range(1e-3, 1e4))
    gaussian_compat: float = rule(3.0, Range(0.0, 1e4))
    bilateral_sxy: float = rule(80.0, Range(1e-3, 1e4))
    bilateral_srgb: float = rule(13.0, Range(1e-3, 1e4))
    bilateral_compat: float = rule(10.0, Range(0.0, 1e4))
    clip: float = rule(1e-5, Test(lambda v: 0.0 < v < 0.5, "must be in (0, 0.5)"))
    enabled: bool = True

    def __post_init__(self) -> None:
        check(self, "inference.crf")


#: The inference settings a mask threshold is chosen for: maps of one pass, averaged TTA maps,
#: PAMR-refined and CRF-refined maps (with or without TTA) have different score distributions
#: (the demo's threshold chosen for one pass, 0.9, took its TTA test mIoU from 47.3 to 27.3).
SETTINGS = ("plain", "tta", "pamr", "crf")


@dataclass
class ThresholdsConfig:
    """Mask thresholds for the settings other than one plain pass (which uses
    ``inference.threshold``). 0.5 until ``--choose-threshold`` picks one with those options."""

    tta: float = rule(0.5, UNIT)  # TTA on, no refinement
    pamr: float = rule(0.5, UNIT)  # PAMR on, CRF off (with or without TTA)
    crf: float = rule(0.5, UNIT)  # CRF on (with or without TTA or PAMR)


@dataclass
class PAMRConfig:
    """Pixel-adaptive mask refinement (``tseg.inference.pamr``; defaults: Araslanov & Roth, 2020).

    A PAMRConfig made in code is on; the ``inference.pamr`` section of a config is off unless
    ``enabled``.

    Attributes:
        iterations: how many times each pixel takes the affinity-weighted mean of its neighbours.
        dilations: the 3 x 3 neighbourhood's dilations, in pixels (of the refined size).
        max_side: images whose shorter side is larger are refined at this size (0 = never).
        enabled: refine the maps.
    """

    iterations: int = rule(10, Range(0, 100))
    # SPA used 1-24 px; on 96 px shapes images 1-8 px made better pseudo masks (val mIoU 64.7 vs
    # 50.3 at the same chosen-threshold protocol; docs/self_training.md)
    dilations: list[float] = rule(
        [1.0, 2.0, 4.0, 8.0],
        Test(
            lambda v: 0 < len(v) <= 16 and all(x.is_integer() and 1 <= x <= 256 for x in v),
            "every dilation must be a whole number of pixels from 1 to 256 (at least one)",
        ),
    )
    max_side: int = rule(384, Range(0, 4096))
    enabled: bool = True

    def __post_init__(self) -> None:
        self.dilations = coerce("inference.pamr.dilations", self.dilations, list[float])
        check(self, "inference.pamr")


@dataclass
class InferenceConfig:
    """Inference defaults stored with every checkpoint; each can be overridden per call
    (``Segmenter(..., threshold=0.3)``, ``tseg segment --threshold 0.3``)."""

    # foreground threshold on the probability maps of one plain pass (no TTA, no CRF)
    threshold: float = rule(0.5, UNIT)
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)
    tta: TTAConfig = field(default_factory=lambda: TTAConfig(enabled=False))
    crf: CRFConfig = field(default_factory=lambda: CRFConfig(enabled=False))
    pamr: PAMRConfig = field(default_factory=lambda: PAMRConfig(enabled=False))
    # zero-shot: drop classes whose confidence is below this
    class_threshold: float = rule(0.5, Range(0.0, 1.01))
    max_pixels: int = rule(100_000_000, Range(1, 10**12))  # refuse larger images before decoding
    # Presence gate: an expression whose confidence is below this gets an empty mask ("nothing
    # here"); 0 = off. ``tseg eval RUN --choose-presence-threshold`` picks it on val and stores it.
    presence_threshold: float = rule(0.0, UNIT)
    # fp32 | bf16 (autocast on the encoders) | int8 (dynamically quantized linear layers, CPU
    # only): tseg.inference.precision; speed and agreement with fp32 in benchmarks/precision.py.
    precision: str = rule("fp32", OneOf(("fp32", "bf16", "int8")))
    # the text tower's, when it differs ("": as precision)
    text_precision: str = rule("", OneOf(("", "fp32", "bf16", "int8")))

    @property
    def setting(self) -> str:
        """Which of ``SETTINGS`` the enabled options make."""
        if self.crf.enabled:
            return "crf"
        return "pamr" if self.pamr.enabled else "tta" if self.tta.enabled else "plain"

    def threshold_for(self, setting: str) -> float:
        """The mask threshold stored for ``setting`` (one of ``SETTINGS``)."""
        return self.threshold if setting == "plain" else getattr(self.thresholds, setting)

    def set_threshold(self, setting: str, value: float) -> None:
        """Store ``value`` as the mask threshold of ``setting``."""
        if setting == "plain":
            self.threshold = value
        else:
            setattr(self.thresholds, setting, value)
