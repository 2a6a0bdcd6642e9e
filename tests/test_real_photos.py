"""The whole inference path on real photographs of odd sizes and modes (scikit-image's samples)."""

import numpy as np
import pytest
import torch
from PIL import Image

from tseg.checkpoint import save_checkpoint
from tseg.cli import main
from tseg.data import build_dataset
from tseg.train import build_model

skdata = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) is not installed")


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "camera", "rocket"])
def test_segment_real_photo(name, micro_cfg, tmp_path):
    photo = getattr(skdata, name)()  # RGB or grayscale uint8, e.g. 300 x 451
    path = tmp_path / f"{name}.jpg"
    Image.fromarray(photo).save(path)
    torch.manual_seed(0)
    model = build_model(micro_cfg, build_dataset(micro_cfg.data, "train"))
    save_checkpoint(model, micro_cfg, tmp_path / "run", step=1)
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "run"),
                str(path),
                "red shapes",
                "circles",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    mask = np.asarray(Image.open(out / name / "mask_00_red_shapes.png"))
    assert mask.shape == photo.shape[:2]
    assert (out / name / "overlay.png").is_file()
