"""What a workshop instructor relies on: every chapter states its time in the same terms and ends
with 1-3 exercises whose solutions run in the build but are hidden, and the README's table of
measured times covers every chapter of the table of contents."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [c["file"] for part in TOC["parts"] for c in part["chapters"] if c["file"].startswith("chapters/")]


def _cells(page: str) -> list[dict]:
    nb = json.loads((ROOT / f"{page}.ipynb").read_text())
    return [dict(c, text="".join(c["source"])) for c in nb["cells"]]


@pytest.mark.parametrize("page", CHAPTERS)
def test_time_line_gives_reading_and_quick_profile_run_time(page):
    first = _cells(page)[0]["text"]
    time_line = re.search(r"\*\*Time\*\*:(.*?)(?:\n\n|$)", first, re.DOTALL)
    assert time_line, f"{page}: no **Time** line in the first cell"
    text = " ".join(time_line.group(1).split())
    assert "minutes" in text and "read" in text, f"{page}: the Time line gives no reading time: {text}"
    assert "quick profile" in text, f"{page}: the Time line gives no quick-profile run time: {text}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_exercises_have_hidden_solutions_that_run(page):
    cells = _cells(page)
    start = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "## Exercises" in c["text"])
    after = cells[start + 1:]
    solutions = [i for i, c in enumerate(after) if c["cell_type"] == "code"]
    assert 1 <= len(solutions) <= 3, f"{page}: {len(solutions)} solution cells after '## Exercises'"
    for i in solutions:
        cell = after[i]
        assert "hide-input" in cell["metadata"].get("tags", []), f"{page}: solution cell {cell['id']} is not hidden"
        assert "skip-execution" not in cell["metadata"].get("tags", []), f"{page}: solution {cell['id']} not run"
        assert cell["text"].strip(), f"{page}: empty solution cell {cell['id']}"
        previous = after[i - 1] if i else cells[start]
        assert previous["cell_type"] == "markdown" and "Solution" in previous["text"], (
            f"{page}: solution cell {cell['id']} is not announced by a 'Solution' line")


def test_readme_times_cover_every_chapter():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How long each chapter takes", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+\. ", line)]
    assert [int(re.match(r"\| (\d+)\.", r).group(1)) for r in rows] == list(range(1, len(CHAPTERS) + 1))
    for row in rows:
        assert re.search(r"\| \d+ s \|", row), f"no CPU time in {row!r}"
    assert "quick profile" in section and "measured by the book build" in section
