"""Accuracy benchmark on `shapes`: the paper's pooling comparison (Table 3) and ablations (Table 2).

Every row trains the same model with the same budget and seeds; only the pooling head (or the
supervision, for the fully supervised upper bound) changes. Each model is evaluated on the `test`
split (with presence scoring: its own expressions against as many absent ones), on the `unseen`
split of held-out colour-shape compositions and, for the main rows, with no-target expressions
(GRES: gIoU, N-acc, T-acc, PointM, ungated and with a presence gate chosen on `val`). The first
row of the table is the patch grid's own ceiling: ground truth pushed through the grid of the
run's input and patch size (``tseg.eval.oracle``). A second table repeats GAP, SPA and MPA on
`shapes` with disjoint expressions (one colour-and-shape expression per object, no overlap).

    python benchmarks/accuracy.py --quick                 # offline preset, 1 seed (~20 min, 2 cores)
    python benchmarks/accuracy.py                         # 3 seeds + ablations (hours)
    python benchmarks/accuracy.py --quick --preset tiny   # the from-scratch demo model

Writes benchmarks/results/accuracy[_tiny].json (every figure, config, commit, wall time,
machine) and accuracy[_tiny].md (the tables docs/results.md shows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/accuracy.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402
from tseg.config import build_config, recipe_overrides, to_dict  # noqa: E402
from tseg.data import build_dataset  # noqa: E402
from tseg.distributed import pick_device  # noqa: E402
from tseg.eval import evaluate_pairs  # noqa: E402
from tseg.eval.oracle import grid_oracle  # noqa: E402
from tseg.eval.pairs import evaluate_no_target  # noqa: E402
from tseg.inference import Segmenter  # noqa: E402
from tseg.train import train  # noqa: E402

# One budget for every row, per model preset.
# - offline (default): ImageNet EfficientNet-Lite0 + MiniLM from PyPI packages, 96 px: the paper's
#   regime of pretrained encoders, which learns from image-level expressions in a few hundred steps.
# - tiny: the from-scratch demo model (AdamW, batch 16); it needs ~1000 steps to leave the label
#   prior, so its quick run (2500 steps) shows classification but little localisation yet.
# The demo's recipe of each preset, less what each row sets itself (head, steps, test size).
_PER_ROW = ("model.head=", "train.steps=", "train.log_every=", "data.test_size=")


def _demo_recipe(preset: str) -> list[str]:
    return [o for o in recipe_overrides(f"demo/{preset}") if not o.startswith(_PER_ROW)]


PRESET_BASE = {
    "offline": _demo_recipe("offline"),
    "tiny": ["train.batch_size=16", *_demo_recipe("tiny")],
}
STEPS = {
    ("offline", "quick"): 400,
    ("offline", "full"): 400,  # same per-row budget as quick: full adds seeds and tables
    ("tiny", "quick"): 2500,
    ("tiny", "full"): 4000,
}
TEST_SIZE = {
    ("offline", "quick"): 300,
    ("offline", "full"): 500,
    ("tiny", "quick"): 500,
    ("tiny", "full"): 500,
}
BASE: list[str] = []  # set in main() from the preset and mode
MAIN_ROWS: dict[str, list[str]] = {
    "GMP (weak)": ["model.head=gmp"],
    "GAP (weak)": ["model.head=gap"],
    "SPA (weak)": ["model.head=spa"],
    "MPA / TSEG (weak)": ["model.head=mpa"],
    "Fully supervised (Dice)": ["model.head=mpa", "train.mode=full"],
}


# No-target evaluation: absent expressions per image on val (where the gate's threshold is
# chosen) and test (where it is applied).
NO_TARGET_ABSENT = 4
# Section "SPA against GAP": the same heads when no two expressions of an image overlap.
DISJOINT_ROWS: dict[str, list[str]] = {
    f"{h.upper()} (weak, disjoint)": ["data.shapes_expressions=disjoint", f"model.head={h}"]
    for h in ("gap", "spa")
}


def ablation_rows() -> dict[str, dict[str, list[str]]]:
    """Table 2 of the paper, reduced to what 2 cores can run; all with MPA, one seed.

    With lambda = 0 the penalty vanishes whatever p is, so that column is one run, not four.
    The default (lambda 0.01, p 5; D 256; identity; 100%) is the main MPA row's seed 0.
    """
    size = {"lambda=0 (no penalty)": ["model.head=mpa", "model.size_lambda=0.0"]}
    size.update(
        {
            f"lambda={lam}, p={p}": [
                "model.head=mpa",
                f"model.size_lambda={lam}",
                f"model.size_p={p}",
            ]
            for lam, p in ((0.01, 1), (0.01, 5), (0.1, 5))
        }
    )
    dim = {f"D={d}": ["model.head=mpa", f"model.embed_dim={d}"] for d in (128, 256, 512)}
    gt = {g: ["model.head=mpa", f"train.ground_truth={g}"] for g in ("identity", "tfidf")}
    frac = {f"{int(f * 100)}%": ["model.head=mpa", f"data.train_fraction={f}"] for f in (0.1, 1.0)}
    return {"size_penalty": size, "embed_dim": dim, "ground_truth": gt, "train_fraction": frac}


def machine() -> dict[str, Any]:
    """provenance.machine with this process's torch threads (every row trains in it)."""
    return provenance.machine(torch_threads=torch.get_num_threads())


# Finished rows, keyed by their resolved config (output folder aside): a row that repeats another
# (e.g. the ablation baseline = the main MPA row, seed 0) is trained once, and a full run that was
# stopped picks up where it left off. Kept in <work>/rows.json.
DONE: dict[str, dict[str, Any]] = {}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def row_key(cfg_dict: dict[str, Any]) -> str:
    """The config's differences from the defaults, output folder and inference options aside:
    keys added to the schema later (with behaviour-neutral defaults) do not make an old finished
    row look different, nor does the mask threshold its training chose."""
    defaults = _flat(to_dict(build_config(None, [])))
    diff = {
        k: v
        for k, v in _flat(cfg_dict).items()
        if k != "train.out_dir"
        and not k.startswith("inference.")  # chosen after training (eval.choose_threshold)
        and (k not in defaults or defaults[k] != v)
    }
    return json.dumps(diff, sort_keys=True)


def run_one(
    overrides: list[str],
    seed: int,
    out: Path,
    steps: int,
    unseen: bool = True,
    no_target: bool = False,
) -> dict[str, Any]:
    cfg = build_config(
        None,
        [*BASE, f"train.steps={steps}", *overrides, f"train.seed={seed}", f"train.out_dir={out}"],
    )
    key = row_key(to_dict(cfg))
    if (
        key in DONE
        and ("unseen" in DONE[key] or not unseen)
        and ("no_target" in DONE[key] or not no_target)
    ):
        row = {**DONE[key], "overrides": overrides}
        print(
            f"  seed {seed}: same run as before, reused (test mIoU {100 * row['test']['miou']:.1f})"
        )
        return row
    t0 = time.time()
    res = train(cfg, progress=False, evaluate_splits=())
    from tseg.checkpoint import load_checkpoint

    device = pick_device(cfg.train.device)
    # The checkpoint's inference options: the mask threshold chosen on val with
    # eval.choose_threshold (the recipe's), else 0.5.
    model, ckpt_cfg, _ = load_checkpoint(res["checkpoint"], device)

    def seg() -> Segmenter:
        return Segmenter(model, device, ckpt_cfg.inference)

    row: dict[str, Any] = {
        "seed": seed,
        "overrides": overrides,
        "train_time_s": res["train_time_s"],
        "commit": provenance.git_state()["commit"],
    }
    test = build_dataset(cfg.data, "test")
    row["threshold"] = res.get("threshold", {"threshold": ckpt_cfg.inference.threshold})
    row["test"] = evaluate_pairs(seg(), test, presence=True, seed=seed)
    if ckpt_cfg.inference.threshold != 0.5:  # and at the paper's background score
        at_half = evaluate_pairs(Segmenter(model, device, ckpt_cfg.inference, threshold=0.5), test)
        row["test"]["miou_at_0.5"] = at_half["miou"]
    if unseen:
        row["unseen"] = evaluate_pairs(seg(), build_dataset(cfg.data, "unseen"))
    if no_target:
        data = dataclasses.replace(cfg.data, shapes_absent=NO_TARGET_ABSENT)
        row["no_target"] = evaluate_no_target(
            seg(), build_dataset(data, "val"), build_dataset(data, "test")
        )
    row["wall_time_s"] = round(time.time() - t0, 1)
    row["finished_at"] = time.time()
    row["config"] = to_dict(cfg)
    print(
        f"  seed {seed}: test mIoU {100 * row['test']['miou']:.1f}  ({row['wall_time_s']:.0f} s)",
        flush=True,
    )
    DONE[key] = row
    if STATE:
        STATE[0].write_text(json.dumps(list(DONE.values()), indent=1), encoding="utf-8")
    return row


STATE: list[Path] = []  # [<work>/rows.json] once main() has set it


class Job(NamedTuple):
    table: str  # "main", "disjoint" or an ablation table
    name: str
    overrides: list[str]
    seed: int
    out: Path
    unseen: bool
    no_target: bool = False


def job_config(j: Job, steps: int) -> Any:
    return build_config(
        None,
        [
            *BASE,
            f"train.steps={steps}",
            *j.overrides,
            f"train.seed={j.seed}",
            f"train.out_dir={j.out}",
        ],
    )


def plan(quick: bool, seeds: int, preset: str, work: Path) -> list[Job]:
    """Every row of the report, in table order."""
    jobs = [
        Job("main", name, ov, s, work / f"{preset}_{ov[-1].replace('=', '_')}_s{s}", True, True)
        for name, ov in MAIN_ROWS.items()
        for s in range(seeds)
    ]
    if not quick:
        jobs += [
            Job("disjoint", name, ov, s, work / f"{preset}_disjoint_{ov[-1][11:]}_s{s}", False)
            for name, ov in DISJOINT_ROWS.items()
            for s in range(seeds)
        ]
        for table, rows in ablation_rows().items():
            for name, ov in rows.items():
                tag = "_".join(o.split("=")[-1] for o in ov)
                jobs.append(Job(table, name, ov, 0, work / f"{preset}_abl_{table}_{tag}", False))
    return jobs


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (over seeds) of every reported figure."""
    keys = [
        ("test", "miou"),
        ("test", "miou_at_0.5"),
        ("threshold", "threshold"),
        ("test", "oiou"),
        ("test", "prec@0.5"),
        ("test", "prec@0.7"),
        ("test", "prec@0.9"),
        ("test", "pointm"),
        ("test", "presence_auc"),
        ("unseen", "miou"),
        *(("no_target", f"{k}{g}") for k in NO_TARGET_KEYS for g in ("", "_gated")),
        ("no_target", "presence_threshold"),
    ]
    out: dict[str, Any] = {}
    for r in runs:  # a row whose chosen threshold is 0.5 was evaluated at 0.5 once
        if "test" in r and "miou_at_0.5" not in r["test"]:
            r["test"]["miou_at_0.5"] = r["test"]["miou"]
    for split, k in keys:
        vals = [r[split][k] for r in runs if r.get(split, {}).get(k) is not None]
        if vals:
            out[f"{split}_{k}"] = {
                "mean": statistics.fmean(vals),
                "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "values": vals,
            }
    return out


NO_TARGET_KEYS = ("giou", "ciou", "n_acc", "t_acc", "pointm")


def oracle(steps: int) -> dict[str, Any]:
    """Ground truth of the test split through the patch grid of the benchmark's input size and
    patch size (``tseg.eval.oracle``): the best any model of this grid can score."""
    cfg = build_config(None, [*BASE, f"train.steps={steps}"])
    test = build_dataset(cfg.data, "test")
    out = grid_oracle(
        [test.masks(i) for i in range(len(test))],
        cfg.data.image_size,
        cfg.model.image.patch_size,
    )
    out["input_size"] = cfg.data.image_size
    out["patch"] = cfg.model.image.patch_size
    return out


def fmt(s: dict[str, Any], key: str, pct: bool = True) -> str:
    if key not in s:
        return "-"
    m, sd = s[key]["mean"], s[key]["std"]
    scale = 100 if pct else 1
    digits = 1 if pct else 3
    return f"{scale * m:.{digits}f}" + (
        f" ± {scale * sd:.{digits}f}" if len(s[key]["values"]) > 1 else ""
    )


def _section(intro: str, header: list[str], body: list[str]) -> list[str]:
    """A paragraph, then a markdown table with ``header`` and the rows of ``body``."""
    return ["", intro, "", f"| {' | '.join(header)} |", "|" + "---|" * len(header), *body]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Accuracy on `shapes`, preset `{report.get('preset', 'tiny')}` ({report['mode']} run, {report['seeds']} seed(s), "
        f"{report['budget']}; commit `{report['commit'][:10]}`, {report['machine']['cpu']}, "
        f"wall time {report['wall_time_s'] / 60:.0f} min). IoU figures in %."
        + (
            " Rows trained at commits "
            + ", ".join(f"`{c[:10]}` ({n})" for c, n in report["row_commits"].items())
            + " (the run was resumed across commits)."
            if len(report.get("row_commits", {})) > 1
            else ""
        )
        + (
            " **Partial report: rows not finished yet are left out.**"
            if report.get("partial")
            else ""
        ),
        "",
        "| Method | test mIoU | test oIoU | P@0.5 | P@0.7 | P@0.9 | PointM | presence AUC "
        "| unseen mIoU | mask threshold (val) | test mIoU at 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if "oracle" in report:
        o = report["oracle"]
        lines.append(
            f"| oracle: ground truth through the patch grid ({o['grid']} at {o['input_size']} px, "
            f"threshold {o['threshold']}) | {100 * o['miou']:.1f} | {100 * o['oiou']:.1f} | "
            f"{100 * o['prec@0.5']:.1f} | {100 * o['prec@0.7']:.1f} | {100 * o['prec@0.9']:.1f} "
            "| - | - | - | - | - |"
        )
    for name, row in report["main"].items():
        s = row["summary"]
        lines.append(
            f"| {name} | {fmt(s, 'test_miou')} | {fmt(s, 'test_oiou')} | {fmt(s, 'test_prec@0.5')} | "
            f"{fmt(s, 'test_prec@0.7')} | {fmt(s, 'test_prec@0.9')} | {fmt(s, 'test_pointm')} | "
            f"{fmt(s, 'test_presence_auc', pct=False)} | {fmt(s, 'unseen_miou')} | "
            f"{fmt(s, 'threshold_threshold', pct=False)} | {fmt(s, 'test_miou_at_0.5')} |"
        )
    if "ratios" in report:
        r = report["ratios"]
        lines += [
            "",
            f"MPA weak / fully supervised mIoU: **{r['weak_over_full']:.2f}** (paper, PhraseCut: 28.77 / 49.6 = 0.58). "
            f"MPA unseen / seen mIoU: **{r['unseen_over_seen']:.2f}**."
            + (
                f" Fully supervised / oracle mIoU: **{r['full_over_oracle']:.2f}**."
                if "full_over_oracle" in r
                else ""
            ),
        ]
    if any("no_target_giou" in row["summary"] for row in report["main"].values()):
        body = []
        for name, row in report["main"].items():
            s = row["summary"]
            cells = [
                f"{fmt(s, f'no_target_{k}')} / {fmt(s, f'no_target_{k}_gated')}"
                for k in NO_TARGET_KEYS
            ]
            threshold = fmt(s, "no_target_presence_threshold", pct=False)
            body.append(f"| {name} | {' | '.join(cells)} | {threshold} |")
        lines += _section(
            f"No-target evaluation (GRES): {NO_TARGET_ABSENT} absent expressions per image added "
            "to val and test; the presence gate's threshold is chosen on val (balanced accuracy, "
            "`tseg.eval.presence`) and applied on test. Ungated / gated, in %.",
            ["Method", "gIoU", "cIoU", "N-acc", "T-acc", "PointM", "presence threshold (val)"],
            body,
        )
    if report.get("disjoint"):
        body = []
        for name, row in report["disjoint"].items():
            s = row["summary"]
            keys = ("test_miou", "test_oiou", "test_prec@0.5", "test_pointm")
            cells = [fmt(s, k) for k in keys] + [fmt(s, "test_presence_auc", pct=False)]
            body.append(f"| {name} | {' | '.join(cells)} |")
        lines += _section(
            "SPA against GAP when no two expressions overlap (`data.shapes_expressions=disjoint`: "
            "one colour-and-shape expression per object, train and test), same budget and seeds:",
            ["Method", "test mIoU", "test oIoU", "P@0.5", "PointM", "presence AUC"],
            body,
        )
    for table, rows in report.get("ablations", {}).items():
        body = [f"| {name} | {100 * row['test']['miou']:.1f} |" for name, row in rows.items()]
        lines += _section(
            f"Ablation `{table}` (MPA, test mIoU %, 1 seed):", ["setting", "test mIoU"], body
        )
    return "\n".join(lines) + "\n"


def shard_index(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N, or a SystemExit naming the flag."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard {text!r}: expected I/N, e.g. 0/2") from None
    if not 0 <= i < n:
        raise SystemExit(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="main table with one seed (about 20 min on 2 cores)"
    )
    ap.add_argument(
        "--seeds", type=int, default=0, help="seeds for the main table (default: 1 quick, 3 full)"
    )
    ap.add_argument(
        "--preset",
        choices=sorted(PRESET_BASE),
        default="offline",
        help="model preset (default offline)",
    )
    ap.add_argument("--work", default="runs/bench_accuracy", help="where the trained models go")
    ap.add_argument(
        "--restart", action="store_true", help="retrain every row instead of reusing finished ones"
    )
    ap.add_argument(
        "--partial",
        action="store_true",
        help="write the report from the rows finished so far (no training); says so in the table",
    )
    ap.add_argument(
        "--shard",
        default="",
        help="I/N: train only every N-th distinct row starting at I (run N shards in parallel, "
        "then once without --shard to write the report)",
    )
    ap.add_argument("--out", default=str(RESULTS), help="where accuracy.json / accuracy.md go")
    args = ap.parse_args(argv)
    shard = shard_index(args.shard) if args.shard else None
    seeds = args.seeds or (1 if args.quick else 3)
    mode = "quick" if args.quick else "full"
    steps = STEPS[(args.preset, mode)]
    BASE[:] = [*PRESET_BASE[args.preset], f"data.test_size={TEST_SIZE[(args.preset, mode)]}"]
    suffix = "" if args.preset == "offline" else f"_{args.preset}"
    work, out = Path(args.work) / mode, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    STATE[:] = [
        work / (f"rows.shard{args.shard.replace('/', 'of')}.json" if args.shard else "rows.json")
    ]
    for f in sorted(work.glob("rows*.json")):
        if args.restart:
            f.unlink()
            continue
        for row in json.loads(f.read_text(encoding="utf-8")):
            DONE[row_key(row["config"])] = row
    if DONE:
        print(f"{len(DONE)} finished row(s) in {work} reused (--restart to retrain)")
    t0 = time.time()
    report: dict[str, Any] = {
        "mode": mode,
        "preset": args.preset,
        "seeds": seeds,
        "budget": " ".join([*BASE, f"train.steps={steps}"]),
        **provenance.start(provenance.command_line(__file__, argv), machine()),
        "main": {},
    }
    jobs = plan(args.quick, seeds, args.preset, work)
    # One training per distinct config (the ablation baseline is the main MPA row, seed 0).
    unique: dict[str, Job] = {}
    for j in jobs:
        key = row_key(to_dict(job_config(j, steps)))
        if key in unique:
            u = unique[key]
            unique[key] = u._replace(
                unseen=u.unseen or j.unseen, no_target=u.no_target or j.no_target
            )
        else:
            unique[key] = j
    todo = list(unique.values())
    if shard:
        todo = todo[shard[0] :: shard[1]]
    if args.partial:  # report what the shards have finished, train nothing
        todo = []
        jobs = [j for j in jobs if row_key(to_dict(job_config(j, steps))) in DONE]
        report["partial"] = True
    for j in todo:
        print(f"{j.table}: {j.name}", flush=True)
        run_one(j.overrides, j.seed, j.out, steps, unseen=j.unseen, no_target=j.no_target)
    if args.shard:
        print(f"shard {args.shard} done; run again without --shard to write the report")
        return 0
    for j in jobs:  # every row is finished now: this only gathers them
        row = run_one(j.overrides, j.seed, j.out, steps, unseen=j.unseen, no_target=j.no_target)
        if j.table in ("main", "disjoint"):
            report.setdefault(j.table, {}).setdefault(j.name, {"runs": []})["runs"].append(row)
        else:
            report.setdefault("ablations", {}).setdefault(j.table, {})[j.name] = row
    for table in ("main", "disjoint"):
        for row in report.get(table, {}).values():
            row["summary"] = summarise(row["runs"])
    report["oracle"] = oracle(steps)
    # A run resumed across commits: which commit trained how many of the rows.
    trained = [
        r["commit"]
        for t in ("main", "disjoint")
        for row in report.get(t, {}).values()
        for r in row["runs"]
    ]
    trained += [r["commit"] for rows in report.get("ablations", {}).values() for r in rows.values()]
    report["row_commits"] = {c: trained.count(c) for c in dict.fromkeys(trained)}
    if {"MPA / TSEG (weak)", "Fully supervised (Dice)"} <= set(report["main"]):
        mpa = report["main"]["MPA / TSEG (weak)"]["summary"]
        full = report["main"]["Fully supervised (Dice)"]["summary"]
        report["ratios"] = {
            "weak_over_full": mpa["test_miou"]["mean"] / max(full["test_miou"]["mean"], 1e-9),
            "unseen_over_seen": mpa["unseen_miou"]["mean"] / max(mpa["test_miou"]["mean"], 1e-9),
            "full_over_oracle": full["test_miou"]["mean"] / max(report["oracle"]["miou"], 1e-9),
        }
    rows = [r for r in DONE.values() if "finished_at" in r]
    if rows:  # from the first row's start to the last row's end, across shards
        first = min(r["finished_at"] - r["wall_time_s"] for r in rows)
        report["rows_wall_time_s"] = round(max(r["finished_at"] for r in rows) - first, 1)
        report["rows_cpu_serial_s"] = round(sum(r["wall_time_s"] for r in rows), 1)
    report["wall_time_s"] = report.get("rows_wall_time_s", round(time.time() - t0, 1))
    provenance.finish(report)
    write_report(out / f"accuracy{suffix}.json", report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
