"""The book's text: no internal jargon, every citation resolves, and the Time lines promise no
run time that the build did not measure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = (sorted((ROOT / "chapters").glob("*.ipynb")) + sorted((ROOT / "appendix").glob("*.md"))
         + sorted((ROOT / "appendix").glob("*.ipynb")) + [ROOT / "index.md"])

#: words of the project's own process that mean nothing to a reader of the book
JARGON = ("seed paper", "seed workflow", "the seed's", "the issue")


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    return path.read_text()


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_internal_jargon(path):
    text = _text(path).lower()
    found = [w for w in JARGON if w in text]
    assert not found, f"{path.name} uses {found}: name works by their authors, say what is meant"


def test_every_citation_is_in_the_bibliography():
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(), re.M))
    cited = set()
    for path in PAGES:
        for group in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", _text(path)):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "no page cites anything"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("*.ipynb")), ids=lambda p: p.name)
def test_time_line_states_no_unmeasured_run_time(path):
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    line = first[first.index("**Time**"):].split("\n\n")[0]
    assert "minutes to read" in line and "workshop appendix" in line
    assert not re.search(r"(minutes?|seconds?) (to run|on 2 CPU)|runs in", line), line
