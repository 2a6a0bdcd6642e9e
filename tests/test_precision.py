"""inference.precision: int8 and bf16 give maps close to fp32's, through the one Segmenter road,
the config, the CLI flag and a stored checkpoint; int8 leaves the caller's model unquantized."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tseg.checkpoint import save_checkpoint
from tseg.cli import main
from tseg.config import build_config
from tseg.errors import ConfigError, InputError
from tseg.inference import Segmenter
from tseg.inference.precision import prepare
from tseg.models.text_encoder import train_tokenizer
from tseg.models.tseg import TSEG

TEXTS = ["red circle", "the blue square", "a small green triangle"]


@pytest.fixture(scope="module")
def model() -> TSEG:
    from conftest import MICRO_MODEL

    cfg = build_config(None, [*MICRO_MODEL, "model.text.name=bert", "model.image.weights=none"])
    torch.manual_seed(0)
    tok = train_tokenizer([*TEXTS, "green star", "left of"], cfg.model.text.vocab_size)
    return TSEG(cfg.model, cfg.data.image_size, tok, load_weights=False).eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)


def _maps(seg: Segmenter, image: np.ndarray):
    return seg.maps([image], TEXTS)[0]


def test_int8_quantizes_a_copy_and_stays_close_to_fp32(model, image):
    ref = _maps(Segmenter(model), image)
    seg = Segmenter(model, precision="int8")
    # Every linear layer of the copy is a dynamically quantized one; the original keeps nn.Linear.
    kinds = {type(m).__module__ for m in seg.model.modules() if type(m).__name__ == "Linear"}
    assert kinds == {"torch.ao.nn.quantized.dynamic.modules.linear"}
    assert any(type(m) is nn.Linear for m in model.modules())
    out = _maps(seg, image)
    assert out.probabilities.shape == ref.probabilities.shape
    gap = np.abs(out.probabilities - ref.probabilities).max()
    assert 0 < gap < 0.1  # quantized: not identical, but close
    assert np.abs(out.confidences - ref.confidences).max() < 0.05
    assert seg.describe()["precision"] == "int8"


def test_bf16_runs_the_encoders_in_bfloat16_and_returns_fp32(model, image):
    ref = _maps(Segmenter(model), image)
    seg = Segmenter(model, precision="bf16")
    seen: list[torch.dtype] = []
    hook = seg.model.image_proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    try:
        out = _maps(seg, image)
    finally:
        hook.remove()
    assert seen == [torch.bfloat16]
    assert out.probabilities.dtype == np.float32
    assert seg.text_embeddings(TEXTS).dtype == torch.float32
    assert 0 < np.abs(out.probabilities - ref.probabilities).max() < 0.1


def test_bad_precision_is_refused_by_name(model):
    with pytest.raises(ConfigError, match="precision"):
        Segmenter(model, precision="int4")
    with pytest.raises(InputError, match="int8 runs on the CPU only"):
        prepare(model, "int8", torch.device("meta"))


def test_cli_flag_and_stored_precision(model, image, tmp_path, capsys):
    from PIL import Image

    cfg = build_config(None, [])
    cfg.model = model.cfg
    cfg.data.image_size = model.input_size
    ckpt = save_checkpoint(model, cfg, tmp_path / "run", 1)
    Image.fromarray(image).save(tmp_path / "im.png")
    out = tmp_path / "out"
    argv = ["segment", str(ckpt), str(tmp_path / "im.png"), "red circle", "--out", str(out)]
    assert main([*argv, "--precision", "int8", "--quiet"]) == 0
    assert any(out.rglob("*.png"))
    with pytest.raises(SystemExit) as e:  # argparse refuses a value outside the choices
        main([*argv, "--precision", "int4"])
    assert e.value.code == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    # A checkpoint whose config says int8 runs int8 unless told otherwise.
    cfg.inference.precision = "int8"
    ckpt8 = save_checkpoint(model, cfg, tmp_path / "run8", 1)
    assert Segmenter.from_checkpoint(ckpt8).precision == "int8"
    assert Segmenter.from_checkpoint(ckpt8, precision="fp32").precision == "fp32"


def test_text_precision_quantizes_the_text_tower_only(model, image):
    seg = Segmenter(model, text_precision="int8")
    assert (seg.precision, seg.text_precision) == ("fp32", "int8")

    def kinds(m: nn.Module) -> set[str]:
        return {
            type(x).__module__.split(".")[1] for x in m.modules() if type(x).__name__ == "Linear"
        }

    assert kinds(seg.model.text_encoder) == kinds(nn.ModuleList([seg.model.text_proj])) == {"ao"}
    assert kinds(seg.model.image_encoder) == kinds(nn.ModuleList([seg.model.image_proj])) == {"nn"}
    ref, out = _maps(Segmenter(model), image), _maps(seg, image)
    assert 0 < np.abs(out.probabilities - ref.probabilities).max() < 0.1
    with pytest.raises(ConfigError, match="text_precision"):
        Segmenter(model, text_precision="fp64")
