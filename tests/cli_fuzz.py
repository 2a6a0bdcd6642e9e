"""A fuzz of every ``tseg`` command-line flag (issue 26): each flag given each bad value, the
rest of the command valid, run in-process through ``tseg.cli.main``.

An input passes when it ends in an exit status (argparse's 2, the project's error line, or
success) without a traceback. Training and serving are the only steps cut short: the training
loop and uvicorn's ``Server.run`` are replaced by a stub that stops the command once its input
was accepted (their configs are the config fuzz's domain, ``test_config``); everything else
(evaluation, segmentation, pseudo labels, export, data check and convert) runs for real on a
micro checkpoint.

``python tests/cli_fuzz.py [--all]`` prints the count and any failure; the test suite runs a
sample (``test_cli_fuzz.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python tests/cli_fuzz.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.lib import provenance  # noqa: E402 - the benchmarks' record of a run
from benchmarks.lib.report import write_report  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import MICRO  # noqa: E402

#: Values no flag should turn into a traceback ("{dir}", "{file}" are filled in per run).
BAD_VALUES = (
    "",
    "-1",
    "0",
    "1e30",
    "nan",
    "inf",
    "x",
    "{dir}",
    "{file}",
    "{missing}",
    "../../etc x",
    "a" * 3000,
)
#: A sample for the test suite: one of each kind (number, word, path).
SAMPLE_VALUES = ("-1", "1e30", "x", "{dir}", "{missing}")


class Reached(Exception):
    """Raised by the stubs: the command accepted its input and got to train or serve."""


@dataclass
class Case:
    command: list[str]  # the subcommand path, e.g. ["export", "onnx"]
    flag: str  # an option string, or a positional's dest
    value: str
    argv: list[str]


@dataclass
class Outcome:
    case: Case
    status: str  # "exit N", "accepted" (reached training / serving) or "TRACEBACK"
    detail: str = ""


def fixtures(root: Path) -> dict[str, str]:
    """A micro checkpoint, a photo, an image folder and the paths the bad values name."""
    import torch

    from tseg.checkpoint import save_checkpoint
    from tseg.config import build_config
    from tseg.data import build_dataset
    from tseg.train import build_model

    root.mkdir(parents=True, exist_ok=True)
    cfg = build_config(None, [*MICRO, "data.val_size=2", "data.train_size=4"])
    torch.manual_seed(0)
    run = root / "run"
    save_checkpoint(build_model(cfg, build_dataset(cfg.data, "train")), cfg, run, step=1)
    photo = root / "photo.png"
    Image.fromarray(np.full((24, 20, 3), 100, np.uint8)).save(photo)
    folder = root / "photos"
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.full((24, 20, 3), 50, np.uint8)).save(folder / "a.png")
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a.png", "expressions": ["a grey square"]}) + "\n"
    )
    afile = root / "afile.txt"
    afile.write_text("not what a flag expects\n")
    (root / "adir").mkdir(exist_ok=True)
    return {
        "run": str(run),
        "photo": str(photo),
        "folder": str(folder),
        "dir": str(root / "adir"),
        "file": str(afile),
        "missing": str(root / "no such path"),
        "out": str(root / "out"),
    }


def baselines(f: dict[str, str]) -> dict[tuple[str, ...], list[str]]:
    """A valid, quick command line per subcommand (the fuzz varies one flag of it)."""
    micro = [*MICRO, "train.steps=1"]
    return {
        ("train",): [*micro, "--out", f["out"], "--quiet"],
        ("eval",): [f["run"], "--split", "val", "--max-images", "1"],
        ("segment",): [f["run"], f["photo"], "circle", "--out", f["out"], "--quiet"],
        ("pseudo-label",): [f["run"], "--out", f["out"], "--max-images", "1", "--quiet"],
        ("self-train",): [*micro, "--out", f["out"], "--teacher", f["run"], "--quiet"],
        ("demo",): ["--preset", "tiny", "--out", f["out"], "--steps", "1", "--quiet"],
        ("weights",): ["--no-hash"],
        ("export", "onnx"): [f["run"], "--out", f["out"], "--no-check"],
        ("export", "hf"): [f["run"], "--out", f["out"]],
        ("serve",): [f["run"], "--quiet", "--backend", "torch", "--port", "0"],
        ("data", "check"): ["imagefolder", f["folder"]],
        ("data", "convert"): [
            "shapes",
            f["out"],
            "--split",
            "val",
            "--set",
            "data.val_size=2",
            "--set",
            "data.image_size=32",
            "--quiet",
        ],
    }


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def cases(f: dict[str, str], values: tuple[str, ...]) -> Iterator[Case]:
    """Every (subcommand, flag that takes a value, bad value), on the baseline command line."""
    from tseg.cli import build_parser

    root = build_parser()
    for command, base in baselines(f).items():
        parser = root
        for name in command:
            parser = _subparsers(parser)[name]
        for action in parser._actions:
            if action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            for raw in values:
                value = raw.format(**f)
                if action.option_strings:
                    flag = action.option_strings[0]
                    argv = _without(base, action.option_strings, action.nargs)
                    argv = [*command, *argv, flag, value]
                else:
                    flag = action.dest
                    argv = [*command, *_replace_positional(parser, base, action, value)]
                yield Case(list(command), flag, raw, argv)


def _without(base: list[str], flags: list[str], nargs: object) -> list[str]:
    """``base`` without the options ``flags`` (and their values)."""
    out, skip = [], False
    for tok in base:
        if skip:
            if tok.startswith("-"):
                skip = False
            elif nargs in (None, 1):
                skip = False
                continue
            else:
                continue
        if tok in flags:
            skip = True
            continue
        out.append(tok)
    return out


def _replace_positional(
    parser: argparse.ArgumentParser, base: list[str], action: argparse.Action, value: str
) -> list[str]:
    """``base`` with the positional ``action``'s (first) value replaced by ``value``."""
    positionals = [a for a in parser._actions if not a.option_strings]
    idx = positionals.index(action)
    out = list(base)
    # positionals come first in every baseline, in order; a '*' list holds one item or none
    if idx < len(out) and not out[idx].startswith("-"):
        out[idx] = value
    else:
        out.insert(min(idx, len(out)), value)
    return out


@contextlib.contextmanager
def stubs() -> Iterator[None]:
    """Training and serving stop with ``Reached`` once they start."""
    import uvicorn

    import tseg.train.loop as loop

    def reached(*_a: object, **_k: object) -> None:
        raise Reached

    saved = loop._train, uvicorn.Server.run
    loop._train, uvicorn.Server.run = reached, reached
    try:
        yield
    finally:
        loop._train, uvicorn.Server.run = saved


def run_case(case: Case) -> Outcome:
    from tseg.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(case.argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    except Reached:
        return Outcome(case, "accepted")
    except Exception:  # noqa: BLE001 - what the fuzz looks for
        return Outcome(case, "TRACEBACK", traceback.format_exc(limit=-3))
    text = err.getvalue()
    if "Traceback" in text:
        return Outcome(case, "TRACEBACK", text[-2000:])
    return Outcome(
        case, f"exit {code}", text.strip().splitlines()[-1][:300] if text.strip() else ""
    )


def fuzz(root: Path, values: tuple[str, ...] = BAD_VALUES) -> list[Outcome]:
    import shutil

    import torch

    f = fixtures(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    outcomes = []
    work = root / "cwd"  # relative names the fuzz gives ("x", "0", ...) are written here
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with stubs(), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            for case in cases(f, values):
                shutil.rmtree(f["out"], ignore_errors=True)
                outcomes.append(run_case(case))
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return outcomes


def _accepted(outcomes: list[Outcome]) -> dict[str, list[str]]:
    """{'command flag': [value, ...]} of the inputs that ended in success or reached the stub."""
    out: dict[str, list[str]] = {}
    for o in outcomes:
        if o.status in ("exit 0", "accepted"):
            key = " ".join([*o.case.command, o.case.flag])
            out.setdefault(key, []).append(
                o.case.value if len(o.case.value) < 40 else "<3000 chars>"
            )
    return out


def main() -> int:
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample", action="store_true", help="the test suite's sample of values")
    p.add_argument("--json", help="write the counts and failures here")
    ns = p.parse_args()
    record = provenance.start(provenance.command_line(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = fuzz(Path(tmp), SAMPLE_VALUES if ns.sample else BAD_VALUES)
    bad = [o for o in outcomes if o.status == "TRACEBACK"]
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    flags = {(tuple(o.case.command), o.case.flag) for o in outcomes}
    summary = {
        **provenance.finish(record),
        "inputs": len(outcomes),
        "flags": len(flags),
        "values_per_flag": len(SAMPLE_VALUES if ns.sample else BAD_VALUES),
        "outcomes": counts,
        "tracebacks": [{"argv": o.case.argv, "detail": o.detail} for o in bad],
        # what ran without an error, by flag: to read for silently accepted values
        "accepted": _accepted(outcomes),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "tracebacks"}, indent=1))
    for o in bad:
        print("TRACEBACK:", " ".join(o.case.argv)[:300], "\n", o.detail, file=sys.stderr)
    if ns.json:
        write_report(Path(ns.json), summary)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
