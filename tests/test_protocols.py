"""Evaluation protocols: VOC mIoU (plain and zero-shot) and PhraseCut per-task metrics.

A real micro model is used with its probability maps and pooled scores replaced by known values
(the texts it was given are recorded), so every number below is computed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from builders.phrasecut import make_phrasecut
from builders.voc import make_voc
from conftest import MICRO_MODEL

from tseg.cli import main
from tseg.config import Config
from tseg.data.paper.phrasecut import PhraseCutDataset
from tseg.data.paper.voc import VOC_CLASSES, VocDataset
from tseg.data.zeroshot import flatten_class_names, load_class_names
from tseg.eval.protocols import evaluate_phrasecut, evaluate_voc
from tseg.inference import Segmenter
from tseg.models.text_encoder import train_tokenizer
from tseg.models.tseg import TSEG

MapFn = Callable[[int, list[str], tuple[int, int]], tuple[np.ndarray, np.ndarray]]


def stub_model(micro_cfg: Config, monkeypatch: pytest.MonkeyPatch, maps: MapFn) -> TSEG:
    """A micro TSEG whose maps and scores come from ``maps(call, texts, size)``.

    ``maps`` returns (probabilities [L, H, W], pooled scores [L]); ``call`` counts images.
    """
    tok = train_tokenizer(["dog cat person man woman sky white cars"], 200)
    model = TSEG(micro_cfg.model, micro_cfg.data.image_size, tok, load_weights=False).eval()
    state: dict = {"texts": [], "call": -1}
    encode = model.encode_text

    def encode_text(texts: list[str]) -> torch.Tensor:
        state["texts"] = list(texts)
        return encode(texts)

    def pool(s: torch.Tensor) -> dict[str, torch.Tensor]:  # called once per image, before masks
        assert s.shape[-1] == len(state["texts"])
        state["call"] += 1
        _, scores = maps(state["call"], state["texts"], (1, 1))
        return {"scores": torch.tensor(np.asarray(scores), dtype=torch.float32)[None]}

    def masks_at(s: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        probs, _ = maps(state["call"], state["texts"], size)
        assert probs.shape == (len(state["texts"]), *size)
        return torch.from_numpy(probs).float()[None]

    monkeypatch.setattr(model, "encode_text", encode_text)
    monkeypatch.setattr(model, "pool", pool)
    monkeypatch.setattr(model, "masks_at", masks_at)
    return model


# --------------------------------------------------------------------------- VOC

PROMPTS, _ = flatten_class_names(load_class_names())


def voc_maps(call: int, texts: list[str], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image 0: dog on columns 10+, "man" on [3:7, 3:9], a low-confidence cat on [0:2, 0:4].
    Image 1: "woman" on [3:7, 3:7]. Elsewhere 0.1 (image 0) or 0.2 (image 1)."""
    assert texts == PROMPTS
    probs = np.full((len(texts), *size), 0.1 if call == 0 else 0.2)
    scores = np.full(len(texts), -3.0)
    if call == 0:
        probs[texts.index("dog"), :, 10:] = 0.9
        probs[texts.index("man"), 3:7, 3:9] = 0.8
        probs[texts.index("cat"), 0:2, 0:4] = 0.7
        scores[texts.index("dog")] = 2.0
        scores[texts.index("man")] = 2.0  # "person" itself stays at -3: synonyms take the max
        scores[texts.index("cat")] = -2.0  # sigmoid 0.12 < 0.5: dropped in zero-shot
    else:
        probs[texts.index("woman"), 3:7, 3:7] = 0.95
        scores[texts.index("woman")] = 1.0
    return probs, scores


def test_voc_protocol_against_hand_confusion_matrix(tmp_path, micro_cfg, monkeypatch) -> None:
    ds = VocDataset(make_voc(tmp_path / "voc"), "val")
    model = stub_model(micro_cfg, monkeypatch, voc_maps)
    out = evaluate_voc(Segmenter(model), ds)
    # Ground truth (12 x 16): 255 ring [2:8, 2:8] around person [3:7, 3:7]; image 0 also has
    # a dog on columns 12+. Counted pixels (rows gt, columns prediction):
    #   bg -> bg 72 + 156, bg -> dog 24 (columns 10-11), bg -> person 4 (column 8; column 7
    #   is in the ring), bg -> cat 8; dog -> dog 48; person -> person 16 + 16.
    iou = {"background": 228 / 264, "dog": 48 / 72, "person": 32 / 36, "cat": 0.0}
    for c in VOC_CLASSES:
        assert out["per_class_iou"][c] == (pytest.approx(iou[c], abs=1e-6) if c in iou else None)
    assert out["miou"] == pytest.approx(sum(iou.values()) / 4, abs=1e-6)
    assert out["pixel_accuracy"] == pytest.approx((228 + 48 + 32) / (264 + 48 + 32), abs=1e-6)
    # PointM over (image, class present): the dog map peaks first at row 0, column 10, which is
    # not dog (columns 12+); both person maps peak at (3, 3), inside the person.
    assert out["pointm"] == pytest.approx(2 / 3)
    assert out["images"] == 2 and out["zero_shot"] is False


def test_voc_zero_shot_drops_the_low_confidence_class(tmp_path, micro_cfg, monkeypatch) -> None:
    ds = VocDataset(make_voc(tmp_path / "voc"), "val")
    model = stub_model(micro_cfg, monkeypatch, voc_maps)
    out = evaluate_voc(Segmenter(model), ds, zero_shot=True)
    # The cat (confidence 0.12) is dropped: its 8 pixels become background.
    iou = {"background": 236 / 264, "dog": 48 / 72, "person": 32 / 36}
    assert out["per_class_iou"]["cat"] is None
    for c, v in iou.items():
        assert out["per_class_iou"][c] == pytest.approx(v, abs=1e-6)
    assert out["miou"] == pytest.approx(sum(iou.values()) / 3, abs=1e-6)
    # A threshold above every confidence keeps nothing: all background.
    model = stub_model(micro_cfg, monkeypatch, voc_maps)
    none = evaluate_voc(Segmenter(model), ds, zero_shot=True, confidence_threshold=0.99)
    assert none["per_class_iou"]["background"] == pytest.approx(264 / (264 + 48 + 32))


def test_voc_class_names_file_is_a_parameter(tmp_path, micro_cfg, monkeypatch) -> None:
    ds = VocDataset(make_voc(tmp_path / "voc"), "val")
    names = {c: [c] for c in load_class_names()}  # no "man" / "woman": the person is missed
    f = tmp_path / "names.yaml"
    f.write_text("".join(f"{c}: [{n[0]}]\n" for c, n in names.items()))
    texts_seen: list[list[str]] = []

    def maps(call: int, texts: list[str], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        texts_seen.append(texts)
        return np.full((len(texts), *size), 0.1), np.full(len(texts), -3.0)

    model = stub_model(micro_cfg, monkeypatch, maps)
    out = evaluate_voc(Segmenter(model), ds, class_names=f)
    assert texts_seen[0] == list(names)
    assert out["per_class_iou"]["person"] == 0.0


# --------------------------------------------------------------------------- PhraseCut


def phrasecut_maps(
    call: int, texts: list[str], size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions whose IoU with each task's mask is known; 0.5 exactly is background."""
    probs = np.full((len(texts), *size), 0.5)
    for k, t in enumerate(texts):
        p = probs[k]
        if t == "white dog":  # gt [3:13, 2:12] (100 px): half of it, IoU 0.5
            p[3:13, 2:7] = 0.6
        elif t == "cars":  # gt [2:7, 15:20] + [10:14, 20:26] (49 px): exact, IoU 1
            p[2:7, 15:20] = 0.6
            p[10:14, 20:26] = 0.6
        elif t == "sky":  # gt [0:4, 0:16] (64 px): one extra row, IoU 64 / 80
            p[0:5] = 0.6
        elif t == "Sky":  # half of the sky, IoU 0.5
            p[0:4, 0:8] = 0.6
        # "White  dog" (gt [0:2, 0:2]): nothing predicted, IoU 0
    return probs, np.zeros(len(texts))


def test_phrasecut_per_task_metrics_strict(tmp_path, micro_cfg, monkeypatch) -> None:
    ds = PhraseCutDataset(make_phrasecut(tmp_path / "pc"), "val")
    model = stub_model(micro_cfg, monkeypatch, phrasecut_maps)
    out = evaluate_phrasecut(Segmenter(model), ds)
    ious = [0.5, 1.0, 0.0, 0.8, 0.5]  # every task, the ambiguous "White  dog" included
    assert out["count"] == 5 and out["images"] == 2
    assert out["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-6)
    assert out["cum_iou"] == pytest.approx((50 + 49 + 0 + 64 + 32) / (100 + 49 + 4 + 80 + 64))
    assert out["prec@0.5"] == pytest.approx(2 / 5)  # 0.5 is not > 0.5
    assert out["prec@0.7"] == pytest.approx(2 / 5)
    assert out["prec@0.9"] == pytest.approx(1 / 5)
    # Each map's first maximum (row-major) lies in its task's mask, the empty "White  dog"
    # prediction included (a flat map peaks at (0, 0), inside its [0:2, 0:2] mask).
    assert out["pointm"] == pytest.approx(1.0)
    model = stub_model(micro_cfg, monkeypatch, phrasecut_maps)
    first = evaluate_phrasecut(Segmenter(model), ds, max_images=1)
    assert first["count"] == 3 and first["mean_iou"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- CLI

FAST = [
    *MICRO_MODEL,
    "train.batch_size=2",
    "train.steps=1",
]


@pytest.fixture(scope="module")
def phrasecut_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("pc_run")
    root = make_phrasecut(tmp / "pc")
    args = ["train", *FAST, "data.dataset=phrasecut", f"data.root={root}", "data.train_split=val"]
    assert main([*args, "--quiet", "--out", str(tmp / "run")]) == 0
    return root, tmp / "run"


def test_cli_protocols(phrasecut_run, tmp_path, capsys) -> None:
    root, run = phrasecut_run
    capsys.readouterr()
    assert main(["eval", str(run), "--protocol", "phrasecut", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "phrasecut" and out["val"]["count"] == 5
    voc = make_voc(tmp_path / "voc")
    args = ["eval", str(run), "--protocol", "voc-zeroshot", "--dataset-root", str(voc)]
    assert main([*args, "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["val"]["zero_shot"] is True and out["val"]["images"] == 2
    assert set(out["val"]["per_class_iou"]) == set(VOC_CLASSES)
    # Without --dataset-root a PhraseCut model cannot be evaluated on VOC: the error says so.
    assert main(["eval", str(run), "--protocol", "voc", "--device", "cpu"]) == 2
    assert "--dataset-root" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("dog: [dog]\n")
    assert main([*args, "--classes", str(bad), "--device", "cpu"]) == 2
    assert "missing class" in capsys.readouterr().err
    # The default protocol is unchanged: every (image, expression) pair.
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "protocol" not in out and out["val"]["pairs"] > 0
