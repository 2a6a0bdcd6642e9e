"""ONNX Runtime vs torch on the same checkpoint: time per image, peak memory and parity.

    python benchmarks/export_speed.py runs/demo                 # exports to a temporary folder
    python benchmarks/export_speed.py runs/demo --onnx export/  # an existing `tseg export onnx`

Each path runs in its own subprocess (so the memory figures are separate, and the ONNX Runtime
one never imports torch) with the same threads. Time per image: one `shapes` test image at the
checkpoint's training size, 1 and 16 expressions, text embeddings already cached on both sides
(a warm-up call fills the cache), median of ``--repeats`` calls. Memory: the process's resident
set after loading the model and its peak (VmHWM) at the end. Parity: both paths' probability
maps and confidences on ``--images`` test images (some cropped non-square, some enlarged).
Writes benchmarks/results/export_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/export_speed.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.processes import status_mb  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402
from benchmarks.lib.timing import median_s  # noqa: E402


def worker(backend: str, model: str, inputs: str, out: str, threads: int, repeats: int) -> None:
    """Runs in a subprocess: load one backend, time it, dump its predictions for parity."""
    t = time.perf_counter()
    if backend == "onnx":
        from tseg.export.ort_segmenter import OrtSegmenter

        seg = OrtSegmenter(model, threads=threads)
    else:
        import torch

        from tseg.inference import Segmenter

        torch.set_num_threads(threads)
        seg = Segmenter.from_checkpoint(model, tta=None, crf=None)
    load_s = time.perf_counter() - t
    rss_loaded = status_mb("VmRSS")
    data = np.load(inputs, allow_pickle=False)
    vocab = [str(v) for v in data["vocab"]]
    image = data["timing_image"]
    timing = {}
    for n in (1, 16):
        # A warm-up call first: it fills the text cache.
        timing[str(n)] = round(median_s(lambda n=n: seg.predict(image, vocab[:n]), repeats), 5)
    probs, conf = [], []
    for k in range(int(data["n_parity"])):
        preds = seg.predict(data[f"image_{k}"], vocab)
        probs.append(np.stack([p.probability for p in preds]))
        conf.append([p.confidence for p in preds])
    np.savez(out, *probs, conf=np.array(conf))
    report = {
        "backend": backend,
        "load_s": round(load_s, 2),
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": status_mb("VmHWM"),
        "seconds_per_image": timing,
        "torch_imported": "torch" in sys.modules,
    }
    print(json.dumps(report))


def make_inputs(cfg_data, path: Path, n: int) -> None:
    """The timing image, ``n`` parity images and 16 expressions, saved for both workers."""
    from PIL import Image

    from tseg.data.synthetic.shapes import ShapesDataset

    ds = ShapesDataset(split="test", size=max(n, 20), image_size=cfg_data.image_size, seed=0)
    vocab = list(dict.fromkeys(e for i in range(len(ds)) for e in ds.expressions(i)))[:16]
    arrays = {"timing_image": ds.image(0), "vocab": np.array(vocab), "n_parity": np.array(n)}
    for k in range(n):
        img = ds.image(k)
        if k % 3 == 1:  # non-square
            img = img[: max(8, img.shape[0] * 3 // 4)]
        elif k % 3 == 2:  # enlarged: another eval size and resize branch
            img = np.array(Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 3 // 2)))
        arrays[f"image_{k}"] = img
    np.savez(path, **arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument(
        "--onnx", help="a `tseg export onnx` folder of the checkpoint (default: export)"
    )
    ap.add_argument(
        "--threads", type=int, nargs="+", default=[2], help="thread counts to run (default 2)"
    )
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--images", type=int, default=30, help="test images for the parity check")
    ap.add_argument("--out", default=str(RESULTS / "export_speed.json"))
    ap.add_argument("--worker", choices=["torch", "onnx"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.inputs, args.dump, args.threads[0], args.repeats)
        return 0
    if not args.checkpoint:
        ap.error("give a checkpoint or run folder")

    import torch

    from tseg.checkpoint import load_checkpoint

    _, cfg, ckpt = load_checkpoint(args.checkpoint)
    record = provenance.start(provenance.command_line(__file__, argv))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_dir = args.onnx
        export_s = None
        if not onnx_dir:
            from tseg.export.onnx_export import export_onnx

            t = time.perf_counter()
            export_onnx(ckpt, tmp / "onnx")
            export_s = round(time.perf_counter() - t, 1)
            onnx_dir = str(tmp / "onnx")
        make_inputs(cfg.data, tmp / "inputs.npz", args.images)
        runs = []
        for threads in args.threads:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            run: dict = {"threads": threads}
            for backend, model in (("torch", str(ckpt)), ("onnxruntime", onnx_dir)):
                name = "onnx" if backend == "onnxruntime" else backend
                cmd = [sys.executable, __file__, "--worker", name, "--model", model]
                cmd += ["--inputs", str(tmp / "inputs.npz"), "--dump", str(tmp / f"{name}.npz")]
                cmd += ["--threads", str(threads), "--repeats", str(args.repeats)]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    print(res.stderr, file=sys.stderr)
                    return 1
                run[backend] = json.loads(res.stdout.strip().splitlines()[-1])
                print(json.dumps(run[backend]), flush=True)
            runs.append(run)
        a, b = np.load(tmp / "torch.npz"), np.load(tmp / "onnx.npz")
        keys = [k for k in a.files if k != "conf"]
        dprob = max(float(np.abs(a[k] - b[k]).max()) for k in keys)
        flips = sum(int(((a[k] > 0.5) != (b[k] > 0.5)).sum()) for k in keys)
        pixels = sum(a[k].size for k in keys)
        parity = {
            "images": len(keys),
            "expressions_per_image": int(a["conf"].shape[1]),
            "max_abs_probability_diff": dprob,
            "max_abs_confidence_diff": float(np.abs(a["conf"] - b["conf"]).max()),
            "mask_pixels_differing": f"{flips}/{pixels}",
        }
    import onnxruntime

    provenance.finish(record)
    report = {
        **record,
        "checkpoint": str(ckpt),
        "onnx": args.onnx or "(exported to a temporary folder)",
        "export_seconds": export_s,
        "image": f"one `shapes` test image, {cfg.data.image_size} x {cfg.data.image_size}",
        "repeats": args.repeats,
        "text": "embeddings cached on both sides (warm-up call first)",
        "parity": parity,
        "runs": runs,
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }
    out = write_report(Path(args.out), report)
    print(json.dumps(parity))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
