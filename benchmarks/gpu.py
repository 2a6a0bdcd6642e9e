"""GPU benchmark (issue 20, item 6): the `paper` preset's training throughput, DDP, inference
latency against CLIPSeg and peak GPU memory, in one JSON. Run it through its shell entry:

    bash benchmarks/gpu.sh              # on a GPU machine -> benchmarks/results/gpu.json (< 8 min)
    bash benchmarks/gpu.sh --dry-run    # the same code on the CPU with micro sizes (the tests)

gpu.sh runs three parts of this file, each under a time limit, and then merges them:

    python -m torch.distributed.run --standalone --nproc_per_node=N benchmarks/gpu.py ddp --out ...
    python benchmarks/gpu.py single --out DIR/single.json --deadline-s S
    python benchmarks/gpu.py merge --parts DIR --out OUT --command CMD

What is measured (GPU mode; every model has random weights, which do not change the cost):

- Training steps of the `paper` preset from scratch (ViT-S/16 at 384 px, BERT-Small;
  benchmarks/lib/tseg_model.py's PAPER_FROM_SCRATCH) at batch 32 through
  ``tseg.train.build_run`` and ``train_step`` (SGD, the preset's optimiser): fp32 and bf16
  autocast (``train.amp``), each eager and with ``train.compile=true`` (torch.compile of both
  encoders). The batches are real `shapes` batches
  from the run's own loader and collate, rendered once at 384 px, kept on the GPU and cycled:
  rendering 384 px images on the CPU is far slower than the GPU's step, so the figure is the
  model's step (forward, backward, optimiser, the loss's all-reduce), not the data path. Images/s
  come from the median step after warm-up; the warm-up steps (where torch.compile compiles, once
  per new text length) are timed apart and their excess over steady steps is ``compile_s``.
- The same eager bf16 step under DDP over every visible GPU (torchrun, NCCL, per-GPU batch 32,
  the preset's global negatives): images/s over all GPUs, from the slowest rank's median step.
- Inference latency of one 640 x 480 decoded image to masks at image resolution, at L = 1, 4, 16
  and 64 expressions: TSEG's ``Segmenter`` on the GPU with a cold text cache (every call encodes
  its L strings) and a warm one; CLIPSeg at its released architecture run as documented (the
  image once per phrase) and "vision once" (benchmarks/lib/clipseg.py's ``ClipsegDocumented`` and
  ``ClipsegVisionOnce``, the processor's tensors moved to the GPU). Both models end with their
  maps on the host, so every row includes the copy back.
- Peak GPU memory (``torch.cuda.max_memory_allocated``, reset before each row) of every row.

Timings: ``torch.cuda.synchronize`` before and after each timed call, medians of several calls
after warm-up (benchmarks/lib/timing.py's ``time_call``), each row capped in time. The dry run
swaps torch.compile for eager (compiling on a busy CPU takes minutes; the JSON says so), runs
DDP as two gloo processes on the CPU and reports the process's peak resident memory in place of
GPU memory.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/gpu.py`
    sys.path.insert(0, str(ROOT))

# Plain-Python modules: ``merge`` runs without torch, which is imported where it is used.
from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, log, write_json  # noqa: E402
from benchmarks.lib.timing import time_call, timing_row  # noqa: E402

if TYPE_CHECKING:
    import torch
PARTS = ("ddp", "single")

# The smallest TSEG with every part (tests/conftest.py MICRO_MODEL), for the dry run; its
# CLIPSeg is benchmarks.lib.clipseg.MICRO_CLIPSEG, which the speed tests use too.
MICRO_TSEG = (
    "data.image_size=32",
    "model.image.embed_dim=32",
    "model.image.depth=1",
    "model.image.num_heads=2",
    "model.image.patch_size=8",
    "model.text.hidden_size=32",
    "model.text.num_layers=1",
    "model.text.num_heads=2",
    "model.text.intermediate_size=64",
    "model.embed_dim=32",
)
WHAT = (
    "tseg `paper` preset (random weights) on the GPU: training images/s at batch 32, 384 px, fp32 "
    "and bf16, eager and torch.compile (compile_s apart), DDP over every visible GPU; latency of "
    "one 640 x 480 image to masks at L expressions, TSEG against CLIPSeg; peak GPU memory per row "
    "(benchmarks/gpu.py's docstring says how)"
)

# name -> (train.amp, torch.compile); the eager rows run first, the compiled ones last.
TRAIN_ROWS = {
    "fp32": ("none", False),
    "bf16": ("bf16", False),
    "fp32_compile": ("none", True),
    "bf16_compile": ("bf16", True),
}


@dataclass(frozen=True)
class Settings:
    """What one run measures; ``settings(dry_run)`` gives the GPU run's or the dry run's."""

    dry_run: bool
    tseg_overrides: tuple[str, ...]
    clipseg: dict[str, Any]
    batch_size: int = 32  # per process
    held_batches: int = 4  # loader batches rendered once, kept on the device and cycled
    warmup_steps: int = 4  # eager: one pass over the held batches
    compile_warmup_steps: int = 8  # compiled: two passes (the second text length recompiles)
    steps: int = 40  # timed steps, at most (each row stops after max_train_s)
    max_train_s: float = 20.0
    ddp_amp: str = "bf16"
    ddp_steps: int = 20  # DDP: a fixed count, so every rank stops at the same step
    counts: tuple[int, ...] = (1, 4, 16, 64)  # L, expressions per image
    image_hw: tuple[int, int] = (480, 640)
    repeats: int = 7
    warmup: int = 2
    max_row_s: float = 10.0
    compile_min_left_s: float = 100.0  # start a compiled row only with this much time left
    threads: int = 0  # torch intra-op threads (0: torch's default)


def settings(dry_run: bool) -> Settings:
    """The GPU run's settings, or the dry run's micro sizes (same code path, CPU, seconds)."""
    from benchmarks.lib.clipseg import CLIPSEG_RELEASED, MICRO_CLIPSEG
    from benchmarks.lib.tseg_model import PAPER_FROM_SCRATCH

    if not dry_run:
        return Settings(False, PAPER_FROM_SCRATCH, dict(CLIPSEG_RELEASED))
    return Settings(
        True,
        MICRO_TSEG,
        dict(MICRO_CLIPSEG),
        batch_size=4,
        held_batches=2,
        warmup_steps=2,
        compile_warmup_steps=2,
        steps=3,
        max_train_s=5.0,
        ddp_steps=2,
        image_hw=(40, 56),
        repeats=2,
        warmup=1,
        max_row_s=2.0,
        compile_min_left_s=0.0,
        threads=1,
    )


# ---------------------------------------------------------------------------------------------
# Devices, timing and memory


def device_for(s: Settings, local: int = 0) -> torch.device:
    """The GPU this process uses (``cuda:<local>``), or the CPU in a dry run."""
    from tseg import distributed

    return distributed.pick_device("cpu" if s.dry_run else "cuda", local)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A call that waits for the device's queued work (nothing to wait for on the CPU)."""
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window (GPU only; the CPU figure is the process's peak)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """torch.cuda.max_memory_allocated since ``reset_peak``; on the CPU the process's peak RSS."""
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def memory_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated, reset before each row, MiB"
    return "CPU dry run: the process's peak resident set so far (ru_maxrss), MiB"


def free(device: torch.device) -> None:
    """Drop what the last row left (compiled graphs, cached blocks); call it after the function
    that held the row's model has returned."""
    import torch

    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed_row(
    fn: Callable[[], Any],
    s: Settings,
    device: torch.device,
    setup: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """time_call on ``fn`` with the device synchronised before (untimed) and after each call,
    plus the row's peak memory."""
    sync = synchronizer(device)

    def prepare() -> None:
        if setup is not None:
            setup()
        sync()

    def call() -> None:
        fn()
        sync()

    reset_peak(device)
    t = time_call(call, s.repeats, s.warmup, s.max_row_s, setup=prepare)
    return {**timing_row(t), "peak_memory_mb": peak_memory_mb(device)}


# ---------------------------------------------------------------------------------------------
# Training


def train_overrides(s: Settings, amp: str, compiled: bool, world: int) -> list[str]:
    """Config overrides of one training row: the model, batch, precision and compile flags."""
    return [
        *s.tseg_overrides,
        f"data.train_size={s.batch_size * world * s.held_batches}",
        f"train.batch_size={s.batch_size}",
        "train.steps=100000",  # the poly schedule's horizon, far beyond the timed steps
        f"train.amp={amp}",
        f"train.compile={str(compiled).lower()}",
        f"train.device={'cpu' if s.dry_run else 'cuda'}",
    ]


def hold_batches(run: Any, n: int) -> None:
    """Replace the run's batch stream by ``n`` of its own batches, moved to its device once
    and cycled: the steps then time the model, not the CPU's rendering."""
    import torch

    def to_device(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(run.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    held = [(epoch, to_device(b)) for epoch, b in itertools.islice(run.stream, n)]
    run.stream = itertools.cycle(held)


def train_row(
    s: Settings,
    device: torch.device,
    amp: str,
    compiled: bool,
    steps: int,
    max_s: float,
    world: int = 1,
) -> dict[str, Any]:
    """Images/s of this process's training steps (``build_run`` + ``train_step``), the warm-up
    apart, and the peak memory of the row (model, optimiser state, activations).

    ``max_s=inf`` with ``steps`` makes every DDP rank time the same number of steps."""
    from tseg.config import build_config
    from tseg.train import build_run, train_step

    reset_peak(device)
    cfg = build_config(None, train_overrides(s, amp, compiled, world))
    run = build_run(cfg, device)
    hold_batches(run, s.held_batches)
    sync, counter = synchronizer(device), itertools.count()

    def step() -> None:
        train_step(run, next(counter))
        sync()

    warm: list[float] = []
    for _ in range(s.compile_warmup_steps if compiled else s.warmup_steps):
        sync()
        t0 = time.perf_counter()
        step()
        warm.append(time.perf_counter() - t0)
    t = time_call(step, steps, 0, max_s, setup=sync)
    median = t["median_s"]
    return {
        "images_per_s": round(s.batch_size / median, 2),
        "step_s_median": round(median, 5),
        "step_s_min": round(t["min_s"], 5),
        "steps": t["runs"],
        "batch_size": s.batch_size,
        "image_size": cfg.data.image_size,
        "amp": amp,
        "compiled": compiled,
        "warmup_steps_s": [round(w, 3) for w in warm],
        # What the warm-up took beyond as many steady steps: with torch.compile, compiling.
        "warmup_excess_s": round(max(0.0, sum(warm) - len(warm) * median), 3),
        "peak_memory_mb": peak_memory_mb(device),
    }


# ---------------------------------------------------------------------------------------------
# Inference against CLIPSeg


class OnDevice:
    """A CLIPSeg processor whose tensors land on ``device``: the runners of benchmarks.lib.clipseg
    call it and feed its output to the model as it is."""

    def __init__(self, processor: Any, device: torch.device) -> None:
        self.processor, self.device = processor, device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.processor(*args, **kwargs).to(self.device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)


def tseg_rows(s: Settings, device: torch.device, image: Any, corpus: list[str]) -> dict:
    """TSEG's Segmenter at every L, with a cold text cache (a new Segmenter before each call,
    untimed) and a warm one."""
    from benchmarks.lib import tseg_model
    from tseg.inference import Segmenter

    model, _ = tseg_model.build_tseg(s.tseg_overrides, corpus)
    cold: dict[str, Any] = {}
    warm: dict[str, Any] = {}
    for n in s.counts:
        texts, box = corpus[:n], {}
        cold[str(n)] = timed_row(
            lambda texts=texts, box=box: box["seg"].predict(image, texts),
            s,
            device,
            setup=lambda box=box: box.__setitem__("seg", Segmenter(model, device)),
        )
        seg = Segmenter(model, device)
        warm[str(n)] = timed_row(lambda texts=texts, seg=seg: seg.predict(image, texts), s, device)
        log(
            f"TSEG L={n}: {1000 * cold[str(n)]['median_s']:.1f} ms "
            f"(text cache warm {1000 * warm[str(n)]['median_s']:.1f} ms)"
        )
    return {"tseg": cold, "tseg_warm_text": warm}


def clipseg_rows(s: Settings, device: torch.device, image: Any, corpus: list[str]) -> dict:
    """CLIPSeg as documented and with the vision tower once, at every L, on ``device``; the
    maps are upsampled there and copied to the host, as TSEG's are."""
    from benchmarks.lib import clipseg

    clip = clipseg.build_clipseg(s.clipseg).to(device)
    proc = OnDevice(
        clipseg.clipseg_processor(clipseg.clip_tokenizer(corpus), s.clipseg["size"]), device
    )
    runners = {
        "clipseg_documented": clipseg.ClipsegDocumented(clip, proc),
        "clipseg_vision_once": clipseg.ClipsegVisionOnce(clip, proc),
    }
    rows: dict[str, dict[str, Any]] = {k: {} for k in runners}
    for n in s.counts:
        for name, runner in runners.items():
            texts = corpus[:n]
            rows[name][str(n)] = timed_row(
                lambda runner=runner, texts=texts: runner([image], texts), s, device
            )
            log(f"{name} L={n}: {1000 * rows[name][str(n)]['median_s']:.1f} ms")
    return rows


def inference(s: Settings, device: torch.device) -> dict[str, Any]:
    """Latency of one decoded image to masks at L = s.counts: TSEG against CLIPSeg, and the
    ratios CLIPSeg / TSEG (cold text cache)."""
    from benchmarks.lib import tseg_model

    corpus = tseg_model.phrases(max(64, *s.counts))
    image = tseg_model.make_image(s.image_hw)
    rows = tseg_rows(s, device, image, corpus)
    free(device)
    rows.update(clipseg_rows(s, device, image, corpus))
    free(device)
    ratio = {
        k: {
            str(n): round(rows[k][str(n)]["median_s"] / rows["tseg"][str(n)]["median_s"], 2)
            for n in s.counts
        }
        for k in ("clipseg_documented", "clipseg_vision_once")
    }
    return {
        "image": {"height": s.image_hw[0], "width": s.image_hw[1]},
        "counts": list(s.counts),
        "precision": "fp32",
        "rows": rows,
        "clipseg_over_tseg": ratio,
    }


# ---------------------------------------------------------------------------------------------
# The parts gpu.sh runs


def machine(device: torch.device) -> dict[str, Any]:
    """provenance.machine plus the torch threads, GPUs, CUDA and matmul precision."""
    import torch

    return provenance.machine(
        threads=torch.get_num_threads(),
        device=str(device),
        gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        float32_matmul_precision=torch.get_float32_matmul_precision(),
    )


def single_part(s: Settings, out: Path, deadline: float) -> None:
    """One device: the four training rows and the inference rows, ``out`` rewritten after each;
    a compiled row starts only with ``compile_min_left_s`` left before ``deadline``."""
    import torch

    if s.threads:
        torch.set_num_threads(s.threads)
    device = device_for(s)
    report: dict[str, Any] = {
        "machine": machine(device),
        "settings": asdict(s),
        "memory": memory_kind(device),
        "training": {},
        "skipped": {},
    }
    write_json(out, report)
    for name in ("fp32", "bf16"):
        amp, compiled = TRAIN_ROWS[name]
        report["training"][name] = train_row(s, device, amp, compiled, s.steps, s.max_train_s)
        free(device)
        log(f"train {name}: {report['training'][name]['images_per_s']} images/s")
        write_json(out, report)
    report["inference"] = inference(s, device)
    write_json(out, report)
    for name in ("fp32_compile", "bf16_compile"):
        left = deadline - time.monotonic()
        if left < s.compile_min_left_s:
            report["skipped"][name] = f"{left:.0f} s left, under compile_min_left_s"
            continue
        amp, compiled = TRAIN_ROWS[name]
        if s.dry_run:  # the same row, eager: compiling on the CPU would take minutes
            compiled = False
        row = train_row(s, device, amp, compiled, s.steps, s.max_train_s)
        free(device)
        row["compile_s"] = row["warmup_excess_s"]
        if s.dry_run:
            row["note"] = (
                "dry run: torch.compile replaced by eager on the CPU (compile_s: its warm-up)"
            )
        report["training"][name] = row
        log(f"train {name}: {row['images_per_s']} images/s, compile {row.get('compile_s')} s")
        write_json(out, report)


def ddp_part(s: Settings, out: Path) -> None:
    """Under torchrun: every rank trains (eager, ``s.ddp_amp``) on its device for the same
    number of steps; rank 0 writes images/s over all ranks, from the slowest rank's median."""
    import torch

    from tseg import distributed

    if s.threads:
        torch.set_num_threads(s.threads)
    device = device_for(s, distributed.local_rank())
    created = distributed.init(device)
    try:
        world = distributed.world_size()
        row = train_row(s, device, s.ddp_amp, False, s.ddp_steps, float("inf"), world)
        rows = distributed.all_gather_object(row)
    finally:
        distributed.cleanup(created)
    if distributed.env_rank() != 0:
        return
    slowest = max(r["step_s_median"] for r in rows)
    total = round(world * s.batch_size / slowest, 2)
    report = {
        "world_size": world,
        "backend": "nccl" if device.type == "cuda" else "gloo",
        "per_process_batch": s.batch_size,
        "amp": s.ddp_amp,
        "compiled": False,
        "steps": s.ddp_steps,
        "images_per_s_total": total,
        "images_per_s_per_process": round(total / world, 2),
        "step_s_median_per_rank": [r["step_s_median"] for r in rows],
        "peak_memory_mb_per_rank": [r["peak_memory_mb"] for r in rows],
    }
    if world == 1:
        report["note"] = "one process: build_run wraps the model in DDP only when world_size > 1"
    log(f"DDP x{world}: {total} images/s")
    write_json(out, report)


def merge(
    parts: Path,
    command: str,
    exit_codes: dict[str, int],
    dry_run: bool,
    load_before: list[float] | None = None,
) -> dict:
    """The report from the parts' files: every figure, what is missing and why; the provenance
    of the whole run (``load_before``: gpu.sh's load average before its first part)."""
    found = {
        p: json.loads((parts / f"{p}.json").read_text())
        for p in PARTS
        if (parts / f"{p}.json").exists()
    }
    single = found.get("single", {})
    training = dict(single.get("training", {}))
    if "ddp" in found:
        training["ddp"] = found["ddp"]
        one = training.get({"none": "fp32", "bf16": "bf16"}.get(found["ddp"]["amp"], ""))
        if one:  # DDP's images/s per process over one process's, same precision, eager
            training["ddp"]["scaling_over_one_process"] = round(
                found["ddp"]["images_per_s_per_process"] / one["images_per_s"], 3
            )
    missing = [k for k in TRAIN_ROWS if k not in training] + (
        ["ddp"] if "ddp" not in training else []
    )
    if "inference" not in single:
        missing.append("inference")
    report = {
        "what": WHAT,
        "dry_run": dry_run,
        **provenance.git_state(),
        "command": command or None,
        "machine": single.get("machine"),
        "load_average_before": load_before,
        "settings": single.get("settings"),
        "memory": single.get("memory"),
        "data": "shapes batches from the run's own loader, rendered once, held on the device "
        "and cycled: images/s time the model's step, not the data path",
        "training": training,
        "inference": single.get("inference"),
        "skipped": single.get("skipped", {}),
        "missing": missing,
        "parts": {p: {"exit_code": exit_codes.get(p), "file": p in found} for p in PARTS},
    }
    why = {
        "machine": "the single part wrote no file",
        "load_average_before": "gpu.sh passed no --load-before",
    }
    return provenance.finish(report, why)


def summary(r: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"commit {r['commit']}, "
        + ("dry run on the CPU" if r["dry_run"] else f"GPUs {(r['machine'] or {}).get('gpus')}")
    ]
    for name, row in r["training"].items():
        ips = row.get("images_per_s", row.get("images_per_s_total"))
        extra = f", compile {row['compile_s']} s" if "compile_s" in row else ""
        lines.append(f"train {name}: {ips} images/s{extra}")
    inf = r.get("inference") or {}
    for name, rows in inf.get("rows", {}).items():
        lines.append(
            f"{name}: " + ", ".join(f"L={n} {1000 * v['median_s']:.1f} ms" for n, v in rows.items())
        )
    if r["missing"]:
        lines.append(f"missing: {', '.join(r['missing'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    start = time.monotonic()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("part", choices=("single", "ddp", "merge"))
    ap.add_argument("--out", required=True, help="the part's JSON (merge: the report)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, micro sizes, no compile")
    ap.add_argument("--deadline-s", type=float, default=float("inf"), help="single: time left")
    ap.add_argument("--parts", help="merge: the folder of the parts' JSON files")
    ap.add_argument("--command", default="", help="merge: the command line, for the record")
    ap.add_argument(
        "--load-before", default="", help="merge: the load average before the first part"
    )
    ap.add_argument(
        "--exit-code", action="append", default=[], help="merge: PART=CODE, from gpu.sh"
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.part == "merge":
        if args.dry_run and out.resolve() == (RESULTS / "gpu.json").resolve():
            ap.error("a dry run does not write benchmarks/results/gpu.json; choose another --out")
        codes = {k: int(v) for k, v in (x.split("=", 1) for x in args.exit_code)}
        load = [float(v) for v in args.load_before.split()] or None
        report = merge(Path(args.parts), args.command, codes, args.dry_run, load)
        write_json(out, report)
        print(summary(report))
        print(f"wrote {out}")
        return 0
    s = settings(args.dry_run)
    if args.part == "single":
        single_part(s, out, start + args.deadline_s)
    else:
        ddp_part(s, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
