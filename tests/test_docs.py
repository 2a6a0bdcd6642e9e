"""The README and docs/: the results page is what its generator writes from benchmarks/results,
every relative link (and #anchor) of README.md and docs/*.md reaches something, and the README
stays a front door (at most 300 lines, with the test command CI runs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import results_page

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_results_page_is_what_the_generator_writes():
    for page in results_page.PAGES:
        text = page.read_text(encoding="utf-8")
        assert results_page.render(text) == text, f"run python -m benchmarks.results_page ({page})"


def test_every_result_table_is_on_the_results_page():
    shown = {name for page in results_page.PAGES for name in results_page.blocks(page.read_text())}
    assert shown == {p.name for p in results_page.RESULTS.glob("*.md")}


def test_generator_fills_blocks_and_check_names_a_stale_page(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.md").write_text("| x |\n|---|\n| 1 |\n")
    page = "intro\n<!-- results:a.md -->\nold table\n<!-- /results -->\nafter\n"
    new = results_page.render(page, results)
    assert (
        new == "intro\n<!-- results:a.md -->\n\n| x |\n|---|\n| 1 |\n\n<!-- /results -->\nafter\n"
    )
    assert results_page.render(new, results) == new
    with pytest.raises(FileNotFoundError, match="b.md"):
        results_page.render("<!-- results:b.md -->\n<!-- /results -->", results)
    stale = tmp_path / "page.md"
    stale.write_text("<!-- results:start.md -->\nold\n<!-- /results -->\n")
    cmd = [sys.executable, "-m", "benchmarks.results_page", "--check", str(stale)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "out of date" in done.stderr and str(stale) in done.stderr
    assert stale.read_text() == "<!-- results:start.md -->\nold\n<!-- /results -->\n"


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_slug():
    assert slug("Demo (`make demo`, CPU)") == "demo-make-demo-cpu"
    assert slug("Why a 24 x 24 grid, and how") == "why-a-24-x-24-grid-and-how"


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` (outside code blocks) that reach no file, or no heading."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_reach_files_and_headings(page):
    assert broken_links(page) == []


def test_broken_links_are_found(tmp_path):
    (tmp_path / "b.md").write_text("# Title\n\n## A section\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md) [ok](b.md#a-section) [ok](#here) [web](https://x.org/y)\n# Here\n"
        "[no](c.md) [no](b.md#nowhere) ![no](pic.png)\n```\n[code](none.md)\n```\n"
    )
    assert broken_links(page) == ["c.md", "b.md#nowhere", "pic.png"]


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    # .ci/run ends with the README's test command: it must still be in the README.
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "make test" and "\nmake test " in readme and "\nmake demo " in readme
    for doc in ("usage", "datasets", "own_data", "deployment", "hub", "results"):
        assert f"(docs/{doc}.md)" in readme, doc
