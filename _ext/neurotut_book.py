"""Local Sphinx extension for the neurotut book.

sphinx-thebe registers its inline configuration script once per ``env-before-read-docs`` event;
with MyST-NB that event can run twice, and the page then declares ``const THEBE_JS_URL`` twice,
which is a JavaScript error on every page. We drop exact duplicate script entries per page (an inline script is
registered once with filename None and once with "", so both count as "no file").

Interactive 3D figures (:mod:`neurotut.mesh_figure`) are plotly figures whose HTML loads no script:
every page that holds one gets ``_static/plotly.min.js``, written once per build from the installed
plotly package, so the book draws them offline (no CDN) with the plotly.js they were made for.
"""

from __future__ import annotations

from pathlib import Path


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def _add_plotly(app, pagename, templatename, context, doctree) -> None:
    from neurotut.mesh_figure import FIGURE_CLASS, PLOTLY_JS

    if f'class="{FIGURE_CLASS}"' in context.get("body", ""):
        app.add_js_file(PLOTLY_JS)  # inside html-page-context: for this page only


def _write_plotly(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from neurotut.mesh_figure import PLOTLY_JS, plotly_js

    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    (static / PLOTLY_JS).write_text(plotly_js(), encoding="utf-8")


def setup(app):
    app.connect("html-page-context", _add_plotly, priority=400)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("build-finished", _write_plotly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
