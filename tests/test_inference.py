"""The Python inference API: input kinds, text-embedding cache, batches, TTA and CRF options."""

import numpy as np
import pytest
import torch
from PIL import Image

from tseg.checkpoint import save_checkpoint
from tseg.config import CRFConfig, TTAConfig
from tseg.data import build_dataset
from tseg.inference import InputError, Segmenter, load_image
from tseg.inference.crf import crf_available
from tseg.train import build_model


@pytest.fixture
def segmenter(micro_cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model(micro_cfg, build_dataset(micro_cfg.data, "train"))
    save_checkpoint(model, micro_cfg, tmp_path / "run", step=1)
    return Segmenter.from_checkpoint(tmp_path / "run")


def test_predict_returns_one_result_per_expression_at_image_size(segmenter):
    img = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    preds = segmenter.predict(img, ["red circle", "blue shapes"])
    assert [p.expression for p in preds] == ["red circle", "blue shapes"]
    for p in preds:
        assert p.probability.shape == (37, 53) and p.probability.dtype == np.float32
        assert p.mask.dtype == bool and np.array_equal(p.mask, p.probability > 0.5)
        assert 0.0 <= p.confidence <= 1.0


def test_text_cache_counts_encoder_calls(segmenter):
    img = np.zeros((32, 32, 3), np.uint8)
    segmenter.predict(img, ["red circle", "squares"])
    assert segmenter.text_encoder_calls == 1
    segmenter.predict(img, ["squares", "red circle"])  # same expressions: no new call
    segmenter.predict_batch([img, img, img], ["red circle"])
    assert segmenter.text_encoder_calls == 1
    segmenter.predict(img, ["red circle", "stars"])  # only "stars" is new
    assert segmenter.text_encoder_calls == 2
    assert set(segmenter._text_cache) == {"red circle", "squares", "stars"}


def test_batch_equals_single_calls(segmenter):
    rng = np.random.default_rng(1)
    imgs = [(rng.random((32, 40, 3)) * 255).astype(np.uint8) for _ in range(3)]
    batch = segmenter.predict_batch(imgs, ["circles"])
    for img, preds in zip(imgs, batch):
        single = segmenter.predict(img, ["circles"])
        assert np.allclose(single[0].probability, preds[0].probability, atol=1e-6)


def test_input_kinds(tmp_path):
    rgb = (np.random.default_rng(2).random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    for name in ("a.png", "gray.png", "rgba.png", "pal.png"):
        out = load_image(tmp_path / name)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert load_image(Image.fromarray(rgb)).shape == (20, 30, 3)
    assert load_image(rgb[:, :, 0]).shape == (20, 30, 3)
    assert np.array_equal(load_image(rgb.astype(np.float32) / 255.0), rgb)
    with pytest.raises(InputError, match="shape"):
        load_image(np.zeros((4, 4, 5)))
    with pytest.raises(InputError, match="unsupported image type"):
        load_image(42)


def test_exif_rotation_is_honoured(tmp_path):
    img = Image.new("RGB", (30, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").shape == (30, 20, 3)


def test_tta_option_changes_the_path(segmenter, micro_cfg):
    img = (np.random.default_rng(3).random((32, 32, 3)) * 255).astype(np.uint8)
    plain = segmenter.predict(img, ["the circle left of the red square"])[0]
    tta_seg = Segmenter(segmenter.model, tta=TTAConfig(scales=(1.0,), flip=False))
    same = tta_seg.predict(img, ["the circle left of the red square"])[0]
    assert np.allclose(plain.probability, same.probability, atol=1e-5)
    flip_seg = Segmenter(segmenter.model, tta=TTAConfig(scales=(1.0, 1.5), flip=True))
    other = flip_seg.predict(img, ["the circle left of the red square"])[0]
    assert other.probability.shape == (32, 32)
    assert np.abs(plain.probability - other.probability).max() > 0  # more passes were averaged


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 (the [crf] extra) is not installed")
def test_crf_option(segmenter):
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = (255, 0, 0)
    crf_seg = Segmenter(segmenter.model, crf=CRFConfig(iterations=5))
    p = crf_seg.predict(img, ["red square"])[0]
    assert p.probability.shape == (32, 32) and 0 <= p.probability.min() <= p.probability.max() <= 1


def test_bad_and_unusual_image_files(tmp_path):
    rgb = (np.random.default_rng(4).random((24, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(InputError, match="truncated.png' could not be read"):
        load_image(tmp_path / "truncated.png")
    with pytest.raises(InputError, match=r"empty.png' is empty \(0 bytes\)"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="text.jpg' could not be read"):
        load_image(tmp_path / "text.jpg")
    # 16-bit grayscale keeps its contrast (a plain convert would clip everything above 255).
    g16 = (np.linspace(0, 65535, 24 * 32).reshape(24, 32)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (24, 32, 3) and out.min() == 0 and out.max() == 255
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").shape == (24, 32, 3)
    Image.new("RGB", (1, 1), (9, 9, 9)).save(tmp_path / "one.png")
    assert load_image(tmp_path / "one.png").shape == (1, 1, 3)
    # A transparent RGBA pixel becomes white, not the colour hidden under alpha 0.
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png")[0, 0].tolist() == [255, 255, 255]


def test_decompression_bomb_limit(tmp_path):
    Image.new("RGB", (400, 300)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match="400 x 300 = 120,000 pixels, above the limit of 100,000"):
        load_image(tmp_path / "big.png", max_pixels=100_000)
    assert load_image(tmp_path / "big.png", max_pixels=200_000).shape == (300, 400, 3)


def test_one_by_one_image_segments(segmenter):
    preds = segmenter.predict(np.full((1, 1, 3), 200, np.uint8), ["circles"])
    assert preds[0].mask.shape == (1, 1)


def test_unusual_expressions(segmenter):
    img = np.zeros((32, 32, 3), np.uint8)
    preds = segmenter.predict(img, ["circles", "circles", "ballon rouge à gauche 🎈"])
    assert len(preds) == 3
    assert np.array_equal(preds[0].probability, preds[1].probability)  # duplicates agree
    long = " ".join(["red"] * 200)
    with pytest.warns(UserWarning, match="truncated"):
        assert len(segmenter.predict(img, [long])) == 1
    with pytest.raises(InputError, match="is empty"):
        segmenter.predict(img, ["circles", "\t "])
    with pytest.raises(InputError, match="no expressions"):
        segmenter.predict(img, [])


def test_inference_config_is_stored_and_overridable(micro_overrides, tmp_path):
    from tseg.config import build_config

    cfg = build_config(
        None,
        [
            *micro_overrides,
            "inference.tta.enabled=true",
            "inference.tta.scales=1,2",
            "inference.threshold=0.7",
            "inference.thresholds.tta=0.6",
        ],
    )
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    save_checkpoint(model, cfg, tmp_path / "r", step=1)
    seg = Segmenter.from_checkpoint(tmp_path / "r")
    # TTA's maps are averaged: they use the threshold stored for TTA, a plain pass the other.
    assert seg.tta is not None and seg.tta.scales == [1.0, 2.0] and seg.threshold == 0.6
    assert Segmenter.from_checkpoint(tmp_path / "r", tta=False).threshold == 0.7
    seg = Segmenter.from_checkpoint(tmp_path / "r", tta=None, threshold=0.3)
    assert seg.tta is None and seg.threshold == 0.3
    p = seg.predict(np.zeros((16, 16, 3), np.uint8), ["circles"])[0]
    assert np.array_equal(p.mask, p.probability > 0.3)


def test_bad_inference_config_values(micro_overrides, tmp_path):
    from tseg.config import ConfigError, build_config

    with pytest.raises(ConfigError, match="'inference.threshold' = 1.5 is out of range"):
        build_config(None, [*micro_overrides, "inference.threshold=1.5"])
    # Checked when the config is built, not when a Segmenter first uses it.
    with pytest.raises(ConfigError, match="'inference.tta.scales' = '1,big' is not a comma"):
        build_config(
            None, [*micro_overrides, "inference.tta.enabled=true", "inference.tta.scales=1,big"]
        )
    with pytest.raises(ConfigError, match=r"'inference.tta.scales' = \[1.0, -2.0\]: every scale"):
        build_config(None, [*micro_overrides, "inference.tta.scales=1,-2"])
    cfg = build_config(None, micro_overrides)
    model = build_model(cfg, build_dataset(cfg.data, "train"))
    with pytest.raises(ConfigError, match="'inference.threshold' = 2.0 is out of range"):
        Segmenter(model, threshold=2)
