"""What a training run is made of: the model, the optimiser and its schedule, the batches, and
``build_run``, which puts them together (resumed from a checkpoint when asked) for
``train_step``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .. import distributed
from ..checkpoint import WEIGHTS, model_from_checkpoint, read_meta, resolve
from ..config import Config, TrainConfig
from ..data import RefDataset, build_dataset
from ..data.pipeline import EpochSampler, TrainSet, WeakCollate
from ..data.stream import (
    ShardSource,
    ShardStream,
    StreamBatches,
    StreamLoader,
    StreamPosition,
    WeakTransform,
    stream_source,
)
from ..errors import TrainingError
from ..models.text_encoder import train_tokenizer, wrap_tokenizer
from ..models.tseg import TSEG
from . import state
from .objectives import OBJECTIVES, TrainObjective


def tokenizer_corpus(ds: RefDataset, limit: int = 20000) -> list[str]:
    """Text to train the from-scratch WordPiece vocabulary on: the training expressions."""
    vocab = getattr(ds, "vocabulary", None)
    if callable(vocab):  # shapes knows its whole vocabulary without rendering images
        return [" ".join(vocab())]
    texts: list[str] = []
    for i in range(min(len(ds), limit)):
        texts.extend(ds.expressions(i))
    return texts


def build_model(cfg: Config, train_ds: RefDataset) -> TSEG:
    """A fresh model; the from-scratch text encoder gets a vocabulary trained on the data."""
    tokenizer = None
    if cfg.model.text.name == "bert":
        if distributed.world_size() == 1:
            tokenizer = train_tokenizer(tokenizer_corpus(train_ds), cfg.model.text.vocab_size)
        else:
            # Rank 0 trains the vocabulary and sends it to the others, so a token id (a row of
            # the embedding table) names the same word piece in every process.
            spec = None
            if distributed.is_main():
                trained = train_tokenizer(tokenizer_corpus(train_ds), cfg.model.text.vocab_size)
                spec = trained.backend_tokenizer.to_str()
            tokenizer = wrap_tokenizer(Tokenizer.from_str(distributed.broadcast_object(spec)))
    return TSEG(cfg.model, cfg.data.image_size, tokenizer)


def init_model_from(cfg: Config, path: str | Path) -> TSEG:
    """A model of ``cfg``'s architecture with the weights and tokenizer of a checkpoint.

    For continuing training from a pretraining run (e.g. box pretraining, Table 2e). The
    checkpoint's tokenizer is kept, since its vocabulary indexes the text embeddings; a tensor
    that is missing or of another shape raises a CheckpointError naming it.
    """
    ckpt = resolve(path)
    read_meta(ckpt)
    return model_from_checkpoint(cfg, ckpt, f"train.init_from: {ckpt / WEIGHTS}")


# Parameters of the image encoders' pretrained part (EfficientNetHybrid.backbone, ViTEncoder.vit).
IMAGE_BACKBONE_PREFIXES = ("image_encoder.backbone.", "image_encoder.vit.")


def build_optimizer(model: TSEG, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (weak mode, section 4.2) or AdamW (full mode); no weight decay on norms, biases, tau.

    Each group carries ``lr_scale``; ``train_step`` sets ``lr = poly_lr * lr_scale``. The text
    encoder's backbone gets ``cfg.text_lr_scale`` (0 = frozen, left out of the optimiser), the
    pretrained image backbone ``cfg.backbone_lr_scale`` (0 = frozen too: no gradient flows into
    it, which also spares the backward pass through it; its BatchNorm statistics are fixed
    already, so this computes what a zero learning rate would).
    """
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    if cfg.text_lr_scale == 0.0:
        model.freeze_text_encoder()
    if cfg.backbone_lr_scale == 0.0:
        for name, p in model.named_parameters():
            if name.startswith(IMAGE_BACKBONE_PREFIXES):
                p.requires_grad_(False)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = cfg.text_lr_scale if name.startswith("text_encoder.") else 1.0
        if name.startswith(IMAGE_BACKBONE_PREFIXES):
            scale = cfg.backbone_lr_scale
        no_decay = p.ndim <= 1 or name.endswith("log_tau")
        groups.setdefault((no_decay, scale), []).append(p)
    param_groups = [
        {
            "params": ps,
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            "lr_scale": scale,
        }
        for (no_decay, scale), ps in sorted(groups.items())
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(param_groups, lr=cfg.lr)


def poly_lr(step: int, cfg: TrainConfig) -> float:
    """Poly decay gamma0 (1 - n/N)^0.9 (DeepLab, section 4.2), after an optional linear warm-up."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (1.0 - step / cfg.steps) ** cfg.poly_power


def make_loader(
    cfg: Config, ds: RefDataset, seed: int, rank: int = 0, world_size: int = 1
) -> tuple[DataLoader, TrainSet, EpochSampler]:
    """The training batches of process ``rank`` of ``world_size`` (see ``EpochSampler``), as
    the objective of ``train.mode`` needs them."""
    objective = OBJECTIVES[cfg.train.mode]
    bs = cfg.train.batch_size
    tset = TrainSet(
        ds,
        cfg.data,
        seed=seed,
        with_masks=objective.reads == "masks",
        with_boxes=objective.reads == "boxes",
    )
    if world_size > 1 and len(tset) < bs * world_size:
        raise TrainingError(
            f"the training set has {len(tset)} images, fewer than one global batch: "
            f"train.batch_size {bs} x {world_size} processes = {bs * world_size}"
        )
    sampler = EpochSampler(len(tset), seed, rank, world_size, bs)
    loader = DataLoader(
        tset,
        batch_size=bs,
        sampler=sampler,
        collate_fn=objective.collate(cfg, ds, len(tset), world_size),
        num_workers=cfg.data.num_workers,
        drop_last=len(tset) >= bs,
        persistent_workers=False,
        # Its own generator: otherwise each new iterator draws a base seed from torch's global
        # RNG, and a run resumed mid-epoch would see different dropout than one never stopped.
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, tset, sampler


def make_stream(
    cfg: Config,
    texts: ShardSource,
    rank: int = 0,
    world_size: int = 1,
    position: dict[str, Any] | None = None,
) -> StreamBatches:
    """The weak training batches of process ``rank`` of ``world_size`` streamed from the shards
    of ``texts`` (``data.stream=true``: ``data.shards``, or an hf dataset's; docs/own_data.md
    says who reads which shard).

    Batches are what ``make_loader``'s collate makes for ``train.mode=weak`` (``WeakCollate``,
    keeping each image's expressions for global negatives under DDP). ``position`` (a
    ``StreamPosition.state_dict()`` from this process's checkpoint) continues a run exactly;
    it needs the same shards, seed, batch size, processes and ``data.num_workers``.
    """
    if cfg.data.train_fraction != 1.0:
        raise TrainingError(
            "config key 'data.train_fraction' takes a prefix of a map-style training set; a "
            "stream reads whole shards: name fewer shards in data.shards instead"
        )
    objective = OBJECTIVES[cfg.train.mode]  # weak: the config refuses the others
    n = len(texts) if cfg.train.ground_truth == "tfidf" else 0  # tf-idf alone reads the corpus
    workers = cfg.data.num_workers
    stream = ShardStream(
        texts,
        WeakTransform(cfg.data),
        objective.collate(cfg, texts, n, world_size),
        cfg.train.batch_size,
        seed=cfg.train.seed,
        rank=rank,
        world_size=world_size,
        slots=max(1, workers),
    )
    start = StreamPosition.from_state_dict(position) if position is not None else None
    return StreamBatches(StreamLoader(stream, workers, start))


def batches(
    loader: DataLoader, tset: TrainSet, sampler: EpochSampler, start_epoch: int, skip: int = 0
) -> Iterator[tuple[int, dict]]:
    """Endless (epoch, batch) stream; each epoch re-seeds the order and the augmentation.

    ``skip`` batches (of this process) of the first epoch are left out, so a resumed run sees
    exactly the batches the uninterrupted run would have seen.
    """
    epoch = start_epoch
    bs = loader.batch_size or 1
    while True:
        tset.set_epoch(epoch)
        # Each process's batch is a slice of a global batch of bs x world_size indices.
        sampler.set_epoch(epoch, start=skip * bs * sampler.world_size)
        skip = 0
        for batch in loader:
            yield epoch, batch
        epoch += 1


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """train.amp -> the autocast dtype (None = full precision), refusing what cannot work."""
    if amp == "none":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise TrainingError(
            f"config key 'train.amp' = 'fp16' needs a CUDA device (its gradient scaler is "
            f"CUDA-only), but training runs on '{device}'; use train.amp=bf16 on the CPU"
        )
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainingError(
            "config key 'train.amp' = 'bf16' but this GPU has no bfloat16; use train.amp=fp16"
        )
    return torch.bfloat16 if amp == "bf16" else torch.float16


@dataclass
class Run:
    """Everything ``train_step`` needs, made by ``build_run``."""

    cfg: Config
    model: TSEG  # in training mode
    net: nn.Module  # the objective (TrainObjective), under DDP wrapped by it
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16's loss scaling; a no-op otherwise
    stream: Iterator[tuple[int, dict]]  # (epoch, batch) from step ``start`` on
    device: torch.device
    autocast: Callable[[], AbstractContextManager[Any]]
    collate: WeakCollate | None  # global negatives: redoes each weak batch's targets
    start: int = 0  # the first step (after a resume)
    run_dir: Path | None = None  # where checkpoints go (named in errors)

    def data_state(self) -> dict[str, Any] | None:
        """Where a streamed run's batches stand (``data.stream``), for the checkpoint; None for
        map-style batches, whose position follows from the step."""
        state_dict = getattr(self.stream, "state_dict", None)
        return state_dict() if callable(state_dict) else None


def build_run(
    cfg: Config, device: torch.device, run_dir: Path | None = None, resume: bool = False
) -> Run:
    """Seed, build the model (fresh, from ``train.init_from``, or the run's latest checkpoint
    with ``resume``), the optimiser and the batches, restore the optimiser and RNG state when
    resuming, and wrap the objective in DDP under torchrun.

    A resumed run whose checkpoint is at ``train.steps`` gets ``start == train.steps`` (nothing
    left to train); one beyond it is a TrainingError."""
    tc = cfg.train
    rank, world = distributed.rank(), distributed.world_size()
    dtype = amp_dtype(tc.amp, device)
    torch.manual_seed(tc.seed)
    if cfg.data.stream:  # the shards' text (for the vocabulary); the batches stream below
        train_ds: Any = stream_source(cfg.data, "train")
    else:
        train_ds = build_dataset(cfg.data, "train")
    if tc.mode == "pseudo":  # the student: pseudo masks in place of the dataset's own
        from ..selftrain.store import PseudoMaskDataset

        train_ds = PseudoMaskDataset(train_ds, cfg.data, "train")
    if resume:
        # The resumed model is rebuilt with the checkpoint's own tokenizer, then fully loaded.
        model = init_model_from(cfg, resolve(run_dir))
    elif tc.init_from:  # continue from a checkpoint (e.g. box pretraining, Table 2e)
        model = init_model_from(cfg, tc.init_from)
    else:
        model = build_model(cfg, train_ds)
    model = model.to(device)
    opt = build_optimizer(model, tc)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    if not cfg.data.stream:
        loader, tset, sampler = make_loader(cfg, train_ds, tc.seed, rank, world)
    if world > 1:
        # Equal initial weights everywhere (DDP also broadcasts rank 0's), then one random
        # stream per process: otherwise every rank would draw the same dropout masks.
        torch.manual_seed(tc.seed + rank)
    start = state.resume(run_dir, opt, scaler, cfg) if resume else 0
    # start == train.steps: training ended but its final evaluation did not (the run was killed
    # before metrics.json); ``train`` runs only that.
    if start > tc.steps:
        raise TrainingError(
            f"'{run_dir}' is already at step {start}, beyond train.steps = {tc.steps}"
        )
    if tc.compile:  # in place, so state_dict keys (and checkpoints) stay unchanged
        model.image_encoder.compile()
        model.text_encoder.compile()
    net: nn.Module = TrainObjective(model, tc.mode, tc)
    if world > 1:
        net = DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.data.stream:  # from the checkpoint's stream position: exactly where it stopped
        streamed = make_stream(
            cfg, train_ds, rank, world, state.stream_position(run_dir) if resume else None
        )
        stream: Iterator[tuple[int, dict]] = streamed
        collate_fn = streamed.loader.stream.collate
    else:
        per_epoch = max(1, len(loader))  # micro-batches per epoch and process
        micro = start * tc.accum_steps  # micro-batches already consumed
        stream = batches(loader, tset, sampler, micro // per_epoch, skip=micro % per_epoch)
        collate_fn = loader.collate_fn
    # Global negatives: each weak batch's targets are redone over every process's texts.
    collate = collate_fn if getattr(collate_fn, "keep_own", False) else None
    autocast = (
        partial(torch.autocast, device.type, dtype=dtype) if dtype is not None else nullcontext
    )
    model.train()
    return Run(cfg, model, net, opt, scaler, stream, device, autocast, collate, start, run_dir)
