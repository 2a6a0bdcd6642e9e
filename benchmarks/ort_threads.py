"""ONNX Runtime's threads: predict at L = 16 new expressions per precision, thread count and
spinning (worker threads busy-waiting between operators, ORT's own default; off in tseg).

    python benchmarks/ort_threads.py              # about 2 min on 2 cores
    python benchmarks/ort_threads.py --rounds 3   # quicker

Writes benchmarks/results/ort_threads.{json,md}. TSEG ``paper`` preset with random weights (which
do not change the cost), exported fp32 and int8 by ``tseg.export.onnx_export.export_onnx``; one
640 x 480 image; every configuration a fresh ``OrtSegmenter`` (cold text cache), timed in turn,
round after round, so each ratio compares runs made under the same load. Run it alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/ort_threads.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.report import RESULTS, log, md_table, write_report  # noqa: E402
from benchmarks.lib.timing import time_interleaved  # noqa: E402
from benchmarks.lib.tseg_model import PAPER_FROM_SCRATCH, build_tseg, make_image, phrases  # noqa: E402


def configurations(threads: list[int]) -> list[tuple[str, int, bool]]:
    """(precision, threads, spinning) for every combination."""
    return [(p, t, s) for p in ("fp32", "int8") for t in threads for s in (True, False)]


def row_name(precision: str, threads: int, spinning: bool) -> str:
    return f"{precision}, {threads} thread{'s' if threads > 1 else ''}, spinning {'on' if spinning else 'off'}"


def measure(
    threads: list[int],
    rounds: int,
    count: int,
    overrides: tuple[str, ...] = PAPER_FROM_SCRATCH,
    image_hw: tuple[int, int] = (480, 640),
) -> dict[str, Any]:
    """Median ms per predict for each configuration (the tests pass a micro model)."""
    from tseg.checkpoint import save_checkpoint
    from tseg.export.onnx_export import export_onnx
    from tseg.export.ort_segmenter import OrtSegmenter

    corpus = phrases(count)
    model, cfg = build_tseg(overrides, corpus)
    image = make_image(image_hw)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(model, cfg, Path(tmp) / "run", 0)
        for p in ("fp32", "int8"):
            export_onnx(ckpt, Path(tmp) / p, precision=p)
        calls = {}
        for p, t, s in configurations(threads):
            holder: dict[str, Any] = {}

            def setup(p=p, t=t, s=s, holder=holder) -> None:
                holder["seg"] = OrtSegmenter(Path(tmp) / p, threads=t, spinning=s)

            def call(holder=holder) -> None:
                holder["seg"].predict(image, corpus)

            calls[row_name(p, t, s)] = (call, setup)
        log(f"timing {len(calls)} configurations, {rounds} rounds")
        timed = time_interleaved(calls, rounds, 1, 1e9)
    return {
        "model": "random weights: " + " ".join(overrides),
        "image": f"{image_hw[1]} x {image_hw[0]}",
        "expressions": count,
        "rounds": rounds,
        "rows": {
            k: {"median_ms": round(1000 * v["median_s"], 1), "runs": v["runs"]}
            for k, v in timed.items()
        },
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    rows = r["speed"]["rows"]
    lines = [
        f"ONNX Runtime threads and spinning ({m['cpu']}, {m['cores']} cores; commit "
        f"`{str(r['commit'])[:10]}`; load average at start {r['load_average_before']}, at end "
        f"{r['load_average_after']}). `{r['command']}`.",
        "",
        f"`OrtSegmenter.predict`, {r['speed']['model']}, one {r['speed']['image']} image, "
        f"{r['speed']['expressions']} new expressions (cold text cache); median of "
        f"{r['speed']['rounds']} rounds, configurations timed in turn. ms per predict "
        "(spinning off against on in brackets).",
        "",
    ]
    table = []
    for k, v in rows.items():
        if k.endswith("spinning off"):
            on = rows.get(k.replace("spinning off", "spinning on"))
            ratio = f" ({on['median_ms'] / v['median_ms']:.2f}x)" if on else ""
            table.append([k, f"{v['median_ms']}{ratio}"])
        else:
            table.append([k, v["median_ms"]])
    lines += md_table(["configuration", "ms"], table)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--expressions", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS / "ort_threads.json"))
    a = ap.parse_args(argv)
    r: dict[str, Any] = provenance.start(
        provenance.command_line(__file__, argv), provenance.machine(threads=a.threads)
    )
    r["speed"] = measure(a.threads, a.rounds, a.expressions)
    provenance.finish(r)
    write_report(Path(a.out), r, markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
