"""`tseg serve` under pressure: a full queue, timeouts, idle and slow connections, and a load
test (200 concurrent requests on loopback: each answered 200 or 503, none reset).

Most tests use a stand-in model that blocks until the test lets it go, so that "busy" is a
state the test sets up rather than a race; the load test uses the micro model. Everything runs
on 127.0.0.1 with short timeouts and stops by itself.
"""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from builders.serve import micro_checkpoint
from PIL import Image

from tseg.results import Prediction
from tseg.serve.options import ServeOptions
from tseg.serve.server import load_model, serving
from tseg.serve.service import SegmentService

BODY = json.dumps({"example": "shapes_two.png", "expressions": "blue shapes"}).encode()


class GatedModel:
    """Answers only once ``gate`` is set; counts its calls."""

    input_size = 32
    threshold = 0.5

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def predict(self, image: np.ndarray, expressions: list[str]) -> list[Prediction]:
        self.calls += 1
        assert self.gate.wait(30), "the test never opened the gate"
        h, w = image.shape[:2]
        p = np.full((h, w), 0.7, np.float32)
        return [Prediction(e, 0.9, p, p > 0.5) for e in expressions]


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    return host, int(port)


def post(
    url: str, body: bytes = BODY, timeout: float = 60
) -> tuple[int, http.client.HTTPMessage, dict]:
    """(status, headers, JSON) of one POST on a new connection."""
    conn = http.client.HTTPConnection(*_address(url), timeout=timeout)
    try:
        conn.request("POST", "/api/segment", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        try:
            out = json.loads(data)
        except ValueError:
            out = {"raw": data.decode("latin-1")}
        return r.status, r.headers, out
    finally:
        conn.close()


def health(url: str) -> dict:
    conn = http.client.HTTPConnection(*_address(url), timeout=30)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def wait_until(cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture
def gated():
    """A server over a GatedModel: 1 worker, a queue of 1, short timeouts."""
    model = GatedModel()
    opts = ServeOptions(workers=1, queue=1, request_timeout=1.5, body_timeout=0.5,
                        header_timeout=0.6, keep_alive=0.4)  # fmt: skip
    svc = SegmentService(model, "torch", "gated", opts)
    try:
        with serving(svc) as url:
            yield model, svc, url
            model.gate.set()
    finally:
        model.gate.set()
        svc.close()


def test_full_queue_answers_503_with_retry_after_and_recovers(gated):
    model, svc, url = gated
    model_opts = svc.options
    pool = ThreadPoolExecutor(2)
    try:
        first = [pool.submit(post, url) for _ in range(model_opts.admitted)]  # 1 running, 1 queued
        wait_until(lambda: svc.inside == model_opts.admitted and model.calls == 1)
        status, headers, out = post(url)
        assert status == 503 and "busy" in out["error"], out
        assert int(headers["Retry-After"]) >= 1
        assert health(url)["in_flight"] == 2  # /health does not queue behind the model
        model.gate.set()
        assert [f.result(30)[0] for f in first] == [200, 200]
    finally:
        pool.shutdown()
    wait_until(lambda: svc.inside == 0)
    assert post(url)[0] == 200 and health(url)["rejected_busy"] == 1


def test_request_timeout_503_while_queued_504_while_running(gated):
    model, svc, url = gated
    pool = ThreadPoolExecutor(2)
    try:
        running = pool.submit(post, url)
        wait_until(lambda: model.calls == 1)
        queued = pool.submit(post, url)
        s1, _, out1 = running.result(30)
        s2, h2, out2 = queued.result(30)
    finally:
        pool.shutdown()
    assert s1 == 504 and "took more than 1.5 s" in out1["error"], out1
    assert s2 == 503 and "no worker was free" in out2["error"] and int(h2["Retry-After"]) >= 1
    model.gate.set()
    wait_until(lambda: svc.inside == 0)  # the slot of the run that timed out comes back
    assert model.calls == 1  # the queued request, given up, never reached the model
    assert post(url)[0] == 200 and health(url)["timed_out"] == 2


def _closed_by_server(s: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``s`` within ``within`` seconds (None: still open)."""
    s.settimeout(within)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return data


def test_slow_bodies_and_idle_connections_are_bounded(gated):
    _, svc, url = gated
    addr = _address(url)
    # A body that stops half-way: 408 after body_timeout, then the connection is closed.
    s = socket.create_connection(addr)
    s.sendall(b"POST /api/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n" + b'{"expressions": ')  # fmt: skip
    answer = _closed_by_server(s, 10)
    s.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 0.5 s" in answer
    # Connections that send nothing, or half a request line, are closed after header_timeout.
    idle = [socket.create_connection(addr) for _ in range(30)]
    idle[0].sendall(b"POST /api/seg")
    t = time.monotonic()
    try:
        assert all(_closed_by_server(c, 10) == b"" for c in idle)
    finally:
        for c in idle:
            c.close()
    assert time.monotonic() - t < 8
    # A keep-alive connection idle after its answer is closed after keep_alive.
    s = socket.create_connection(addr)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = _closed_by_server(s, 10)
    s.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 200") and b'"status"' in answer
    assert svc.inside == 0  # the 408 gave its slot back


class FailingModel(GatedModel):
    def predict(self, image: np.ndarray, expressions: list[str]) -> list[Prediction]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("out of cheese")
        return super().predict(image, expressions)


def test_a_model_failure_is_a_500_with_its_message_and_the_server_goes_on():
    model = FailingModel()
    model.gate.set()
    svc = SegmentService(model, "onnx", "failing", ServeOptions())
    try:
        with serving(svc) as url:
            status, _, out = post(url)
            assert status == 500 and "RuntimeError: out of cheese" in out["error"], out
            assert post(url)[0] == 200
            assert health(url)["failed"] == 1
    finally:
        svc.close()


def test_past_limit_concurrency_uvicorn_answers_503_itself():
    """Open connections beyond --limit-concurrency: uvicorn's own 503 (plain text, no
    Retry-After) for their requests, and the connection is answered, not reset."""
    model = GatedModel()
    model.gate.set()
    svc = SegmentService(model, "onnx", "limited", ServeOptions(limit_concurrency=3))
    try:
        with serving(svc) as url:
            held = [socket.create_connection(_address(url)) for _ in range(3)]
            try:
                time.sleep(0.2)  # let the server see them
                status, _, out = post(url)
            finally:
                for c in held:
                    c.close()
            assert status == 503 and out == {"raw": "Service Unavailable"}, out
            wait_until(lambda: post(url)[0] == 200)
    finally:
        svc.close()


@pytest.fixture(scope="module")
def micro_service(tmp_path_factory):
    run = micro_checkpoint(tmp_path_factory.mktemp("serve_load"))
    model, kind = load_model(run)
    svc = SegmentService(model, kind, str(run), ServeOptions())  # the defaults
    yield svc
    svc.close()


def test_load_200_concurrent_requests_get_200_or_503_and_no_reset(micro_service):
    n = 200
    start = threading.Barrier(n, timeout=60)

    def one(_: int) -> tuple[int, str | None]:
        start.wait()
        try:
            status, headers, out = post(url, timeout=60)
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            return -1, f"{type(e).__name__}: {e}"
        if status == 503 and not headers.get("Retry-After", "").isdigit():
            return status, f"503 without Retry-After: {headers}"
        return status, None

    t = time.monotonic()
    with serving(micro_service) as url, ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n), timeout=120))
    took = time.monotonic() - t
    errors = [e for _, e in results if e]
    codes = sorted({s for s, _ in results})
    assert not errors, (len(errors), errors[:5])
    assert set(codes) <= {200, 503}, codes
    served = sum(s == 200 for s, _ in results)
    assert served >= micro_service.options.admitted, served  # at least the first wave
    assert took < 120
    print(f"load: {served} of {n} served, the rest 503, in {took:.1f} s")


def _benchmark_module():
    path = Path(__file__).parents[1] / "benchmarks" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_benchmark_parts_run_at_a_tiny_scale(micro_service):
    """benchmarks/serve_load.py's client loop, memory probe and images (the lead runs it for
    real on a quiet machine; here only that it works)."""
    bench = _benchmark_module()
    body, ctype = bench.multipart(bench.scene(64, 48, 0, "JPEG"), "s.jpg", bench.EXPRESSIONS[:2])
    with serving(micro_service) as url:
        row = bench.run_level(url, 3, 6, body, ctype, 60)
    assert row["answered_200"] == 6 and row["responses"] == {"200": 6}, row
    assert 0 < row["latency_p50_s"] <= row["latency_p95_s"] and not row["stopped_by_deadline"]
    with bench.PeakRSS(os.getpid()) as rss:
        block = np.ones(20_000_000, np.uint8)  # 20 MB touched inside the block
        del block
    assert rss.peak_mb > 20
    big = bench.scene(5000, 5000, 1, "PNG")
    assert len(big) < ServeOptions().max_bytes and Image.open(io.BytesIO(big)).size == (5000, 5000)
