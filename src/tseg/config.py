"""Experiment configuration: dataclasses are the schema.

A run's config is built in three layers, later ones winning: the dataclass defaults (with a
named model preset applied), an experiment YAML holding only what differs, and dotted
``key.sub=value`` overrides from the command line. Unknown keys, wrong types and
out-of-range values are rejected with an error that names the key.

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


@dataclass
class ImageEncoderConfig:
    """timm Vision Transformer (or a hybrid) that turns an image into patch tokens."""

    name: str = "vit"  # "vit" (timm VisionTransformer) or "efficientnet_lite0" (hybrid CNN)
    timm_model: str = "vit_small_patch16_224"  # architecture family passed to timm.create_model
    patch_size: int = 8
    stem: str = "patch"  # "patch" (linear patch projection, as ViT) or "conv" (stride-4 conv stem)
    stem_channels: int = 64
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    drop_path: float = 0.0
    weights: str = ""  # local file with pretrained weights ("" = random init)
    # EfficientNet hybrid with patch_size 8 or 4: width of the feature pyramid below stride 16.
    decoder_dim: int = 128


@dataclass
class TextEncoderConfig:
    """transformers BERT-style encoder; one [CLS] token per expression."""

    name: str = (
        "bert"  # "bert" (from scratch, tokenizer trained on the data) or "minilm" / "pretrained"
    )
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    vocab_size: int = 2000  # for a tokenizer trained on the dataset's expressions
    max_length: int = 32
    pool: str = (
        "cls"  # "cls": the [CLS]/BOS token (paper); "mean": mean over the expression's tokens
    )
    weights: str = ""  # local folder with a pretrained transformers model ("" = random init)


@dataclass
class ModelConfig:
    """The TSEG model: encoders, shared embedding, temperature and pooling head."""

    preset: str = "tiny"
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    embed_dim: int = 256  # D, the shared patch-text space (Table 2b)
    tau_init: float = 10.0  # initial temperature (similarities are in [-tau, tau])
    tau_min: float = 1.0
    tau_max: float = 100.0
    head: str = "mpa"  # gap | gmp | spa | mpa
    size_lambda: float = 0.01  # lambda of the size penalty, eq. 7
    size_p: float = 5.0  # p of the size penalty, eq. 7
    gwp_eps: float = 1e-5  # epsilon of global weighted pooling, eq. 4
    cam_threshold: float = 0.5  # GAP/GMP mask inference: background threshold on the normalised CAM


@dataclass
class DataConfig:
    """Which dataset, at what resolution, with which augmentation."""

    # shapes | refcoco | refcoco+ | refcocog | grefcoco | phrasecut | voc; a user's own data
    # (docs/own_data.md): imagefolder | coco_captions | webdataset (weak) | coco (masks) |
    # hf (Hugging Face datasets: weak, and evaluation where a mask column exists)
    dataset: str = "shapes"
    root: str = ""  # dataset folder (see README: files each dataset expects)
    shards: str = ""  # webdataset: tar shards, e.g. "shards/train-{000000..000099}.tar"
    # webdataset: stream the shards into tseg train (tseg.data.stream, docs/own_data.md), exactly
    # resumable, instead of reading them map-style; weak training only
    stream: bool = False
    image_dir: str = ""  # images, if not in the dataset's default place (relative: to data.root)
    # coco / coco_captions: the COCO JSON file itself (relative: to data.root), whatever its name;
    # its images' file_name is looked up beside it, then in data.image_dir
    annotations: str = ""
    # hf: the text column ("" = the first of expressions, sentences, text, caption) and the mask
    # column ("" = mask, masks or segmentation when it holds images); data.root names the data
    text_column: str = ""
    mask_column: str = ""
    split_by: str = ""  # RefCOCO*: unc | umd | google ("" = the dataset's default)
    # PhraseCut: refuse polygons of fewer than 3 points (false: skip 0-1 point ones and draw
    # 2-point ones as a line, as the official tools score them)
    phrasecut_strict_polygons: bool = True
    train_split: str = "train"  # the split called "train" (VOC: train_aug)
    val_split: str = "val"  # the split called "val"
    image_size: int = 64  # model input (shorter side) and training crop
    # shapes only: side of the rendered images (0 = image_size). Rendered at 96 and fed at 192,
    # the objects reach the size at which ImageNet features recognise shapes, while images,
    # masks and IoU stay at 96 px (README, "Why a 24 x 24 grid").
    render_size: int = 0
    train_size: int = 4000  # shapes only: number of generated training images
    val_size: int = 300
    test_size: int = 500
    train_fraction: float = 1.0  # use this fraction of the training images (Table 2d)
    seed: int = 0  # shapes generation seed
    # shapes: "all" (every true expression, overlapping) | "disjoint" (one per object, no overlap)
    shapes_expressions: str = "all"
    # shapes: absent expressions (empty masks) per image, for no-target evaluation; evaluation
    # splits only: the "train" split never gets them (weak training would take them as present)
    shapes_absent: int = 0
    expressions_per_image: int = 3  # positives sampled per image per step (section 4.2)
    hflip: bool = True  # horizontal flip, swapping "left"/"right" in the text
    scale_min: float = 1.0  # random rescale range before a random crop back to image_size
    scale_max: float = 1.0
    num_workers: int = 0


@dataclass
class TrainConfig:
    """Optimisation; defaults follow section 4.2 of the paper."""

    mode: str = "weak"  # weak (image-level expressions) | full (Dice on masks) | box
    ground_truth: str = "identity"  # identity | tfidf (Table 2c)
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_steps: int = 0
    batch_size: int = 32
    steps: int = 1000
    grad_clip: float = 0.0  # 0 = off
    # Learning-rate multiplier for the text encoder's backbone (its projection keeps the full rate):
    # a pretrained sentence encoder fine-tuned at full rate on a small vocabulary forgets the
    # synonyms it knew; 0 freezes it.
    text_lr_scale: float = 1.0
    # Learning-rate multiplier for the pretrained image backbone (the hybrid's EfficientNet, or
    # the ViT): the layers added on top (transformer, pyramid, projections) learn at the full rate.
    backbone_lr_scale: float = 1.0
    eval_every: int = 0  # 0 = only at the end
    save_every: int = (
        500  # checkpoint (with optimiser and RNG state) every N steps; 0 = only at the end
    )
    log_every: int = 20
    seed: int = 0
    out_dir: str = "runs/default"
    device: str = "auto"  # auto | cpu | cuda
    # torch intra-op threads on the CPU; 0: the cores other processes leave idle, re-measured
    # every few seconds (tseg.threads: a fixed team on a shared CPU ran 20x slower)
    threads: int = 0
    init_from: str = ""  # checkpoint or run folder to start from (e.g. box pretraining); "" = fresh
    # Beyond one process (docs/distributed.md). Effective batch = batch_size x processes x
    # accum_steps; batch_size is per process.
    accum_steps: int = 1  # micro-batches of batch_size whose gradients make one optimiser step
    amp: str = "none"  # none | bf16 (CPU or GPU autocast) | fp16 (CUDA only, with a GradScaler)
    compile: bool = False  # torch.compile the image and text encoders
    # Weak mode under torchrun: "global" scores each image against the expressions of every
    # process's batch (the paper's candidate set for a global batch of 32 split over GPUs);
    # "local" only against its own process's batch.
    ddp_negatives: str = "global"
    tensorboard: bool = False  # also write the log to <run>/tb (needs the [tb] extra)


@dataclass
class EvalConfig:
    """Evaluation protocol (section 4.1)."""

    batch_size: int = 32
    max_images: int = 0  # 0 = all
    # After training, choose inference.threshold on the val split (the best mIoU over
    # tseg.eval.pairs.MASK_THRESHOLDS) and store it with the final checkpoint; off: 0.5, the
    # paper's background score for MPA.
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

    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 1.5, 2.0])
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

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0
    clip: float = 1e-5
    enabled: bool = True

    def __post_init__(self) -> None:
        check(self, "inference.crf")


@dataclass
class InferenceConfig:
    """Inference defaults stored with every checkpoint; each can be overridden per call
    (``Segmenter(..., threshold=0.3)``, ``tseg segment --threshold 0.3``)."""

    threshold: float = 0.5  # foreground threshold on the probability maps
    tta: TTAConfig = field(default_factory=lambda: TTAConfig(enabled=False))
    crf: CRFConfig = field(default_factory=lambda: CRFConfig(enabled=False))
    class_threshold: float = 0.5  # zero-shot: drop classes whose confidence is below this
    max_pixels: int = 100_000_000  # refuse larger images before decoding
    # Presence gate: an expression whose confidence is below this gets an empty mask ("nothing
    # here"); 0 = off. ``tseg eval RUN --choose-presence-threshold`` picks it on val and stores it.
    presence_threshold: float = 0.0
    # fp32 | bf16 (autocast on the encoders) | int8 (dynamically quantized linear layers, CPU
    # only): tseg.inference.precision; speed and agreement with fp32 in benchmarks/precision.py.
    precision: str = "fp32"
    text_precision: str = ""  # the text tower's, when it differs ("": as precision)


@dataclass
class Config:
    """A whole experiment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


#: The experiment files and the demo / benchmark recipes: the repository's ``configs/``, which the
#: package carries as ``tseg/configs`` (a link in the source tree, copied into a wheel).
CONFIGS = Path(__file__).resolve().parent / "configs"


def recipe_path(name: str) -> Path:
    """``configs/<name>.yaml``, e.g. ``recipe_path("demo/offline")``."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no recipe '{name}': '{path}' does not exist")
    return path


def recipe_overrides(name: str) -> list[str]:
    """A recipe as ``key=value`` overrides (for scripts that add or drop some of its keys)."""
    return [f"{k}={v}" for k, v in _flatten(load_yaml(recipe_path(name))).items()]


def recipes(folder: str) -> list[str]:
    """The recipe names under ``configs/<folder>/`` (e.g. the demo's presets)."""
    return sorted(p.stem for p in (CONFIGS / folder).glob("*.yaml"))


def choices(key: str) -> tuple[str, ...]:
    """The values a choice key allows (a registry's names where one defines them)."""
    allowed = _CHOICES[key]
    return allowed() if callable(allowed) else allowed


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

# Range checks: key -> (min, max); None means unbounded on that side.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "model.embed_dim": (1, None),
    "model.tau_init": (1e-3, None),
    "model.tau_min": (1e-3, None),
    "model.size_lambda": (0.0, None),
    "model.size_p": (0.0, None),
    "train.text_lr_scale": (0.0, None),
    "train.backbone_lr_scale": (0.0, None),
    "data.render_size": (0, 4096),
    "model.gwp_eps": (0.0, None),
    "model.cam_threshold": (0.0, 1.0),
    "model.image.patch_size": (1, None),
    "model.image.depth": (1, None),
    "model.image.decoder_dim": (1, None),
    "model.image.drop_path": (0.0, 1.0),
    "model.text.num_layers": (1, None),
    "model.text.max_length": (4, 512),
    "data.image_size": (8, 4096),
    "data.train_size": (1, None),
    "data.val_size": (1, None),
    "data.test_size": (1, None),
    "data.train_fraction": (1e-6, 1.0),
    "data.expressions_per_image": (1, None),
    "data.shapes_absent": (0, None),
    "data.scale_min": (0.1, 10.0),
    "data.scale_max": (0.1, 10.0),
    "data.num_workers": (0, 64),
    "train.threads": (0, 4096),
    "train.lr": (0.0, 10.0),
    "train.batch_size": (1, None),
    "train.steps": (1, None),
    "train.weight_decay": (0.0, 1.0),
    "train.accum_steps": (1, None),
    "train.grad_clip": (0.0, None),
    "eval.batch_size": (1, None),
    "inference.threshold": (0.0, 1.0),
    "inference.class_threshold": (0.0, 1.01),
    "inference.crf.iterations": (0, 1000),
    "inference.max_pixels": (1, None),
    "inference.presence_threshold": (0.0, 1.0),
}
# Checks that are not a range: key -> (test, what the message says).
_TESTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "inference.tta.scales": (
        lambda v: len(v) > 0 and all(x > 0 for x in v),
        "every scale must be positive (and there must be at least one)",
    ),
    "inference.crf.clip": (lambda v: 0.0 < v < 0.5, "must be in (0, 0.5)"),
}


def _registry(module: str, name: str) -> Callable[[], tuple[str, ...]]:
    """The names of a registry dict (e.g. the pooling heads), read when first checked: the
    registries import torch, which a config alone does not need."""

    def names() -> tuple[str, ...]:
        import importlib

        return tuple(getattr(importlib.import_module(module), name))

    return names


# Allowed values: a tuple, or the names of the registry that resolves them.
_CHOICES: dict[str, tuple[str, ...] | Callable[[], tuple[str, ...]]] = {
    "model.head": _registry("tseg.models.pooling", "HEADS"),
    "data.shapes_expressions": ("all", "disjoint"),
    "model.image.name": _registry("tseg.models.encoders", "IMAGE_ENCODERS"),
    "model.image.stem": ("patch", "conv"),
    "model.text.pool": ("cls", "mean"),
    "model.text.name": _registry("tseg.models.encoders", "TEXT_ENCODERS"),
    "train.mode": _registry("tseg.train.objectives", "OBJECTIVES"),
    "train.ground_truth": ("identity", "tfidf"),
    "train.optimizer": ("sgd", "adamw"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.amp": ("none", "bf16", "fp16"),
    "inference.precision": ("fp32", "bf16", "int8"),
    "inference.text_precision": ("", "fp32", "bf16", "int8"),
    "train.ddp_negatives": ("global", "local"),
}


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
    if key in ("inference.tta", "inference.crf") and not isinstance(value, dict):
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
    """Check the ranges, tests and choices of every key of ``obj``, the config section at
    ``prefix`` ("" for a whole Config); raise ConfigError naming the first bad value. Each
    value's rule is written once, in the tables above."""
    flat = _flatten(dataclasses.asdict(obj), prefix)

    def mine(table: Mapping[str, Any]) -> list[str]:
        return [k for k in table if k in flat]

    for key, v in flat.items():  # NaN passes every comparison below, so refuse it first
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{_subject(key, v, labels)} is not a finite number")
    for key in mine(_RANGES):
        lo, hi = _RANGES[key]
        v = flat[key]
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ConfigError(f"{_subject(key, v, labels)} is out of range {rng}")
    for key in mine(_TESTS):
        test, what = _TESTS[key]
        if not test(flat[key]):
            raise ConfigError(f"{_subject(key, flat[key], labels)}: {what}")
    for key in mine(_CHOICES):
        allowed = choices(key)
        if flat[key] not in allowed:
            raise ConfigError(
                f"{_subject(key, flat[key], labels)}: choose one of {', '.join(allowed)}"
            )


def validate(cfg: Config, labels: Mapping[str, str] | None = None) -> Config:
    """Check every key (see ``check``) and the rules between keys."""
    check(cfg, "", labels)
    flat = to_flat(cfg)
    if flat["data.scale_min"] > flat["data.scale_max"]:
        raise ConfigError("config keys 'data.scale_min' > 'data.scale_max'")
    if flat["model.tau_min"] > flat["model.tau_max"]:
        raise ConfigError("config keys 'model.tau_min' > 'model.tau_max'")
    if flat["data.stream"] and flat["data.dataset"] != "webdataset":
        raise ConfigError(
            f"config key 'data.stream' streams WebDataset shards, but data.dataset = "
            f"{_short(flat['data.dataset'])}; set data.dataset=webdataset data.shards=..."
        )
    if flat["data.stream"] and flat["train.mode"] != "weak":
        raise ConfigError(
            f"config key 'data.stream' trains on image-level text only (train.mode=weak), but "
            f"train.mode = {_short(flat['train.mode'])}: shards hold no masks or boxes"
        )
    if (
        flat["model.image.name"] == "vit"
        and flat["data.image_size"] % flat["model.image.patch_size"]
    ):
        raise ConfigError(
            f"config key 'data.image_size' = {flat['data.image_size']} must be a multiple of "
            f"'model.image.patch_size' = {flat['model.image.patch_size']}"
        )
    return cfg


def with_inference(
    ic: InferenceConfig, changes: Mapping[str, Any], labels: Mapping[str, str] | None = None
) -> InferenceConfig:
    """A copy of ``ic`` with ``changes`` (keys under ``inference``: ``threshold``,
    ``tta.scales``, ...) applied and checked. ``tta`` and ``crf`` also take a TTAConfig /
    CRFConfig (used as given), a bool (on or off with the configured parameters) or None (off).
    """
    out = copy.deepcopy(ic)
    for key, value in changes.items():
        if key in ("tta", "crf") and (value is None or dataclasses.is_dataclass(value)):
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


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment YAML (a mapping) with a clear error for a missing or bad file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        data = parse_yaml(p.read_text(encoding="utf-8"), str(p))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file '{p}' is not valid YAML: {e}") from None
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
    preset: str | None = None,
) -> Config:
    """Defaults, then the model preset, then the YAML file, then ``key=value`` overrides."""
    file_data = load_yaml(path) if path else {}
    flat_file = _flatten(file_data)
    pairs = [parse_override(o) for o in overrides or []]
    # The preset can come from the CLI, the YAML file or the override list; last one wins.
    name = preset or "tiny"
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
