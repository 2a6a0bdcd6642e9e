"""Training and evaluation loops: plain functions, the device passed in, no globals."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

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
from .losses import box_loss, dice_loss, soft_margin_loss
from .metrics import SegmentationMeter, roc_auc
from .models.text_encoder import train_tokenizer
from .models.tseg import TSEG


class TrainingError(RuntimeError):
    """Training cannot go on (for example, a non-finite loss)."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("config key 'train.device' = 'cuda' but no CUDA device is available")
    return torch.device(name)


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
        tokenizer = train_tokenizer(tokenizer_corpus(train_ds), cfg.model.text.vocab_size)
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
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = cfg.text_lr_scale if name.startswith("text_encoder.") else 1.0
        if scale == 0.0:
            p.requires_grad_(False)
            continue
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
    """One batch through the model: {"loss": scalar, ...}."""
    images = batch["images"].to(device, non_blocking=True)
    if mode == "weak":
        out = model(images, batch["texts"])
        return {"loss": soft_margin_loss(out["scores"], batch["targets"].to(device))}
    if mode == "full":
        img = model.encode_image(images)
        y = model.encode_text(batch["texts"])
        s = model.similarity(img["x"], y)  # [B, N, L]
        pairs = batch["pairs"].to(device)
        h, w = img["grid"]
        s_pairs = s[pairs[:, 0], :, pairs[:, 1]].view(-1, 1, h, w)  # [P, 1, h, w]
        size = batch["masks"].shape[-2:]
        logits = F.interpolate(s_pairs, size=size, mode="bilinear", align_corners=False)[
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
        return {"loss": box_loss(s_pairs, targets.flatten(1).to(device))}
    raise TrainingError(f"train.mode {mode!r} is not supported by this loop")


def make_loader(
    cfg: Config, ds: RefDataset, seed: int
) -> tuple[DataLoader, TrainSet, EpochSampler]:
    mode = cfg.train.mode
    tset = TrainSet(ds, cfg.data, seed=seed, with_masks=mode == "full", with_boxes=mode == "box")
    collate: Callable
    if mode == "full":
        collate = collate_full
    elif mode == "box":
        collate = BoxCollate(cfg.model.image.patch_size)
    else:
        tfidf = None
        if cfg.train.ground_truth == "tfidf":
            tfidf = TfidfSimilarity(tokenizer_texts_for_tfidf(ds, len(tset)))
        collate = WeakCollate(tfidf)
    sampler = EpochSampler(len(tset), seed)
    loader = DataLoader(
        tset,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        drop_last=len(tset) >= cfg.train.batch_size,
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

    ``skip`` batches of the first epoch are left out, so a resumed run sees exactly the batches
    the uninterrupted run would have seen.
    """
    epoch = start_epoch
    bs = loader.batch_size or 1
    while True:
        tset.set_epoch(epoch)
        sampler.set_epoch(epoch, start=skip * bs)
        skip = 0
        for batch in loader:
            yield epoch, batch
        epoch += 1


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved first."""


def _save(model: TSEG, cfg: Config, run_dir: Path, step: int, opt: torch.optim.Optimizer) -> Path:
    from .resume import training_state

    tensors, meta = training_state(opt)
    return save_checkpoint(model, cfg, run_dir, step, extra=tensors, meta={"train_state": meta})


def _resume(run_dir: Path, opt: torch.optim.Optimizer) -> int:
    """Load optimiser and RNG state from the run's latest checkpoint (the model already holds its
    weights, see ``init_model_from``); returns the checkpoint's step."""
    from safetensors.torch import load_file

    from .checkpoint import CheckpointError, read_meta, resolve
    from .resume import restore_training_state

    ckpt = resolve(run_dir)
    meta = read_meta(ckpt)
    state_file = ckpt / "train_state.safetensors"
    if "train_state" not in meta or not state_file.is_file():
        raise CheckpointError(f"checkpoint '{ckpt}' has no training state to resume from")
    restore_training_state(opt, load_file(str(state_file)), meta["train_state"])
    return int(meta["step"])


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
    """
    tc = cfg.train
    run_dir = Path(run_dir or tc.out_dir)
    if resume and not (run_dir / "latest").is_file():
        from .checkpoint import CheckpointError

        raise CheckpointError(
            f"nothing to resume: '{run_dir}' holds no checkpoint ('latest' is missing)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run_dir / "config.yaml")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    device = pick_device(tc.device)
    train_ds = build_dataset(cfg.data, "train")
    # Continue from a checkpoint (e.g. box pretraining, Table 2e) when train.init_from is set.
    init_from = getattr(tc, "init_from", "")
    if resume:
        from .checkpoint import resolve

        # The resumed model is rebuilt with the checkpoint's own tokenizer, then fully loaded.
        model = init_model_from(cfg, resolve(run_dir))
    elif init_from:
        model = init_model_from(cfg, init_from)
    else:
        model = build_model(cfg, train_ds)
    model = model.to(device)
    opt = build_optimizer(model, tc)
    loader, tset, sampler = make_loader(cfg, train_ds, tc.seed)
    start = _resume(run_dir, opt) if resume else 0
    if start >= tc.steps:
        raise TrainingError(f"'{run_dir}' is already at step {start} of train.steps = {tc.steps}")
    per_epoch = max(1, len(loader))
    log_path = run_dir / "log.jsonl"
    history: list[dict[str, Any]] = []
    t0 = time.time()
    model.train()
    stream = batches(loader, tset, sampler, start // per_epoch, skip=start % per_epoch)
    stop: dict[str, int] = {}
    old_handlers = _install_signal_handlers(stop)
    bar = tqdm(
        range(start, tc.steps),
        initial=start,
        total=tc.steps,
        desc=f"train {cfg.model.head}/{tc.mode}",
        disable=not progress,
        dynamic_ncols=True,
    )
    seen = 0
    with log_path.open("a", encoding="utf-8") as log:
        for step in bar:
            epoch, batch = next(stream)
            lr = poly_lr(step, tc)
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            out = step_loss(model, batch, tc.mode, device)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at step {step}; the last checkpoint in '{run_dir}' is kept"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            seen += batch["images"].shape[0]
            if stop:
                _restore_signal_handlers(old_handlers)
                ckpt = _save(model, cfg, run_dir, step + 1, opt)
                raise TrainingInterrupted(
                    f"stopped by signal {stop['signal']} after step {step + 1}; saved '{ckpt}'. "
                    f"Continue with: tseg train ... --resume (train.out_dir={run_dir})"
                )
            if step % tc.log_every == 0 or step == tc.steps - 1:
                rec = {
                    "step": step,
                    "epoch": epoch,
                    "loss": round(loss.item(), 5),
                    "lr": lr,
                    "tau": round(model.tau.item(), 4),
                    "images_per_s": round(seen / (time.time() - t0), 2),
                }
                log.write(json.dumps(rec) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{loss.item():.4f}", tau=f"{model.tau.item():.1f}")
            if tc.eval_every and (step + 1) % tc.eval_every == 0 and step + 1 < tc.steps:
                m = evaluate(
                    model,
                    build_dataset(cfg.data, "val"),
                    device,
                    cfg.eval.batch_size,
                    cfg.eval.max_images,
                )
                history.append({"step": step + 1, **m})
                log.write(json.dumps({"step": step + 1, "val": m}) + "\n")
                _save(model, cfg, run_dir, step + 1, opt)
                model.train()
            elif tc.save_every and (step + 1) % tc.save_every == 0 and step + 1 < tc.steps:
                _save(model, cfg, run_dir, step + 1, opt)
    _restore_signal_handlers(old_handlers)
    train_time = time.time() - t0
    ckpt = _save(model, cfg, run_dir, tc.steps, opt)
    results: dict[str, Any] = {
        "train_time_s": round(train_time, 1),
        "steps": tc.steps,
        "checkpoint": str(ckpt),
    }
    if init_from:
        results["init_from"] = str(init_from)
    for split in evaluate_splits:
        results[split] = evaluate(
            model, build_dataset(cfg.data, split), device, cfg.eval.batch_size, cfg.eval.max_images
        )
    results["history"] = history
    (run_dir / "metrics.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


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
) -> dict[str, float]:
    """Referring-expression segmentation given each image's annotated expressions (section 4.1).

    With ``presence``, each image is also scored with as many absent expressions (drawn from other
    images) as it has present ones, and the ROC AUC of the confidence is reported.
    """
    model.eval()
    n = len(ds) if not max_images else min(max_images, len(ds))
    meter = SegmentationMeter()
    rng = np.random.default_rng(seed)
    pool_texts: list[str] = []
    if presence:
        for i in range(n):
            pool_texts.extend(ds.expressions(i))
        pool_texts = sorted(set(pool_texts))
    conf, labels = [], []
    patch = getattr(model.image_encoder, "patch_size", 16)
    text_cache: dict[str, Tensor] = {}
    for start in range(0, n, batch_size):
        idxs = list(range(start, min(n, start + batch_size)))
        images = [ds.image(i) for i in idxs]
        exprs = [ds.expressions(i) for i in idxs]
        absent: list[list[str]] = [[] for _ in idxs]
        if presence:
            for b, ex in enumerate(exprs):
                own = {normalize_expression(e) for e in ex}
                cands = [t for t in pool_texts if normalize_expression(t) not in own]
                k = min(len(ex), len(cands))
                absent[b] = (
                    [cands[j] for j in rng.choice(len(cands), size=k, replace=False)] if k else []
                )
        needed = [t for ex, ab in zip(exprs, absent) for t in ex + ab if t not in text_cache]
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
                texts = exprs[b] + absent[b]
                y = torch.stack([text_cache[t] for t in texts])  # [K + A, D]
                s = model.similarity(enc["x"][row : row + 1], y)  # [1, N, K + A]
                if presence:
                    scores = model.pool(s)["scores"][0]
                    conf.extend(torch.sigmoid(scores).tolist())
                    labels.extend([1] * len(exprs[b]) + [0] * len(absent[b]))
                k = len(exprs[b])
                h, w = images[b].shape[:2]
                probs = model.masks_at(s[:, :, :k], enc["grid"], (h, w))[0]  # [K, H, W]
                pred = (probs > 0.5).cpu().numpy()
                gt = ds.masks(idxs[b])
                for j in range(k):
                    meter.update(pred[j], gt[j])
    out = meter.compute()
    if presence:
        out["presence_auc"] = roc_auc(np.array(conf), np.array(labels))
    return {
        k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in out.items()
    }
