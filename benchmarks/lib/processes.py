"""Running ``tseg`` as a user does: the entry point, CPUs to pin it to, its resident memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def tseg_command() -> list[str]:
    """The installed ``tseg`` entry point next to this Python, else ``python -m tseg.cli``."""
    exe = Path(sys.executable).parent / "tseg"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "tseg.cli"]


def pinned_cpus(cores: int) -> list[int] | None:
    """The first ``cores`` CPUs this process may use, or None where there are no more than that
    (or the platform cannot pin)."""
    if not hasattr(os, "sched_getaffinity") or cores < 1:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[:cores] if len(cpus) > cores else None


def cpus_used(cores: int) -> list[int] | None:
    """The CPUs a pinned command runs on: ``pinned_cpus``, else all this process may use."""
    cpus = pinned_cpus(cores)
    if cpus is None and hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return cpus


def status_mb(key: str, pid: int | str = "self") -> float:
    """A memory line of /proc/PID/status (VmRSS, VmHWM...) in MB; NaN where it is missing."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_pinned(
    cmd: list[str], cores: int, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess | None, float, float]:
    """Run ``cmd`` (output captured) on the first ``cores`` CPUs, pinned where there are more:
    the finished process (None when it ran past ``timeout_s``), the launch epoch
    (``time.time()`` just before it starts) and the wall seconds it took."""
    cpus = pinned_cpus(cores)
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    launch = time.time()
    t = time.perf_counter()
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env,
            preexec_fn=preexec,  # pins the CPUs only
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return None, launch, time.perf_counter() - t
    return done, launch, time.perf_counter() - t
