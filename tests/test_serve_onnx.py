"""`tseg serve EXPORT_DIR` where torch cannot be imported: the ONNX Runtime backend end to end.

The server runs in a subprocess whose path starts with a fake ``torch`` package that records
any attempt to import it and then fails as a missing torch would; the test drives it over HTTP
(page, health, JSON and multipart requests), stops it with Ctrl-C and checks that nothing
tried to import torch.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs the [onnx] extra: pip install 'tseg[onnx]'")
pytest.importorskip("onnxscript", reason="needs the [onnx] extra: pip install 'tseg[onnx]'")

from builders.serve import micro_checkpoint, multipart, noise, png  # noqa: E402

from tseg.export.onnx_export import export_onnx  # noqa: E402

FAKE_TORCH = """\
import os
with open(os.environ["TSEG_TORCH_IMPORTS"], "a") as f:
    f.write(__name__ + "\\n")
raise ImportError("torch is not installed here (blocked by tests/test_serve_onnx.py)")
"""


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_onnx")
    export_onnx(micro_checkpoint(tmp), tmp / "onnx", check=False)
    return tmp / "onnx"


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.read()


def _post(url: str, body: bytes, ctype: str) -> dict:
    req = urllib.request.Request(url + "api/segment", data=body, method="POST")
    req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_onnx_server_runs_without_torch(export_dir, tmp_path):
    fake = tmp_path / "blocked"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(FAKE_TORCH)
    attempts = tmp_path / "torch_imports.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "TSEG_TORCH_IMPORTS": str(attempts),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "tseg.cli", "serve", str(export_dir), "--port", "0", "--quiet",
           "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        try:
            first = lines.get(timeout=120)
        except queue.Empty:
            pytest.fail("the server printed nothing within 120 s")
        assert first.startswith("tseg serve: http://127.0.0.1:"), first
        url = first.split()[2]
        assert "backend onnx" in first
        status, page = _get(url)
        assert status == 200 and b"backend: onnx" in page
        health = json.loads(_get(url + "health")[1])
        assert health["backend"] == "onnx" and health["model_side"] == 32
        img = noise(50, 70)
        out = _post(
            url,
            json.dumps({"image": base64.b64encode(png(img)).decode(), "expressions": ["red circle", "squares"],
                        "mask_format": "rle", "overlay": True}).encode(),
            "application/json",
        )  # fmt: skip
        assert out["backend"] == "onnx" and [r["rle"]["size"] for r in out["results"]] == [[50, 70]] * 2  # fmt: skip
        form = _post(
            url, *multipart([("image", ("x.png", png(img))), ("expressions", "red circle")])
        )
        assert form["results"][0]["confidence"] == out["results"][0]["confidence"]
        assert np.isfinite(form["results"][0]["confidence"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        err = proc.stderr.read()
    assert rc == 0, err
    assert "Traceback" not in err, err
    assert not attempts.exists(), attempts.read_text()  # nothing even tried to import torch
