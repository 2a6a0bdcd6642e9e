"""benchmarks/precision.py on a micro model: every row, the peaks, agreement and the report."""

import sys
from pathlib import Path

from conftest import MICRO_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import precision


def test_speed_peaks_agreement_and_report(micro_overrides, tmp_path):
    from tseg.checkpoint import save_checkpoint
    from tseg.config import build_config
    from tseg.data import build_dataset
    from tseg.train.build import build_model

    overrides = (*MICRO_MODEL, "model.text.name=bert", "model.image.weights=none")
    s = precision.speed(1, (1, 3), 1, False, overrides, (40, 56))
    for name in precision.TORCH_PRECISIONS:
        for n in (1, 3):
            assert s["rows"][f"{name} cold {n}"]["median_ms"] > 0
    assert s["rows"]["int8 encoder"]["median_ms"] > 0 and s["encoder_gflop"] > 0
    p = precision.peaks(n=64, runs=1)
    assert all(v["gflop_per_s"] > 0 for v in p.values()) and len(p) == 4
    cfg = build_config(None, micro_overrides)
    ckpt = save_checkpoint(
        build_model(cfg, build_dataset(cfg.data, "train")), cfg, tmp_path / "r", 1
    )
    a = precision.agreement(str(ckpt), 4, False)
    assert a["rows"]["fp32"]["mask_pixels_equal_to_fp32"] == 1.0
    assert 0.5 < a["rows"]["int8"]["mask_pixels_equal_to_fp32"] <= 1.0
    r = {
        "commit": "x",
        "command": "c",
        "machine": {"cpu": "cpu", "threads": 1, "load_average_at_start": [0, 0, 0]},
        "load_average_at_end": [0, 0, 0],
        "speed": s,
        "peaks": p,
        "agreement": a,
    }
    r["targets"] = precision.targets(r)
    assert "int8_mask_pixels_equal" in r["targets"] and "fp32_L64_over_L1" not in r["targets"]
    md = precision.markdown(r)
    assert "| int8 |" in md and "mask pixels equal" in md
