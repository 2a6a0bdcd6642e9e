"""Hub names, offline: encoders and TSEG models from a Hugging Face cache built here.

The cache is written in the Hub's own layout (``models--ORG--NAME/{blobs,snapshots/REV,refs/main}``,
snapshot files linking to content-addressed blobs), checked with huggingface_hub's own
``scan_cache_dir``, and read with ``HF_HUB_OFFLINE=1`` and every socket refused. It holds a tiny
timm ViT (``timm.models.save_for_hf``), a tiny BERT with its tokenizer (``save_pretrained``) and
a tiny TSEG model written by ``tseg export hf``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO_MODEL
from PIL import Image

from tseg.checkpoint import save_checkpoint
from tseg.cli import main
from tseg.config import build_config
from tseg.errors import CheckpointError, WeightsError
from tseg.inference import Segmenter
from tseg.models.tseg import TSEG

VIT, BERT, MODEL = "tester/tiny-vit", "tester/tiny-bert", "tester/tiny-tseg"
WORDS = ["red", "green", "blue", "circle", "square", "triangle", "star", "left", "right", "the"]
LFS_SUFFIXES = (".safetensors", ".bin")  # what the Hub's .gitattributes stores in LFS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def put_in_cache(cache: Path, repo: str, folder: Path) -> Path:
    """Store ``folder`` as ``repo``'s main revision the way ``hf_hub_download`` does: blobs named
    by their etag (sha256 for LFS files, the git blob sha1 otherwise), snapshot files as
    relative links to them, ``refs/main`` holding the commit."""
    from huggingface_hub.file_download import repo_folder_name

    root = cache / repo_folder_name(repo_id=repo, repo_type="model")
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    commit = hashlib.sha1("".join(str(f.relative_to(folder)) for f in files).encode()).hexdigest()
    for f in files:
        data = f.read_bytes()
        if f.suffix in LFS_SUFFIXES:
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = root / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


def use_cache(mp: pytest.MonkeyPatch, cache: Path) -> None:
    """Point huggingface_hub at ``cache``, offline, with every connection refused. Its constants
    are read from the environment at import time, so they are patched as well."""
    import huggingface_hub.constants as hub_constants

    mp.setenv("HF_HUB_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"network access attempted: {address!r}")

    mp.setattr(socket.socket, "connect", refuse)


def tiny_vit_folder(out: Path) -> torch.nn.Module:
    import timm
    from timm.models import save_for_hf

    vit = timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        num_classes=3,  # an ImageNet-style head, dropped on loading
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=1,
        num_heads=2,
    )
    save_for_hf(vit, str(out), safe_serialization=True)  # model.safetensors + config.json
    return vit


def tiny_bert_folder(out: Path) -> torch.nn.Module:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(out)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    bert = BertModel(config).eval()
    bert.save_pretrained(out, safe_serialization=True)
    return bert


def micro_hub_config(run: Path):
    return build_config(
        None,
        [
            *MICRO_MODEL,
            f"model.image.weights=hf-hub:{VIT}",
            "model.text.name=pretrained",
            f"model.text.weights={BERT}",
            "data.val_size=4",
            "data.test_size=4",
            f"train.out_dir={run}",
        ],
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Cache ``full`` (ViT, BERT, TSEG model), cache ``models`` (the TSEG model alone), the run
    folder the model was saved in and the source encoders."""
    root = tmp_path_factory.mktemp("hub")
    full, models = root / "full" / "hub", root / "models" / "hub"
    vit = tiny_vit_folder(root / "src" / "vit")
    bert = tiny_bert_folder(root / "src" / "bert")
    put_in_cache(full, VIT, root / "src" / "vit")
    put_in_cache(full, BERT, root / "src" / "bert")
    run = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        use_cache(mp, full)
        cfg = micro_hub_config(run)
        torch.manual_seed(0)
        model = TSEG(cfg.model, cfg.data.image_size, None)  # encoders from the cache
        save_checkpoint(model, cfg, run, step=3)
        (run / "metrics.json").write_text(json.dumps({"val": {"miou": 0.5, "oiou": 0.25}}))
        export = root / "export"
        assert main(["export", "hf", str(run), "--out", str(export), "--repo", MODEL]) == 0
    put_in_cache(full, MODEL, export)
    put_in_cache(models, MODEL, export)
    bad = root / "src" / "bin-only"  # a TSEG repo whose weights are a pickle
    bad.mkdir()
    for f in ("config.yaml", "meta.json", "tokenizer.json"):
        (bad / f).write_bytes((export / f).read_bytes())
    (bad / "pytorch_model.bin").write_bytes(b"not unpickled")
    put_in_cache(full, "tester/bin-only", bad)
    return {"full": full, "models": models, "run": run, "export": export, "vit": vit, "bert": bert}


def test_cache_has_the_hubs_own_layout(hub):
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hub["full"])
    assert not info.warnings
    repos = {r.repo_id: r for r in info.repos}
    assert set(repos) == {VIT, BERT, MODEL, "tester/bin-only"}
    revision = next(iter(repos[MODEL].revisions))
    assert revision.refs == {"main"}
    assert {f.file_name for f in revision.files} >= {
        "model.safetensors",
        "config.yaml",
        "meta.json",
        "tokenizer.json",
        "config.json",  # text_encoder/config.json
        "README.md",
    }


def test_encoders_load_by_hub_name_offline(hub, monkeypatch):
    use_cache(monkeypatch, hub["full"])
    cfg = micro_hub_config(hub["run"])
    model = TSEG(cfg.model, cfg.data.image_size, None)
    vit, source = model.image_encoder.vit.state_dict(), hub["vit"].state_dict()
    assert all(torch.equal(vit[k], source[k]) for k in vit)  # every tensor; the head dropped
    bert = model.text_encoder.encoder
    ids = model.text_encoder.tokenize(["the red circle"])
    with torch.no_grad():
        want = hub["bert"](**ids).last_hidden_state
        got = bert(**ids).last_hidden_state
    torch.testing.assert_close(got, want)
    assert ids["input_ids"][0, 1].item() == 5 + WORDS.index("the")  # the cached tokenizer


def _photo(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_tseg_model_by_name_needs_nothing_else(hub, monkeypatch, tmp_path):
    image = np.asarray(Image.open(_photo(tmp_path / "p.png")))
    with pytest.MonkeyPatch.context() as mp:
        use_cache(mp, hub["full"])
        want = Segmenter.from_checkpoint(hub["run"]).maps([image], ["red circle", "blue"])[0]
    # The cache holding only the TSEG repo: its bundled text_encoder/config.json rebuilds the
    # text encoder, so the BERT repo is not needed.
    use_cache(monkeypatch, hub["models"])
    seg = Segmenter.from_pretrained(MODEL)
    got = seg.maps([image], ["red circle", "blue"])[0]
    np.testing.assert_array_equal(got.probabilities, want.probabilities)
    np.testing.assert_array_equal(got.confidences, want.confidences)
    local = Segmenter.from_pretrained(hub["export"])  # a local folder works the same
    again = local.maps([image], ["red circle", "blue"])[0]
    np.testing.assert_array_equal(again.confidences, want.confidences)


def test_segment_and_eval_by_name(hub, monkeypatch, tmp_path, capsys):
    use_cache(monkeypatch, hub["models"])
    photo = _photo(tmp_path / "p.png")
    out = tmp_path / "out"
    args = ["segment", MODEL, str(photo), "red circle", "--out", str(out), "--workers", "0"]
    assert main([*args, "--quiet"]) == 0
    assert any(out.rglob("*.png"))
    capsys.readouterr()
    assert main(["eval", MODEL, "--split", "val", "--max-images", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["val"]["pairs"] > 0 and "snapshots" in report["checkpoint"]
    # Choosing a threshold would write into the shared cache: refused, naming what to do.
    assert main(["eval", MODEL, "--split", "val", "--max-images", "2", "--choose-threshold"]) != 0
    assert "copy it first" in capsys.readouterr().err


def test_export_hf_is_a_model_repo(hub):
    from huggingface_hub import ModelCard

    export, ckpt = hub["export"], next(hub["run"].glob("ckpt-*"))
    for f in ("model.safetensors", "config.yaml", "meta.json", "tokenizer.json"):
        assert (export / f).read_bytes() == (ckpt / f).read_bytes()  # as the checkpoint has it
    assert json.loads((export / "text_encoder" / "config.json").read_text())["hidden_size"] == 32
    assert not list(export.glob("*.bin")) and not list(export.glob("*.py"))
    card = ModelCard.load(export / "README.md")
    assert card.data.license == "apache-2.0" and card.data.library_name == "tseg"
    assert "tseg" in card.data.tags and card.data.datasets == ["shapes"]
    assert card.data.base_model == [VIT, BERT]
    assert {(r.metric_type, r.dataset_split, r.metric_value) for r in card.data.eval_results} == {
        ("mean_iou", "val", 0.5),
        ("overall_iou", "val", 0.25),
    }
    assert f'Segmenter.from_pretrained("{MODEL}")' in card.text
    assert "head: mpa" in card.text  # the training config


def test_not_cached_is_one_clear_line_at_once(hub, monkeypatch, capsys, tmp_path):
    use_cache(monkeypatch, hub["full"])
    cache = str(hub["full"])
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as model_error:
        Segmenter.from_pretrained("nobody/missing-model")
    cfg = build_config(None, [*MICRO_MODEL, "model.image.weights=hf-hub:nobody/missing-vit"])
    with pytest.raises(WeightsError) as vit_error:
        TSEG(cfg.model, cfg.data.image_size, None)
    cfg = build_config(
        None, [*MICRO_MODEL, "model.text.name=pretrained", "model.text.weights=nobody/bert"]
    )
    with pytest.raises(WeightsError) as bert_error:
        TSEG(cfg.model, cfg.data.image_size, None)
    assert time.perf_counter() - start < 1.0
    for error, repo in (
        (model_error, "nobody/missing-model"),
        (vit_error, "nobody/missing-vit"),
        (bert_error, "nobody/bert"),
    ):
        message = str(error.value)
        assert "\n" not in message and repo in message and cache in message
        assert f"hf download {repo}" in message and "HF_HUB_OFFLINE" in message
    photo = _photo(tmp_path / "p.png")
    assert main(["segment", "nobody/missing-model", str(photo), "x", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 'nobody/missing-model'")


def test_a_repo_with_only_a_pickle_is_refused(hub, monkeypatch):
    use_cache(monkeypatch, hub["full"])
    with pytest.raises(CheckpointError, match="only safetensors"):
        Segmenter.from_pretrained("tester/bin-only")


def test_weights_command_shows_the_cache(hub, monkeypatch, capsys):
    use_cache(monkeypatch, hub["full"])
    assert main(["weights", "--no-hash"]) == 0
    out = capsys.readouterr().out
    assert "[paper] vit_small_patch16_384.augreg_in21k_ft_in1k weights: MISSING" in out
    assert "hf download timm/vit_small_patch16_384.augreg_in21k_ft_in1k" in out
    assert "hf download google/bert_uncased_L-4_H-512_A-8" in out
    args = [f"model.image.weights=hf-hub:{VIT}", f"model.text.weights={BERT}"]
    assert main(["weights", "--no-hash", *args]) == 0
    out = capsys.readouterr().out
    paper = out.split("[offline]")[0]
    assert "MISSING" not in paper and paper.count("present in the Hugging Face cache") == 4
    assert f"{hub['full']}/models--tester--tiny-vit/snapshots/" in paper


def test_none_trains_from_scratch_without_the_cache(hub, monkeypatch):
    use_cache(monkeypatch, hub["models"])  # no encoder repo in this cache
    cfg = build_config(
        None, [*MICRO_MODEL, "model.image.weights=none", f"model.text.weights={BERT}"]
    )
    torch.manual_seed(0)
    model = TSEG(cfg.model, cfg.data.image_size, _tokenizer())  # text.name=bert: from scratch
    assert model.image_encoder.vit.patch_embed.proj.weight.shape[0] == 32


def _tokenizer():
    from tseg.models.text_encoder import train_tokenizer

    return train_tokenizer(WORDS, 40)


def test_no_network_is_one_clear_line_at_once(monkeypatch, tmp_path):
    """Not offline by setting, but no network: answered at once (huggingface_hub alone retries
    a failed lookup for about 25 s), with the same line as offline."""
    import huggingface_hub.constants as hub_constants

    from tseg import hub as tseg_hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    tseg_hub.hub_reachable.cache_clear()
    start = time.perf_counter()
    with pytest.raises(WeightsError) as error:
        tseg_hub.hub_file("nobody/bert", "config.json")
    assert time.perf_counter() - start < 1.0
    assert "could not be reached" in str(error.value) and "hf download nobody/bert" in str(
        error.value
    )
    assert tseg_hub.hub_file("nobody/bert", "vocab.txt", optional=True) is None
    tseg_hub.hub_reachable.cache_clear()
