"""Chapters: committed without outputs, listed in the table of contents, and chapter 1 runs."""

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_there_are_chapters():
    assert CHAPTERS, "no chapter notebooks found"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a code cell has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"
    assert "widgets" not in nb["metadata"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_skeleton(path):
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert "colab.research.google.com/github/" in first and path.name in first
    setup = "".join(nb["cells"][1]["source"])
    assert 'find_spec("neurotut") is None' in setup and "torch" not in setup.replace("reinstalls torch", "")
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for heading in ("Objectives", "Time", "Prerequisites", "## Summary", "## Exercises"):
        assert heading in text, f"{path.name} lacks {heading!r}"


def test_every_chapter_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in files


def _executed_chapter_1(tmp_path, monkeypatch):
    """Chapter 1 as the book build executed it (``_build/jupyter_execute``) when that copy is newer
    than the chapter, else executed here in the quick profile."""
    import nbformat
    from nbclient import NotebookClient

    source = ROOT / "chapters" / "01_snemi3d_data.ipynb"
    built = ROOT / "_build" / "jupyter_execute" / "chapters" / source.name
    if built.is_file() and built.stat().st_mtime >= source.stat().st_mtime:
        return nbformat.read(built, as_version=4)
    nb = nbformat.read(source, as_version=4)
    monkeypatch.setenv("NEUROTUT_PROFILE", "quick")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel must use the inline backend
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


@pytest.mark.slow
def test_chapter_1_executes_in_the_quick_profile(tmp_path, monkeypatch):
    nb = _executed_chapter_1(tmp_path, monkeypatch)
    out = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "neurotut profile: quick" in out
    assert "Mean " in out and "Std " in out
    assert "train: sections 0-" in out
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})]
    assert len(figures) >= 4, "chapter 1 shows its figures (xy slices, xz, statistics, split)"
    outputs = [o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("application/vnd.plotly.v1+json" in d or "plotly-graph-div" in d.get("text/html", "")
               for d in outputs), "chapter 1 shows neurites in 3D (a plotly figure)"
    if os.environ.get("NEUROTUT_REQUIRE_REAL_DATA") == "1":
        assert "Using real data: snemi3d-crop (100, 512, 512)" in out
