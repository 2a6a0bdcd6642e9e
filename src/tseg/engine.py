"""Training and evaluation loops: plain functions, the device passed in, no globals."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .checkpoint import save_checkpoint
from .config import Config, TrainConfig, save_yaml
from .data import RefDataset, build_dataset, normalize_expression
from .data.pipeline import (
    BoxCollate,
    EpochSampler,
    TfidfSimilarity,
    TrainSet,
    WeakCollate,
    box_patch_targets,
    collate_full,
)
from .data.transforms import eval_size, resize, to_tensor
from .distributed import Shard, pick_device
from .errors import TrainingError, TrainingInterrupted
from .losses import box_loss, dice_loss, soft_margin_loss
from .metrics import SegmentationMeter, iou_counts, roc_auc
from .models.text_encoder import train_tokenizer, wrap_tokenizer
from .models.tseg import TSEG

if TYPE_CHECKING:
    from .crf import CRFConfig
    from .tta import TTAConfig


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
    from .checkpoint import WEIGHTS, model_from_checkpoint, read_meta, resolve

    ckpt = resolve(path)
    read_meta(ckpt)
    return model_from_checkpoint(cfg, ckpt, f"train.init_from: {ckpt / WEIGHTS}")


def build_optimizer(model: TSEG, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (weak mode, section 4.2) or AdamW (full mode); no weight decay on norms, biases, tau.

    Each group carries ``lr_scale``; the training loop sets ``lr = schedule * lr_scale``. The text
    encoder's backbone gets ``cfg.text_lr_scale`` (0 = frozen, left out of the optimiser).
    """
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    if cfg.text_lr_scale == 0.0:
        model.freeze_text_encoder()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = cfg.text_lr_scale if name.startswith("text_encoder.") else 1.0
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


def step_loss(
    model: TSEG, batch: dict[str, Any], mode: str, device: torch.device
) -> dict[str, Tensor]:
    """One batch through the model: {"loss": scalar, ...}.

    Losses are computed in float32 whatever autocast left the scores in.
    """
    images = batch["images"].to(device, non_blocking=True)
    if mode == "weak":
        if "gather_index" in batch:  # global negatives (see with_global_negatives)
            img = model.encode_image(images)
            y = model.encode_text(batch["texts"])  # [L_rank, D], this process's texts
            y = distributed.gather_rows(y, batch["gather_width"], batch["gather_index"])  # [L, D]
            scores = model.pool(model.similarity(img["x"], y))["scores"]  # [B, L]
        else:
            scores = model(images, batch["texts"])["scores"]  # [B, L]
        return {"loss": soft_margin_loss(scores.float(), batch["targets"].to(device))}
    if mode == "full":
        img = model.encode_image(images)
        y = model.encode_text(batch["texts"])
        s = model.similarity(img["x"], y)  # [B, N, L]
        pairs = batch["pairs"].to(device)
        h, w = img["grid"]
        s_pairs = s[pairs[:, 0], :, pairs[:, 1]].view(-1, 1, h, w)  # [P, 1, h, w]
        size = batch["masks"].shape[-2:]
        logits = F.interpolate(s_pairs.float(), size=size, mode="bilinear", align_corners=False)[
            :, 0
        ]  # [P, H, W]
        return {"loss": dice_loss(logits, batch["masks"].to(device))}
    if mode == "box":
        img = model.encode_image(images)
        y = model.encode_text(batch["texts"])
        s = model.similarity(img["x"], y)  # [B, N, L]
        pairs = batch["pairs"].to(device)
        s_pairs = s[pairs[:, 0], :, pairs[:, 1]]  # [P, N], patches in row-major grid order
        grid = tuple(img["grid"])
        targets = batch["box_masks"]
        if tuple(targets.shape[-2:]) != grid:  # the encoder's grid is not size / patch_size
            patch = images.shape[-2] / grid[0]
            targets = box_patch_targets(batch["boxes"], grid, patch)
        return {"loss": box_loss(s_pairs.float(), targets.flatten(1).to(device))}
    raise TrainingError(f"train.mode {mode!r} is not supported by this loop")


def with_global_negatives(batch: dict[str, Any], collate: WeakCollate) -> dict[str, Any]:
    """A weak batch scored against the expressions of every process's batch (global negatives).

    The candidates become the union of all ranks' texts, deduplicated in rank order: the L texts
    one process holding the whole global batch would have. Targets are recomputed over them from
    each image's annotated expressions, since an image's positive may sit in another rank's batch.
    """
    texts, width, index = distributed.union_in_rank_order(batch["texts"])
    return {
        **batch,
        "targets": collate.targets(batch["own"], texts),  # [B, L]
        "gather_width": width,
        "gather_index": index,
    }


class TrainObjective(nn.Module):
    """The training loss as a module, ``forward(batch, device) -> {"loss": ...}``.

    DistributedDataParallel synchronises the gradients of what runs inside its wrapped module's
    forward, and the loss calls several TSEG methods, so the whole objective is that module.
    """

    def __init__(self, model: TSEG, mode: str) -> None:
        super().__init__()
        self.model = model
        self.mode = mode

    def forward(self, batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
        return step_loss(self.model, batch, self.mode, device)


def make_loader(
    cfg: Config, ds: RefDataset, seed: int, rank: int = 0, world_size: int = 1
) -> tuple[DataLoader, TrainSet, EpochSampler]:
    """The training batches of process ``rank`` of ``world_size`` (see ``EpochSampler``)."""
    mode = cfg.train.mode
    bs = cfg.train.batch_size
    tset = TrainSet(ds, cfg.data, seed=seed, with_masks=mode == "full", with_boxes=mode == "box")
    if world_size > 1 and len(tset) < bs * world_size:
        raise TrainingError(
            f"the training set has {len(tset)} images, fewer than one global batch: "
            f"train.batch_size {bs} x {world_size} processes = {bs * world_size}"
        )
    collate: Callable
    if mode == "full":
        collate = collate_full
    elif mode == "box":
        collate = BoxCollate(cfg.model.image.patch_size)
    else:
        tfidf = None
        if cfg.train.ground_truth == "tfidf":
            tfidf = TfidfSimilarity(tokenizer_texts_for_tfidf(ds, len(tset)))
        # Global negatives recompute targets over all ranks' texts, from each image's expressions.
        keep_own = world_size > 1 and cfg.train.ddp_negatives == "global"
        collate = WeakCollate(tfidf, keep_own=keep_own)
    sampler = EpochSampler(len(tset), seed, rank, world_size, bs)
    loader = DataLoader(
        tset,
        batch_size=bs,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        drop_last=len(tset) >= bs,
        persistent_workers=False,
        # Its own generator: otherwise each new iterator draws a base seed from torch's global
        # RNG, and a run resumed mid-epoch would see different dropout than one never stopped.
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, tset, sampler


def tokenizer_texts_for_tfidf(ds: RefDataset, n: int, limit: int = 2000) -> list[str]:
    texts: list[str] = []
    for i in range(min(n, limit)):
        texts.extend(ds.expressions(i))
    return texts


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


def _layout(cfg: Config) -> dict[str, int]:
    """What a checkpoint's data position means: optimiser steps of this many samples."""
    tc = cfg.train
    return {
        "world_size": distributed.world_size(),
        "batch_size": tc.batch_size,
        "accum_steps": tc.accum_steps,
    }


def _save(
    model: TSEG,
    cfg: Config,
    run_dir: Path,
    step: int,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Every process calls this (each one's RNG state is saved); rank 0 writes the checkpoint."""
    from .resume import rng_state, training_state

    states = distributed.all_gather_object(rng_state())
    if not distributed.is_main():
        return run_dir / f"ckpt-{step:07d}"
    tensors, meta = training_state(opt, states, scaler)
    meta["layout"] = _layout(cfg)
    return save_checkpoint(model, cfg, run_dir, step, extra=tensors, meta={"train_state": meta})


def _resume(
    run_dir: Path,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    cfg: Config | None = None,
) -> int:
    """Load optimiser, loss-scaler and this rank's RNG state from the run's latest checkpoint (the
    model already holds its weights, see ``init_model_from``); returns the checkpoint's step."""
    from safetensors.torch import load_file

    from .checkpoint import CheckpointError, read_meta, resolve
    from .resume import restore_training_state

    ckpt = resolve(run_dir)
    meta = read_meta(ckpt)
    state_file = ckpt / "train_state.safetensors"
    if "train_state" not in meta or not state_file.is_file():
        raise CheckpointError(f"checkpoint '{ckpt}' has no training state to resume from")
    train_state = meta["train_state"]
    restore_training_state(opt, load_file(str(state_file)), train_state, distributed.rank(), scaler)
    if cfg is not None and distributed.is_main():
        now = _layout(cfg)
        saved = {"world_size": 1, "accum_steps": 1, "batch_size": cfg.train.batch_size}
        saved.update(train_state.get("layout", {}))
        if saved != now:
            warnings.warn(
                f"resuming '{ckpt}', saved with {saved}, as {now}: weights, optimiser and "
                "learning-rate schedule continue, but the data order and random state are not "
                "an exact continuation",
                stacklevel=3,
            )
    return int(meta["step"])


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
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


def _summary_writer_class() -> Any:
    """torch.utils.tensorboard's SummaryWriter, or a TrainingError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError(
            "config key 'train.tensorboard' = true needs the tensorboard package: "
            "pip install 'tseg[tb]' (or set train.tensorboard=false)"
        ) from None
    return SummaryWriter


class _RunLog:
    """Rank 0's metrics: JSON lines in <run>/log.jsonl and, optionally, TensorBoard scalars."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.file = (run_dir / "log.jsonl").open("a", encoding="utf-8")
        self.tb = _summary_writer_class()(str(run_dir / "tb")) if tensorboard else None

    def write(self, rec: dict[str, Any]) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is None or "step" not in rec:
            return
        for key, value in rec.items():
            if key in ("step", "event"):
                continue
            if isinstance(value, dict):  # {"val": {"miou": ...}} -> val/miou
                for k, v in value.items():
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        self.tb.add_scalar(f"{key}/{k}", v, rec["step"])
            elif isinstance(value, (int, float)):
                self.tb.add_scalar(f"train/{key}", value, rec["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def train(
    cfg: Config,
    run_dir: str | Path | None = None,
    progress: bool = True,
    evaluate_splits: tuple[str, ...] = ("val",),
    resume: bool = False,
) -> dict[str, Any]:
    """Train a model as ``cfg`` says; checkpoints and metrics go to ``run_dir`` (cfg.train.out_dir).

    A checkpoint (weights, optimiser and RNG state) is written every ``train.save_every`` steps
    and when SIGINT or SIGTERM arrives; ``resume=True`` continues from the run's latest one
    exactly: same weights, optimiser, learning-rate schedule, data order and random state.

    Launched by torchrun (WORLD_SIZE > 1), every process runs this: it joins the process group,
    trains its shard of each global batch under DistributedDataParallel, and rank 0 alone logs,
    shows progress and writes checkpoints (docs/distributed.md). Evaluation is sharded over the
    processes; every rank returns the same metrics.
    """
    tc = cfg.train
    run_dir = Path(run_dir or tc.out_dir)
    if resume and not (run_dir / "latest").is_file():
        from .checkpoint import CheckpointError

        raise CheckpointError(
            f"nothing to resume: '{run_dir}' holds no checkpoint ('latest' is missing)"
        )
    if tc.tensorboard:
        _summary_writer_class()  # fail before training, not at the first log line
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = pick_device(tc.device, distributed.local_rank())
    amp_dtype = _amp_dtype(tc.amp, device)
    created = distributed.init(device)
    try:
        return _train(cfg, run_dir, device, amp_dtype, progress, evaluate_splits, resume)
    finally:
        distributed.cleanup(created)


def _train(
    cfg: Config,
    run_dir: Path,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    progress: bool,
    evaluate_splits: tuple[str, ...],
    resume: bool,
) -> dict[str, Any]:
    tc = cfg.train
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml")
    torch.manual_seed(tc.seed)
    train_ds = build_dataset(cfg.data, "train")
    if resume:
        from .checkpoint import resolve

        # The resumed model is rebuilt with the checkpoint's own tokenizer, then fully loaded.
        model = init_model_from(cfg, resolve(run_dir))
    elif tc.init_from:  # continue from a checkpoint (e.g. box pretraining, Table 2e)
        model = init_model_from(cfg, tc.init_from)
    else:
        model = build_model(cfg, train_ds)
    model = model.to(device)
    opt = build_optimizer(model, tc)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loader, tset, sampler = make_loader(cfg, train_ds, tc.seed, rank, world)
    if world > 1:
        # Equal initial weights everywhere (DDP also broadcasts rank 0's), then one random
        # stream per process: otherwise every rank would draw the same dropout masks.
        torch.manual_seed(tc.seed + rank)
    start = _resume(run_dir, opt, scaler, cfg) if resume else 0
    if start >= tc.steps:
        raise TrainingError(f"'{run_dir}' is already at step {start} of train.steps = {tc.steps}")
    if tc.compile:  # in place, so state_dict keys (and checkpoints) stay unchanged
        model.image_encoder.compile()
        model.text_encoder.compile()
    net: nn.Module = TrainObjective(model, tc.mode)
    if world > 1:
        net = DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    # Global negatives: each weak batch's targets are redone over every process's texts.
    collate = loader.collate_fn if getattr(loader.collate_fn, "keep_own", False) else None
    accum = tc.accum_steps
    per_epoch = max(1, len(loader))  # micro-batches per epoch and process
    micro = start * accum  # micro-batches already consumed
    stream = batches(loader, tset, sampler, micro // per_epoch, skip=micro % per_epoch)
    history: list[dict[str, Any]] = []
    log = _RunLog(run_dir, tc.tensorboard) if main else None
    if log is not None:
        log.write(
            {
                "event": "start",
                "from_step": start,
                "world_size": world,
                "batch_per_process": tc.batch_size,
                "accum_steps": accum,
                "effective_batch": tc.batch_size * world * accum,
                "amp": tc.amp,
                "device": str(device),
            }
        )
    t0 = time.time()
    model.train()
    stop: dict[str, int] = {}
    old_handlers = _install_signal_handlers(stop)
    bar = tqdm(
        range(start, tc.steps),
        initial=start,
        total=tc.steps,
        desc=f"train {cfg.model.head}/{tc.mode}",
        disable=not (progress and main),
        dynamic_ncols=True,
    )
    autocast = (
        partial(torch.autocast, device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else nullcontext
    )
    seen = 0  # images this process has trained on
    try:
        for step in bar:
            lr = poly_lr(step, tc)
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            opt.zero_grad(set_to_none=True)
            loss, epoch, images = _accumulate(net, stream, accum, collate, autocast, scaler, device)
            seen += images
            # All processes must agree to stop (a signal, a non-finite loss on any of them),
            # or the others would wait forever in their next collective.
            flags = torch.stack([~torch.isfinite(loss), torch.tensor(bool(stop), device=device)])
            flags = distributed.all_reduce(flags.float(), "max")
            if flags[0]:
                where = f" on one of {world} processes (rank {rank}: {loss.item()})"
                raise TrainingError(
                    f"non-finite loss{where if world > 1 else f' ({loss.item()})'} at step "
                    f"{step}; the last checkpoint in '{run_dir}' is kept"
                )
            grad_norm = None
            if tc.grad_clip > 0:
                scaler.unscale_(opt)  # clip the true gradients, not the fp16-scaled ones
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            scaler.step(opt)
            scaler.update()
            if flags[1]:
                _restore_signal_handlers(old_handlers)
                ckpt = _save(model, cfg, run_dir, step + 1, opt, scaler)
                raise TrainingInterrupted(
                    f"stopped by signal {stop.get('signal', 'on another process')} after step "
                    f"{step + 1}; saved '{ckpt}'. "
                    f"Continue with: tseg train ... --resume (train.out_dir={run_dir})"
                )
            if step % tc.log_every == 0 or step == tc.steps - 1:
                mean_loss = distributed.all_reduce(loss.clone(), "mean").item()
                elapsed = time.time() - t0
                if log is not None:
                    rec = {
                        "step": step,
                        "epoch": epoch,
                        "loss": round(mean_loss, 5),
                        "lr": lr,
                        "tau": round(model.tau.item(), 4),
                        "images_per_s": round(seen * world / elapsed, 2),
                        "images": seen * world,
                        "time_s": round(elapsed, 3),
                    }
                    if grad_norm is not None:
                        rec["grad_norm"] = round(grad_norm.item(), 5)
                    if scaler.is_enabled():
                        rec["loss_scale"] = scaler.get_scale()
                    log.write(rec)
                bar.set_postfix(loss=f"{mean_loss:.4f}", tau=f"{model.tau.item():.1f}")
            if tc.eval_every and (step + 1) % tc.eval_every == 0 and step + 1 < tc.steps:
                m = _evaluate_split(model, cfg, "val", device)
                history.append({"step": step + 1, **m})
                if log is not None:
                    log.write({"step": step + 1, "val": m})
                _save(model, cfg, run_dir, step + 1, opt, scaler)
                model.train()
            elif tc.save_every and (step + 1) % tc.save_every == 0 and step + 1 < tc.steps:
                _save(model, cfg, run_dir, step + 1, opt, scaler)
        _restore_signal_handlers(old_handlers)
        train_time = time.time() - t0
        ckpt = _save(model, cfg, run_dir, tc.steps, opt, scaler)
        results: dict[str, Any] = {
            "train_time_s": round(train_time, 1),
            "steps": tc.steps,
            "checkpoint": str(ckpt),
        }
        if tc.init_from:
            results["init_from"] = str(tc.init_from)
        for split in evaluate_splits:
            results[split] = _evaluate_split(model, cfg, split, device)
        results["history"] = history
        if main:
            (run_dir / "metrics.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        distributed.barrier()  # every process returns once the checkpoint and metrics exist
        return results
    finally:
        _restore_signal_handlers(old_handlers)
        if log is not None:
            log.close()


def _accumulate(
    net: nn.Module,
    stream: Iterator[tuple[int, dict]],
    accum: int,
    collate: WeakCollate | None,
    autocast: Callable,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> tuple[Tensor, int, int]:
    """Forward and backward ``accum`` micro-batches -> (mean loss, epoch, images).

    Each loss is divided by ``accum``, so the summed gradients are those of the mean; under DDP
    they are averaged over processes once, in the backward pass of the last micro-batch.
    ``collate`` (a WeakCollate keeping each image's expressions) turns on global negatives.
    """
    loss_sum = torch.zeros((), device=device)
    epoch, images = 0, 0
    for m in range(accum):
        epoch, batch = next(stream)
        if collate is not None:
            batch = with_global_negatives(batch, collate)
        last = m == accum - 1
        with nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync():
            with autocast():
                loss = net(batch, device)["loss"].float()
            scaler.scale(loss / accum).backward()
        loss_sum += loss.detach()
        images += batch["images"].shape[0]
    return loss_sum / accum, epoch, images


def _evaluate_split(model: TSEG, cfg: Config, split: str, device: torch.device) -> dict[str, Any]:
    """``evaluate`` on a split, sharded over the processes (each gets every image's metrics).

    Weak data (images with text only) has no masks to score: the split is skipped, saying so.
    """
    from .data import WEAK_DATASETS

    if cfg.data.dataset in WEAK_DATASETS:
        return {
            "skipped": f"data.dataset={cfg.data.dataset} has no masks; evaluate the checkpoint "
            "on data with masks: tseg eval CHECKPOINT --dataset coco --dataset-root FOLDER"
        }

    return evaluate(
        model,
        build_dataset(cfg.data, split),
        device,
        cfg.eval.batch_size,
        cfg.eval.max_images,
        shard=distributed.current_shard(),
    )


def _install_signal_handlers(stop: dict[str, int]) -> dict[int, Any]:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint after the current step and stops."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):

        def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
            stop["signal"] = signum

        old[sig] = signal.signal(sig, handler)
    return old


def _restore_signal_handlers(old: dict[int, Any]) -> None:
    import signal

    for sig, h in old.items():
        signal.signal(sig, h)


@torch.no_grad()
def evaluate(
    model: TSEG,
    ds: RefDataset,
    device: torch.device,
    batch_size: int = 32,
    max_images: int = 0,
    presence: bool = False,
    seed: int = 0,
    threshold: float = 0.5,
    tta: TTAConfig | None = None,
    crf: CRFConfig | None = None,
    shard: Shard | None = None,
) -> dict[str, float]:
    """Referring-expression segmentation given each image's annotated expressions (section 4.1).

    With ``presence``, each image is also scored with as many absent expressions (drawn from other
    images) as it has present ones, and the ROC AUC of the confidence is reported. ``tta`` and
    ``crf`` compute the maps as ``tseg segment`` does with them (``Segmenter.probabilities``, one
    image at a time); without them images of equal size run as one batch. With ``shard``, each
    rank evaluates its share of the batches and every rank returns the metrics of all images,
    equal to one process's: batches are formed as in one process and results merged in order.
    """
    model.eval()
    shard = shard or Shard()
    n = len(ds) if not max_images else min(max_images, len(ds))
    absent = _absent_expressions(ds, n, seed) if presence else [[] for _ in range(n)]
    segmenter = None
    if tta is not None or crf is not None:
        from .inference import Segmenter

        segmenter = Segmenter(model, device, tta=tta, crf=crf, threshold=threshold)
    patch = getattr(model.image_encoder, "patch_size", 16)
    text_cache: dict[str, Tensor] = {}
    # Per image: (index, (intersections, unions, confidences, presence labels)).
    records: list[tuple[int, tuple[list[int], list[int], list[float], list[int]]]] = []

    def record(i: int, probs: np.ndarray, conf: Any, k: int) -> None:
        """probs [>= k, H, W] with the image's k annotated expressions first."""
        gt = ds.masks(i)
        counts = [iou_counts(probs[j] > threshold, gt[j]) for j in range(k)]
        labels = [1] * k + [0] * len(absent[i])
        conf = [float(c) for c in conf] if presence else []
        records.append((i, ([c[0] for c in counts], [c[1] for c in counts], conf, labels)))

    starts = shard.take(range(0, n, batch_size))  # whole batches, as one process forms them
    for start in starts:
        idxs = list(range(start, min(n, start + batch_size)))
        images = [ds.image(i) for i in idxs]
        exprs = [ds.expressions(i) for i in idxs]
        if segmenter is not None:
            for i, im, ex in zip(idxs, images, exprs):
                probs, conf = segmenter.probabilities(im, ex + absent[i], refine_first=len(ex))
                record(i, probs, conf, len(ex))
            continue
        needed = [t for i, ex in zip(idxs, exprs) for t in ex + absent[i] if t not in text_cache]
        if needed:
            uniq = list(dict.fromkeys(needed))
            for chunk in range(0, len(uniq), 256):
                part = uniq[chunk : chunk + 256]
                for t, y in zip(part, model.encode_text(part)):
                    text_cache[t] = y
        # Group images of equal input size so they run as one batch.
        groups: dict[tuple[int, int], list[int]] = {}
        for b, im in enumerate(images):
            groups.setdefault(
                eval_size(im.shape[0], im.shape[1], model.input_size, patch), []
            ).append(b)
        for size, members in groups.items():
            x_in = torch.stack([resize(to_tensor(images[b]), size) for b in members]).to(device)
            enc = model.encode_image(x_in)
            for row, b in enumerate(members):
                i, k = idxs[b], len(exprs[b])
                y = torch.stack([text_cache[t] for t in exprs[b] + absent[i]])  # [K + A, D]
                s = model.similarity(enc["x"][row : row + 1], y)  # [1, N, K + A]
                conf = torch.sigmoid(model.pool(s)["scores"][0]).tolist() if presence else []
                h, w = images[b].shape[:2]
                probs = model.masks_at(s[:, :, :k], enc["grid"], (h, w))[0]  # [K, H, W]
                record(i, probs.float().cpu().numpy(), conf, k)
    meter = SegmentationMeter()
    conf_all: list[float] = []
    labels_all: list[int] = []
    for inters, unions, conf, labels in shard.gather_keyed(records):  # image order
        meter.inters += inters
        meter.unions += unions
        conf_all += conf
        labels_all += labels
    out = meter.compute()
    if presence:
        out["presence_auc"] = roc_auc(np.array(conf_all), np.array(labels_all))
    return {
        k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in out.items()
    }


def _absent_expressions(ds: RefDataset, n: int, seed: int) -> list[list[str]]:
    """Per image, as many expressions of other images as it has (for presence AUC).

    Drawn for all ``n`` images up front in image order, so a sharded evaluation draws exactly
    what one process draws.
    """
    rng = np.random.default_rng(seed)
    pool_texts = sorted({t for i in range(n) for t in ds.expressions(i)})
    out = []
    for i in range(n):
        ex = ds.expressions(i)
        own = {normalize_expression(e) for e in ex}
        cands = [t for t in pool_texts if normalize_expression(t) not in own]
        k = min(len(ex), len(cands))
        out.append([cands[j] for j in rng.choice(len(cands), size=k, replace=False)] if k else [])
    return out
