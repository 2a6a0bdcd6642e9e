"""Load on `tseg serve`: latency, throughput and the server's peak memory under concurrent clients.

    python benchmarks/serve_load.py export/demo                  # ONNX Runtime backend
    python benchmarks/serve_load.py runs/demo --clients 1 8 64   # torch backend
    python benchmarks/serve_load.py export/demo --requests 10 --clients 1 8 --big 1 --out /tmp/x.json
    python benchmarks/serve_load.py export/demo --serve-args="--workers 1 --queue 64"

Starts `tseg serve MODEL --port 0` in a subprocess (with ``--serve-args`` added) on 127.0.0.1
and, for each number of concurrent clients, sends ``--requests`` answered requests: each client
is a thread with its own keep-alive connection, POSTing a 640 x 480 JPEG with 4 expressions
(PNG masks) in a loop; a 503 is counted and retried after its Retry-After, as a well-behaved
client would. Reported per level: p50/p95 latency of the 200s, answered requests per second,
the 503 count, and the server's peak resident memory during the level (VmHWM after resetting
it through /proc/PID/clear_refs; where that is refused, the largest VmRSS sampled every 10 ms).
Then ``--big`` concurrent uploads of a 25-megapixel PNG (5000 x 5000 shapes on a flat
background, about 100 KB) with 16 expressions each, and the peak memory they cause, against
the 1.5 GB target of issue 19. The JSON records the commit, the command and the machine's
load average (os.getloadavg) before and after each part: figures from a loaded machine are
not comparable. Writes benchmarks/results/serve_load.json (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import queue
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/serve_load.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402
from benchmarks.lib.processes import status_mb  # noqa: E402
from benchmarks.lib.report import RESULTS, write_report  # noqa: E402

TARGET_BIG_RSS_MB = 1500  # issue 19: 4 concurrent 25-megapixel uploads
COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60), "yellow": (235, 200, 30)}  # fmt: skip
SHAPES = ("circle", "square", "triangle", "diamond")
EXPRESSIONS = [f"{c} {s}" for c in COLOURS for s in SHAPES]  # 16


def scene(w: int, h: int, seed: int, fmt: str) -> bytes:
    """Flat background, a dozen flat shapes: a PNG of it compresses to almost nothing."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), (238, 236, 226))
    d = ImageDraw.Draw(im)
    side = min(w, h)
    for _ in range(12):
        r = int(side * rng.uniform(0.04, 0.12))
        x, y = int(rng.uniform(r, w - r)), int(rng.uniform(r, h - r))
        colour = list(COLOURS.values())[rng.integers(len(COLOURS))]
        kind = SHAPES[rng.integers(len(SHAPES))]
        if kind == "circle":
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif kind == "square":
            d.rectangle((x - r, y - r, x + r, y + r), fill=colour)
        elif kind == "triangle":
            d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
        else:
            d.polygon([(x, y - r), (x - r, y), (x, y + r), (x + r, y)], fill=colour)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def multipart(image: bytes, name: str, expressions: list[str]) -> tuple[bytes, str]:
    boundary = "tseg-bench-5f0c"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + image
        + b"\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="expressions"\r\n\r\n'
        f"{chr(10).join(expressions)}\r\n".encode(),
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# ---- the server process ------------------------------------------------------------------


class PeakRSS:
    """The server's peak resident memory over a block: VmHWM after a reset, or sampled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sampled = 0.0
        self.method = "VmHWM after clear_refs"
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to VmRSS
        except OSError:
            self.method = "largest VmRSS sampled every 10 ms"
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.sampled = max(self.sampled, status_mb("VmRSS", self.pid))
            self._stop.wait(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = self.sampled
        if self.method.startswith("VmHWM"):
            self.peak_mb = max(self.sampled, status_mb("VmHWM", self.pid))


def start_server(model: str, serve_args: list[str]) -> tuple[subprocess.Popen, str, list[str]]:
    cmd = [sys.executable, "-m", "tseg.cli", "serve", model, "--port", "0", "--quiet", *serve_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=600)
    except queue.Empty:
        proc.kill()
        raise SystemExit("the server printed nothing within 600 s") from None
    if not first.startswith("tseg serve: http://"):
        proc.kill()
        raise SystemExit(f"the server did not start: {first}")
    return proc, first.split()[2], cmd


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    return host, int(port)


def get_json(url: str, path: str) -> dict:
    conn = http.client.HTTPConnection(*_address(url), timeout=60)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


# ---- clients -----------------------------------------------------------------------------


def run_level(url: str, clients: int, requests: int, body: bytes, ctype: str, deadline_s: float) -> dict[str, Any]:  # fmt: skip
    """``clients`` threads send until ``requests`` 200s are in (or the deadline passes)."""
    left = threading.Semaphore(requests)
    lock = threading.Lock()
    latencies: list[float] = []
    counts: dict[str, int] = {}
    stop_at = time.monotonic() + deadline_s

    def client() -> None:
        conn = http.client.HTTPConnection(*_address(url), timeout=120)
        try:
            while time.monotonic() < stop_at and left.acquire(blocking=False):
                while time.monotonic() < stop_at:
                    t = time.perf_counter()
                    try:
                        conn.request("POST", "/api/segment", body, {"Content-Type": ctype})
                        r = conn.getresponse()
                        r.read()
                        status, retry = r.status, r.headers.get("Retry-After")
                        close = r.headers.get("Connection", "").lower() == "close"
                    except (OSError, http.client.HTTPException) as e:
                        status, retry, close = type(e).__name__, None, True
                    dt = time.perf_counter() - t
                    if close:
                        conn.close()  # the next request opens a new connection
                    with lock:
                        counts[str(status)] = counts.get(str(status), 0) + 1
                        if status == 200:
                            latencies.append(dt)
                    if status == 200:
                        break
                    time.sleep(float(retry) if retry and retry.isdigit() else 0.5)
        finally:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 4)) if lat else (lambda q: None)  # fmt: skip
    return {
        "clients": clients,
        "answered_200": len(lat),
        "responses": counts,
        "wall_s": round(wall, 2),
        "throughput_per_s": round(len(lat) / wall, 2) if wall else None,
        "latency_p50_s": pct(0.50),
        "latency_p95_s": pct(0.95),
        "latency_mean_s": round(statistics.fmean(lat), 4) if lat else None,
        "stopped_by_deadline": len(lat) < requests,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", help="a checkpoint / run folder, or a `tseg export onnx` folder")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--requests", type=int, default=200, help="answered requests per level")
    ap.add_argument("--big", type=int, default=4, help="concurrent 25-megapixel uploads (0: skip)")
    ap.add_argument("--deadline", type=float, default=600, help="seconds per level at most")
    ap.add_argument("--serve-args", default="", help='extra `tseg serve` flags, e.g. "--workers 1"')
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = ap.parse_args(argv)

    import starlette
    import uvicorn

    report: dict[str, Any] = {
        **provenance.start(provenance.command_line(__file__, argv)),
        "versions": {"uvicorn": uvicorn.__version__, "starlette": starlette.__version__},
    }
    proc, url, cmd = start_server(args.model, shlex.split(args.serve_args))
    try:
        health = get_json(url, "/health")
        report["server"] = {
            "command": shlex.join(cmd),
            "health": health,
            "rss_after_start_mb": status_mb("VmRSS", proc.pid),
        }
        small = scene(640, 480, 0, "JPEG")
        body, ctype = multipart(small, "scene.jpg", EXPRESSIONS[:4])
        report["request"] = {"image": "640 x 480 JPEG", "bytes": len(small), "expressions": 4,
                             "mask_format": "png", "encoding": "multipart/form-data"}  # fmt: skip
        levels = []
        for c in args.clients:
            before = provenance.load_average()
            with PeakRSS(proc.pid) as rss:
                row = run_level(url, c, args.requests, body, ctype, args.deadline)
            row.update(peak_rss_mb=rss.peak_mb, rss_method=rss.method,
                       load_average_before=before, load_average_after=provenance.load_average())  # fmt: skip
            levels.append(row)
            print(json.dumps(row), flush=True)
        report["levels"] = levels
        if args.big:
            big = scene(5000, 5000, 1, "PNG")
            body, ctype = multipart(big, "big.png", EXPRESSIONS)
            before = provenance.load_average()
            with PeakRSS(proc.pid) as rss:
                row = run_level(url, args.big, args.big, body, ctype, args.deadline)
            report["big_uploads"] = {
                "image": "5000 x 5000 PNG (25 megapixels)",
                "bytes": len(big),
                "expressions": len(EXPRESSIONS),
                "concurrent": args.big,
                **{k: row[k] for k in ("answered_200", "responses", "wall_s", "latency_p50_s")},
                "peak_rss_mb": rss.peak_mb,
                "rss_method": rss.method,
                "target_mb": TARGET_BIG_RSS_MB,
                "within_target": rss.peak_mb <= TARGET_BIG_RSS_MB,
                "load_average_before": before,
                "load_average_after": provenance.load_average(),
            }
            print(json.dumps(report["big_uploads"]), flush=True)
        report["server"]["health_after"] = get_json(url, "/health")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = write_report(Path(args.out), provenance.finish(report))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
