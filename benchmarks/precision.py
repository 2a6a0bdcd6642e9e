"""fp32 against bf16 and int8 inference on the CPU: speed, the machine's peaks, and agreement.

    python benchmarks/precision.py --checkpoint runs/demo      # the full run (about 10 min)
    python benchmarks/precision.py --checkpoint runs/demo --quick

Writes benchmarks/results/precision.{json,md}. Three parts:

* Speed, TSEG ``paper`` preset (ViT-S/16 at 384 px, BERT-Small; random weights, which do not
  change the cost), one 640 x 480 image, 2 threads: ``Segmenter.predict`` end to end at
  L = 1, 16, 64 new expressions (cold text cache) and at L = 16 with the text cache warm, for
  every precision of the torch path and, with ``--onnx``, for fp32 and int8 ONNX Runtime
  exports; the torch rows timed in turn, round after round, so each ratio compares runs made
  under the same load, then the ONNX rows likewise. Also the bare image encoder per precision.
* Peaks: GFLOP/s (GOP/s for int8) of a 2048 x 2048 x 2048 matrix product in fp32, bf16 and int8
  (torch._int_mm, and the dynamically quantized linear the int8 path runs), each timed like the
  encoder; the encoder's share of its precision's peak.
* Agreement on a trained checkpoint (``--checkpoint``, e.g. the offline demo): the share of
  mask pixels of the test split equal to fp32's, the largest probability gap, and test mIoU per
  precision through ``tseg.eval`` (the same call as ``tseg eval --precision``).
* With ``--demo`` (a ``tseg demo`` folder): the self-trained student's seconds per image (no
  CRF; fp32 and int8) against its teacher's, without and with the CRF at inference.

Targets (issue 29): ``int8_speedup_L16`` is the best int8 path (torch or ONNX Runtime) over
torch fp32; ``onnx fp32_speedup_*`` is torch fp32 over ONNX Runtime fp32 at each L (>= 1: ONNX
Runtime at least as fast).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/precision.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, log, write_report  # noqa: E402
from benchmarks.lib.timing import count_flops, median_s, time_interleaved  # noqa: E402
from benchmarks.lib.tseg_model import (  # noqa: E402
    PAPER_FROM_SCRATCH,
    build_tseg,
    make_image,
    phrases,
)

# Row name -> (inference.precision, inference.text_precision) of the torch path.
TORCH_PRECISIONS = {
    "fp32": ("fp32", ""),
    "bf16": ("bf16", ""),
    "int8": ("int8", ""),
    "fp32, int8 text": ("fp32", "int8"),
}


def onnx_segmenters(model, cfg, folder: Path, threads: int) -> dict[str, Callable[[], Any]]:
    """fp32 and int8 ONNX Runtime exports of ``model`` -> a factory per precision (a fresh
    OrtSegmenter: a cold text cache). Empty when this tseg cannot export int8."""
    import inspect

    from tseg.checkpoint import save_checkpoint
    from tseg.export.onnx_export import export_onnx
    from tseg.export.ort_segmenter import OrtSegmenter

    if "precision" not in inspect.signature(export_onnx).parameters:
        log("this tseg's export_onnx has no precision option: no ONNX rows")
        return {}
    ckpt = save_checkpoint(model, cfg, folder / "run", 0)
    out = {}
    for p in ("fp32", "int8"):
        export_onnx(ckpt, folder / f"onnx-{p}", precision=p)
        out[f"onnx {p}"] = lambda p=p: OrtSegmenter(folder / f"onnx-{p}", threads=threads)
    return out


def speed(
    threads: int,
    counts: tuple[int, ...],
    rounds: int,
    onnx: bool,
    overrides: tuple[str, ...] = PAPER_FROM_SCRATCH,
    image_hw: tuple[int, int] = (480, 640),
) -> dict[str, Any]:
    """End-to-end and encoder medians per precision (see the module docstring)."""
    from tseg.inference import Segmenter

    corpus = phrases(max(counts))
    model, cfg = build_tseg(overrides, corpus)
    image = make_image(image_hw)
    torch_paths: dict[str, Callable[[], Any]] = {
        k: (lambda p=p, t=t: Segmenter(model, precision=p, text_precision=t))
        for k, (p, t) in TORCH_PRECISIONS.items()
    }
    tmp = tempfile.TemporaryDirectory()
    groups = [torch_paths]
    if onnx:
        # A group of its own, timed after the torch rows: a runtime's threads spin for a while
        # after its work, and interleaved with the other runtime's calls they slowed both
        # (torch fp32 at L=1 380 ms after an ONNX row, 290 ms after a torch row).
        groups.append(onnx_segmenters(model, cfg, Path(tmp.name), threads))
    rows: dict[str, dict[str, Any]] = {}
    for factories in groups:
        calls = _calls(factories, model, image, corpus, counts)
        log(f"timing {len(calls)} rows, {rounds} rounds")
        t = time_interleaved(calls, rounds, 1, 1e9)
        for k, v in t.items():
            rows[k] = {"median_ms": round(1000 * v["median_s"], 1), "runs": v["runs"]}
            log(f"  {k}: {rows[k]['median_ms']} ms")
    x = model.preprocess(image)[None]
    gflop = count_flops(lambda: model.encode_image(x)) / 1e9
    tmp.cleanup()
    return {
        "model": "random weights: " + " ".join(overrides),
        "image": f"{image_hw[1]} x {image_hw[0]} (model input {x.shape[-2]} x {x.shape[-1]})",
        "counts": list(counts),
        "rounds": rounds,
        "encoder_gflop": round(gflop, 4),
        "rows": rows,
    }


def _calls(
    factories: dict[str, Callable[[], Any]],
    model,
    image: np.ndarray,
    corpus: list[str],
    counts: tuple[int, ...],
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]]:
    """Per path: predict at each L with a cold text cache (emptied untimed before each call),
    at L = 16 with a warm one, and (torch image towers) the bare image encoder."""
    from tseg.inference.precision import autocast

    calls: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {}
    for name, make in factories.items():
        cold = make()
        for n in counts:
            texts = corpus[:n]
            # New expressions for a segmenter in use: its text cache emptied (untimed). A new
            # segmenter per call would re-quantize the int8 model and time it on cold weights.
            calls[f"{name} cold {n}"] = (
                lambda texts=texts, seg=cold: seg.predict(image, texts),
                cold._text_cache.clear,
            )
        warm = make()
        k = 16 if 16 in counts else max(counts)
        calls[f"{name} warm {k}"] = (lambda warm=warm, k=k: warm.predict(image, corpus[:k]), None)
        if name in ("fp32", "bf16", "int8"):  # the image towers
            x = model.preprocess(image)[None]  # [1, 3, 384, 512]

            def encoder(m=warm.model, p=name, x=x) -> None:
                with torch.inference_mode(), autocast(p, torch.device("cpu")):
                    m.encode_image(x)

            calls[f"{name} encoder"] = (encoder, None)
    return calls


def peaks(n: int = 2048, runs: int = 7) -> dict[str, Any]:
    """GFLOP/s (GOP/s) of an n x n x n product in fp32, bf16 and int8 on these threads."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    ai = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
    bi = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
    lin = DynamicLinear(n, n)
    scale = float(b.abs().max()) / 127
    lin.set_weight_bias(torch.quantize_per_tensor(b, scale, 0, torch.qint8), None)
    ab, bb = a.bfloat16(), b.bfloat16()
    ops = 2 * n**3 / 1e9
    with torch.inference_mode():
        s = {
            "fp32 matmul": median_s(lambda: a @ b, runs),
            "bf16 matmul": median_s(lambda: ab @ bb, runs),
            "int8 matmul (torch._int_mm)": median_s(lambda: torch._int_mm(ai, bi), runs),
            "int8 dynamic linear (quantized::linear_dynamic)": median_s(lambda: lin(a), runs),
        }
    ms = {k: 1000 * v for k, v in s.items()}
    return {k: {"ms": round(v, 2), "gflop_per_s": round(ops / v * 1000, 1)} for k, v in ms.items()}


def agreement(checkpoint: str, max_images: int, onnx: bool) -> dict[str, Any]:
    """Per precision: mask pixels equal to fp32's on the test split, the largest probability
    gap, and test mIoU through tseg.eval."""
    from tseg.checkpoint import load_checkpoint
    from tseg.data import build_dataset
    from tseg.eval.pairs import evaluate_pairs
    from tseg.inference import Segmenter

    model, cfg, ckpt = load_checkpoint(checkpoint)
    ds = build_dataset(cfg.data, "test")
    n = min(max_images, len(ds)) if max_images else len(ds)
    segs: dict[str, Any] = {
        k: Segmenter(model, "cpu", cfg.inference, precision=p, text_precision=t)
        for k, (p, t) in TORCH_PRECISIONS.items()
    }
    tmp = tempfile.TemporaryDirectory()
    if onnx:
        import inspect

        from tseg.export.onnx_export import export_onnx
        from tseg.export.ort_segmenter import OrtSegmenter

        if "precision" in inspect.signature(export_onnx).parameters:
            for p in ("fp32", "int8"):
                export_onnx(ckpt, Path(tmp.name) / p, precision=p)
                segs[f"onnx {p}"] = OrtSegmenter(
                    Path(tmp.name) / p, threshold=cfg.inference.threshold
                )
    equal = {k: 0 for k in segs}
    gap = {k: 0.0 for k in segs}
    total = 0
    for start in range(0, n, 16):
        idxs = list(range(start, min(n, start + 16)))
        images, texts = [ds.image(i) for i in idxs], [ds.expressions(i) for i in idxs]
        ref = segs["fp32"].maps(images, texts)
        total += sum(m.probabilities.size for m in ref)
        for k, seg in segs.items():
            for r, m in zip(ref, seg.maps(images, texts)):
                thr = cfg.inference.threshold
                equal[k] += int(((r.probabilities > thr) == (m.probabilities > thr)).sum())
                gap[k] = max(gap[k], float(np.abs(r.probabilities - m.probabilities).max()))
    out: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "preset": cfg.model.preset,
        "images": n,
        "threshold": cfg.inference.threshold,
        "rows": {},
    }
    for k, seg in segs.items():
        # evaluate_pairs is tseg eval's pairs protocol (evaluate_checkpoint builds the same
        # Segmenter from the checkpoint and calls it).
        miou = evaluate_pairs(seg, ds, max_images=max_images)["miou"]
        out["rows"][k] = {
            "mask_pixels_equal_to_fp32": round(equal[k] / total, 6),
            "max_probability_gap": round(gap[k], 5),
            "test_miou": round(100 * miou, 2),
        }
        log(f"  {k}: {out['rows'][k]}")
    tmp.cleanup()
    return out


def student_timing(demo: str, n: int) -> dict[str, Any]:
    """Seconds per image of a ``tseg demo`` folder's student (no CRF; fp32 and int8) against
    its teacher without and with the CRF at inference, on the first ``n`` test images: the
    median over images of ``Segmenter.predict`` with the image's expressions (untimed first
    call per path, so no row pays for loading or quantizing)."""
    import time

    from tseg.checkpoint import load_checkpoint
    from tseg.data import build_dataset
    from tseg.inference import Segmenter

    root = Path(demo)
    teacher, student = root / "teacher", root / "round1" / "student"
    _, cfg, _ = load_checkpoint(student)
    ds = build_dataset(cfg.data, "test")
    n = min(n, len(ds))
    paths = {
        "teacher": Segmenter.from_checkpoint(teacher),
        "teacher + CRF": Segmenter.from_checkpoint(teacher, crf=True),
        "student": Segmenter.from_checkpoint(student),
        "student int8": Segmenter.from_checkpoint(student, precision="int8"),
    }
    rows: dict[str, Any] = {}
    for name, seg in paths.items():
        seg.predict(ds.image(0), ds.expressions(0))
        times = []
        for i in range(n):
            image, texts = ds.image(i), ds.expressions(i)
            t = time.perf_counter()
            seg.predict(image, texts)
            times.append(time.perf_counter() - t)
        rows[name] = {"seconds_per_image_median": round(float(np.median(times)), 4)}
        log(f"  {name}: {rows[name]}")
    return {"demo": str(root), "images": n, "rows": rows}


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets, read off this run."""
    rows = r["speed"]["rows"]
    out: dict[str, dict[str, Any]] = {}
    fp32 = rows.get("fp32 cold 16", {}).get("median_ms")
    for name in ("bf16", "onnx int8"):
        if f"{name} cold 16" in rows and fp32:
            v = fp32 / rows[f"{name} cold 16"]["median_ms"]
            out[f"{name}_speedup_L16"] = {"value": round(v, 2), "goal": ">= 2.0", "met": v >= 2.0}
    # The best int8 path (torch or ONNX Runtime) over torch fp32.
    int8 = {k: rows[f"{k} cold 16"]["median_ms"] for k in ("int8", "onnx int8")
            if f"{k} cold 16" in rows}  # fmt: skip
    if int8 and fp32:
        best = min(int8, key=int8.get)
        v = fp32 / int8[best]
        out["int8_speedup_L16"] = {"value": round(v, 2), "goal": ">= 2.0", "met": v >= 2.0,
                                   "path": best}  # fmt: skip
    # ONNX Runtime fp32 at least as fast as torch fp32, at every L (cold and warm).
    keys = [f"cold {n}" for n in r["speed"]["counts"]] + ["warm 16"]
    for key in keys:
        a, b = rows.get(f"fp32 {key}"), rows.get(f"onnx fp32 {key}")
        if a and b:
            v = a["median_ms"] / b["median_ms"]
            name = f"onnx fp32_speedup_{key}".replace("cold ", "L").replace(" 16", "16")
            out[name] = {"value": round(v, 2), "goal": ">= 1.0", "met": v >= 1.0}
    for name in ("fp32", "int8", "fp32, int8 text"):
        if f"{name} cold 64" in rows and f"{name} cold 1" in rows:
            v = rows[f"{name} cold 64"]["median_ms"] / rows[f"{name} cold 1"]["median_ms"]
            out[f"{name.replace(', ', '+').replace(' ', '_')}_L64_over_L1"] = {
                "value": round(v, 3),
                "goal": "<= 1.3",
                "met": v <= 1.3,
            }
    st = r.get("student", {}).get("rows", {})
    if "teacher + CRF" in st and "student" in st:
        v = (
            st["teacher + CRF"]["seconds_per_image_median"]
            / st["student"]["seconds_per_image_median"]
        )
        out["teacher_crf_over_student_seconds"] = {"value": round(v, 2), "goal": ">= 4",
                                                   "met": v >= 4}  # fmt: skip
    agree = r.get("agreement", {}).get("rows", {})
    if "fp32" in agree:
        base = agree["fp32"]["test_miou"]
        for k, v in agree.items():
            if k == "fp32":
                continue
            eq, d = v["mask_pixels_equal_to_fp32"], v["test_miou"] - base
            out[f"{k}_mask_pixels_equal"] = {"value": eq, "goal": ">= 0.99", "met": eq >= 0.99}
            out[f"{k}_miou_change"] = {
                "value": round(d, 2),
                "goal": "|d| <= 0.5",
                "met": abs(d) <= 0.5,
            }
    return out


def markdown(r: dict[str, Any]) -> str:
    s, m = r["speed"], r["machine"]
    lines = [
        f"Precision on the CPU ({m['cpu']}, {m['threads']} threads; commit `{r['commit'][:10]}`; "
        f"load average at start {r['load_average_before']}, at end {r['load_average_after']}). "
        f"`{r['command']}`.",
        "",
        f"Speed: {s['model']}; {s['image']}; median of {s['rounds']} rounds; the torch rows "
        "timed in turn, then the ONNX Runtime rows in turn. ms per image (speed-up over torch "
        "fp32 in brackets).",
        "",
        "| path | " + " | ".join(f"L={n} cold" for n in s["counts"]) + " | L=16 warm | encoder |",
        "|---|" + "---|" * (len(s["counts"]) + 2),
    ]
    names = dict.fromkeys(k.rsplit(" ", 2)[0] for k in s["rows"])
    for name in names:
        cells = []
        for key in [f"cold {n}" for n in s["counts"]] + ["warm 16", "encoder"]:
            v = s["rows"].get(f"{name} {key}")
            ref = s["rows"].get(f"fp32 {key}")
            if v is None:
                cells.append("-")
            elif ref and name != "fp32":
                cells.append(f"{v['median_ms']} ({ref['median_ms'] / v['median_ms']:.2f}x)")
            else:
                cells.append(str(v["median_ms"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    p = r["peaks"]
    gf = s["encoder_gflop"]
    lines += ["", f"Peaks (2048^3 product) and the image encoder ({gf} GFLOP) against them:", ""]
    lines += ["| kernel | GFLOP/s (GOP/s) |", "|---|---|"]
    lines += [f"| {k} | {v['gflop_per_s']} |" for k, v in p.items()]
    for name, peak in (
        ("fp32", "fp32 matmul"),
        ("bf16", "bf16 matmul"),
        ("int8", "int8 matmul (torch._int_mm)"),
    ):
        enc = s["rows"].get(f"{name} encoder")
        if enc:
            rate = gf / enc["median_ms"] * 1000
            lines.append(
                f"\n{name} encoder: {rate:.1f} GFLOP/s effective, "
                f"{100 * rate / p[peak]['gflop_per_s']:.0f}% of the {peak} peak."
            )
    a = r.get("agreement")
    if a:
        lines += [
            "",
            f"Agreement with fp32 on `{a['checkpoint']}` ({a['preset']} preset), test split, "
            f"{a['images']} images, mask threshold {a['threshold']}:",
            "",
            "| path | mask pixels equal to fp32 | largest probability gap | test mIoU |",
            "|---|---|---|---|",
        ]
        for k, v in a["rows"].items():
            lines.append(
                f"| {k} | {100 * v['mask_pixels_equal_to_fp32']:.2f}% | "
                f"{v['max_probability_gap']} | {v['test_miou']} |"
            )
    st = r.get("student")
    if st:
        lines += ["", f"The self-trained student against its teacher (`{st['demo']}`), first "
                  f"{st['images']} test images, median seconds per image of `predict`:", "",
                  "| path | s per image |", "|---|---|"]  # fmt: skip
        lines += [f"| {k} | {v['seconds_per_image_median']} |" for k, v in st["rows"].items()]
    lines += ["", "| Target | value | goal | met |", "|---|---|---|---|"]
    for k, v in r["targets"].items():
        lines.append(f"| {k} | {v['value']} | {v['goal']} | {'yes' if v['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a trained checkpoint for the agreement part")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--max-images", type=int, default=0, help="agreement: first N test images")
    ap.add_argument("--onnx", action="store_true", help="also ONNX Runtime fp32 / int8 exports")
    ap.add_argument("--demo", help="a tseg demo folder: time its student against the teacher")
    ap.add_argument("--student-images", type=int, default=50, help="test images for --demo")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 40 images")
    ap.add_argument("--out", default=str(RESULTS / "precision.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.max_images = 2, a.max_images or 40
    torch.set_num_threads(a.threads)
    r: dict[str, Any] = provenance.start(
        provenance.command_line(__file__, argv), provenance.machine(threads=a.threads)
    )
    r["speed"] = speed(a.threads, (1, 16, 64), a.rounds, a.onnx)
    r["peaks"] = peaks()
    if a.checkpoint:
        r["agreement"] = agreement(a.checkpoint, a.max_images, a.onnx)
    if a.demo:
        r["student"] = student_timing(a.demo, a.student_images)
    provenance.finish(r)
    r["targets"] = targets(r)
    write_report(Path(a.out), r, markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
