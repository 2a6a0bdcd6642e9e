"""benchmarks/grid.py and demo_seeds.py: each candidate's oracle is computed at its own grid, and
the reports' tables name every row."""

from __future__ import annotations

from benchmarks import demo_seeds, grid


def test_each_candidate_oracle_is_at_its_own_grid():
    grids = {name: grid.oracle(ov, test_size=2)["grid"] for name, ov in grid.CANDIDATES.items()}
    assert grids == {
        "stride 16, 96 px (6 x 6)": "6x6",
        "stride 8, 96 px (12 x 12)": "12x12",
        "stride 4, 96 px (24 x 24), the recipe": "24x24",
        "stride 8, 192 px rendered at 96 (24 x 24)": "24x24",
    }
    assert grid.CHOSEN in grid.CANDIDATES


def test_reports_name_every_row():
    rows = {
        name: {
            "oracle": {"miou": 0.5, "prec@0.9": 0.1},
            "train_images_per_s_frozen": 10.0,
            **({"train_images_per_s_finetuned": 7.0} if name == grid.CHOSEN else {}),
        }
        for name in grid.CANDIDATES
    }
    machine = {"cpu": "test"}
    report = {"commit": "0" * 40, "machine": machine, "load_average_before": [0.1, 0.1, 0.1]}
    md = grid.markdown({**report, "settings": {"threads": 2}, "rows": rows})
    assert all(f"| {name} | 50.0 | 10.0 | 10.0 |" in md for name in grid.CANDIDATES)
    assert "| 7.0 |" in md
    split = {"miou": 0.4, "prec@0.5": 0.3, "prec@0.7": 0.2}
    run = {"seed": 3, "val": split, "test": split, "wall_time_s": 120.0, "threshold": 0.8}
    run["load_average_before"] = [0.5, 0.5, 0.5]
    md = demo_seeds.markdown(
        {"preset": "tiny", "commit": "0" * 40, "machine": {"cpu": "x"}, "runs": [run]}
    )
    assert "| 3 | 40.0 | 40.0 | 30.0 | 20.0 | 0.8 | 2.0 min | 0.50 |" in md
