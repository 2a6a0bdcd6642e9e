"""Self-training: PAMR, pseudo masks (format, filters, resume, mismatches), the student's mode
(never a ground-truth mask) and the chain of rounds."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tseg.cli import main
from tseg.coco_masks import decode, encode
from tseg.config import PAMRConfig, build_config
from tseg.data.synthetic.shapes import ShapesDataset
from tseg.errors import ConfigError, DatasetError
from tseg.inference.pamr import _neighbours, affinities, pamr, refine
from tseg.selftrain import PseudoMaskDataset, PseudoMasks, pseudo_label
from tseg.selftrain.store import MANIFEST, shard_path
from tseg.train import train
from tseg.train.losses import bce_loss, dice_loss

# --- PAMR against its formula --------------------------------------------------------------


def test_pamr_one_iteration_is_the_affinity_weighted_mean_of_the_neighbours():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 12, 12)
    masks = torch.rand(1, 2, 12, 12)
    dil = (1, 2)
    out = pamr(image, masks, PAMRConfig(iterations=1, dilations=[1, 2]))
    # By hand at pixel (5, 6): kappa = -|I_i - I_j| / sigma_i, mean over channels, softmax.
    y, x = 5, 6
    offs = [(dy, dx) for d in dil for dy in (-d, 0, d) for dx in (-d, 0, d) if dy or dx]
    centre = image[0, :, y, x]
    nb = torch.stack([image[0, :, y + dy, x + dx] for dy, dx in offs], 1)  # [3, K]
    sigma = torch.cat([nb, centre[:, None]], 1).std(1) + 1e-4
    kappa = (-(nb - centre[:, None]).abs() / sigma[:, None]).mean(0)
    alpha = torch.softmax(kappa, 0)
    expect = torch.stack([masks[0, :, y + dy, x + dx] for dy, dx in offs], 1) @ alpha
    assert torch.allclose(out[0, :, y, x], expect, atol=1e-5)


def test_pamr_in_place_accumulation_equals_the_stacked_neighbours():
    torch.manual_seed(1)
    image, masks = torch.rand(2, 3, 20, 17), torch.rand(2, 3, 20, 17)
    dil = (1, 3)
    alpha = affinities(image, dil)
    stacked = (_neighbours(masks, dil) * alpha[:, None]).sum(2)
    assert torch.allclose(
        pamr(image, masks, PAMRConfig(iterations=1, dilations=[1, 3])), stacked, atol=1e-6
    )


def test_pamr_pulls_a_spilled_mask_back_to_the_colour_edge():
    # Left half red, right half blue; the mask covers the red half and spills 3 px into blue.
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = (220, 30, 30)
    image[:, 16:] = (30, 30, 220)
    probs = np.zeros((32, 32), np.float32)
    probs[:, :19] = 1.0
    out = refine(image, probs, PAMRConfig(iterations=10, dilations=[1, 2, 4]))
    assert out.shape == probs.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    spill = out[:, 16:19].mean()
    assert spill < 0.5 < out[:, 4:12].mean()  # the spill fades, the object stays
    with pytest.raises(ValueError, match="do not match"):
        refine(image, probs[:10])


def test_pamr_config_rules():
    with pytest.raises(ConfigError, match="dilation"):
        build_config(None, ["inference.pamr.dilations=[1, 2.5]"])
    with pytest.raises(ConfigError, match="inference.pamr.iterations"):
        build_config(None, ["inference.pamr.iterations=-1"])


# --- losses with ignore pixels --------------------------------------------------------------


def test_dice_and_bce_leave_the_ignore_pixels_out():
    torch.manual_seed(2)
    logits, target = torch.randn(3, 8, 8), torch.rand(3, 8, 8) > 0.5
    valid = torch.ones(3, 8, 8, dtype=torch.bool)
    valid[:, :, 4:] = False
    # Ignored pixels with absurd logits change nothing.
    noisy = logits.clone()
    noisy[:, :, 4:] = 100.0
    assert torch.allclose(
        dice_loss(logits, target, valid=valid), dice_loss(noisy, target, valid=valid)
    )
    assert torch.allclose(bce_loss(logits, target, valid), bce_loss(noisy, target, valid))
    assert torch.allclose(
        bce_loss(logits, target, valid),
        bce_loss(logits[:, :, :4].contiguous(), target[:, :, :4].contiguous()),
    )
    assert not torch.allclose(dice_loss(logits, target), dice_loss(noisy, target))


# --- pseudo masks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, one_torch_thread):
    from conftest import MICRO

    out = tmp_path_factory.mktemp("teacher") / "run"
    cfg = build_config(None, [*MICRO, "train.steps=2", f"train.out_dir={out}"])
    train(cfg, progress=False, evaluate_splits=())
    return out


LABEL = ["pseudo.threshold=0.5", "pseudo.min_confidence=0", "pseudo.shard_size=10"]


def test_pseudo_masks_are_coco_files_with_a_manifest(teacher, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "pl"
    m = pseudo_label(teacher, out, [*LABEL, "pseudo.refine=pamr"], progress=False)
    assert m["complete"] and m["images"] == 24 and m["shards"] == 3
    assert m["teacher"]["weights_sha256"] and m["options"]["refine"] == "pamr"
    assert (
        m["stats"]["kept"] + m["stats"]["empty"] + m["stats"]["low_confidence"]
        == m["stats"]["pairs"]
    )
    coco = COCO(str(shard_path(out, 0)))  # pycocotools reads a shard as an instances file
    assert sorted(coco.getImgIds()) == list(range(10))
    ann = coco.loadAnns(coco.getAnnIds())[0]
    mask = coco.annToMask(ann)
    assert (
        mask.sum() == ann["area"]
        and ann["expression"] == coco.loadCats(ann["category_id"])[0]["name"]
    )
    assert np.array_equal(mask > 0, decode(ann["segmentation"]))
    ds = ShapesDataset("train", 24, 32, seed=0)
    assert ann["expression"] in ds.expressions(ann["image_id"])


def test_pseudo_label_coco_writes_every_mask_to_one_instances_file(teacher, tmp_path, capsys):
    from pycocotools.coco import COCO

    out, file = tmp_path / "pl", tmp_path / "pseudo.json"
    args = ["pseudo-label", str(teacher), "--out", str(out), "--coco", str(file), "--quiet"]
    assert main([*args, *LABEL]) == 0
    stats = json.loads((out / MANIFEST).read_text())["stats"]
    assert f"wrote {stats['kept']} pseudo masks to {file}" in capsys.readouterr().out
    coco = COCO(str(file))  # one file: the images of all 3 shards, ids unique over them
    assert sorted(coco.getImgIds()) == list(range(24)) and len(coco.getAnnIds()) == stats["kept"]
    assert len({a["id"] for a in coco.dataset["annotations"]}) == stats["kept"]
    names = [c["name"] for c in coco.dataset["categories"]]
    assert len(names) == len(set(names))  # one category per expression, over every shard
    stored = PseudoMasks(out).images
    for ann in coco.dataset["annotations"]:
        expression = names[ann["category_id"] - 1]
        assert expression == ann["expression"] and "ignore" not in ann
        fg = next(rle for e, rle, _, _ in stored[ann["image_id"]][1] if e == expression)
        assert np.array_equal(coco.annToMask(ann) > 0, decode(fg))


def test_label_rules_filter_pairs_and_mark_ignore(teacher, tmp_path):
    base = ["pseudo.shard_size=50", "pseudo.refine=none"]
    everything = pseudo_label(
        teacher,
        tmp_path / "a",
        [*base, "pseudo.threshold=0.5", "pseudo.min_confidence=0", "pseudo.ignore_band=0"],
        progress=False,
    )
    strict = pseudo_label(
        teacher,
        tmp_path / "b",
        [*base, "pseudo.threshold=0.5", "pseudo.min_confidence=0.99", "pseudo.ignore_band=0.5"],
        progress=False,
    )
    assert strict["stats"]["low_confidence"] > everything["stats"]["low_confidence"] == 0
    assert (
        everything["stats"]["ignored"] == 0 < strict["stats"]["ignored"]
        or strict["stats"]["kept"] == 0
    )
    store = PseudoMasks(tmp_path / "a")
    own, pairs = store.images[0]
    assert [p[0] for p in pairs] == [e for e in own if e in {p[0] for p in pairs}]


def test_choose_threshold_on_val_for_the_refinement(teacher, tmp_path):
    m = pseudo_label(
        teacher, tmp_path / "pl", ["pseudo.refine=none", "pseudo.min_confidence=0"], progress=False
    )
    assert m["threshold"]["chosen"].startswith("val") and "miou_at" in m["threshold"]


def test_a_stopped_run_continues_at_the_first_missing_shard(teacher, tmp_path):
    out = tmp_path / "pl"
    pseudo_label(teacher, out, LABEL, progress=False)
    kept = shard_path(out, 0).stat().st_mtime_ns
    # As if killed while writing shard 2: its file never got its final name.
    shard_path(out, 2).rename(out / "shard-00002.json.tmp123")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["complete"] = False
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="did not finish .*2 of 3 shards"):
        PseudoMasks(out)
    again = pseudo_label(teacher, out, LABEL, progress=False)
    assert again["complete"] and shard_path(out, 2).is_file()
    assert shard_path(out, 0).stat().st_mtime_ns == kept  # finished shards are not redone
    assert len(again["seconds"]) == 2
    with pytest.raises(DatasetError, match="another options .*ignore_band"):
        pseudo_label(teacher, out, [*LABEL, "pseudo.ignore_band=0.4"], progress=False)


def test_bad_pseudo_options_name_the_key(teacher, tmp_path):
    with pytest.raises(ConfigError, match="pseudo.refine"):
        pseudo_label(teacher, tmp_path / "x", ["pseudo.refine=sharpen"], progress=False)
    with pytest.raises(ConfigError, match="pseudo.min_confidence"):
        pseudo_label(teacher, tmp_path / "x", ["pseudo.min_confidence=2"], progress=False)
    with pytest.raises(ConfigError, match="data.pseudo_masks"):
        build_config(None, ["train.mode=pseudo"])


# --- the student ----------------------------------------------------------------------------


def test_the_student_trains_on_pseudo_masks_and_never_reads_a_ground_truth_mask(
    teacher, tmp_path, monkeypatch
):
    from conftest import MICRO

    folder = tmp_path / "pl"
    pseudo_label(teacher, folder, LABEL, progress=False)

    def no_masks(self, idx):
        raise AssertionError("the student read a ground-truth mask")

    monkeypatch.setattr(ShapesDataset, "masks", no_masks)
    cfg = build_config(
        None,
        [
            *MICRO,
            "train.mode=pseudo",
            f"data.pseudo_masks={folder}",
            "train.pseudo_loss=dice+bce",
            "train.weak_weight=0.5",
            f"train.init_from={teacher}",
            f"train.out_dir={tmp_path / 'student'}",
        ],
    )
    res = train(cfg, progress=False, evaluate_splits=())
    assert (tmp_path / "student" / "latest").is_file() and res["steps"] == 3
    log = [json.loads(x) for x in (tmp_path / "student" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)


def test_a_pseudo_folder_of_other_data_is_one_error_naming_the_first_mismatch(teacher, tmp_path):
    from tseg.config import DataConfig

    folder = tmp_path / "pl"
    pseudo_label(teacher, folder, LABEL, progress=False)
    other = DataConfig(image_size=32, train_size=24, seed=5, pseudo_masks=str(folder))
    with pytest.raises(DatasetError, match="made for other data: seed = 0 there, 5 here"):
        PseudoMaskDataset(ShapesDataset("train", 24, 32, seed=5), other)
    # Same config, other expressions in a shard (e.g. another dataset version).
    shard = json.loads(shard_path(folder, 1).read_text())
    shard["images"][0]["expressions"] = ["a purple thing"]
    shard_path(folder, 1).write_text(json.dumps(shard))
    same = DataConfig(image_size=32, train_size=24, pseudo_masks=str(folder))
    with pytest.raises(DatasetError, match="image 10 had the expressions"):
        PseudoMaskDataset(ShapesDataset("train", 24, 32, seed=0), same)
    with pytest.raises(DatasetError, match="does not exist"):
        PseudoMasks(tmp_path / "nowhere")


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    m = rng.random((17, 23)) > 0.6
    assert np.array_equal(decode(encode(m)), m)


# --- rounds ---------------------------------------------------------------------------------


def test_self_train_chains_rounds_and_keeps_finished_stages(tmp_path, capsys, one_torch_thread):
    from conftest import MICRO

    out = tmp_path / "chain"
    args = [
        "self-train",
        *MICRO,
        "train.steps=2",
        *LABEL,
        "pseudo.student_steps=2",
        "--rounds",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    for stage in ("teacher", "round1/student", "round2/student"):
        assert (out / stage / "metrics.json").is_file()
    assert (
        PseudoMasks(out / "round2" / "pseudo")
        .manifest["teacher"]["checkpoint"]
        .startswith(os.fspath((out / "round1" / "student").resolve()))
    )
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished before, kept") == 3
    assert main([*args[:-5], "--rounds=-1", "--out", str(out)]) == 2


def test_segmenter_refines_with_pamr(teacher):
    from tseg.inference import Segmenter

    ds = ShapesDataset("val", 2, 32, seed=0)
    plain = Segmenter.from_checkpoint(teacher)
    refined = Segmenter.from_checkpoint(teacher, pamr=True)
    a = plain.maps([ds.image(0)], [ds.expressions(0)])[0].probabilities
    b = refined.maps([ds.image(0)], [ds.expressions(0)])[0].probabilities
    assert a.shape == b.shape and not np.allclose(a, b) and b.min() >= 0 and b.max() <= 1
    assert refined.describe()["pamr"]["iterations"] == 10 and plain.describe()["pamr"] is False
