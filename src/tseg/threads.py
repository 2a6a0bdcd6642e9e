"""CPU threads that make room for other processes (``train.threads = 0``, the default).

Why: torch runs its CPU kernels on an OpenMP team of one thread per core, and every parallel
region ends at a barrier. When another process keeps one of the cores busy, the team's thread on
that core waits for the scheduler while the others spin at the barrier; with hundreds of regions
per training step, a step became 20x slower than alone (0.45 -> 9 s on 2 cores with one
single-threaded competitor), not the 2x that a fair share would cost. A team no larger than the
cores left idle by others keeps every thread running. ``ThreadGovernor`` measures, over the last
interval, how many cores other processes used (``/proc/stat`` minus this process's own time) and
sets ``torch.set_num_threads`` to the cores they left, at least one; figures in
benchmarks/results/shared_cpu.json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

# The most threads a governor uses: torch's count when tseg first loaded this module, i.e.
# OMP_NUM_THREADS or one per core. A governor only ever lowers it.
START_THREADS = torch.get_num_threads()


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, as torch's default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    v = [int(x) for x in fields[1:9]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def _own_ticks() -> int | None:
    """This process's user + system clock ticks (all its threads)."""
    try:
        stat = Path("/proc/self/stat").read_text()
    except OSError:
        return None
    after = stat.rsplit(")", 1)[1].split()  # fields after the command name; utime is 14th
    return int(after[11]) + int(after[12])


class ThreadGovernor:
    """Sets torch's thread count to the cores other processes leave idle, re-measured at most
    every ``interval`` seconds when ``update`` is called (between training steps).

    Args:
        max_threads: the most threads to use (default ``START_THREADS``: OMP_NUM_THREADS, else
            one per core).
        interval: seconds between measurements.
    """

    def __init__(self, max_threads: int = 0, interval: float = 5.0) -> None:
        self.max_threads = max_threads or START_THREADS
        self.interval = interval
        self.cores = available_cores()
        self.threads = self.max_threads
        self._last = self._sample()

    def _sample(self) -> tuple[float, tuple[int, int], int] | None:
        machine, own = _machine_ticks(), _own_ticks()
        if machine is None or own is None:
            return None
        return time.monotonic(), machine, own

    def others_busy(self) -> float | None:
        """Cores' worth of CPU other processes used since the last measurement."""
        now = self._sample()
        if now is None or self._last is None:
            return None
        (_, (b0, t0), o0), (_, (b1, t1), o1) = self._last, now
        self._last = now
        total = t1 - t0
        if total <= 0:
            return None
        # Ticks of every CPU: busy share times the machine's CPUs is cores' worth of work.
        ncpu = os.cpu_count() or 1
        return max(0.0, (b1 - b0 - (o1 - o0)) / total * ncpu)

    def choose(self, others: float) -> int:
        """Threads for ``others`` cores' worth of other work: the cores left, at least 1."""
        left = self.cores - int(others + 0.5)
        return max(1, min(self.max_threads, left))

    def update(self, force: bool = False) -> int:
        """Re-measure if ``interval`` has passed (or ``force``); returns the thread count."""
        if self._last is None:
            return self.threads
        if not force and time.monotonic() - self._last[0] < self.interval:
            return self.threads
        others = self.others_busy()
        if others is not None:
            threads = self.choose(others)
            if threads != self.threads:
                torch.set_num_threads(threads)
                self.threads = threads
        return self.threads
