"""Local Sphinx extension for the neurotut book.

sphinx-thebe registers its inline configuration script once per ``env-before-read-docs`` event;
with MyST-NB that event can run twice, and the page then declares ``const THEBE_JS_URL`` twice,
which is a JavaScript error on every page. We drop exact duplicate script entries per page (an inline script is
registered once with filename None and once with "", so both count as "no file").
"""

from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
