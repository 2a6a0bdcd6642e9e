"""Speed benchmark: TSEG against CLIPSeg on the CPU, the cost of more expressions, and how close
the image encoder runs to the machine's limit.

    python benchmarks/speed.py              # the full measurement (about 10 min on 2 cores)
    python benchmarks/speed.py --quick      # fewer repeats, no CLIPSeg row at L=64 (development)

In one process, on the same decoded image (640 x 480 uint8) and the same L strings:

- TSEG's `paper` preset (ViT-S/16 at 384 px, BERT-Small; random weights: they do not change the
  cost) through `tseg.inference.Segmenter`, from the decoded image and strings to masks at image
  resolution, with a cold text cache (every call encodes its L strings) and with a warm one.
- CLIPSeg in the architecture of its released checkpoint `CIDAS/clipseg-rd64-refined` (CLIP
  ViT-B/16 at 352 px and CLIP's 12-layer text transformer, reduce_dim 64, extract_layers 3, 6, 9,
  refined transposed convolution; random weights), run two ways: as its documentation shows
  (`processor(text=phrases, images=[image] * L)` then `model(**inputs)`: the image goes through
  the vision tower once per phrase), and "vision once": the vision tower once per image, up to its
  last extracted layer, and only the decoder per phrase. Both end with the same upsampling of the
  352 x 352 logits to image resolution and thresholding that TSEG's masks get.
- Per-image throughput on a batch of images sharing one expression set (TSEG's text cache warm).
- TSEG's overhead: end-to-end time over the bare image-encoder forward at the same input size,
  and the time of each stage Segmenter goes through. TSEG's rows and the bare encoder are timed
  in alternation, round after round, so that the ratios compare runs under the same load.
- Training steps of the `tiny` and `paper` presets on `shapes`: images/s and the share of a step
  spent outside the encoders' forward and backward (timed by module hooks and autograd hooks).
- Peak resident memory of every configuration, each in a fresh subprocess (see `memory_probe`).
- The machine's limit: FLOPs of the image-encoder forward (FlopCounterMode) over its time,
  against the measured rate of a large fp32 matrix product on the same threads (the two timed
  in alternation), and the FLOPs of each model's parts, which explain the rows.

No model hub is used: CLIPSeg's tokenizer is transformers' `CLIPTokenizer` (CLIP's normaliser,
pre-tokeniser and byte-level BPE) with a vocabulary trained here on the benchmark's phrases, since
CLIP's 49k-word vocabulary file is not on this machine; each word of these phrases is one token,
as in CLIP's vocabulary. Writes benchmarks/results/speed.json and speed.md.

What other benchmarks share (CLIPSeg, the inputs, the timing, provenance) is in benchmarks/lib;
this file is the one measurement whose parts share its Settings and report, which is why it is
over 400 lines: the rows, the memory probes in fresh processes, the targets and the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/speed.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.clipseg import (  # noqa: E402
    CLIPSEG_RELEASED,
    ClipsegDocumented,
    ClipsegVisionOnce,
    build_clipseg,
    clip_tokenizer,
    clipseg_processor,
)
from benchmarks.lib.report import RESULTS, log, write_report  # noqa: E402
from benchmarks.lib.timing import count_flops, time_call, time_interleaved  # noqa: E402
from benchmarks.lib.timing import timing_row as _row  # noqa: E402
from benchmarks.lib.train_step import train_throughput  # noqa: E402
from benchmarks.lib.tseg_model import (  # noqa: E402
    PAPER_FROM_SCRATCH,
    build_tseg,
    make_image,
    phrases,
    tseg_input,
)


@dataclass
class Settings:
    """Everything a run measures; the defaults are the full measurement."""

    threads: int = 2
    repeats: int = 7
    warmup: int = 1
    max_row_s: float = 40.0  # stop repeating a row after this long (at least one timed run)
    counts: tuple[int, ...] = (1, 4, 16, 64)  # L, expressions per image
    clipseg_counts: tuple[int, ...] = (1, 4, 16, 64)  # L for the documented CLIPSeg row
    image_hw: tuple[int, int] = (480, 640)
    tseg_overrides: tuple[str, ...] = PAPER_FROM_SCRATCH
    clipseg: dict[str, Any] = field(default_factory=lambda: dict(CLIPSEG_RELEASED))
    batch_images: int = 4
    batch_count: int = 4  # L of the batch-throughput rows
    overhead_count: int = 16  # L at which the overhead target is read
    # name -> (overrides, batch size, timed steps, warm-up steps)
    train: dict[str, tuple[tuple[str, ...], int, int, int]] = field(
        default_factory=lambda: {
            "tiny": (("model.preset=tiny", "data.train_size=4000"), 16, 20, 3),
            "paper": ((*PAPER_FROM_SCRATCH, "data.train_size=400"), 4, 4, 1),
        }
    )
    memory: bool = True
    matmul_n: int = 2048


def quick_settings() -> Settings:
    """Few repeats, no documented-CLIPSeg row at L=64: for development on a busy machine."""
    s = Settings(repeats=2, max_row_s=20.0, clipseg_counts=(1, 4, 16))
    s.train = {
        "tiny": (("model.preset=tiny", "data.train_size=4000"), 16, 5, 1),
        "paper": ((*PAPER_FROM_SCRATCH, "data.train_size=400"), 2, 2, 1),
    }
    return s


def extrapolate(rows: dict[int, dict[str, Any]], n: int) -> float | None:
    """Expected time at L=n from the largest measured L (linear in L: for CLIPSeg's rows)."""
    if not rows:
        return None
    k = max(rows)
    return rows[k]["median_s"] * n / k


def stage_breakdown(model, image: np.ndarray, texts: list[str], runs: int) -> dict[str, float]:
    """Median seconds per stage of one cold-cache Segmenter.predict call, timed by wrapping the
    model's methods (the stages Segmenter calls); "other" is the rest (decoding the input, resize,
    tensors to numpy, thresholds, result objects)."""
    from tseg.inference import Segmenter

    names = ["encode_image", "encode_text", "similarity", "pool", "masks_at"]
    spent: dict[str, float] = {}

    def wrap(name: str, fn: Callable) -> Callable:
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            out = fn(*a, **k)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            return out

        return timed

    originals = {n: getattr(model, n) for n in names}
    for n in names:
        setattr(model, n, wrap(n, originals[n]))
    per_run: list[dict[str, float]] = []
    try:
        for i in range(runs + 1):
            seg = Segmenter(model)
            spent.clear()
            t = time.perf_counter()
            seg.predict(image, texts)
            total = time.perf_counter() - t
            if i:  # the first run warms up
                per_run.append({**spent, "total": total})
    finally:
        for n in names:
            delattr(model, n)  # back to the class's methods
    out = {k: statistics.median(r.get(k, 0.0) for r in per_run) for k in [*names, "total"]}
    out["other"] = max(0.0, out["total"] - sum(out[n] for n in names))
    return out


# ---------------------------------------------------------------------------------------------
# The machine's limit


def encoder_vs_matmul(encoder: Callable[[], Any], n: int, rounds: int) -> dict[str, float]:
    """Median seconds of the image encoder and of an n x n fp32 matmul, timed in alternation so
    both see the same machine (a busy machine slows both alike)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    enc, mm = [], []
    with torch.inference_mode():
        encoder(), a @ b  # warm-up
        for _ in range(rounds):
            t = time.perf_counter()
            encoder()
            enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            a @ b
            mm.append(time.perf_counter() - t)
    return {
        "encoder_s": statistics.median(enc),
        "matmul_s": statistics.median(mm),
        "encoder_best_s": min(enc),
        "matmul_best_s": min(mm),
    }


# ---------------------------------------------------------------------------------------------
# Peak memory, each configuration in a fresh subprocess


def _rss_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def memory_probe(settings: Settings, kind: str, count: int) -> dict[str, Any]:
    """Run one configuration once in this (fresh) process and report its memory.

    ``imports_mb``: resident set after importing the libraries (torch alone maps ~0.5 GB).
    ``setup_mb``: resident set after building the model and inputs as well (for training: the
    imports only, since the model is built inside the measured run).
    ``peak_mb``: the high-water mark of the resident set from then on (Linux's VmHWM, reset
    after the setup through /proc/self/clear_refs), so it covers model, inputs and activations,
    but not transient build-time spikes. Falls back to the whole process's ru_maxrss where the
    reset is not available.
    """
    import timm  # noqa: F401 - every library any probe uses, so imports_mb is comparable
    import transformers  # noqa: F401

    import tseg.inference  # noqa: F401
    import tseg.train  # noqa: F401

    torch.set_num_threads(settings.threads)
    imports_kb = _rss_kb("VmRSS")
    texts = phrases(max(count, 1))
    image = make_image(settings.image_hw)
    if kind.startswith("tseg"):
        from tseg.inference import Segmenter

        model, _ = build_tseg(settings.tseg_overrides, phrases(64))
        seg = Segmenter(model)
        if kind == "tseg_batch":
            imgs = [make_image(settings.image_hw, seed=i) for i in range(settings.batch_images)]
            run = lambda: seg.predict_batch(imgs, texts)  # noqa: E731
        else:
            run = lambda: seg.predict(image, texts)  # noqa: E731
    elif kind.startswith("clipseg"):
        model = build_clipseg(settings.clipseg)
        proc = clipseg_processor(clip_tokenizer(phrases(64)), settings.clipseg["size"])
        runner = (ClipsegVisionOnce if "vision_once" in kind else ClipsegDocumented)(model, proc)
        imgs = [image]
        if kind.endswith("_batch"):
            imgs = [make_image(settings.image_hw, seed=i) for i in range(settings.batch_images)]
        run = lambda: runner(imgs, texts)  # noqa: E731
    elif kind.startswith("train_"):
        overrides, batch, _, _ = settings.train[kind[len("train_") :]]
        run = lambda: train_throughput(tuple(overrides), batch, 1, 1)  # noqa: E731
    else:
        raise ValueError(f"unknown memory probe {kind!r}")
    setup_kb = _rss_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        method = "VmHWM after setup"
    except OSError:
        method = "ru_maxrss of the whole process"
    run()
    peak_kb = (
        _rss_kb("VmHWM")
        if method.startswith("VmHWM")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    return {
        "imports_mb": round(imports_kb / 1024, 1),
        "setup_mb": round(setup_kb / 1024, 1),
        "peak_mb": round(peak_kb / 1024, 1),
        "method": method,
    }


def memory_in_subprocess(settings: Settings, kind: str, count: int) -> dict[str, Any]:
    arg = json.dumps({"settings": asdict(settings), "kind": kind, "count": count})
    env = {**os.environ, "OMP_NUM_THREADS": str(settings.threads)}
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--memory-probe", arg],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=900,
        )
    except subprocess.CalledProcessError as e:
        return {"error": e.stderr.strip().splitlines()[-1] if e.stderr.strip() else str(e)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def settings_from_dict(d: dict[str, Any]) -> Settings:
    s = Settings(**d)
    s.counts, s.clipseg_counts = tuple(s.counts), tuple(s.clipseg_counts)
    s.image_hw = tuple(s.image_hw)  # type: ignore[assignment]
    s.tseg_overrides = tuple(s.tseg_overrides)
    s.train = {k: (tuple(o), b, n, w) for k, (o, b, n, w) in s.train.items()}
    return s


def machine(threads: int) -> dict[str, Any]:
    """provenance.machine with the torch threads every row ran on."""
    return provenance.machine(threads=threads)


def measure_tseg(s: Settings, model, image: np.ndarray, corpus: list[str]) -> dict[str, Any]:
    """TSEG rows: bare image encoder, L expressions with a cold and a warm text cache, stages."""
    from tseg.inference import Segmenter

    x = tseg_input(model, image)

    def encoder() -> None:
        with torch.inference_mode():
            model.image_encoder(x)

    # Every TSEG row in one interleaved group: the ratios the targets read (L=64 over L=1, end to
    # end over the bare encoder) then compare runs made under the same machine load.
    calls: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {
        "encoder": (encoder, None)
    }
    for n in s.counts:
        texts = corpus[:n]
        box: dict[str, Segmenter] = {}
        calls[f"cold {n}"] = (
            lambda texts=texts, box=box: box["seg"].predict(image, texts),
            lambda box=box: box.__setitem__("seg", Segmenter(model)),  # a cold text cache
        )
        seg = Segmenter(model)
        calls[f"warm {n}"] = (lambda texts=texts, seg=seg: seg.predict(image, texts), None)
    t = time_interleaved(calls, s.repeats, s.warmup, 2 * s.max_row_s)
    enc = t["encoder"]
    log(f"TSEG image encoder {tuple(x.shape[-2:])}: {1000 * enc['median_s']:.0f} ms")
    cold_rows = {str(n): _row(t[f"cold {n}"]) for n in s.counts}
    warm_rows = {str(n): _row(t[f"warm {n}"]) for n in s.counts}
    for n in s.counts:
        log(
            f"TSEG L={n}: {1000 * cold_rows[str(n)]['median_s']:.0f} ms (text cache warm: "
            f"{1000 * warm_rows[str(n)]['median_s']:.0f} ms)"
        )
    k = s.overhead_count if s.overhead_count in s.counts else max(s.counts)
    stages = stage_breakdown(model, image, corpus[:k], max(1, min(3, s.repeats)))
    return {
        "model": {
            "preset": model.cfg.preset,
            "image_encoder": f"{model.cfg.image.timm_model}, depth {model.cfg.image.depth}, "
            f"width {model.cfg.image.embed_dim}, patch {model.cfg.image.patch_size}",
            "text_encoder": f"{model.cfg.text.num_layers} layers, hidden {model.cfg.text.hidden_size}",
            "overrides": list(s.tseg_overrides),
            "input": list(x.shape[-2:]),
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        },
        "image_encoder": _row(enc),
        "rows": {"tseg": cold_rows, "tseg_warm_text": warm_rows},
        "stages": {"count": k, "seconds": {n: round(v, 5) for n, v in stages.items()}},
        "overhead": {
            str(n): {
                "end_to_end_over_encoder": round(
                    cold_rows[str(n)]["median_s"] / enc["median_s"], 3
                ),
                "warm_text_over_encoder": round(warm_rows[str(n)]["median_s"] / enc["median_s"], 3),
            }
            for n in s.counts
        },
    }


def clipseg_flops(clip, once: ClipsegVisionOnce, proc, px: Tensor, text: str) -> dict[str, float]:
    """GFLOPs of CLIPSeg's parts: the full vision tower (the documented path runs it per phrase),
    the vision tower up to the last extracted layer (vision once), and per phrase its text
    encoder and decoder."""
    ids = proc.tokenizer([text], return_tensors="pt")
    acts = once.activations(px)
    with torch.inference_mode():
        cond = clip.clip.get_text_features(**ids).pooler_output
    parts = {
        "clipseg_vision_full": lambda: clip.clip.get_image_features(pixel_values=px),
        "clipseg_vision_to_last_extracted_layer": lambda: once.activations(px),
        "clipseg_text_per_phrase": lambda: clip.clip.get_text_features(**ids),
        "clipseg_decoder_per_phrase": lambda: clip.decoder(tuple(acts), cond),
    }
    return {k: round(count_flops(f) / 1e9, 3) for k, f in parts.items()}


def measure_clipseg(s: Settings, image: np.ndarray, corpus: list[str]) -> dict[str, Any]:
    """CLIPSeg rows (documented and vision-once), its batch rows and its vision FLOPs."""
    clip = build_clipseg(s.clipseg)
    proc = clipseg_processor(clip_tokenizer(corpus), s.clipseg["size"])
    vc = clip.config.vision_config
    documented, once = ClipsegDocumented(clip, proc), ClipsegVisionOnce(clip, proc)
    doc_rows: dict[int, dict[str, Any]] = {}
    once_rows: dict[int, dict[str, Any]] = {}
    for n in s.counts:
        texts = corpus[:n]
        if n in s.clipseg_counts:
            t = time_call(
                lambda texts=texts: documented([image], texts),
                s.repeats,
                s.warmup,
                s.max_row_s,
                expected_s=extrapolate(doc_rows, n),
            )
            doc_rows[n] = _row(t)
            log(f"CLIPSeg documented L={n}: {1000 * t['median_s']:.0f} ms ({t['runs']} runs)")
        t = time_call(lambda texts=texts: once([image], texts), s.repeats, s.warmup, s.max_row_s)
        once_rows[n] = _row(t)
        log(f"CLIPSeg vision once L={n}: {1000 * t['median_s']:.0f} ms")
    imgs = [make_image(s.image_hw, seed=i) for i in range(s.batch_images)]
    texts = corpus[: s.batch_count]
    batch = {
        "clipseg_vision_once": time_call(
            lambda: once(imgs, texts), s.repeats, s.warmup, s.max_row_s
        ),
        "clipseg_documented": time_call(
            lambda: documented(imgs, texts),
            s.repeats,
            s.warmup,
            s.max_row_s,
            expected_s=extrapolate(doc_rows, s.batch_count * s.batch_images),
        ),
    }
    px = torch.zeros(1, 3, s.clipseg["size"], s.clipseg["size"])
    return {
        "model": {
            "spec": s.clipseg,
            "vision": f"hidden {vc.hidden_size}, {vc.num_hidden_layers} layers, "
            f"patch {vc.patch_size}, {s.clipseg['size']} px",
            "parameters_m": round(sum(p.numel() for p in clip.parameters()) / 1e6, 2),
            "tokens_per_phrase": [len(i) for i in proc.tokenizer(corpus[:4])["input_ids"]],
            "tokenizer": "transformers CLIPTokenizer, vocabulary trained on the phrases (no hub)",
        },
        "rows": {
            "clipseg_documented": {str(n): r for n, r in doc_rows.items()},
            "clipseg_vision_once": {str(n): r for n, r in once_rows.items()},
        },
        "batch": {k: _row(t, s.batch_images) for k, t in batch.items()},
        "gflops": clipseg_flops(clip, once, proc, px, corpus[0]),
    }


def run(settings: Settings, command: str | None = None) -> dict[str, Any]:
    """Measure everything; returns the report written to speed.json (``command``: the command
    line, for the record)."""
    from tseg.inference import Segmenter

    s = settings
    torch.set_num_threads(s.threads)
    start = time.perf_counter()
    corpus = phrases(64)
    image = make_image(s.image_hw)
    report: dict[str, Any] = {
        **provenance.start(command, machine(s.threads)),
        "settings": asdict(s),
        "image": {"height": s.image_hw[0], "width": s.image_hw[1]},
        "phrases": corpus[: max(s.counts)],
    }
    model, _ = build_tseg(s.tseg_overrides, corpus)
    tseg = measure_tseg(s, model, image, corpus)
    clip = measure_clipseg(s, image, corpus)
    report["tseg_model"], report["clipseg_model"] = tseg["model"], clip["model"]
    report["tseg_image_encoder"] = tseg["image_encoder"]
    report["single_image"] = {**tseg["rows"], **clip["rows"]}
    report["tseg_stages"], report["overhead"] = tseg["stages"], tseg["overhead"]

    # Batch throughput: B images, one expression set (TSEG's text cache warm).
    imgs = [make_image(s.image_hw, seed=i) for i in range(s.batch_images)]
    texts = corpus[: s.batch_count]
    seg = Segmenter(model)
    t = time_call(lambda: seg.predict_batch(imgs, texts), s.repeats, s.warmup, s.max_row_s)
    report["batch"] = {
        "images": s.batch_images,
        "count": s.batch_count,
        "tseg": _row(t, s.batch_images),
        **clip["batch"],
    }
    log(
        "batch: "
        + ", ".join(
            f"{k} {report['batch'][k]['images_per_s']:.2f} img/s"
            for k in ("tseg", "clipseg_documented", "clipseg_vision_once")
        )
    )

    # The machine's limit, and FLOPs that explain the rows.
    x = tseg_input(model, image)
    flops = count_flops(lambda: model.image_encoder(x))
    t = encoder_vs_matmul(lambda: model.image_encoder(x), s.matmul_n, max(3, s.repeats))
    mm_flops = 2 * s.matmul_n**3
    report["limit"] = {
        "matmul_n": s.matmul_n,
        "matmul_gflops_per_s": round(mm_flops / t["matmul_s"] / 1e9, 2),
        "tseg_image_encoder_gflops": round(flops / 1e9, 3),
        "tseg_image_encoder_gflops_per_s": round(flops / t["encoder_s"] / 1e9, 2),
        "tseg_image_encoder_fraction_of_matmul": round(
            flops / t["encoder_s"] / (mm_flops / t["matmul_s"]), 3
        ),
        "fraction_from_best_runs": round(
            flops / t["encoder_best_s"] / (mm_flops / t["matmul_best_s"]), 3
        ),
    }
    report["gflops"] = {
        "tseg_image_encoder": round(flops / 1e9, 3),
        "tseg_text_encoder": {
            str(n): round(count_flops(lambda n=n: model.encode_text(corpus[:n])) / 1e9, 3)
            for n in s.counts
        },
        **clip["gflops"],
    }
    log(f"limit: {report['limit']}")

    # Training steps.
    report["training"] = {}
    for name, (overrides, bs, steps, warm) in s.train.items():
        report["training"][name] = train_throughput(tuple(overrides), bs, steps, warm)
        log(f"train {name}: {report['training'][name]['images_per_s']:.2f} img/s")

    # Peak memory, one fresh subprocess per configuration.
    if s.memory:
        jobs = [(f"tseg L={n}", "tseg", n) for n in s.counts]
        jobs += [(f"clipseg_documented L={n}", "clipseg_documented", n) for n in s.clipseg_counts]
        jobs += [(f"clipseg_vision_once L={n}", "clipseg_vision_once", n) for n in s.counts]
        jobs += [
            (f"{k} batch", f"{k}_batch", s.batch_count)
            for k in ("tseg", "clipseg_documented", "clipseg_vision_once")
        ]
        jobs += [(f"train {k}", f"train_{k}", 0) for k in s.train]
        report["memory"] = {}
        for label, kind, n in jobs:
            report["memory"][label] = memory_in_subprocess(s, kind, n)
            log(f"memory {label}: {report['memory'][label]}")
    report["targets"] = targets(report)
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    return provenance.finish(report)


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets, read off the report; a figure that was not measured is left out."""
    single = r["single_image"]
    out: dict[str, dict[str, Any]] = {}

    def speedup(other: str, n: int) -> float | None:
        a, b = single["tseg"].get(str(n)), single[other].get(str(n))
        return None if a is None or b is None else b["median_s"] / a["median_s"]

    for name, other, n, goal in (
        ("tseg_vs_documented_clipseg_L1", "clipseg_documented", 1, 2.0),
        ("tseg_vs_documented_clipseg_L16", "clipseg_documented", 16, 20.0),
        ("tseg_vs_vision_once_clipseg_L16", "clipseg_vision_once", 16, 1.0),
    ):
        v = speedup(other, n)
        if v is not None:
            out[name] = {"value": round(v, 2), "target": f">= {goal}x", "met": v >= goal}
    for key, suffix in (("tseg", ""), ("tseg_warm_text", "_text_cache_warm")):
        t1, t64 = single[key].get("1"), single[key].get("64")
        if t1 and t64:
            v = t64["median_s"] / t1["median_s"]
            out[f"tseg_L64_over_L1{suffix}"] = {
                "value": round(v, 3),
                "target": "<= 1.3",
                "met": v <= 1.3,
            }
    k = r["settings"]["overhead_count"]
    for key, suffix in (
        ("end_to_end_over_encoder", ""),
        ("warm_text_over_encoder", "_text_cache_warm"),
    ):
        v = r["overhead"].get(str(k), {}).get(key)
        if v is not None:
            out[f"end_to_end_over_encoder_L{k}{suffix}"] = {
                "value": v,
                "target": "<= 1.15",
                "met": v <= 1.15,
            }
    for name, t in r.get("training", {}).items():
        v = t["share_outside_encoders"]
        out[f"train_{name}_share_outside_encoders"] = {
            "value": round(v, 3),
            "target": "<= 0.20",
            "met": v <= 0.20,
        }
    return out


# ---------------------------------------------------------------------------------------------
# Markdown


def _mb(mem: dict[str, Any], key: str) -> str:
    """Peak RSS and, in brackets, the part above the imported libraries."""
    m = mem.get(key)
    if not m or "peak_mb" not in m:
        return "-"
    return f"{m['peak_mb']:.0f} ({m['peak_mb'] - m['imports_mb']:.0f})"


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["settings"]
    single, mem = r["single_image"], r.get("memory", {})
    lines = [
        f"CPU speed, torch threads: {m['threads']}, on {m['cpu']} ({m['cores']} cores; torch {m['torch']}, "
        f"transformers {m['transformers']}); one {r['image']['width']} x {r['image']['height']} "
        f"decoded image to masks at image resolution; median of up to {s['repeats']} runs after "
        f"warm-up; random weights (they do not change the cost). Peak RSS: each configuration in a "
        f"fresh process, VmHWM from after model construction, in MB (in brackets: above the ~0.8 GB that importing torch and transformers takes). Load average at start: "
        f"{r['load_average_before']}.",
        "",
        "| L expressions | " + " | ".join(str(n) for n in s["counts"]) + " |",
        "|---|" + "---|" * len(s["counts"]),
    ]
    names = {
        "tseg": f"TSEG `{r['tseg_model']['preset']}` (input {r['tseg_model']['input'][0]}x"
        f"{r['tseg_model']['input'][1]}), end to end",
        "tseg_warm_text": "TSEG, text cache warm (expressions seen before)",
        "clipseg_documented": "CLIPSeg rd64-refined, as documented (image per phrase)",
        "clipseg_vision_once": "CLIPSeg rd64-refined, vision tower once",
    }
    for key, label in names.items():
        cells = []
        for n in s["counts"]:
            row = single[key].get(str(n))
            if row is None:
                cells.append("-")
                continue
            ms = 1000 * row["median_s"]
            mem_key = f"{key} L={n}"
            extra = f", {_mb(mem, mem_key)} MB" if mem_key in mem else ""
            ratio = ""
            if key.startswith("clipseg") and str(n) in single["tseg"]:
                ratio = f" ({row['median_s'] / single['tseg'][str(n)]['median_s']:.1f}x TSEG)"
            cells.append(f"{ms:.0f} ms{ratio}{extra}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    short = [
        f"{key} L={n}: {row['runs']} run(s)" + ("" if row["warmup"] else ", no warm-up")
        for key in names
        for n, row in single[key].items()
        if row["runs"] < s["repeats"] or not row["warmup"]
    ]
    if short:
        lines += [
            "",
            "Fewer runs (a row stops repeating after max_row_s): " + "; ".join(short) + ".",
        ]
    b = r["batch"]
    lines += [
        "",
        f"Batch of {b['images']} images, {b['count']} expressions each (TSEG text cache warm): "
        + ", ".join(
            f"{k} **{b[k]['images_per_s']:.2f}** images/s ({_mb(mem, f'{k} batch')} MB)"
            for k in ("tseg", "clipseg_documented", "clipseg_vision_once")
        )
        + ".",
        "",
    ]
    ov = r["overhead"]
    st = r["tseg_stages"]
    enc_ms = 1000 * r["tseg_image_encoder"]["median_s"]
    lines.append(
        f"TSEG overhead: end to end / bare image-encoder forward ({enc_ms:.0f} ms) = "
        + ", ".join(f"{ov[str(n)]['end_to_end_over_encoder']:.2f} (L={n})" for n in s["counts"])
        + f". Stages at L={st['count']} (ms): "
        + ", ".join(f"{k} {1000 * v:.1f}" for k, v in st["seconds"].items())
        + "."
    )
    lines += [
        "",
        "| Training step | images/s | batch | outside encoders' fwd+bwd | data | optimizer | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in r.get("training", {}).items():
        sh = t["share"]
        lines.append(
            f"| `{name}` ({t['image_size']} px, {t['optimizer']}) | {t['images_per_s']:.2f} | "
            f"{t['batch_size']} | {100 * t['share_outside_encoders']:.1f}% | "
            f"{100 * sh['data_loading_and_collation']:.1f}% | {100 * sh['optimizer_step']:.1f}% | "
            f"{_mb(mem, f'train {name}')} |"
        )
    lim, g = r["limit"], r["gflops"]
    lines += [
        "",
        f"Machine limit: the TSEG image encoder does {lim['tseg_image_encoder_gflops']:.1f} GFLOP "
        f"per image at {lim['tseg_image_encoder_gflops_per_s']:.1f} GFLOP/s, "
        f"{100 * lim['tseg_image_encoder_fraction_of_matmul']:.0f}% of the "
        f"{lim['matmul_gflops_per_s']:.1f} GFLOP/s of a {lim['matmul_n']}x{lim['matmul_n']} fp32 "
        f"matmul on the same threads (timed in alternation; best runs: "
        f"{100 * lim['fraction_from_best_runs']:.0f}%).",
        "",
        f"GFLOP per image: TSEG image encoder {g['tseg_image_encoder']:.1f}, its text encoder "
        + ", ".join(f"{v:.2f} (L={n})" for n, v in g["tseg_text_encoder"].items())
        + f"; CLIPSeg vision tower {g['clipseg_vision_full']:.1f} (run once per phrase as "
        f"documented; {g['clipseg_vision_to_last_extracted_layer']:.1f} up to its last extracted "
        f"layer), and per phrase its text encoder {g['clipseg_text_per_phrase']:.2f} and decoder "
        f"{g['clipseg_decoder_per_phrase']:.2f}.",
        "",
        "| Target | value | goal | met |",
        "|---|---|---|---|",
    ]
    for name, t in r["targets"].items():
        lines.append(f"| {name} | {t['value']} | {t['target']} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="few repeats, for development")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument(
        "--out",
        default=str(RESULTS / "speed.json"),
        help="JSON path; the markdown table goes beside it with .md",
    )
    ap.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: one config, fresh process
    args = ap.parse_args(argv)
    if args.memory_probe:
        spec = json.loads(args.memory_probe)
        out = memory_probe(settings_from_dict(spec["settings"]), spec["kind"], spec["count"])
        print(json.dumps(out))
        return 0
    s = quick_settings() if args.quick else Settings()
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads must be >= 1, got {args.threads}")
        s = replace(s, threads=args.threads)
    if args.no_memory:
        s = replace(s, memory=False)
    report = run(s, provenance.command_line(__file__, argv))
    write_report(Path(args.out), report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
