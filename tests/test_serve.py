"""`tseg serve`: the JSON API and its OpenAPI description, its answers to bad input, the CLI
wiring, and the page in headless Chromium.

The browser test needs Chromium, chromedriver (Debian: apt-get install chromium chromium-driver)
and selenium (the dev extra); it is skipped, saying which is missing, without them. Set
TSEG_SERVE_SCREENSHOT=path to keep its screenshot, TSEG_SERVE_MODEL=path to serve another model
(a checkpoint or an ONNX export folder) than the micro one. Bounds, timeouts and load are in
test_serve_limits.py, the torch-free ONNX Runtime server in test_serve_onnx.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import struct
import urllib.error
import urllib.request
import zipfile
import zlib

import numpy as np
import pytest
from builders.serve import micro_checkpoint, multipart, noise, png
from PIL import Image

from tseg.cli import build_parser, cmd_serve, main
from tseg.data.synthetic.shapes import ShapesDataset
from tseg.serve import imaging
from tseg.serve.options import ServeOptions
from tseg.serve.server import load_model, serving
from tseg.serve.service import SegmentService, clean_expression, model_input_size, split_expressions


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """The micro model, or the one in TSEG_SERVE_MODEL."""
    path = os.environ.get("TSEG_SERVE_MODEL") or micro_checkpoint(tmp_path_factory.mktemp("serve"))
    model, kind = load_model(path)
    return model, kind, str(path)


def _service(demo_model, **options) -> SegmentService:
    return SegmentService(*demo_model, ServeOptions(**options))


@pytest.fixture(scope="module")
def server(demo_model):
    """The server in a thread, with small limits so that oversized uploads are cheap to make."""
    svc = _service(demo_model, max_bytes=200_000, max_pixels=300 * 300)
    with serving(svc) as url:
        yield url
    svc.close()


@pytest.fixture(scope="module")
def default_server(demo_model):
    """The server with the default limits, as `tseg serve` runs it."""
    svc = _service(demo_model)
    with serving(svc) as url:
        yield url
    svc.close()


def request(url: str, path: str, body: bytes | None = None, ctype: str | None = None, method=None):
    """(status, headers, body bytes) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url + path, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post(url: str, body: bytes | dict, ctype: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, out = request(url, "api/segment", data, ctype)
    return status, json.loads(out)


def png_header(w: int, h: int) -> bytes:
    """A PNG that says it is w x h and holds no pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def png_b64(a: np.ndarray) -> str:
    return base64.b64encode(png(a)).decode()


def validator(server_url: str, name: str):
    """A JSON-schema validator for one of /openapi.json's component schemas."""
    jsonschema = pytest.importorskip("jsonschema", reason="in the dev extra")
    _, _, body = request(server_url, "openapi.json")
    doc = json.loads(body)
    schema = {**doc["components"]["schemas"][name], "components": doc["components"]}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_page_examples_health_and_openapi_are_served(server):
    status, headers, page = request(server, "")
    page = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'id="expressions"' in page and "shapes_two.png" in page and "__" not in page
    status, _, data = request(server, "examples/shapes_two.png")
    assert status == 200 and Image.open(io.BytesIO(data)).size == (192, 192)
    for path in ("examples/../app.py", "examples/nope.png", "nothing"):
        status, _, body = request(server, path)
        assert status == 404 and "error" in json.loads(body), path
    status, _, body = request(server, "health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["workers"] == 2
    validator(server, "Health").validate(health)
    status, _, body = request(server, "openapi.json")
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1") and set(doc["paths"]) == {"/api/segment", "/health"}
    post_doc = doc["paths"]["/api/segment"]["post"]
    assert set(post_doc["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "Retry-After" in post_doc["responses"]["503"]["headers"]
    assert "200,000 bytes" in json.dumps(post_doc)  # this server's limit, not a default


def test_segment_returns_overlay_masks_and_zip(server):
    img = noise(50, 70)
    status, out = post(
        server,
        {"image": png_b64(img), "expressions": "red circle, squares\nstars", "overlay": True,
         "zip": True},
    )  # fmt: skip
    assert status == 200, out
    validator(server, "SegmentResponse").validate(out)
    assert [r["expression"] for r in out["results"]] == ["red circle", "squares", "stars"]
    assert (out["width"], out["height"], out["mask_width"], out["mask_height"]) == (70, 50, 70, 50)
    for r in out["results"]:
        assert 0.0 <= r["confidence"] <= 1.0 and r["colour"].startswith("#")
        mask = np.array(Image.open(io.BytesIO(base64.b64decode(r["mask"]))))
        assert mask.shape == (50, 70) and set(np.unique(mask)) <= {0, 255}
        assert r["area"] == (mask > 0).sum() and r["area_fraction"] == pytest.approx(r["area"] / 3500, abs=1e-6)  # fmt: skip
    assert Image.open(io.BytesIO(base64.b64decode(out["overlay"]))).width > 70  # + legend
    z = zipfile.ZipFile(io.BytesIO(base64.b64decode(out["zip"])))
    assert sorted(z.namelist()) == sorted([r["file"] for r in out["results"]] + ["scores.json"])
    assert json.loads(z.read("scores.json"))[0]["expression"] == "red circle"
    # Without overlay and zip the answer holds neither (and costs neither).
    status, lean = post(server, {"image": png_b64(img), "expressions": ["red circle"]})
    assert status == 200 and "overlay" not in lean and "zip" not in lean
    assert lean["results"][0]["confidence"] == out["results"][0]["confidence"]


def test_mask_formats_rle_png_and_none_agree(server):
    mask_api = pytest.importorskip("pycocotools.mask")
    body = {"image": png_b64(noise(40, 60, 1)), "expressions": ["a", "b"]}
    _, as_png = post(server, body)
    status, as_rle = post(server, {**body, "mask_format": "rle"})
    assert status == 200 and as_rle["mask_format"] == "rle"
    validator(server, "SegmentResponse").validate(as_rle)
    for p, r in zip(as_png["results"], as_rle["results"]):
        assert "mask" not in r and r["rle"]["size"] == [40, 60]
        decoded = mask_api.decode({"size": r["rle"]["size"], "counts": r["rle"]["counts"].encode()})
        want = np.array(Image.open(io.BytesIO(base64.b64decode(p["mask"])))) > 0
        assert np.array_equal(decoded.astype(bool), want) and r["area"] == p["area"]
    status, bare = post(server, {**body, "mask_format": "none"})
    assert status == 200 and all("mask" not in r and "rle" not in r for r in bare["results"])


def test_coco_rle_matches_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    cases = [np.zeros((3, 4), bool), np.ones((5, 2), bool), rng.random((1, 1)) > 2]
    cases += [rng.random((h, w)) > t for h, w, t in [(7, 9, 0.5), (40, 33, 0.1), (64, 64, 0.97)]]
    big = np.zeros((300, 200), bool)
    big[40:250, 30:170] = True  # long runs: counts far above 2^5, deltas of both signs
    cases.append(big)
    for m in cases:
        want = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        got = imaging.coco_rle(m)
        assert got["counts"] == want["counts"].decode() and got["size"] == list(want["size"])


def test_multipart_upload_answers_as_json_does(server):
    img = noise(45, 64, 2)
    _, from_json = post(server, {"image": png_b64(img), "expressions": "circles\nred shapes"})
    body, ctype = multipart(
        [("image", ("scene.png", png(img))), ("expressions", "circles"), ("expressions", "red shapes"),
         ("mask_format", "png"), ("overlay", "true")]
    )  # fmt: skip
    status, out = post(server, body, ctype)
    assert status == 200, out
    assert [r["expression"] for r in out["results"]] == ["circles", "red shapes"]
    assert [r["confidence"] for r in out["results"]] == [r["confidence"] for r in from_json["results"]]  # fmt: skip
    assert [r["mask"] for r in out["results"]] == [r["mask"] for r in from_json["results"]]
    assert "overlay" in out


def test_large_image_is_shrunk_before_the_model_and_masks_are_capped(demo_model):
    """A 5000 x 5000 PNG (small on disk): the model gets its input size, masks are at most
    mask_side long; the answer's sizes say so."""
    svc = _service(demo_model, mask_side=256)
    a = np.zeros((5000, 5000, 3), np.uint8)
    a[1000:3000, 500:4000] = (255, 0, 0)
    data = png(a)
    assert len(data) < 200_000
    seen = []
    predict = svc.model.predict
    svc.model.predict = lambda im, ex: seen.append(im.shape) or predict(im, ex)
    try:
        out = json.loads(svc.answer(svc.parse_json(json.dumps(
            {"image": base64.b64encode(data).decode(), "expressions": ["red"] * 16, "overlay": True}
        ).encode())))  # fmt: skip
    finally:
        svc.model.predict = predict
        svc.close()
    assert seen == [(32, 32, 3)]  # the micro model's input size
    assert (out["width"], out["height"], out["mask_width"], out["mask_height"]) == (5000, 5000, 256, 256)  # fmt: skip
    assert len(out["results"]) == 16
    shown = Image.open(io.BytesIO(base64.b64decode(out["overlay"])))
    assert shown.height == imaging.OVERLAY_SIDE


def test_served_results_follow_the_model_on_the_full_image(demo_model):
    """Shrinking first (and enlarging the maps after) changes confidences by about 1e-3 and
    flips only pixels at mask edges, against the model given the full image."""
    model = demo_model[0]
    svc = _service(demo_model)
    ds = ShapesDataset(split="test", size=4, image_size=160, seed=0)
    flipped, total = 0, 0
    for i in range(len(ds)):
        big = np.array(Image.fromarray(ds.image(i)).resize((300, 200)))
        ex = ds.expressions(i)[:6]
        direct = model.predict(big, ex)
        out = json.loads(svc.answer(svc.parse_json(json.dumps(
            {"image": png_b64(big), "expressions": ex}).encode())))  # fmt: skip
        for d, r in zip(direct, out["results"]):
            assert abs(d.confidence - r["confidence"]) < 5e-3
            m = np.array(Image.open(io.BytesIO(base64.b64decode(r["mask"])))) > 0
            flipped += int((m != d.mask).sum())
            total += m.size
    svc.close()
    assert flipped / total < 0.02, flipped / total


def test_text_cache_is_bounded(demo_model):
    """Distinct expressions from clients cannot grow the model's text cache without end."""
    svc = _service(demo_model, text_cache=10)
    try:
        for k in range(3):
            exprs = [f"thing {k} {i}" for i in range(16)]
            body = json.dumps({"example": "shapes_two.png", "expressions": exprs}).encode()
            svc.answer(svc.parse_json(body))
            assert len(demo_model[0]._text_cache) == 10
        assert list(demo_model[0]._text_cache)[-1] == "thing 2 15"  # the newest are kept
    finally:
        svc.close()


def test_model_input_size_is_read_from_the_model(demo_model):
    assert model_input_size(demo_model[0]) == (32, 8)  # micro: 32 px, patch 8
    assert model_input_size(object()) == (None, 1)


def test_decode_upload_jpeg_draft_exif_and_modes():
    # A large JPEG is decoded at a reduced DCT scale (never below 3x what is needed).
    data = png(noise(3000, 4000), format="JPEG", quality=80)
    dec = imaging.decode_upload(data, "x.jpg", 25_000_000, (32, 8), preview=False)
    assert dec.model_image.shape == (32, 40, 3) and (dec.width, dec.height) == (4000, 3000)
    im = Image.open(io.BytesIO(data))
    im.draft(None, (40 * 3, 32 * 3))
    assert im.size == (500, 375)  # what decode_upload decodes: 1/8 scale
    # EXIF orientation 6 (rotate 90): width and height swap, as in tseg segment.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = png(noise(20, 40), format="JPEG", exif=exif.tobytes())
    dec = imaging.decode_upload(data, "r.jpg", 10_000, (32, 8), preview=True)
    assert (dec.width, dec.height) == (20, 40) and dec.model_image.shape == (64, 32, 3)
    assert dec.preview.shape == (40, 20, 3)
    # Palette with transparency, 16-bit grey, 1-bit, CMYK: all end as RGB at the model size.
    pal = Image.new("P", (30, 30))
    pal.info["transparency"] = 0
    grey16 = Image.fromarray(np.full((30, 30), 65535, np.uint16))
    for pic, fmt in [(pal, "PNG"), (grey16, "PNG"), (Image.new("1", (30, 30), 1), "PNG"),
                     (Image.new("CMYK", (30, 30)), "JPEG"), (Image.new("LA", (30, 30)), "PNG")]:  # fmt: skip
        dec = imaging.decode_upload(_save(pic, fmt), pic.mode, 10_000, (32, 8), preview=False)
        assert dec.model_image.shape == (32, 32, 3) and dec.model_image.dtype == np.uint8
    grey = imaging.decode_upload(_save(grey16, "PNG"), "g", 10_000, (32, 8), preview=False)
    assert grey.model_image.min() == 255  # rescaled from 16 bits, not clipped


def _save(pic: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    pic.save(buf, format=fmt)
    return buf.getvalue()


def test_expressions_are_split_and_tidied():
    assert split_expressions("a, b\n\nthe c left of d ,") == ["a", "b", "the c left of d"]
    assert clean_expression("  red\n\tcircle ", 200) == "red circle"
    assert clean_expression("family \U0001f468\u200d\U0001f469\u200d\U0001f467", 200)  # ZWJ emoji
    with pytest.raises(ValueError, match="control character"):
        clean_expression("red\x00circle", 200)


def test_bad_requests_get_messages_and_the_server_stays_up(server):
    big = noise(400, 400, 1)
    cut = base64.b64encode(png(big[:100, :100])[:3000]).decode()
    ico = io.BytesIO()
    Image.fromarray(big[:32, :32]).save(ico, format="ICO")
    deep = b'{"expressions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    example = {"example": "shapes_two.png"}
    cases = [
        ({"image": cut, "expressions": "a"}, 400, "could not be read"),  # truncated PNG
        ({"image": base64.b64encode(b"not an image").decode(), "expressions": "a"}, 400, "not an image"),
        ({"image": base64.b64encode(ico.getvalue()).decode(), "expressions": "a"}, 400, "not an image this server reads"),
        ({"image": "%%%", "expressions": "a"}, 400, "not valid base64"),
        ({"image": 12, "expressions": "a"}, 400, "base64 string"),
        ({"image": png_b64(big[:, :, 0] * 0), "expressions": "a"}, 400, "pixels, above the limit"),
        ({"image": png_b64(big), "expressions": "a"}, 413, "too large"),
        ({**example, "expressions": " ,\n "}, 400, "at least one expression"),
        ({**example, "expressions": []}, 400, "at least one expression"),
        ({**example, "expressions": ["red", 3]}, 400, "must be text"),
        ({**example, "expressions": {"a": 1}}, 400, "text or a list"),
        ({**example, "expressions": ["x" * 201]}, 400, "the limit is 200"),
        ({**example, "expressions": ["red\x07circle"]}, 400, "control character"),
        ({**example, "expressions": ["red \ud800"]}, 400, "control character"),
        ({"image": base64.b64encode(png_header(20_000, 10_000)).decode(), "expressions": "a"}, 400, "more pixels than Pillow will open, above the limit of 90,000"),
        ({**example, "expressions": ",".join("a" * 17)}, 400, "at most 16"),
        ({**example, "expressions": "a", "mask_format": "svg"}, 400, "choose png, rle or none"),
        ({**example, "expressions": "a", "overlay": "maybe"}, 400, "true or false"),
        ({**example, "expressions": "a", "masks": "png"}, 400, "unknown field 'masks'"),
        ({"example": "nope.png", "expressions": "a"}, 400, "unknown example"),
        ({"expressions": "a"}, 400, "choose an image"),
        (b"{not json", 400, "not JSON"),
        (b"\xff\xfe", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (deep, 400, "nested too deeply"),
    ]  # fmt: skip
    for body, code, message in cases:
        status, out = post(server, body)
        shown = body[:60] if isinstance(body, bytes) else list(body)
        assert status == code and message in out["error"], (shown, status, out)
    form_cases = [
        ([("expressions", "a")], 400, "choose an image"),
        ([("image", ("a.png", png(big[:20, :20]))), ("image", ("b.png", png(big[:20, :20]))),
          ("expressions", "a")], 400, "Too many files"),
        ([("example", "shapes_two.png"), ("expressions", ("e.txt", b"a"))], 400, "must be text, not a file"),
        ([("example", "shapes_two.png"), ("expressions", "a"), ("zip", "1"), ("zip", "0")], 400, "given twice"),
    ]  # fmt: skip
    for fields, code, message in form_cases:
        status, out = post(server, *multipart(fields))
        assert status == code and message in out["error"], ([f[0] for f in fields], out)
    status, _, body = request(server, "api/segment", b"expressions=a", "application/x-www-form-urlencoded")  # fmt: skip
    assert status == 415 and "application/json or multipart" in json.loads(body)["error"]
    status, _, body = request(server, "api/segment")  # GET
    assert status == 405 and "not allowed" in json.loads(body)["error"]
    # A newline inside one expression of a list is tidied, not an error (and not a crash).
    status, out = post(server, {**example, "expressions": ["blue\nshapes"], "overlay": True})
    assert status == 200 and out["results"][0]["expression"] == "blue shapes"


def test_oversized_bodies_are_refused_whether_declared_or_chunked(server):
    """Content-Length above the limit, or a chunked body that grows past it: 413 with the
    message, and the connection is answered rather than reset."""
    body = b'{"expressions": "a", "image": "' + b"A" * 400_000 + b'"}'
    host, port = server.split("//")[1].rstrip("/").split(":")
    for chunked in (False, True):
        with socket.create_connection((host, int(port)), timeout=30) as s:
            head = "POST /api/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            if chunked:
                s.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
                for k in range(0, len(body), 65536):
                    part = body[k : k + 65536]
                    s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            else:
                s.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            answer = _read_response(s)
        assert answer.startswith(b"HTTP/1.1 413") and b"too large" in answer, answer[:200]


def _read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(
        (ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")), b"0"
    ))  # fmt: skip
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_cli_serve_wiring_and_errors(demo_model, tmp_path, capsys):
    ns = build_parser().parse_args(["serve", "m", "--port", "0", "--backend", "onnx"])
    assert ns.func is cmd_serve and ns.port == 0 and ns.max_mb == 10 and ns.workers == 2
    assert main(["serve", str(tmp_path / "missing"), "--backend", "onnx", "--port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2  # torch: no checkpoint
    assert "does not exist" in capsys.readouterr().err
    for flags, message in [
        (["--threads", "-1"], "--threads = -1"),
        (["--workers", "0"], "--workers = 0 must be"),
        (["--request-timeout", "nan"], "--request-timeout = nan"),
        (["--max-mb", "inf"], "--max-mb = inf"),
        (["--max-mb", "0.00001"], "--max-mb = 1e-05 is too small"),
    ]:
        assert main(["serve", demo_model[2], *flags]) == 2, flags
        assert message in capsys.readouterr().err, flags
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
