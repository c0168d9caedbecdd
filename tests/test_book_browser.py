"""The built book in a real browser (headless Chromium through Playwright).

Runs against ``_build/html`` (or ``$NEUROTUT_BOOK_HTML``) after ``scripts/book.sh``. Without a built
book, Chromium or Playwright the tests are skipped with the reason, unless
``NEUROTUT_REQUIRE_BOOK=1`` (CI), where they fail instead. Screenshots of every page go to
``_build/screenshots/``. External resources are blocked (no internet in CI); external links are
checked separately by ``jupyter-book build . --builder linkcheck``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("NEUROTUT_BOOK_HTML", ROOT / "_build" / "html"))
REPO = "https://colab.research.google.com/github/neurotut/neurotut/blob/main/"
REQUIRED = os.environ.get("NEUROTUT_REQUIRE_BOOK") == "1"


def _pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return pages


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").is_file():
        _unavailable(f"no built book at {HTML}; run scripts/book.sh first")
    executable = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if executable is None:
        _unavailable("no Chromium on this machine (Debian/Ubuntu: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


def _open(browser, page_name: str):
    path = HTML / f"{page_name}.html"
    assert path.is_file(), f"{page_name} was not built"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []

    def on_console(msg):
        url = (msg.location or {}).get("url", "")
        if msg.type == "error" and not url.startswith("http"):
            errors.append(f"{msg.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
               else route.abort())
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, errors


@pytest.mark.parametrize("page_name", _pages())
def test_page(browser, page_name):
    page, errors = _open(browser, page_name)
    shots = HTML.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / f"{page_name.replace('/', '_')}.png"), full_page=True)

    # no JavaScript errors from the page itself
    failed_local = [e for e in errors if "Failed to load resource" not in e or "file://" in e]
    assert not failed_local, failed_local

    # every local image and figure loaded
    images = page.evaluate(
        "Array.from(document.images).filter(i => !i.src.startsWith('http'))"
        ".map(i => [i.src.slice(0, 80), i.complete && i.naturalWidth > 0])"
    )
    broken = [src for src, ok in images if not ok]
    assert not broken, f"images that did not load: {broken}"

    # no cell output holds an error (a message a cell catches and prints on purpose is fine)
    outputs = page.eval_on_selector_all(".cell_output", "els => els.map(e => e.innerText)")
    for text in outputs:
        assert "Traceback (most recent call last)" not in text
    assert page.locator(".cell_output .traceback, .cell_output .output.error").count() == 0

    # internal links resolve to files of the built book
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    for href in hrefs:
        url = urlparse(href)
        if url.scheme == "file":
            target = Path(unquote(url.path))
            assert target.exists(), f"{page_name}: broken internal link {href}"

    if page_name.startswith("chapters/"):
        figures = page.locator(".cell_output img").count()
        assert figures >= 1, f"{page_name}: no figure in any cell output"
        colab = REPO + page_name + ".ipynb"
        assert colab in hrefs, f"{page_name}: no Colab link to {colab}"
        assert (ROOT / f"{page_name}.ipynb").is_file()
    page.close()


@pytest.mark.parametrize("page_name", [p for p in _pages() if p.startswith("chapters/")])
def test_slice_players_respond(browser, page_name):
    page, _ = _open(browser, page_name)
    players = page.locator("div.animation")
    for i in range(players.count()):
        player = players.nth(i)
        image = player.locator("img").first
        before = image.get_attribute("src")
        player.locator("button[title='Next frame']").click()
        assert image.get_attribute("src") != before, f"{page_name}: slice player {i} did not move"
    page.close()


#: pages that show turnable 3D figures (plotly, neurotut.mesh_figure)
PAGES_WITH_3D = ["chapters/01_snemi3d_data", "chapters/10_postprocess_and_visualize"]

_SCENES = """gd => Object.keys(gd._fullLayout).filter(k => /^scene\\d*$/.test(k)).map(k => {
    const d = gd._fullLayout[k].domain;
    return {name: k, x: (d.x[0] + d.x[1]) / 2, y: 1 - (d.y[0] + d.y[1]) / 2,
            eye: JSON.stringify(gd._fullLayout[k].camera.eye)};
})"""


@pytest.mark.parametrize("page_name", PAGES_WITH_3D)
def test_3d_figures_turn_when_dragged(browser, page_name):
    page, errors = _open(browser, page_name)
    figures = page.locator(".cell_output .plotly-graph-div")
    assert figures.count() >= 1, f"{page_name}: no 3D figure"
    for i in range(figures.count()):
        figure = figures.nth(i)
        figure.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        assert figure.locator("canvas").count() >= 1, f"{page_name}: 3D figure {i} drew nothing (no WebGL?)"
        scenes = figure.evaluate(_SCENES)
        assert scenes, f"{page_name}: 3D figure {i} has no scene"
        box = figure.bounding_box()
        for scene in scenes:
            x, y = box["x"] + scene["x"] * box["width"], box["y"] + scene["y"] * box["height"]
            clip = {"x": x - 120, "y": y - 120, "width": 240, "height": 240}
            before = page.screenshot(clip=clip)
            page.mouse.move(x, y)
            page.wait_for_timeout(500)  # let the hover label settle, as a reader's pointer would
            page.mouse.down()
            page.mouse.move(x + 60, y + 30, steps=20)
            page.mouse.up()
            page.wait_for_timeout(300)
            after = {s["name"]: s["eye"] for s in figure.evaluate(_SCENES)}
            assert after[scene["name"]] != scene["eye"], f"{page_name}: figure {i} {scene['name']} did not turn"
            assert page.screenshot(clip=clip) != before, f"{page_name}: figure {i} {scene['name']} looks the same"
    assert not [e for e in errors if "Failed to load resource" not in e or "file://" in e], errors
    page.close()


def _math_pages() -> list[str]:
    return [p for p in _pages() if 'class="math' in (HTML / f"{p}.html").read_text(errors="replace")]


def test_formulas_render_offline(browser):
    """MathJax is served by the book itself: with every external request blocked, each formula
    is typeset (an mjx-container in each math element), none is left as raw TeX."""
    pages = _math_pages()
    assert pages, "no page of the book has a formula"
    for name in pages:
        page, errors = _open(browser, name)
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=30_000)
        page.evaluate("() => MathJax.startup.promise")
        raw = page.eval_on_selector_all(
            ".math", "els => els.filter(e => !e.querySelector('mjx-container')).map(e => e.innerText.slice(0, 60))")
        assert not raw, f"{name}: formulas not typeset: {raw[:3]}"
        assert page.locator("mjx-container").count() > 0
        page.close()


#: a figure may be shown smaller than it was drawn, but not below this fraction of its pixels:
#: matplotlib draws 10-point text about 14 px high at the book's resolution, so 0.65 keeps it
#: at 9 px or more on the page
MIN_FIGURE_SCALE = 0.65


@pytest.mark.parametrize("page_name", [p for p in _pages() if p.startswith("chapters/")])
def test_figures_readable_and_code_not_cut(browser, page_name):
    """At a laptop's window width no figure of a chapter is shrunk below MIN_FIGURE_SCALE of its
    drawn size, and no code or output block needs horizontal scrolling (lines wrap)."""
    page, _ = _open(browser, page_name)
    scales = page.eval_on_selector_all(
        ".cell_output img",
        "els => els.filter(i => i.naturalWidth > 0).map(i => [i.getBoundingClientRect().width / i.naturalWidth,"
        " i.naturalWidth, i.alt || i.src.slice(-40)])")
    small = [(round(s, 2), w, what) for s, w, what in scales if s < MIN_FIGURE_SCALE]
    assert not small, f"{page_name}: figures shrunk below {MIN_FIGURE_SCALE} of their size: {small}"
    wide = page.eval_on_selector_all(
        "pre", "els => els.filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)"
        ".map(e => e.innerText.split('\\n')[0].slice(0, 60))")
    assert not wide, f"{page_name}: code blocks that scroll sideways: {wide}"
    page.close()
