"""The CLI imports lazily: ``tseg --help`` and ``tseg data check`` never load torch (nor does
``tseg segment EXPORT_DIR``: tests/test_segment_onnx.py runs it through ``run_cli``).

Each command runs in a fresh interpreter (the test process has torch loaded already) and reports
which heavy packages ``sys.modules`` holds afterwards; no timing is involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_data_voc import make_voc

HEAVY = ("torch", "transformers", "timm", "tokenizers", "safetensors", "numpy", "PIL")

PROBE = f"""
import json, sys
from tseg.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:  # --help exits through argparse
    rc = e.code
loaded = {{m.split(".")[0] for m in sys.modules}}
tseg = sorted(m for m in sys.modules if m.startswith("tseg"))
print(json.dumps({{"rc": rc, "heavy": sorted(loaded & {set(HEAVY)!r}), "tseg": tseg}}))
"""


def run_cli(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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
