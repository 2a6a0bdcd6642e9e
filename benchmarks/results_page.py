"""The result pages' tables, generated: every block of a page between

    <!-- results:NAME.md -->
    ...
    <!-- /results -->

is replaced by benchmarks/results/NAME.md, which the benchmark that measured it wrote (beside
its JSON, which holds every figure and its provenance). The prose around the blocks is the page's.

    python -m benchmarks.results_page           # rewrite docs/results.md
    python -m benchmarks.results_page --check   # exit 1, naming the page, if it is out of date

A test holds the committed pages to what this writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = (ROOT / "docs" / "results.md",)
BLOCK = re.compile(
    r"(?P<open><!-- results:(?P<name>[\w.-]+\.md) -->\n).*?(?P<close><!-- /results -->)", re.S
)


def blocks(page: str) -> list[str]:
    """The names of the tables a page includes, in order."""
    return [m["name"] for m in BLOCK.finditer(page)]


def render(page: str, results: Path = RESULTS) -> str:
    """``page`` with every block's body replaced by its table (a missing table: FileNotFoundError
    naming it)."""

    def table(m: re.Match[str]) -> str:
        path = results / m["name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path} (named by <!-- results:{m['name']} -->)")
        body = path.read_text(encoding="utf-8").strip()
        return f"{m['open']}\n{body}\n\n{m['close']}"

    return BLOCK.sub(table, page)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    ap.add_argument(
        "pages", nargs="*", type=Path, default=list(PAGES), help="default docs/results.md"
    )
    args = ap.parse_args(argv)
    stale = []
    for page in args.pages:
        text = page.read_text(encoding="utf-8")
        new = render(text)
        if new == text:
            continue
        stale.append(page)
        if not args.check:
            page.write_text(new, encoding="utf-8")
            print(f"wrote {page}")
    if args.check and stale:
        names = ", ".join(str(p) for p in stale)
        print(f"out of date: {names}; run python -m benchmarks.results_page", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
