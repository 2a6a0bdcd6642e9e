"""The CLI imports lazily: ``tseg --help`` and ``tseg data check`` never load torch (nor does
``tseg segment EXPORT_DIR``: tests/test_segment_onnx.py runs it through ``run_cli``).

Each command runs in a fresh interpreter (the test process has torch loaded already) and reports
which heavy packages ``sys.modules`` holds afterwards; no timing is involved.
"""

from __future__ import annotations

from pathlib import Path

from builders.voc import make_voc
from helpers import run_cli


def test_help_imports_nothing_heavy():
    out = run_cli("--help")
    assert out["rc"] == 0 and out["heavy"] == []  # not even numpy
    # The commands load on use; serve's flags come from its standard-library options module.
    # The tseg.cli package's own modules (the commands' parsers) are all loaded for the help.
    assert {m for m in out["tseg"] if not m.startswith("tseg.cli.")} <= {
        "tseg",
        "tseg.cli",
        "tseg.errors",
        "tseg.serve",
        "tseg.serve.options",
    }
    for sub in ("demo", "train", "segment"):
        assert run_cli(sub, "--help")["heavy"] == [], sub
    assert run_cli("export", "onnx", "--help")["heavy"] == []


def test_data_check_never_imports_torch(tmp_path: Path):
    root = make_voc(tmp_path / "VOCdevkit")
    out = run_cli("data", "check", "voc", str(root))
    torch_side = [m for m in out["heavy"] if m not in ("numpy", "PIL")]  # images are read
    assert out["rc"] in (0, 1) and torch_side == []  # rc 1: the fixture's counts are small
    assert "tseg.data.check" in out["tseg"]
    missing = run_cli("data", "check", "refcoco", str(tmp_path / "nothing"))
    assert missing["rc"] == 1 and "torch" not in missing["heavy"]
