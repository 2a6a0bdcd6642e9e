"""The training loop: ``train`` runs ``train_step`` until ``train.steps``, logging, evaluating
and checkpointing on the way; SIGINT / SIGTERM save a checkpoint and stop."""

from __future__ import annotations

import copy
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from .. import distributed
from ..checkpoint import resolve, save_error, store_inference
from ..config import Config, save_yaml
from ..data import build_dataset
from ..data.base import DatasetError
from ..data.registry import no_masks_reason
from ..errors import CheckpointError, TrainingError, TrainingInterrupted
from ..eval.pairs import choose_mask_threshold, evaluate_pairs
from ..inference.segmenter import Segmenter
from ..models.tseg import TSEG
from ..threads import ThreadGovernor
from . import state
from .build import Run, amp_dtype, build_run, poly_lr
from .log import RunLog, summary_writer_class
from .objectives import with_global_negatives


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
    cfg = copy.deepcopy(cfg)  # the caller's config stays as given (a chosen threshold goes in)
    tc = cfg.train
    run_dir = Path(run_dir or tc.out_dir)
    if resume and not (run_dir / "latest").is_file():
        raise CheckpointError(
            f"nothing to resume: '{run_dir}' holds no checkpoint ('latest' is missing)"
        )
    if tc.tensorboard:
        summary_writer_class()  # fail before training, not at the first log line
    device = distributed.pick_device(tc.device, distributed.local_rank())
    governor = None
    if tc.threads:
        torch.set_num_threads(tc.threads)
    elif device.type == "cpu":
        # Threads follow the cores other processes leave idle (tseg.threads); building the
        # run is the first measurement interval.
        governor = ThreadGovernor()
    amp_dtype(tc.amp, device)  # refuse an impossible precision before joining any process group
    created = distributed.init(device)
    try:
        return _train(cfg, run_dir, device, progress, evaluate_splits, resume, governor)
    finally:
        distributed.cleanup(created)


def _train(
    cfg: Config,
    run_dir: Path,
    device: torch.device,
    progress: bool,
    evaluate_splits: tuple[str, ...],
    resume: bool,
    governor: ThreadGovernor | None = None,
) -> dict[str, Any]:
    tc = cfg.train
    world, main = distributed.world_size(), distributed.is_main()
    if main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, run_dir / "config.yaml")
        except OSError as e:  # a file of that name, a read-only or full disk: say so, once
            raise save_error(run_dir, e) from None
    run = build_run(cfg, device, run_dir, resume)
    model, history = run.model, []
    log = RunLog(run_dir, tc.tensorboard) if main else None
    if log is not None:
        log.write(
            {
                "event": "start",
                "from_step": run.start,
                "world_size": world,
                "batch_per_process": tc.batch_size,
                "accum_steps": tc.accum_steps,
                "effective_batch": tc.batch_size * world * tc.accum_steps,
                "amp": tc.amp,
                "device": str(device),
            }
        )
    t0 = time.time()
    stop: dict[str, int] = {}
    old_handlers = _install_signal_handlers(stop)
    bar = tqdm(
        range(run.start, tc.steps),
        initial=run.start,
        total=tc.steps,
        desc=f"train {cfg.model.head}/{tc.mode}",
        disable=not (progress and main),
        dynamic_ncols=True,
    )
    seen = 0  # images this process has trained on
    try:
        for step in bar:
            if governor is not None:
                governor.update(force=step == run.start)
            out = train_step(run, step, stop=bool(stop))
            seen += out["images"]
            if out["stop"]:
                _restore_signal_handlers(old_handlers)
                ckpt = state.save(
                    model, cfg, run_dir, step + 1, run.opt, run.scaler, run.data_state()
                )
                raise TrainingInterrupted(
                    f"stopped by signal {stop.get('signal', 'on another process')} after step "
                    f"{step + 1}; saved '{ckpt}'. "
                    f"Continue with: tseg train ... --resume (train.out_dir={run_dir})"
                )
            if step % tc.log_every == 0 or step == tc.steps - 1:
                # One reduction for both: the loss averaged, the images summed over processes
                # (a stream's processes need not see equally many: their shards differ).
                loss = out["loss"]
                both = torch.tensor(
                    [loss.item(), float(seen)], dtype=torch.float64, device=loss.device
                )
                both = distributed.all_reduce(both, "sum")
                mean_loss, seen_all = both[0].item() / world, int(round(both[1].item()))
                elapsed = time.time() - t0
                if log is not None:
                    rec = {
                        "step": step,
                        "epoch": out["epoch"],
                        "loss": round(mean_loss, 5),
                        "lr": out["lr"],
                        "tau": round(model.tau.item(), 4),
                        "images_per_s": round(seen_all / elapsed, 2),
                        "images": seen_all,
                        "time_s": round(elapsed, 3),
                    }
                    if governor is not None:
                        rec["threads"] = governor.threads
                    if out["grad_norm"] is not None:
                        rec["grad_norm"] = round(out["grad_norm"].item(), 5)
                    if run.scaler.is_enabled():
                        rec["loss_scale"] = run.scaler.get_scale()
                    log.write(rec)
                bar.set_postfix(loss=f"{mean_loss:.4f}", tau=f"{model.tau.item():.1f}")
            if tc.eval_every and (step + 1) % tc.eval_every == 0 and step + 1 < tc.steps:
                m = _evaluate_split(model, cfg, "val", device)
                history.append({"step": step + 1, **m})
                if log is not None:
                    log.write({"step": step + 1, "val": m})
                state.save(model, cfg, run_dir, step + 1, run.opt, run.scaler, run.data_state())
                model.train()
            elif tc.save_every and (step + 1) % tc.save_every == 0 and step + 1 < tc.steps:
                state.save(model, cfg, run_dir, step + 1, run.opt, run.scaler, run.data_state())
        _restore_signal_handlers(old_handlers)
        train_time = time.time() - t0
        if run.start == tc.steps:
            # Resumed after the final checkpoint (killed during the final evaluation): that
            # checkpoint is the result; only the evaluation and metrics.json are left to do.
            ckpt = resolve(run_dir)
        else:
            ckpt = state.save(model, cfg, run_dir, tc.steps, run.opt, run.scaler, run.data_state())
        results: dict[str, Any] = {
            "train_time_s": round(train_time, 1),
            "steps": tc.steps,
            "checkpoint": str(ckpt),
        }
        if resume:
            results["resumed_from_step"] = run.start
        if tc.init_from:
            results["init_from"] = str(tc.init_from)
        if cfg.eval.choose_threshold and no_masks_reason(cfg.data, "val") is None:
            seg = Segmenter(model, device, cfg.inference)  # the recipe's TTA/PAMR/CRF, if any
            chosen = choose_mask_threshold(
                seg, build_dataset(cfg.data, "val"), cfg.eval.batch_size, cfg.eval.max_images
            )
            cfg.inference.set_threshold(seg.setting, chosen["threshold"])
            chosen = {"setting": seg.setting, **chosen}
            if main:  # the final checkpoint carries it: every later load uses it
                store_inference(ckpt, cfg)
            results["threshold"] = {"chosen_on": "val", **chosen}
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


def train_step(
    run: Run, step: int, stop: bool = False, timings: dict[str, float] | None = None
) -> dict[str, Any]:
    """One optimiser step: the scheduled learning rate, ``train.accum_steps`` micro-batches
    forward and backward, gradient clipping, the update.

    Args:
        run: what ``build_run`` made (its stream and optimiser move on by one step).
        step: the step's index, for the learning-rate schedule.
        stop: this process wants to stop after the step (a signal arrived); every process learns
            whether any does, as the result's ``stop``.
        timings: if given, seconds spent in "data", "forward", "backward" and "optimizer" are
            added to it (for benchmarks).

    Returns:
        {"loss": this process's mean loss (0-d tensor), "lr", "epoch", "images" (this
        process's), "grad_norm" (a tensor with ``train.grad_clip``, else None), "stop"}.

    Raises:
        TrainingError: the loss is not finite on some process (all processes raise).
    """
    tc = run.cfg.train
    lr = poly_lr(step, tc)
    for g in run.opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    run.opt.zero_grad(set_to_none=True)
    loss, epoch, images = _accumulate(run, tc.accum_steps, timings)
    # All processes must agree to stop (a signal, a non-finite loss on any of them), or the
    # others would wait forever in their next collective.
    flags = torch.stack([~torch.isfinite(loss), torch.tensor(stop, device=run.device)])
    flags = distributed.all_reduce(flags.float(), "max")
    if flags[0]:
        world, rank = distributed.world_size(), distributed.rank()
        where = f" on one of {world} processes (rank {rank}: {loss.item()})"
        raise TrainingError(
            f"non-finite loss{where if world > 1 else f' ({loss.item()})'} at step "
            f"{step}; the last checkpoint in '{run.run_dir}' is kept"
        )
    t = time.perf_counter()
    grad_norm = None
    if tc.grad_clip > 0:
        run.scaler.unscale_(run.opt)  # clip the true gradients, not the fp16-scaled ones
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    if timings is not None:
        timings["optimizer"] = timings.get("optimizer", 0.0) + time.perf_counter() - t
    return {
        "loss": loss,
        "lr": lr,
        "epoch": epoch,
        "images": images,
        "grad_norm": grad_norm,
        "stop": bool(flags[1]),
    }


def _accumulate(run: Run, accum: int, timings: dict[str, float] | None) -> tuple[Tensor, int, int]:
    """Forward and backward ``accum`` micro-batches -> (mean loss, epoch, images).

    Each loss is divided by ``accum``, so the summed gradients are those of the mean; under DDP
    they are averaged over processes once, in the backward pass of the last micro-batch.
    """
    spent = timings if timings is not None else {}
    net, device = run.net, run.device
    loss_sum = torch.zeros((), device=device)
    epoch, images = 0, 0
    for m in range(accum):
        t0 = time.perf_counter()
        epoch, batch = _next_batch(run)
        if run.collate is not None:  # global negatives
            batch = with_global_negatives(batch, run.collate)
        t1 = time.perf_counter()
        last = m == accum - 1
        with nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync():
            with run.autocast():
                loss = net(batch, device)["loss"].float()
            t2 = time.perf_counter()
            run.scaler.scale(loss / accum).backward()
        t3 = time.perf_counter()
        for key, seconds in (("data", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2)):
            spent[key] = spent.get(key, 0.0) + seconds
        loss_sum += loss.detach()
        images += batch["images"].shape[0]
    return loss_sum / accum, epoch, images


def _next_batch(run: Run) -> tuple[int, dict]:
    """The next (epoch, batch) of ``run.stream``; a DatasetError on one process raises on all.

    Under torchrun the processes agree after each fetch (one flag, reduced): otherwise the
    others would wait forever in their next collective (e.g. a stream epoch that gave one
    process no good sample). Every process raises the first failing rank's message.
    """
    error = ""
    try:
        item = next(run.stream)
    except DatasetError as e:
        if not distributed.is_dist():
            raise
        error = str(e) or type(e).__name__  # never empty: the flag below is set from it
    if distributed.is_dist():
        failed = torch.tensor(float(bool(error)), device=run.device)
        if distributed.all_reduce(failed, "max"):
            messages = distributed.all_gather_object(error)
            rank = next(r for r, m in enumerate(messages) if m)
            raise DatasetError(messages[rank])
    return item


def _evaluate_split(model: TSEG, cfg: Config, split: str, device: torch.device) -> dict[str, Any]:
    """``evaluate_pairs`` on a split, sharded over the processes (each gets every image's metrics).

    Weak data (images with text only) has no masks to score: the split is skipped, saying so.
    """
    reason = no_masks_reason(cfg.data, split)
    if reason is not None:
        return {"skipped": reason}
    return evaluate_pairs(
        Segmenter(model, device, cfg.inference),
        build_dataset(cfg.data, split),
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
