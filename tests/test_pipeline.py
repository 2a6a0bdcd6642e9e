"""The data path: weak batches carry no mask and never read one; targets; flips; full batches."""

import numpy as np
import pytest
import torch

from tseg.config import build_config
from tseg.data import build_dataset
from tseg.data.pipeline import TfidfSimilarity, TrainSet, WeakCollate, collate_full
from tseg.data.transforms import random_view
from tseg.train import make_loader


class NoMaskDataset:
    """A dataset whose masks() fails: weak training must never call it."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def image(self, idx):
        return self.inner.image(idx)

    def expressions(self, idx):
        return self.inner.expressions(idx)

    def masks(self, idx):
        raise AssertionError("weak training read a mask")


def test_weak_path_never_reads_or_yields_a_mask(micro_cfg):
    ds = NoMaskDataset(build_dataset(micro_cfg.data, "train"))
    loader, _, _ = make_loader(micro_cfg, ds, seed=0)
    for batch in loader:
        assert set(batch) == {"images", "texts", "targets"}
        assert batch["targets"].shape == (batch["images"].shape[0], len(batch["texts"]))


def test_weak_targets_use_all_annotations_not_only_sampled(micro_cfg):
    ds = build_dataset(micro_cfg.data, "train")
    tset = TrainSet(ds, micro_cfg.data, seed=0, with_masks=False)
    items = [tset[i] for i in range(6)]
    batch = WeakCollate()(items)
    for i, it in enumerate(items):
        for j, t in enumerate(batch["texts"]):
            assert batch["targets"][i, j].item() == float(t in set(it["all"]))
    # Some positives come from another image's sampled expressions.
    sampled_pos = sum(len(it["sampled"]) for it in items)
    assert batch["targets"].sum().item() > sampled_pos


def test_about_three_positives_sampled_and_texts_deduplicated(micro_cfg):
    ds = build_dataset(micro_cfg.data, "train")
    tset = TrainSet(ds, micro_cfg.data, seed=0, with_masks=False)
    items = [tset[i] for i in range(8)]
    assert all(len(it["sampled"]) == min(3, len(ds.expressions(i))) for i, it in enumerate(items))
    texts = WeakCollate()(items)["texts"]
    assert len(texts) == len(set(texts))


def test_flip_swaps_left_and_right_in_the_text(micro_cfg):
    ds = build_dataset(micro_cfg.data, "train")
    tset = TrainSet(ds, micro_cfg.data, seed=0, with_masks=True)
    seen_flip = False
    for epoch in range(4):
        tset.set_epoch(epoch)
        for i in range(len(tset)):
            it = tset[i]
            flipped = not torch.equal(
                it["image"], torch.from_numpy(ds.image(i)).permute(2, 0, 1).float() / 255
            )
            rel = [e for e in ds.expressions(i) if " left of " in e]
            if flipped and rel:
                seen_flip = True
                swapped = [e.replace(" left of ", " right of ") for e in rel]
                assert all(s in it["all"] for s in swapped)
    assert seen_flip


def test_random_view_keeps_image_and_masks_aligned():
    rng = np.random.default_rng(0)
    img = torch.zeros(3, 40, 60)
    img[:, 10:20, 30:50] = 1.0
    masks = torch.zeros(1, 40, 60, dtype=torch.bool)
    masks[0, 10:20, 30:50] = True
    for _ in range(20):
        im, m, _ = random_view(img, masks, 32, (0.8, 1.5), True, rng)
        assert im.shape == (3, 32, 32) and m.shape == (1, 32, 32)
        a, b = im[0] > 0.5, m[0]
        # Antialiased bilinear (image) and nearest (mask) resampling differ by a pixel at borders.
        inter, union = (a & b).sum().item(), (a | b).sum().item()
        assert union == 0 or inter / union > 0.7


def test_full_batches_pair_texts_with_masks(micro_overrides):
    cfg = build_config(None, [*micro_overrides, "train.mode=full"])
    ds = build_dataset(cfg.data, "train")
    tset = TrainSet(ds, cfg.data, seed=0, with_masks=True)
    batch = collate_full([tset[i] for i in range(4)])
    assert batch["pairs"].shape[0] == batch["masks"].shape[0]
    assert batch["masks"].dtype == torch.bool and batch["masks"].shape[1:] == (32, 32)
    assert batch["pairs"][:, 1].max() < len(batch["texts"])


def test_tfidf_targets_are_soft_and_exact_matches_are_one():
    tf = TfidfSimilarity(["red circle", "blue circle", "small red circle", "green square"])
    sim = tf.max_similarity(
        ["red circle", "blue square", "yellow star"], ["red circle", "green square"]
    )
    assert sim[0] == pytest.approx(1.0)
    assert 0.0 < sim[1] < 1.0  # shares "square"
    assert sim[2] == pytest.approx(0.0)


class SomeWithoutText(NoMaskDataset):
    """Images 1 and 3 have no expression."""

    def expressions(self, idx):
        return [] if idx in (1, 3) else self.inner.expressions(idx)


def test_images_without_expressions_are_left_out_of_training(micro_cfg):
    ds = build_dataset(micro_cfg.data, "train")
    tset = TrainSet(SomeWithoutText(ds), micro_cfg.data, seed=0, with_masks=False)
    assert tset.indices == [i for i in range(len(ds)) if i not in (1, 3)]
    assert all(tset[i]["sampled"] for i in range(len(tset)))
    # `shapes` with disjoint expressions has a few such images (two objects alike).
    cfg = build_config(None, ["data.shapes_expressions=disjoint", "data.train_size=400"])
    disjoint = build_dataset(cfg.data, "train")
    kept = TrainSet(disjoint, cfg.data, seed=0, with_masks=False).indices
    assert set(range(400)) - set(kept) == {i for i in range(400) if not disjoint.expressions(i)}


def test_no_image_with_text_is_an_error(micro_cfg):
    from tseg.data import DatasetError

    class NoText(NoMaskDataset):
        def expressions(self, idx):
            return []

    with pytest.raises(DatasetError, match="none of the .* training images has an expression"):
        TrainSet(NoText(build_dataset(micro_cfg.data, "train")), micro_cfg.data, 0, False)
