"""The schema: one dataclass per config section, each field with its default and its rules.

The ``inference`` section is in ``schema_inference`` (a Segmenter takes parts of it as objects).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from .presets import preset_names
from .rules import MANY, NAME, SEED_MAX, TEXT, UNIT, WIDTH, OneOf, Range, Test, registry, rule
from .schema_inference import InferenceConfig


@dataclass
class ImageEncoderConfig:
    """timm Vision Transformer (or a hybrid) that turns an image into patch tokens."""

    # "vit" (timm VisionTransformer) or "efficientnet_lite0" (hybrid CNN)
    name: str = rule("vit", OneOf(registry("tseg.models.encoders", "IMAGE_ENCODERS")))
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
    name: str = rule("bert", OneOf(registry("tseg.models.encoders", "TEXT_ENCODERS")))
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

    preset: str = rule("tiny", OneOf(preset_names))
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    embed_dim: int = rule(256, Range(1, WIDTH))  # D, the shared patch-text space (Table 2b)
    # initial temperature (similarities are in [-tau, tau]); within [tau_min, tau_max]
    tau_init: float = rule(10.0, Range(1e-3, 1e6))
    tau_min: float = rule(1.0, Range(1e-3, 1e6))
    tau_max: float = rule(100.0, Range(1e-3, 1e6))
    head: str = rule("mpa", OneOf(registry("tseg.models.pooling", "HEADS")))
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
    # hf (Hugging Face datasets: weak, and evaluation where a mask column exists). The choices
    # are the dataset registry's names (tseg.data.registry), read when first checked.
    dataset: str = rule("shapes", NAME, OneOf(registry("tseg.data.registry", "DATASETS")))
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
    mode: str = rule("weak", OneOf(registry("tseg.train.objectives", "OBJECTIVES")))
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


def section_of(key: str) -> type:
    """The dataclass of the section that holds the dotted config key ``key`` (KeyError: no
    such section)."""
    section: Any = Config
    for part in key.split(".")[:-1]:
        section = typing.get_type_hints(section)[part]
        if not dataclasses.is_dataclass(section):
            raise KeyError(key)
    return section


def field_of(key: str) -> dataclasses.Field[Any]:
    """The dataclass field of the dotted config key ``key``, a value or a section (KeyError:
    no such key)."""
    fields = {f.name: f for f in dataclasses.fields(section_of(key))}
    return fields[key.split(".")[-1]]
