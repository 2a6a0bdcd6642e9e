"""What a call costs: medians of timed calls (alone, or in turn round after round) and FLOPs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def time_call(
    fn: Callable[[], Any],
    repeats: int,
    warmup: int,
    max_s: float,
    setup: Callable[[], Any] | None = None,
    expected_s: float | None = None,
) -> dict[str, Any]:
    """Median wall time of ``fn`` after ``warmup`` calls; ``setup`` runs untimed before each call.

    A call expected to take over half of ``max_s`` gets no warm-up (its one-time costs are small
    against it) and as many timed runs as fit in ``max_s``, at least one.
    """
    if expected_s is not None and expected_s > max_s / 2:
        warmup = 0
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    times: list[float] = []
    while len(times) < repeats:
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if sum(times) + statistics.median(times) > max_s:
            break
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": len(times),
        "warmup": warmup,
    }


def median_s(fn: Callable[[], Any], runs: int) -> float:
    """Median seconds of ``runs`` calls of ``fn`` after one warm-up call."""
    return time_call(fn, runs, 1, float("inf"))["median_s"]


def time_interleaved(
    calls: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]],
    repeats: int,
    warmup: int,
    max_s: float,
) -> dict[str, dict[str, Any]]:
    """``time_call`` for several (call, untimed setup) pairs timed in turn, round after round, so
    a change in the machine's load touches all of them alike. Stops after ``repeats`` rounds or
    before a round would take the total over ``max_s`` (at least one round)."""
    for _ in range(warmup):
        for fn, setup in calls.values():
            if setup:
                setup()
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    spent = 0.0
    for r in range(repeats):
        for k, (fn, setup) in calls.items():
            if setup:
                setup()
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
            spent += times[k][-1]
        if spent / (r + 1) * (r + 2) > max_s:
            break
    return {
        k: {
            "median_s": statistics.median(v),
            "min_s": min(v),
            "runs": len(v),
            "warmup": warmup,
        }
        for k, v in times.items()
    }


def timing_row(t: dict[str, Any], images: int = 1) -> dict[str, Any]:
    """A ``time_call`` result as a report row: floats to 5 decimals, plus images/s."""
    return {
        **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in t.items()},
        "images_per_s": round(images / t["median_s"], 4),
    }


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn`` by FlopCounterMode. Attention runs through the math kernel while
    counting, since the counter has no formula for the CPU's fused attention kernel."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return counter.get_total_flops()
