"""COCO box pretraining (Table 2e): box geometry under augmentation, no mask reads, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builders.refcoco import make_refcoco
from builders.voc import make_voc
from conftest import MICRO_MODEL

from tseg.checkpoint import CheckpointError
from tseg.cli import main
from tseg.config import build_config
from tseg.data import DatasetError
from tseg.data.paper.refcoco import RefCocoDataset
from tseg.data.pipeline import BoxCollate, TrainSet, box_patch_targets
from tseg.data.transforms import View, apply_view, random_view, sample_view, transform_boxes
from tseg.train import OBJECTIVES, build_model, init_model_from, make_loader, train

FAST = [
    *MICRO_MODEL,
    "train.batch_size=2",
    "train.steps=2",
    "data.scale_min=0.5",
    "data.scale_max=2.0",
]


# --------------------------------------------------------------------------- geometry


def test_transform_boxes_by_hand() -> None:
    # 20 x 40 image, rescaled by 0.8 to 16 x 32, crop 16 x 16 at left 8.
    view = View(height=20, width=40, nh=16, nw=32, top=0, left=8, size=16, flipped=False)
    boxes = np.array([[10, 5, 10, 5], [0, 0, 5, 5], [30, 10, 20, 20]], dtype=float)
    np.testing.assert_allclose(
        transform_boxes(boxes, view),
        [[0, 4, 8, 4], [0, 0, 0, 4], [16, 8, 0, 8]],  # clipped; the last is right of the crop
    )
    flipped = View(20, 40, 16, 32, 0, 8, 16, True)
    np.testing.assert_allclose(
        transform_boxes(boxes, flipped), [[8, 4, 8, 4], [16, 0, 0, 4], [0, 8, 0, 8]]
    )
    # Padding: a 16 x 16 image halved to 8 x 8 in a 16 crop (offset 0): the box only halves.
    small = View(16, 16, 8, 8, 0, 0, 16, False)
    np.testing.assert_allclose(transform_boxes([[2, 4, 6, 2]], small), [[1, 2, 3, 1]])


def test_view_split_matches_random_view() -> None:
    img = torch.rand(3, 20, 30)
    masks = torch.rand(2, 20, 30) > 0.5
    for seed in range(5):
        a_img, a_m, a_f = random_view(img, masks, 16, (0.5, 2.0), True, np.random.default_rng(seed))
        view = sample_view(20, 30, 16, (0.5, 2.0), True, np.random.default_rng(seed))
        assert torch.equal(a_img, apply_view(img, view))
        assert torch.equal(a_m, apply_view(masks, view, masks=True))
        assert a_f == view.flipped


@pytest.mark.parametrize("seed", range(8))
def test_transformed_box_follows_the_transformed_mask(seed: int) -> None:
    """A box drawn as a mask and sent through the same view keeps (within a pixel) the new box."""
    h, w = 40, 60
    x, y, bw, bh = 12, 8, 30, 20
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, y : y + bh, x : x + bw] = True
    view = sample_view(h, w, 32, (0.5, 2.0), True, np.random.default_rng(seed))
    m = apply_view(mask, view, masks=True)[0]
    box = transform_boxes([[x, y, bw, bh]], view)[0]
    if not m.any():
        assert box[2] * box[3] < 2.0
        return
    ys, xs = np.nonzero(m.numpy())
    assert abs(xs.min() - box[0]) <= 1 and abs(xs.max() + 1 - (box[0] + box[2])) <= 1
    assert abs(ys.min() - box[1]) <= 1 and abs(ys.max() + 1 - (box[1] + box[3])) <= 1


def test_box_patch_targets_by_hand() -> None:
    # 16 px input, 4 px patches: centres 2, 6, 10, 14. Box x 4..12, y 0..6.
    t = box_patch_targets(torch.tensor([[4.0, 0.0, 8.0, 6.0]]), (4, 4), 4)
    expected = torch.zeros(1, 4, 4)
    expected[0, 0, 1:3] = 1
    assert torch.equal(t, expected)
    assert box_patch_targets(torch.tensor([[0.0, 0.0, 0.0, 16.0]]), (4, 4), 4).sum() == 0


# --------------------------------------------------------------------------- data path


class NoMasks:
    """RefCOCO with masks() that fails: box training must never call it."""

    def __init__(self, inner: RefCocoDataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def image(self, idx: int) -> np.ndarray:
        return self.inner.image(idx)

    def expressions(self, idx: int) -> list[str]:
        return self.inner.expressions(idx)

    def boxes(self, idx: int) -> np.ndarray:
        return self.inner.boxes(idx)

    def masks(self, idx: int) -> np.ndarray:
        raise AssertionError("box training read a mask")


def box_cfg(root: Path, tmp_path: Path, *extra: str):  # noqa: ANN201
    return build_config(
        None,
        [
            *FAST,
            "data.dataset=refcoco",
            f"data.root={root}",
            "data.split_by=unc",
            "data.train_split=val",
            "train.mode=box",
            "model.image.patch_size=8",
            f"train.out_dir={tmp_path / 'run'}",
            *extra,
        ],
    )


def test_box_mode_never_reads_masks_and_trains(tmp_path: Path) -> None:
    root = make_refcoco(tmp_path / "refer")
    cfg = box_cfg(root, tmp_path)
    ds = NoMasks(RefCocoDataset(root, "refcoco", "unc", "val"))
    loader, tset, _ = make_loader(cfg, ds, seed=0)
    assert isinstance(loader.collate_fn, BoxCollate)
    model = build_model(cfg, ds)
    for epoch in range(3):
        tset.set_epoch(epoch)
        for batch in loader:
            assert "masks" not in batch
            p = batch["pairs"].shape[0]
            assert batch["boxes"].shape == (p, 4) and batch["box_masks"].shape == (p, 4, 4)
            out = OBJECTIVES["box"].loss(model, batch, torch.device("cpu"))
            assert torch.isfinite(out["loss"])
            out["loss"].backward()


def test_box_items_carry_the_sampled_boxes(tmp_path: Path) -> None:
    root = make_refcoco(tmp_path / "refer")
    cfg = box_cfg(root, tmp_path, "data.scale_min=1.0", "data.scale_max=1.0", "data.hflip=false")
    ds = RefCocoDataset(root, "refcoco", "unc", "val")
    tset = TrainSet(ds, cfg.data, seed=0, with_masks=False, with_boxes=True)
    item = tset[1]  # image 2: 16 x 24, "crowd", box [3, 2, 21, 14]
    assert item["sampled"] == ["crowd"]
    # Scale 2 (shorter side 16 -> 32): 32 x 48, box [6, 4, 42, 28]; crop 32 x 32 at (0, left).
    x0, y0, bw, bh = item["boxes"][0].tolist()
    assert (y0, bh) == (4.0, 28.0)
    assert 0.0 <= x0 <= 6.0 and x0 + bw == 32.0  # x0 = max(6 - left, 0); right edge clipped


def test_dataset_without_boxes_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_voc(tmp_path / "voc")
    args = ["train", *FAST, "data.dataset=voc", f"data.root={root}", "data.train_split=train"]
    assert main([*args, "train.mode=box", "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "'voc'" in err and "VocDataset" in err and "boxes" in err
    cfg = build_config(None, ["data.dataset=voc", f"data.root={root}"])
    from tseg.data.paper.voc import VocDataset

    with pytest.raises(DatasetError, match="has no boxes"):
        TrainSet(VocDataset(root, "train"), cfg.data, 0, with_masks=False, with_boxes=True)


def test_box_training_end_to_end_then_weak_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = make_refcoco(tmp_path / "refer")
    run = tmp_path / "box"
    args = [
        "train",
        *FAST,
        "data.dataset=refcoco",
        f"data.root={root}",
        "data.split_by=unc",
        "train.mode=box",
    ]
    assert main([*args, "--quiet", "--out", str(run)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 2 and 0.0 <= out["val"]["miou"] <= 1.0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)

    # Continue weakly from the box checkpoint (train.init_from, read with getattr). With lr 0
    # the weights stay those of the box checkpoint.
    cfg = build_config(
        None,
        [*FAST, "data.dataset=refcoco", f"data.root={root}", "train.steps=1", "train.lr=0"],
    )
    saved = {k: v.clone() for k, v in init_model_from(cfg, run).state_dict().items()}
    cfg.train.init_from = str(run)  # type: ignore[attr-defined]  # field added to TrainConfig later
    res = train(cfg, tmp_path / "weak", progress=False, evaluate_splits=())
    assert res["init_from"] == str(run)
    after = init_model_from(cfg, tmp_path / "weak").state_dict()
    assert all(torch.equal(saved[k], after[k]) for k in saved)
    bad = build_config(
        None, [*FAST, "data.dataset=refcoco", f"data.root={root}", "model.embed_dim=16"]
    )
    with pytest.raises(CheckpointError, match="shape"):
        init_model_from(bad, run)
