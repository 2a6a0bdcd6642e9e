"""A sample of the command-line fuzz (tests/cli_fuzz.py; `python tests/cli_fuzz.py` runs all
of it): every flag of every command, two bad values each, ends without a traceback."""

from __future__ import annotations

from pathlib import Path

from cli_fuzz import SAMPLE_VALUES, cases, fixtures, run_case, stubs


def test_every_flag_given_bad_values_ends_without_a_traceback(tmp_path: Path, monkeypatch) -> None:
    import shutil

    f = fixtures(tmp_path)
    every = list(cases(f, SAMPLE_VALUES))
    # Two of the five values per flag, rotating, so that each value meets every command.
    n = len(SAMPLE_VALUES)
    sample = [c for i, c in enumerate(every) if (i % n) in ((i // n) % n, (i // n + 2) % n)]
    flags = {(tuple(c.command), c.flag) for c in sample}
    assert len(flags) >= 80 and len(sample) == 2 * len(flags)
    outcomes = []
    monkeypatch.chdir(tmp_path)  # relative names the fuzz gives ("x", "-1") are written here
    with stubs():
        for case in sample:
            shutil.rmtree(f["out"], ignore_errors=True)
            outcomes.append(run_case(case))
    tracebacks = [
        f"{' '.join(o.case.argv)}\n{o.detail}" for o in outcomes if o.status == "TRACEBACK"
    ]
    assert not tracebacks, tracebacks[0]
    # The stubs were reached (train, demo, self-train and serve accepted their baseline) and
    # real errors were printed, so the sample exercised both sides.
    statuses = {o.status for o in outcomes}
    assert {"accepted", "exit 0", "exit 2"} <= statuses
