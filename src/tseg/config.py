"""Experiment configuration: dataclasses are the schema.

A run's config is built in three layers, later ones winning: the dataclass defaults (with a
named model preset applied), an experiment YAML holding only what differs, and dotted
``key.sub=value`` overrides from the command line. Unknown keys, wrong types and
out-of-range values are rejected with an error that names the key.

Each field carries its own rule (``rule(default, Range(...))``), so a rule cannot name a key
that does not exist; the few rules between keys are in ``_BETWEEN``, below the presets.

Longer than 400 lines: the schema, the rules that check each value and the readers are read
together (an error message names a key that is defined here).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# Upper bounds of counts and sizes: far above any real run, and far below what overflows a
# C integer (an int key given 1e30 reached islice and torch as an OverflowError).
MANY = 10**9
WIDTH = 65536  # widths, heads and channels of a layer
SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (None: unbounded on that side)."""

    lo: float | None = None
    hi: float | None = None

    def error(self, value: Any) -> str | None:
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            lo = self.lo if self.lo is not None else "-inf"
            return f" is out of range [{lo}, {self.hi if self.hi is not None else 'inf'}]"
        return None


@dataclass(frozen=True)
class Test:
    """A rule that is not a range: ``test(value)`` must hold; ``what`` says what it wants."""

    test: Callable[[Any], bool]
    what: str

    def error(self, value: Any) -> str | None:
        return None if self.test(value) else f": {self.what}"


@dataclass(frozen=True)
class OneOf:
    """One of ``allowed``: a tuple, or a function giving a registry's names (read when first
    checked: the registries import torch, which a config alone does not need)."""

    allowed: tuple[str, ...] | Callable[[], tuple[str, ...]]

    def names(self) -> tuple[str, ...]:
        return self.allowed() if callable(self.allowed) else self.allowed

    def error(self, value: Any) -> str | None:
        names = self.names()
        return None if value in names else f": choose one of {', '.join(names)}"


Rule = Range | Test | OneOf


def rule(default: Any, *rules: Rule) -> Any:
    """A dataclass field with its default and the rules every value of it must pass."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"rules": rules})
    return field(default=default, metadata={"rules": rules})


def _registry(module: str, name: str) -> Callable[[], tuple[str, ...]]:
    """The names of a registry dict (e.g. the pooling heads), imported when first read."""

    def names() -> tuple[str, ...]:
        import importlib

        return tuple(getattr(importlib.import_module(module), name))

    return names


# Strings: a path or a name. A NUL byte reached os calls as "embedded null byte" (ValueError).
TEXT = Test(lambda v: "\x00" not in v and len(v) <= 4096, "must be at most 4096 characters, no NUL")
NAME = Test(lambda v: bool(v.strip()) and "\x00" not in v and len(v) <= 4096, "must not be empty")
UNIT = Range(0.0, 1.0)  # a probability or a fraction


@dataclass
class ImageEncoderConfig:
    """timm Vision Transformer (or a hybrid) that turns an image into patch tokens."""

    # "vit" (timm VisionTransformer) or "efficientnet_lite0" (hybrid CNN)
    name: str = rule("vit", OneOf(_registry("tseg.models.encoders", "IMAGE_ENCODERS")))
    # architecture family passed to timm.create_model
    timm_model: str = rule("vit_small_patch16_224", NAME)
    patch_size: int = rule(8, Range(1, 1024))
    # "patch" (linear patch projection, as ViT) or "conv" (stride-4 conv stem)
    stem: str = rule("patch", OneOf(("patch", "conv")))
    stem_channels: int = rule(64, Range(2, WIDTH))  # the stem's first layer has half of them
    embed_dim: int = rule(128, Range(1, WIDTH))
    depth: int = rule(4, Range(1, 1000))
    num_heads: int = rule(4, Range(1, WIDTH))
    drop_path: float = rule(0.0, UNIT)
    weights: str = rule("", TEXT)  # local file with pretrained weights ("" = random init)
    # EfficientNet hybrid with patch_size 8 or 4: width of the feature pyramid below stride 16.
    decoder_dim: int = rule(128, Range(1, WIDTH))


@dataclass
class TextEncoderConfig:
    """transformers BERT-style encoder; one [CLS] token per expression."""

    # "bert" (from scratch, tokenizer trained on the data) or "minilm" / "pretrained"
    name: str = rule("bert", OneOf(_registry("tseg.models.encoders", "TEXT_ENCODERS")))
    hidden_size: int = rule(128, Range(1, WIDTH))
    num_layers: int = rule(2, Range(1, 1000))
    num_heads: int = rule(4, Range(1, WIDTH))
    intermediate_size: int = rule(512, Range(1, 4 * WIDTH))
    # For a tokenizer trained on the dataset's expressions; it must also hold the 5 special
    # tokens and every character alone and as a ##continuation (train_tokenizer says so).
    vocab_size: int = rule(2000, Range(6, 10_000_000))
    max_length: int = rule(32, Range(4, 512))
    # "cls": the [CLS]/BOS token (paper); "mean": mean over the expression's tokens
    pool: str = rule("cls", OneOf(("cls", "mean")))
    weights: str = rule("", TEXT)  # local folder with a pretrained transformers model ("" = random)


@dataclass
class ModelConfig:
    """The TSEG model: encoders, shared embedding, temperature and pooling head."""

    preset: str = rule("tiny", OneOf(lambda: tuple(PRESETS)))
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    embed_dim: int = rule(256, Range(1, WIDTH))  # D, the shared patch-text space (Table 2b)
    # initial temperature (similarities are in [-tau, tau]); within [tau_min, tau_max]
    tau_init: float = rule(10.0, Range(1e-3, 1e6))
    tau_min: float = rule(1.0, Range(1e-3, 1e6))
    tau_max: float = rule(100.0, Range(1e-3, 1e6))
    head: str = rule("mpa", OneOf(_registry("tseg.models.pooling", "HEADS")))
    size_lambda: float = rule(0.01, Range(0.0, 1e6))  # lambda of the size penalty, eq. 7
    size_p: float = rule(5.0, Range(0.0, 1e3))  # p of the size penalty, eq. 7
    gwp_eps: float = rule(1e-5, Range(0.0, 1.0))  # epsilon of global weighted pooling, eq. 4
    # GAP/GMP mask inference: background threshold on the normalised CAM
    cam_threshold: float = rule(0.5, UNIT)


@dataclass
class DataConfig:
    """Which dataset, at what resolution, with which augmentation."""

    # shapes | refcoco | refcoco+ | refcocog | grefcoco | phrasecut | voc; a user's own data
    # (docs/own_data.md): imagefolder | coco_captions | webdataset (weak) | coco (masks) |
    # hf (Hugging Face datasets: weak, and evaluation where a mask column exists). The dataset
    # registry (tseg.data.build_dataset) checks the name when it is loaded.
    dataset: str = rule("shapes", NAME, OneOf(_registry("tseg.data.registry", "DATASETS")))
    root: str = rule("", TEXT)  # dataset folder (see README: files each dataset expects)
    # webdataset: tar shards, e.g. "shards/train-{000000..000099}.tar"
    shards: str = rule("", TEXT)
    # webdataset, hf: stream the shards into tseg train (tseg.data.stream, docs/own_data.md),
    # exactly resumable, instead of reading them map-style; weak training only
    stream: bool = False
    # images, if not in the dataset's default place (relative: to data.root)
    image_dir: str = rule("", TEXT)
    # coco / coco_captions: the COCO JSON file itself (relative: to data.root), whatever its name;
    # its images' file_name is looked up beside it, then in data.image_dir
    annotations: str = rule("", TEXT)
    # hf: the text column ("" = the first of expressions, sentences, text, caption) and the mask
    # column ("" = mask, masks or segmentation when it holds images); data.root names the data
    text_column: str = rule("", TEXT)
    mask_column: str = rule("", TEXT)
    # RefCOCO*: unc | umd | google ("" = the dataset's default)
    split_by: str = rule("", OneOf(("", "unc", "umd", "google")))
    # PhraseCut: refuse polygons of fewer than 3 points (false: skip 0-1 point ones and draw
    # 2-point ones as a line, as the official tools score them)
    phrasecut_strict_polygons: bool = True
    train_split: str = rule("train", NAME)  # the split called "train" (VOC: train_aug)
    val_split: str = rule("val", NAME)  # the split called "val"
    image_size: int = rule(64, Range(8, 4096))  # model input (shorter side) and training crop
    # shapes only: side of the rendered images (0 = image_size). Rendered at 96 and fed at 192,
    # the objects reach the size at which ImageNet features recognise shapes, while images,
    # masks and IoU stay at 96 px (README, "Why a 24 x 24 grid").
    render_size: int = rule(0, Range(0, 4096))
    train_size: int = rule(4000, Range(1, MANY))  # shapes only: number of generated train images
    val_size: int = rule(300, Range(1, MANY))
    test_size: int = rule(500, Range(1, MANY))
    # use this fraction of the training images (Table 2d)
    train_fraction: float = rule(1.0, Range(1e-6, 1.0))
    seed: int = rule(0, Range(0, SEED_MAX))  # shapes generation seed
    # shapes: "all" (every true expression, overlapping) | "disjoint" (one per object, no overlap)
    shapes_expressions: str = rule("all", OneOf(("all", "disjoint")))
    # shapes: absent expressions (empty masks) per image, for no-target evaluation; evaluation
    # splits only: the "train" split never gets them (weak training would take them as present)
    shapes_absent: int = rule(0, Range(0, 1000))
    # positives sampled per image per step (section 4.2)
    expressions_per_image: int = rule(3, Range(1, 1000))
    hflip: bool = True  # horizontal flip, swapping "left"/"right" in the text
    # random rescale range before a random crop back to image_size
    scale_min: float = rule(1.0, Range(0.1, 10.0))
    scale_max: float = rule(1.0, Range(0.1, 10.0))
    num_workers: int = rule(0, Range(0, 64))
    # train.mode=pseudo: a folder from `tseg pseudo-label` whose masks replace the dataset's own
    # (which the student never reads)
    pseudo_masks: str = rule("", TEXT)


@dataclass
class TrainConfig:
    """Optimisation; defaults follow section 4.2 of the paper."""

    # weak (image-level expressions) | full (Dice on masks) | box | pseudo (the masks of
    # data.pseudo_masks, their ignore pixels left out)
    mode: str = rule("weak", OneOf(_registry("tseg.train.objectives", "OBJECTIVES")))
    # train.mode=pseudo: the student's loss, and the weight of the weak loss added to it
    pseudo_loss: str = rule("dice", OneOf(("dice", "bce", "dice+bce")))
    weak_weight: float = rule(0.0, Range(0.0, 100.0))
    ground_truth: str = rule("identity", OneOf(("identity", "tfidf")))  # Table 2c
    optimizer: str = rule("sgd", OneOf(("sgd", "adamw")))
    lr: float = rule(1e-3, Range(0.0, 10.0))
    momentum: float = rule(0.9, Test(lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"))
    weight_decay: float = rule(1e-4, UNIT)
    poly_power: float = rule(0.9, Range(0.0, 100.0))
    warmup_steps: int = rule(0, Range(0, MANY))
    batch_size: int = rule(32, Range(1, 1_000_000))
    steps: int = rule(1000, Range(1, MANY))
    grad_clip: float = rule(0.0, Range(0.0, None))  # 0 = off
    # Learning-rate multiplier for the text encoder's backbone (its projection keeps the full rate):
    # a pretrained sentence encoder fine-tuned at full rate on a small vocabulary forgets the
    # synonyms it knew; 0 freezes it.
    text_lr_scale: float = rule(1.0, Range(0.0, None))
    # Learning-rate multiplier for the pretrained image backbone (the hybrid's EfficientNet, or
    # the ViT): the layers added on top (transformer, pyramid, projections) learn at the full rate.
    backbone_lr_scale: float = rule(1.0, Range(0.0, None))
    eval_every: int = rule(0, Range(0, MANY))  # 0 = only at the end
    # checkpoint (with optimiser and RNG state) every N steps; 0 = only at the end
    save_every: int = rule(500, Range(0, MANY))
    log_every: int = rule(20, Range(1, MANY))
    seed: int = rule(0, Range(0, SEED_MAX))
    out_dir: str = rule("runs/default", NAME)
    device: str = rule("auto", OneOf(("auto", "cpu", "cuda")))
    # torch intra-op threads on the CPU; 0: the cores other processes leave idle, re-measured
    # every few seconds (tseg.threads: a fixed team on a shared CPU ran 20x slower)
    threads: int = rule(0, Range(0, 4096))
    # checkpoint or run folder to start from (e.g. box pretraining); "" = fresh
    init_from: str = rule("", TEXT)
    # Beyond one process (docs/distributed.md). Effective batch = batch_size x processes x
    # accum_steps; batch_size is per process.
    # micro-batches of batch_size whose gradients make one optimiser step
    accum_steps: int = rule(1, Range(1, 1_000_000))
    # none | bf16 (CPU or GPU autocast) | fp16 (CUDA only, with a GradScaler)
    amp: str = rule("none", OneOf(("none", "bf16", "fp16")))
    compile: bool = False  # torch.compile the image and text encoders
    # Weak mode under torchrun: "global" scores each image against the expressions of every
    # process's batch (the paper's candidate set for a global batch of 32 split over GPUs);
    # "local" only against its own process's batch.
    ddp_negatives: str = rule("global", OneOf(("global", "local")))
    tensorboard: bool = False  # also write the log to <run>/tb (needs the [tb] extra)


@dataclass
class EvalConfig:
    """Evaluation protocol (section 4.1)."""

    batch_size: int = rule(32, Range(1, 1_000_000))
    max_images: int = rule(0, Range(0, MANY))  # 0 = all
    # After training, choose the mask threshold on the val split (the best mIoU over
    # tseg.eval.pairs.MASK_THRESHOLDS) for the inference options configured (plain, TTA or CRF:
    # inference.threshold / inference.thresholds) and store it with the final checkpoint.
    choose_threshold: bool = False


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
        self.scales = _coerce("inference.tta.scales", self.scales, list[float])
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
        self.dilations = _coerce("inference.pamr.dilations", self.dilations, list[float])
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


@dataclass
class PseudoConfig:
    """Pseudo masks from a weakly trained model (``tseg pseudo-label``, ``tseg.selftrain``).

    Every training image's expressions go through the teacher's ``Segmenter.maps``, refined by
    ``refine``; a pair is kept when the teacher's confidence is at least ``min_confidence`` and
    its mask is not empty; a kept pair's pixels are foreground at or above ``threshold``,
    background below ``(1 - ignore_band) x threshold`` and *ignore* in between (the student's
    loss leaves them out). docs/self_training.md says how each rule was chosen.
    """

    # none | crf | pamr (inference.crf / inference.pamr parameters)
    refine: str = rule("pamr", OneOf(("none", "crf", "pamr")))
    tta: bool = False  # the teacher's maps with test-time augmentation (inference.tta)
    # Foreground threshold on the refined maps; 0: chosen on the val split for this refinement
    # (as eval.choose_threshold does for raw maps), else the teacher's inference.threshold.
    threshold: float = rule(0.0, UNIT)
    # pixels in [(1 - band) x threshold, threshold) are ignored; 0 = none
    ignore_band: float = rule(0.2, UNIT)
    # pairs the teacher is less sure of are left out; 0 = keep all
    min_confidence: float = rule(0.5, UNIT)
    shard_size: int = rule(500, Range(1, 1_000_000))  # images per shard file (written whole)
    max_images: int = rule(0, Range(0, MANY))  # label only the first N training images; 0 = all
    # tseg self-train: rounds of (pseudo masks -> student), the student's steps (0: train.steps)
    # and where it starts: "teacher" (the previous stage's weights) or "fresh" (as the teacher did)
    rounds: int = rule(1, Range(1, 100))
    student_steps: int = rule(0, Range(0, MANY))
    student_init: str = rule("teacher", OneOf(("teacher", "fresh")))


@dataclass
class Config:
    """A whole experiment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)


#: The experiment files and the demo / benchmark recipes: the repository's ``configs/``, which the
#: package carries as ``tseg/configs`` (a link in the source tree, copied into a wheel).
CONFIGS = Path(__file__).resolve().parent / "configs"


def recipe_path(name: str) -> Path:
    """``configs/<name>.yaml``, e.g. ``recipe_path("demo/offline")``."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no recipe '{name}': '{path}' does not exist")
    return path


def config_file(path: str | Path) -> Path:
    """An experiment file as given, else the packaged recipe of that name, so that
    ``configs/refcoco_mpa.yaml`` (as the docs write it) and ``refcoco_mpa`` work outside a
    checkout too."""
    p = Path(path)
    if p.exists():
        return p
    name = p.as_posix().removesuffix(".yaml").removesuffix(".yml")
    name = name.removeprefix("configs/").removeprefix("./configs/")
    packaged = CONFIGS / f"{name}.yaml"
    if name and ".." not in Path(name).parts and packaged.is_file():
        return packaged
    known = ", ".join(
        sorted(x.relative_to(CONFIGS).with_suffix("").as_posix() for x in CONFIGS.rglob("*.yaml"))
    )
    raise ConfigError(f"config file '{p}' does not exist (nor is it a packaged recipe: {known})")


def recipe_overrides(name: str) -> list[str]:
    """A recipe as ``key=value`` overrides (for scripts that add or drop some of its keys)."""
    return [f"{k}={v}" for k, v in _flatten(load_yaml(recipe_path(name))).items()]


def recipes(folder: str) -> list[str]:
    """The recipe names under ``configs/<folder>/`` (e.g. the demo's presets)."""
    return sorted(p.stem for p in (CONFIGS / folder).glob("*.yaml"))


def rules(key: str) -> tuple[Rule, ...]:
    """The rules of the dotted config key ``key`` (KeyError: no such key)."""
    section: Any = Config
    *path, last = key.split(".")
    for part in path:
        section = typing.get_type_hints(section)[part]
    fields = {f.name: f for f in dataclasses.fields(section)}
    return fields[last].metadata.get("rules", ())


def choices(key: str) -> tuple[str, ...]:
    """The values a choice key allows (a registry's names where one defines them)."""
    return next(r for r in rules(key) if isinstance(r, OneOf)).names()


# Model presets: diffs over the dataclass defaults, applied before the YAML file.
PRESETS: dict[str, dict[str, Any]] = {
    # Trains on 2 CPU cores in minutes on `shapes` at 64 px. Trained from scratch, the small ViT
    # and BERT need AdamW: with the paper's SGD (meant for pretrained encoders) weak training
    # stayed at the label prior for 600+ steps. Batch 16 learned faster per second than 32 or 8
    # (8 failed to leave the prior in 6000 steps).
    "tiny": {
        "train.optimizer": "adamw",
        "train.lr": 1e-3,
        "train.weight_decay": 0.05,
        "train.batch_size": 16,
        "train.warmup_steps": 50,
    },
    # Section 4.2: ViT-S/16 at 384 px, BERT-Small (4 layers, hidden 512, 8 heads), D = 1024,
    # both ImageNet / BERT pretrained, named on the Hugging Face Hub (read from its cache, see
    # docs/hub.md). From scratch: model.image.weights=none model.text.name=bert (the text sizes
    # below are then the from-scratch BERT's).
    "paper": {
        "model.image.weights": "hf-hub:timm/vit_small_patch16_384.augreg_in21k_ft_in1k",
        "model.text.name": "pretrained",
        "model.text.weights": "google/bert_uncased_L-4_H-512_A-8",
        "model.image.timm_model": "vit_small_patch16_384",
        "model.image.patch_size": 16,
        "model.image.embed_dim": 384,
        "model.image.depth": 12,
        "model.image.num_heads": 6,
        "model.image.drop_path": 0.1,
        "model.text.hidden_size": 512,
        "model.text.num_layers": 4,
        "model.text.num_heads": 8,
        "model.text.intermediate_size": 2048,
        "model.text.vocab_size": 30522,
        "model.embed_dim": 1024,
        "data.image_size": 384,
    },
    # Pretrained encoders that ship inside PyPI packages (no hub): EfficientNet-Lite0 (ImageNet)
    # with two transformer layers on its stride-16 features, and all-MiniLM-L6-v2.
    "offline": {
        "model.image.name": "efficientnet_lite0",
        "model.image.patch_size": 16,
        "model.image.embed_dim": 256,
        "model.image.depth": 2,
        "model.image.num_heads": 4,
        "model.image.drop_path": 0.1,
        "model.text.name": "minilm",
        "model.text.pool": "mean",
        "model.embed_dim": 256,
        "data.image_size": 224,
        # MiniLM stays frozen: fine-tuned on shapes' ~100 words it forgets the rest of its
        # vocabulary (paraphrase/seen mIoU 0.26 fine-tuned, 0.36 at lr x0.1, 0.42 frozen; README).
        "train.text_lr_scale": 0.0,
    },
}


@dataclass(frozen=True)
class Between:
    """A rule between config keys: ``test(*values)`` must hold, else ``message`` (formatted
    with the values, ``{0}``, ``{1}``, ...) is the error."""

    keys: tuple[str, ...]
    test: Callable[..., bool]
    message: str


_IMG, _TXT = "model.image", "model.text"
# A test checks that each key named here exists.
_BETWEEN: tuple[Between, ...] = (
    Between(("data.scale_min", "data.scale_max"), lambda lo, hi: lo <= hi,
            "config keys 'data.scale_min' > 'data.scale_max'"),
    Between(("model.tau_min", "model.tau_max"), lambda lo, hi: lo <= hi,
            "config keys 'model.tau_min' > 'model.tau_max'"),
    # the temperature is clamped to [tau_min, tau_max]: a start outside was moved silently
    Between(("model.tau_min", "model.tau_init", "model.tau_max"), lambda lo, v, hi: lo <= v <= hi,
            "config key 'model.tau_init' = {1} is outside [model.tau_min, model.tau_max] = "
            "[{0}, {2}]"),
    Between(("data.stream", "data.dataset"), lambda on, ds: not on or ds in ("webdataset", "hf"),
            "config key 'data.stream' streams WebDataset shards or a Hugging Face dataset, but "
            "data.dataset = {1}; set data.dataset=webdataset data.shards=... (or hf)"),
    Between(("data.stream", "train.mode"), lambda on, mode: not on or mode == "weak",
            "config key 'data.stream' trains on image-level text only (train.mode=weak), but "
            "train.mode = {1}: shards hold no masks or boxes"),
    Between((f"{_IMG}.name", "data.image_size", f"{_IMG}.patch_size"),
            lambda name, size, patch: name != "vit" or size % patch == 0,
            "config key 'data.image_size' = {1} must be a multiple of 'model.image.patch_size' "
            "= {2}"),
    Between((f"{_IMG}.name", f"{_IMG}.stem", f"{_IMG}.patch_size"),
            lambda name, stem, patch: name != "vit" or stem != "conv" or patch % 4 == 0,
            "config key 'model.image.patch_size' = {2} must be a multiple of 4 with "
            "model.image.stem=conv"),
    Between((f"{_IMG}.name", f"{_IMG}.patch_size"),
            lambda name, patch: name != "efficientnet_lite0" or patch in (4, 8, 16),
            "config key 'model.image.patch_size' = {1}: the EfficientNet hybrid's output stride "
            "is one of 4, 8, 16"),
    # timm's and transformers' attention split a width into equal heads
    Between((f"{_IMG}.embed_dim", f"{_IMG}.num_heads"), lambda width, heads: width % heads == 0,
            "config key 'model.image.num_heads' = {1} must divide 'model.image.embed_dim' = {0}"),
    # only a BERT built here: a pretrained one brings its own sizes
    Between((f"{_TXT}.name", f"{_TXT}.hidden_size", f"{_TXT}.num_heads"),
            lambda name, width, heads: name != "bert" or width % heads == 0,
            "config key 'model.text.num_heads' = {2} must divide 'model.text.hidden_size' = {1}"),
    Between(("train.mode", "data.pseudo_masks"), lambda mode, masks: mode != "pseudo" or masks,
            "config key 'train.mode' = 'pseudo' trains on pseudo masks, but 'data.pseudo_masks' "
            "is empty: set it to a folder written by tseg pseudo-label"),
)  # fmt: skip


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters with "...": a message quotes a value, and a
    long list under a string key must not fill the screen."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _subject(key: str, value: Any, labels: Mapping[str, str] | None) -> str:
    """How a message names a value: ``config key 'k' = v``, or the caller's label for ``key``
    (the CLI names its flags as they were typed, e.g. ``--threshold = 1.5``)."""
    if labels and key in labels:
        return labels[key]
    return f"config key '{key}' = {_short(value)}"


def _coerce(key: str, value: Any, typ: Any, labels: Mapping[str, str] | None = None) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to ``typ`` or raise ConfigError."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key '{key}': expected true/false, got {_short(value)}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected an integer, got {_short(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{key}': expected an integer, got {_short(value)}")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {_short(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {_short(value)}")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {_short(value)}")
    if typ == list[float]:  # a YAML list, or "1,0.5" as typed on a command line
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (int, float)):
            items = [items]
        try:
            if isinstance(items, (list, tuple)) and not any(isinstance(v, bool) for v in items):
                return [float(v) for v in items]
        except (TypeError, ValueError):
            pass
        raise ConfigError(
            f"{_subject(key, value, labels)} is not a comma-separated list of numbers"
        )
    raise ConfigError(f"config key '{key}': cannot set a value of type {typ}")


# Keys of earlier versions, as old checkpoints' config.yaml holds them: renamed, or never read.
_RENAMED = {
    "inference.tta_scales": "inference.tta.scales",
    "inference.tta_flip": "inference.tta.flip",
    **{
        f"inference.crf_{k}": f"inference.crf.{k}"
        for k in (
            "iterations",
            "gaussian_sxy",
            "gaussian_compat",
            "bilateral_sxy",
            "bilateral_srgb",
            "bilateral_compat",
        )
    },
}
_DROPPED = ("eval.split", "train.tfidf_threshold")


def _current_key(key: str, value: Any) -> str | None:
    """Today's name of ``key`` (None: a dropped key). A bool for a section that has ``enabled``
    (``inference.tta=true``, the earlier flat form) switches it on or off."""
    if key in _DROPPED:
        return None
    if key in ("inference.tta", "inference.crf", "inference.pamr") and not isinstance(value, dict):
        return f"{key}.enabled"
    return _RENAMED.get(key, key)


def set_key(
    cfg: Any, key: str, value: Any, labels: Mapping[str, str] | None = None, prefix: str = ""
) -> None:
    """Set a dotted key (``model.image.depth``) on ``cfg`` (a Config, or the section at
    ``prefix``), converting the value; ``validate`` (or ``check``) then checks it."""
    full = _current_key(f"{prefix}.{key}" if prefix else key, value)
    if full is None:
        return
    parts = full.split(".")[len(prefix.split(".")) if prefix else 0 :]
    obj: Any = cfg
    for i, part in enumerate(parts):
        types = _field_types(obj)
        if part not in types:
            where = ".".join([p for p in (prefix, *parts[:i]) if p])
            known = ", ".join(sorted(types))
            section = f"section '{where}'" if where else "the top level"
            raise ConfigError(f"unknown config key '{full}': {section} has {known}")
        if i == len(parts) - 1:
            typ = types[part]
            if dataclasses.is_dataclass(typ):
                if not isinstance(value, dict):
                    raise ConfigError(f"config key '{full}' is a section; expected a mapping")
                for sub, v in value.items():
                    set_key(cfg, f"{key}.{sub}", v, labels, prefix)
            else:
                setattr(obj, part, _coerce(full, value, typ, labels))
        else:
            obj = getattr(obj, part)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise ConfigError(
                f"config key {_short(k)} under '{prefix or 'top level'}' is not a string"
            )
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def check(obj: Any, prefix: str = "", labels: Mapping[str, str] | None = None) -> None:
    """Check every key of ``obj``, the config section at ``prefix`` ("" for a whole Config),
    against the rules written with its field; raise ConfigError naming the first bad value."""
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check(value, key, labels)
            continue
        # NaN passes every comparison, so refuse non-finite numbers before any rule
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ConfigError(f"{_subject(key, value, labels)} is not a finite number")
        for r in f.metadata.get("rules", ()):
            problem = r.error(value)
            if problem:
                raise ConfigError(f"{_subject(key, value, labels)}{problem}")


def validate(cfg: Config, labels: Mapping[str, str] | None = None) -> Config:
    """Check every key (see ``check``), then the rules between keys (``_BETWEEN``)."""
    check(cfg, "", labels)
    flat = to_flat(cfg)
    for rule_ in _BETWEEN:
        values = [flat[k] for k in rule_.keys]
        if not rule_.test(*values):
            raise ConfigError(rule_.message.format(*(_short(v) for v in values)))
    return cfg


def with_inference(
    ic: InferenceConfig, changes: Mapping[str, Any], labels: Mapping[str, str] | None = None
) -> InferenceConfig:
    """A copy of ``ic`` with ``changes`` (keys under ``inference``: ``threshold``,
    ``tta.scales``, ...) applied and checked. ``tta``, ``crf`` and ``pamr`` also take a
    TTAConfig / CRFConfig / PAMRConfig (used as given), a bool (on or off with the configured
    parameters) or None (off).
    """
    out = copy.deepcopy(ic)
    for key, value in changes.items():
        if key in ("tta", "crf", "pamr") and (value is None or dataclasses.is_dataclass(value)):
            setattr(out, key, copy.deepcopy(value) if value is not None else getattr(out, key))
            if value is None:
                getattr(out, key).enabled = False
            continue
        set_key(out, key, value, labels, prefix="inference")
    check(out, "inference", labels)
    return out


def to_flat(cfg: Config) -> dict[str, Any]:
    """The config as a flat dict of dotted keys."""
    return _flatten(dataclasses.asdict(cfg))


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as YAML scalar (so 1e-3, true, 5 work)."""
    if "=" not in text:
        raise ConfigError(f"override {_short(text)} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value is None:
        value = raw
    return key.strip(), value


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what a config never needs and an attacker can abuse.

    Aliases (``*name``) are refused as they are met, before anything is expanded: nine nested
    aliases of nine make 810 bytes that expand to 9^9 keys (the "billion laughs"). A key given
    twice in one mapping is refused too (plain YAML keeps the last silently). ``name`` (the
    file) goes into the messages; see ``parse_yaml``.
    """

    name = "<string>"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"config file '{self.name}' line {event.start_mark.line + 1}: uses the YAML "
                f"alias *{event.anchor[:40]}; aliases are not accepted in config files (write the "
                "value out)"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if duplicate:
                raise ConfigError(
                    f"config file '{self.name}' line {key_node.start_mark.line + 1}: key "
                    f"{_short(key)} is given twice in the same mapping"
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, name: str) -> Any:
    """Parse ``text`` (from file ``name``) with ``ConfigLoader``: no aliases, no duplicate keys.

    Raises:
        ConfigError: an alias or a duplicate key, naming ``name`` and the line.
        yaml.YAMLError: the text is not YAML.
    """
    loader = ConfigLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(e: Exception) -> str:
    """PyYAML's several-line message as one line: the problem and where (line, column)."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if problem is None:
        return " ".join(str(e).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment YAML (a mapping) with a clear error for a missing or bad file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file '{p}' is a folder, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        data = parse_yaml(p.read_text(encoding="utf-8"), str(p))
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file '{p}' is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{p}' is not valid YAML: {yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{p}' must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def build_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Defaults, then the model preset, then the YAML file, then ``key=value`` overrides."""
    file_data = load_yaml(config_file(path)) if path else {}
    flat_file = _flatten(file_data)
    pairs = [parse_override(o) for o in overrides or []]
    # The preset can come from the YAML file or the override list; the last one wins.
    name = "tiny"
    for k, v in [*flat_file.items(), *pairs]:
        if k == "model.preset":
            name = str(v)
    if name not in PRESETS:
        raise ConfigError(
            f"config key 'model.preset' = {_short(name)}: choose one of {', '.join(PRESETS)}"
        )
    cfg = Config()
    cfg.model.preset = name
    for k, v in PRESETS[name].items():
        set_key(cfg, k, v)
    for k, v in flat_file.items():
        set_key(cfg, k, v)
    for k, v in pairs:
        set_key(cfg, k, v)
    return validate(cfg)


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a config saved with a checkpoint (every key must be known)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    cfg = Config()
    for k, v in _flatten(data).items():
        set_key(cfg, k, v)
    return validate(cfg)


def save_yaml(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
