"""Timing training steps: images/s of ``tseg.train.train_step`` and where a step's time goes
(data, the encoders' forward and backward timed by module and autograd hooks, the rest, the
optimiser)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class _Clock:
    """Encoder forward time and backward intervals of one step, from hooks."""

    forward: float = 0.0
    t0: float = 0.0  # when the running encoder's forward began
    starts: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)

    def backward_time(self) -> float:
        """Length of the union of the encoders' backward intervals."""
        spans = sorted((self.starts[k], self.ends[k]) for k in self.starts if k in self.ends)
        total, cur_s, cur_e = 0.0, None, None
        for s, e in spans:
            if cur_e is None or s > cur_e:
                total += 0.0 if cur_e is None else cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        return total + (0.0 if cur_e is None else cur_e - cur_s)


def _instrument(model, clock: _Clock) -> list:
    """Hooks on the two encoders: forward time (pre/post module hooks); backward from the moment
    the gradient of the encoder's output exists to the last gradient of its parameters."""
    handles = []
    for name, module in (("image", model.image_encoder), ("text", model.text_encoder)):

        def pre(_m: Any, _a: Any, name: str = name) -> None:
            clock.starts.pop(name, None)
            clock.ends.pop(name, None)
            clock.t0 = time.perf_counter()

        def post(_m: Any, _a: Any, out: Any, name: str = name) -> None:
            clock.forward += time.perf_counter() - clock.t0
            t = out["patch_tokens"] if isinstance(out, dict) else out
            if t.requires_grad:

                def grad_ready(_g: Tensor, name: str = name) -> None:
                    clock.starts[name] = time.perf_counter()

                t.register_hook(grad_ready)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        for p in module.parameters():
            if p.requires_grad:

                def done(_p: Tensor, name: str = name) -> None:
                    clock.ends[name] = time.perf_counter()

                handles.append(p.register_post_accumulate_grad_hook(done))
    return handles


def train_throughput(
    overrides: tuple[str, ...], batch_size: int, steps: int, warmup: int
) -> dict[str, Any]:
    """Images/s of training steps and where the time goes: ``tseg.train.train_step`` itself on
    a run made by ``build_run``, its phases timed by the step and the encoders by hooks."""
    from tseg.config import build_config
    from tseg.train import build_run, train_step

    cfg = build_config(
        None,
        [*overrides, f"train.batch_size={batch_size}", "train.steps=100000"],
    )
    run = build_run(cfg, torch.device("cpu"))
    clock = _Clock()
    handles = _instrument(run.model, clock)
    rows = []
    try:
        for step in range(warmup + steps):
            clock.forward = 0.0
            phases: dict[str, float] = {}
            t0 = time.perf_counter()
            out = train_step(run, step, timings=phases)  # data, forward, backward, optimizer
            total = time.perf_counter() - t0
            if step >= warmup:
                rows.append(
                    {
                        "step": total,
                        "data": phases["data"],
                        "forward": phases["forward"],
                        "encoders_forward": clock.forward,
                        "backward": phases["backward"],
                        "encoders_backward": clock.backward_time(),
                        # What the phases leave (the schedule, zero_grad): counted with the update.
                        "optimizer": total
                        - phases["data"]
                        - phases["forward"]
                        - phases["backward"],
                        "images": out["images"],
                    }
                )
    finally:
        for h in handles:
            h.remove()
    tot = {k: sum(r[k] for r in rows) for k in rows[0]}
    enc = tot["encoders_forward"] + tot["encoders_backward"]
    breakdown = {
        "data_loading_and_collation": tot["data"],
        "encoders_forward": tot["encoders_forward"],
        "encoders_backward": tot["encoders_backward"],
        "rest_of_forward_and_backward": tot["forward"]
        + tot["backward"]
        - tot["encoders_forward"]
        - tot["encoders_backward"],
        "optimizer_step": tot["optimizer"],
    }
    return {
        "images_per_s": tot["images"] / tot["step"],
        "step_s_median": statistics.median(r["step"] for r in rows),
        "batch_size": batch_size,
        "steps": len(rows),
        "warmup_steps": warmup,
        "image_size": cfg.data.image_size,
        "optimizer": cfg.train.optimizer,
        "share_outside_encoders": 1.0 - enc / tot["step"],
        "share": {k: v / tot["step"] for k, v in breakdown.items()},
    }
