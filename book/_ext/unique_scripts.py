"""Drop inline scripts that a page would run twice.

sphinx-thebe adds its configuration as an inline script (``const THEBE_JS_URL = ...``) through
``app.add_js_file(None, body=...)`` once the builder exists, so it reaches the builder twice: once
directly, once again when the builder re-reads the registry.  Sphinx de-duplicates script
*files* by name but not inline bodies, and a ``const`` declared twice is a JavaScript error on
every page (the browser test, ``tests/test_browser.py``, found it).  This extension keeps the
first copy of each identical inline script.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", None) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _drop_repeated_inline_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        inline = not getattr(script, "filename", None)  # None or "" for an inline script
        key = _script_key(script)
        if inline and key in seen:
            continue
        seen.add(key)
        kept.append(script)
    scripts[:] = kept


def setup(app):
    # After the extensions that add scripts to the page context (default priority 500).
    app.connect("html-page-context", _drop_repeated_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
