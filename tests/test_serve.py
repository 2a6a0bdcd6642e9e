"""`tseg serve`: the JSON endpoint, its answers to bad uploads, and the page in headless Chromium.

The browser test needs Chromium, chromedriver (Debian: apt-get install chromium chromium-driver)
and selenium (the dev extra); it is skipped, saying which is missing, without them. Set
TSEG_SERVE_SCREENSHOT=path to keep its screenshot, TSEG_SERVE_MODEL=path to serve another model
(a checkpoint or an ONNX export folder) than the micro one.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import threading
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
import torch
from conftest import MICRO
from PIL import Image

from tseg.checkpoint import save_checkpoint
from tseg.cli import build_parser, cmd_serve, main
from tseg.config import build_config
from tseg.data import build_dataset
from tseg.data.shapes import ShapesDataset
from tseg.engine import build_model
from tseg.serve import DemoApp, load_model, make_server
from tseg.serve.app import MAX_EXPRESSIONS, split_expressions


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """A micro model (untrained: the plumbing is under test), or the one in TSEG_SERVE_MODEL."""
    path = os.environ.get("TSEG_SERVE_MODEL")
    if not path:
        tmp = tmp_path_factory.mktemp("serve")
        cfg = build_config(None, [*MICRO, f"train.out_dir={tmp / 'run'}"])
        torch.manual_seed(0)
        save_checkpoint(build_model(cfg, build_dataset(cfg.data, "train")), cfg, tmp / "run", 1)
        path = tmp / "run"
    model, kind = load_model(path)
    return model, kind, str(path)


def _serve(app: DemoApp):
    srv = make_server(app, "127.0.0.1", 0, quiet=True)  # port 0: a free port
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host, port = srv.server_address[:2]
    return srv, f"http://{host}:{port}/"


@pytest.fixture(scope="module")
def server(demo_model):
    """The demo in a thread, with small limits so that oversized uploads are cheap to make."""
    srv, url = _serve(DemoApp(*demo_model, max_bytes=200_000, max_pixels=300 * 300))
    yield url
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def default_server(demo_model):
    """The demo with the default limits, as `tseg serve` runs it."""
    srv, url = _serve(DemoApp(*demo_model))
    yield url
    srv.shutdown()
    srv.server_close()


def post(url: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "api/segment", data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def png_b64(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_page_and_examples_are_served(server):
    with urllib.request.urlopen(server, timeout=30) as r:
        page = r.read().decode()
    assert 'id="expressions"' in page and "shapes_two.png" in page and "__" not in page
    with urllib.request.urlopen(server + "examples/shapes_two.png", timeout=30) as r:
        assert Image.open(io.BytesIO(r.read())).size == (192, 192)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(server + "examples/../app.py", timeout=30)


def test_segment_returns_overlay_masks_and_zip(server):
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    status, out = post(server, {"image": png_b64(img), "expressions": "red circle, squares\nstars"})
    assert status == 200, out
    assert [r["expression"] for r in out["results"]] == ["red circle", "squares", "stars"]
    for r in out["results"]:
        assert 0.0 <= r["confidence"] <= 1.0 and r["colour"].startswith("#")
        mask = Image.open(io.BytesIO(base64.b64decode(r["mask"])))
        assert mask.size == (70, 50)
    assert Image.open(io.BytesIO(base64.b64decode(out["overlay"]))).width > 70  # + legend
    z = zipfile.ZipFile(io.BytesIO(base64.b64decode(out["zip"])))
    assert sorted(z.namelist()) == sorted([r["file"] for r in out["results"]] + ["scores.json"])
    assert json.loads(z.read("scores.json"))[0]["expression"] == "red circle"


def test_bad_uploads_get_messages_and_the_server_stays_up(server):
    big = (np.random.default_rng(1).random((400, 400, 3)) * 255).astype(np.uint8)
    cut = base64.b64encode(base64.b64decode(png_b64(big[:100, :100]))[:3000]).decode()
    cases = [
        ({"image": cut, "expressions": "a"}, 400, "could not be read"),  # truncated PNG
        ({"image": base64.b64encode(b"not an image").decode(), "expressions": "a"}, 400, "not an image"),
        ({"image": "%%%", "expressions": "a"}, 400, "not valid base64"),
        ({"image": png_b64(big[:, :, 0] * 0), "expressions": "a"}, 400, "pixels, above the limit"),
        ({"image": png_b64(big), "expressions": "a"}, 413, "too large"),
        ({"example": "shapes_two.png", "expressions": " ,\n "}, 400, "at least one expression"),
        ({"example": "nope.png", "expressions": "a"}, 400, "unknown example"),
        ({"expressions": "a"}, 400, "choose an image"),
        (b"{not json", 400, "not JSON"),
        ({"example": "shapes_two.png", "expressions": ",".join("a" * (MAX_EXPRESSIONS + 1))}, 400, "at most"),
    ]  # fmt: skip
    for body, code, message in cases:
        status, out = post(server, body)
        assert status == code and message in out["error"], (
            body if isinstance(body, bytes) else list(body),
            out,
        )
    status, out = post(server, {"example": "shapes_two.png", "expressions": "blue shapes"})
    assert status == 200 and len(out["results"]) == 1


def test_split_expressions():
    assert split_expressions("a, b\n\nthe c left of d ,") == ["a", "b", "the c left of d"]


def test_cli_serve_wiring_and_errors(demo_model, tmp_path, capsys):
    ns = build_parser().parse_args(["serve", "m", "--port", "0", "--backend", "onnx"])
    assert ns.func is cmd_serve and ns.port == 0 and ns.max_mb == 10
    assert main(["serve", str(tmp_path / "missing"), "--backend", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing")]) == 2  # torch backend: no checkpoint
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", demo_model[2], "--threads", "-1"]) == 2
    assert "--threads = -1" in capsys.readouterr().err
    with socket.socket() as busy:  # a port already taken: an error line, not a traceback
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", demo_model[2], "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def _chrome():
    """A headless Chromium driven by selenium, or a skip that names what is missing."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install 'tseg[dev]')"
    )
    from selenium.webdriver.chrome.service import Service

    browser = next(
        (
            shutil.which(b)
            for b in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(b)
        ),
        None,
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "Chromium or chromedriver not found (Debian: apt-get install chromium chromium-driver)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-dev-shm-usage", "--window-size=1150,820"):  # fmt: skip
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_browser_upload_two_expressions_and_see_the_result(default_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / "scene.png"
    Image.fromarray(ShapesDataset(split="test", size=4, image_size=160).image(3)).save(image)
    (tmp_path / "fake.png").write_bytes(b"this is not a png")
    d = _chrome()
    try:
        d.get(default_server)
        wait = WebDriverWait(d, 60)
        # A bad upload: the page shows the server's message.
        d.find_element(By.ID, "file").send_keys(str(tmp_path / "fake.png"))
        d.find_element(By.ID, "expressions").send_keys("blue shapes")
        wait.until(lambda d: d.find_element(By.ID, "preview").get_attribute("src"))
        d.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
        assert "not an image" in d.find_element(By.ID, "error").text
        # A real image and two expressions.
        d.find_element(By.ID, "file").send_keys(str(image))
        box = d.find_element(By.ID, "expressions")
        box.clear()
        box.send_keys("blue shapes\norange square")
        wait.until(lambda d: "scene" in (d.execute_script("return chosen && chosen.name") or ""))
        d.find_element(By.ID, "run").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results tr.result")) == 2)
        wait.until(
            lambda d: d.execute_script(
                "const i = document.getElementById('overlay'); return i.complete && i.naturalWidth"
            )
        )
        assert not d.find_element(By.ID, "error").is_displayed()
        rows = d.find_elements(By.CSS_SELECTOR, "#results tr.result")
        assert [r.find_element(By.CLASS_NAME, "expr").text for r in rows] == [
            "blue shapes",
            "orange square",
        ]
        for r in rows:
            assert 0.0 <= float(r.find_element(By.CLASS_NAME, "conf").text) <= 1.0
        href = d.find_element(By.ID, "download-zip").get_attribute("href")
        assert href.startswith("data:application/zip;base64,")
        shot = os.environ.get("TSEG_SERVE_SCREENSHOT") or str(tmp_path / "serve.png")
        assert d.save_screenshot(shot)
        assert Image.open(shot).size[0] > 0
    finally:
        d.quit()
