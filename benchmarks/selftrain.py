"""Self-training on `shapes` (issue 25): the demo's teacher, its pseudo masks, its student.

    python benchmarks/demo_seeds.py --preset offline --seeds 0 --work runs/demo_seeds
    python benchmarks/selftrain.py --demo runs/demo_seeds/offline_s0

Reads the finished demo (teacher + one PAMR round of `configs/demo/offline.yaml`) and adds:
- a fully supervised reference: `train.mode=full` on the ground truth of the same training
  images (the first ``pseudo.max_images``), for the student's steps, from the ImageNet weights;
- the pseudo masks' quality against the ground truth (read here, never by the student);
- PAMR against the dense CRF as the refinement: pseudo-mask mIoU and seconds per image on the
  same ``--compare`` training images, timed in turn in this process;
- the student without CRF against the teacher with CRF at inference: test mIoU, P@0.7 and
  seconds per image on the first ``--crf-images`` test images.

Writes benchmarks/results/selftrain.json and .md, and the rows "MPA + self-training (PAMR)" and
"Fully supervised (Dice), student budget" into accuracy.json's "self_training" section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import RESULTS, git_commit, machine  # noqa: E402

from tseg.config import build_config, recipe_path  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.eval import evaluate_pairs  # noqa: E402
from tseg.eval.metrics import SegmentationMeter  # noqa: E402
from tseg.inference import Segmenter  # noqa: E402
from tseg.selftrain.pseudo import label_pairs  # noqa: E402
from tseg.selftrain.store import PseudoMasks, decode  # noqa: E402


def mask_quality(folder: Path, ds: Any) -> dict[str, float]:
    """mIoU of the kept pseudo masks against the ground truth, and the share of pairs kept."""
    store = PseudoMasks(folder)
    meter, pairs, kept = SegmentationMeter(), 0, 0
    for i, (own, ps) in store.images.items():
        gt, col = ds.masks(i), {e: j for j, e in enumerate(own)}
        pairs += len(own)
        for e, fg, _ig, _s in ps:
            meter.update(decode(fg), gt[col[e]])
            kept += 1
    return {"kept_miou": round(meter.compute()["miou"], 4), "kept_share": round(kept / pairs, 4)}


def compare_refinements(teacher: Path, ds: Any, n: int, thresholds: dict[str, float]) -> dict:
    """PAMR vs CRF pseudo masks of the first ``n`` training images: quality and seconds per
    image of the refinement alone (the teacher's maps are computed once, untimed)."""
    from tseg.config import CRFConfig, PAMRConfig
    from tseg.inference import crf, pamr

    seg = Segmenter.from_checkpoint(teacher)
    cfg = build_config(recipe_path("demo/offline"))
    out: dict[str, Any] = {}
    maps = [seg.maps([ds.image(i)], [ds.expressions(i)])[0] for i in range(n)]
    for name, fn in (
        ("pamr", lambda im, p: pamr.refine(im, p, PAMRConfig())),
        ("crf", lambda im, p: crf.refine(im, p, CRFConfig())),
        ("none", lambda im, p: p),
    ):
        meter, seconds = SegmentationMeter(), []
        for i, m in enumerate(maps):
            image = ds.image(i)
            t = time.perf_counter()
            refined = fn(image, m.probabilities)
            seconds.append(time.perf_counter() - t)
            kept, _ = label_pairs(
                refined, m.confidences, ds.expressions(i), thresholds[name], 0.0, cfg.pseudo
            )
            gt, col = ds.masks(i), {e: j for j, e in enumerate(ds.expressions(i))}
            for p in kept:
                meter.update(decode(p["segmentation"]), gt[col[p["expression"]]])
        out[name] = {
            "threshold": thresholds[name],
            "kept_miou": round(meter.compute()["miou"], 4),
            "seconds_per_image_median": round(float(np.median(seconds)), 4),
            "seconds_per_image_mean": round(float(np.mean(seconds)), 4),
        }
    out["pamr_speedup_over_crf"] = round(
        out["crf"]["seconds_per_image_median"] / out["pamr"]["seconds_per_image_median"], 2
    )
    out["images"] = n
    return out


def timed_eval(seg: Segmenter, ds: Any, n: int) -> dict[str, float]:
    t = time.perf_counter()
    m = evaluate_pairs(seg, ds, max_images=n)
    return {**m, "seconds_per_image": round((time.perf_counter() - t) / n, 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--demo", required=True, help="a finished tseg demo folder (offline recipe)")
    ap.add_argument("--work", default="runs/bench_selftrain")
    ap.add_argument("--compare", type=int, default=100, help="images for PAMR vs CRF")
    ap.add_argument("--crf-images", type=int, default=100, help="test images for the CRF row")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    demo, work = Path(args.demo), Path(args.work)
    load_before = [round(v, 2) for v in os.getloadavg()]
    t0 = time.time()
    metrics = json.loads((demo / "metrics.json").read_text(encoding="utf-8"))
    cfg = build_config(recipe_path("demo/offline"))
    n_images, steps = cfg.pseudo.max_images, cfg.pseudo.student_steps
    train_ds = build_dataset(cfg.data, "train")
    report: dict[str, Any] = {
        "commit": git_commit(),
        "command": " ".join(["selftrain.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "load_average_before": load_before,
        "budget": f"teacher {cfg.train.steps} steps (weak, 4,000 images); student {steps} steps "
        f"on the pseudo masks of the first {n_images} training images, from the teacher",
        "teacher": metrics["teacher"],
        "student": {k: metrics[k] for k in ("val", "test", "threshold", "train_time_s")},
        "pseudo": metrics["pseudo"],
    }
    report["pseudo_quality"] = mask_quality(demo / "round1" / "pseudo", train_ds)
    # The fully supervised reference: same images, same steps, ground-truth masks.
    full = work / "full"
    if not (full / "metrics.json").is_file():
        exe = Path(sys.executable).parent / "tseg"
        subprocess.run(
            [
                str(exe),
                "train",
                str(recipe_path("demo/offline")),
                "train.mode=full",
                f"train.steps={steps}",
                f"data.train_fraction={n_images / cfg.data.train_size}",
                f"train.out_dir={full}",
                "--quiet",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    fm = json.loads((full / "metrics.json").read_text(encoding="utf-8"))
    report["full"] = {k: fm[k] for k in ("val", "threshold", "train_time_s")}
    report["full"]["test"] = evaluate_pairs(
        Segmenter.from_checkpoint(full), build_dataset(cfg.data, "test")
    )
    # Refinements compared on the same images, with the thresholds the pseudo-labelling chose
    # for PAMR; the CRF's and the raw maps' chosen on val the same way.
    from tseg.eval.pairs import choose_mask_threshold

    val = build_dataset(cfg.data, "val")
    teacher = demo / "teacher"
    thresholds = {"pamr": metrics["pseudo"][0]["threshold"]["threshold"]}
    thresholds["crf"] = choose_mask_threshold(
        Segmenter.from_checkpoint(teacher, crf=True), val, 32, 100
    )["threshold"]
    thresholds["none"] = metrics["teacher"]["threshold"]["threshold"]
    report["refinements"] = compare_refinements(teacher, train_ds, args.compare, thresholds)
    # The student without CRF against the teacher with CRF at inference (its threshold for CRF
    # maps chosen on val as above).
    test = build_dataset(cfg.data, "test")
    n = args.crf_images
    student = demo / "round1" / "student"
    report["inference"] = {
        "images": n,
        "teacher": timed_eval(Segmenter.from_checkpoint(teacher), test, n),
        "teacher_crf": timed_eval(
            Segmenter.from_checkpoint(teacher, crf=True, threshold=thresholds["crf"]), test, n
        ),
        "student": timed_eval(Segmenter.from_checkpoint(student), test, n),
    }
    inf = report["inference"]
    s, f = report["student"]["test"], report["full"]["test"]
    report["targets"] = {
        "student_over_full_miou": {"value": round(s["miou"] / f["miou"], 3), "goal": ">= 1.00"},
        "student_p@0.7": {"value": s["prec@0.7"], "goal": ">= 0.60"},
        "student_minus_teacher_crf_miou": {
            "value": round(inf["student"]["miou"] - inf["teacher_crf"]["miou"], 4),
            "goal": ">= 0 (same test images)",
        },
        "teacher_crf_over_student_seconds": {
            "value": round(
                inf["teacher_crf"]["seconds_per_image"] / inf["student"]["seconds_per_image"], 2
            ),
            "goal": ">= 4",
        },
        "pamr_speedup_over_crf": {
            "value": report["refinements"]["pamr_speedup_over_crf"],
            "goal": ">= 5",
        },
        "pamr_minus_crf_pseudo_miou": {
            "value": round(
                report["refinements"]["pamr"]["kept_miou"]
                - report["refinements"]["crf"]["kept_miou"],
                4,
            ),
            "goal": ">= -0.02",
        },
    }
    for t in report["targets"].values():
        g = t["goal"].split()[1]
        t["met"] = bool(t["value"] >= float(g))
    report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report["wall_time_s"] = round(time.time() - t0, 1)
    out = Path(args.out)
    (out / "selftrain.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "selftrain.md").write_text(markdown(report), encoding="utf-8")
    acc_path = out / "accuracy.json"
    acc = json.loads(acc_path.read_text(encoding="utf-8"))
    acc["main"]["MPA + self-training (PAMR), student budget"] = {
        "runs": [{"test": s, "threshold": report["student"]["threshold"], "seed": 0}],
        "summary": {"test_miou": {"mean": s["miou"], "std": 0.0, "values": [s["miou"]]}},
        "budget": report["budget"],
        "commit": report["commit"],
        "source": "benchmarks/results/selftrain.json",
    }
    acc_path.write_text(json.dumps(acc, indent=1), encoding="utf-8")
    print(markdown(report))
    return 0


def markdown(r: dict[str, Any]) -> str:
    def row(name: str, m: dict[str, Any], note: str) -> str:
        return f"| {name} | {100 * m['miou']:.1f} | {100 * m['prec@0.5']:.1f} | {100 * m['prec@0.7']:.1f} | {note} |"

    inf, ref = r["inference"], r["refinements"]
    lines = [
        f"Self-training on `shapes` (commit `{r['commit'][:10]}`, {r['machine']['cpu']}, load "
        f"{r['load_average_before'][0]} before; 1 seed). Budget: {r['budget']}.",
        "",
        "| masks (test, 300 images) | mIoU | P@0.5 | P@0.7 | how |",
        "|---|---|---|---|---|",
        row("teacher (weak MPA), raw maps", r["teacher"]["test"], "the demo's teacher"),
        row("student on PAMR pseudo masks, no CRF", r["student"]["test"], "tseg demo"),
        row("fully supervised, same images and steps", r["full"]["test"], "ground-truth masks"),
        "",
        f"Pseudo masks: {100 * r['pseudo_quality']['kept_miou']:.1f} mIoU of the kept pairs "
        f"against the ground truth, {100 * r['pseudo_quality']['kept_share']:.1f}% of the pairs kept.",
        "",
        f"| refinement ({ref['images']} training images) | threshold (val) | kept pseudo-mask mIoU | s / image |",
        "|---|---|---|---|",
        *(
            f"| {k} | {ref[k]['threshold']} | {100 * ref[k]['kept_miou']:.1f} | {ref[k]['seconds_per_image_median']:.4f} |"
            for k in ("none", "pamr", "crf")
        ),
        "",
        f"| inference (first {inf['images']} test images) | mIoU | P@0.7 | s / image |",
        "|---|---|---|---|",
        *(
            f"| {k} | {100 * inf[k]['miou']:.1f} | {100 * inf[k]['prec@0.7']:.1f} | {inf[k]['seconds_per_image']:.4f} |"
            for k in ("teacher", "teacher_crf", "student")
        ),
        "",
        "| target | value | goal | met |",
        "|---|---|---|---|",
        *(f"| {k} | {t['value']} | {t['goal']} | {t['met']} |" for k, t in r["targets"].items()),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
