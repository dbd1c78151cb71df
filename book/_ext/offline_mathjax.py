"""Serve MathJax from the built book itself, so that its maths renders without a network.

Sphinx loads MathJax 3 from a CDN by default.  The course's book must read the same offline
(a lab without internet, continuous integration, a browser test on 127.0.0.1), so, when a local
MathJax 2 is installed -- Debian's ``libjs-mathjax`` puts one at ``/usr/share/javascript/mathjax``;
``$COURSE_MATHJAX_DIR`` may name another -- this extension copies the part of it that the book
uses (about 2 MB: the TeX input, the CommonHTML output and its web fonts) into
``_static/mathjax/`` and points ``mathjax_path`` at it, with the MathJax 2 equivalent of the
configuration MyST gives MathJax 3.  Without a local MathJax, the CDN default is left alone
and the build says so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

DEFAULT_SOURCES = ("/usr/share/javascript/mathjax",)
#: What the combined configuration ``TeX-AMS_CHTML`` loads, relative to MathJax's root.
SUBSET = (
    "MathJax.js",
    "config/TeX-AMS_CHTML.js",
    "extensions",
    "jax/input/TeX",
    "jax/element",
    "jax/output/CommonHTML",
    "fonts/HTML-CSS/TeX/woff",
    "localization/en",
)
TARGET = "mathjax"  # under _static/
#: MathJax 2's version of the classes MyST marks for processing (myst_parser.mathjax).
MATHJAX2_CONFIG = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": True,
        "processEnvironments": True,
        "ignoreClass": "tex2jax_ignore|mathjax_ignore|document",
        "processClass": "tex2jax_process|mathjax_process|math|output_area",
    },
    "CommonHTML": {"webFont": "TeX"},
    "menuSettings": {"zoom": "None"},
    "showMathMenu": False,
    "messageStyle": "none",
}


def local_mathjax() -> Path | None:
    """The first MathJax 2 installation found: ``$COURSE_MATHJAX_DIR``, then Debian's."""
    candidates = [os.environ.get("COURSE_MATHJAX_DIR", "")] + list(DEFAULT_SOURCES)
    for candidate in candidates:
        if candidate and (Path(candidate) / "MathJax.js").is_file() and \
                (Path(candidate) / "config" / "TeX-AMS_CHTML.js").is_file():
            return Path(candidate)
    return None


def _configure(app, config):
    source = local_mathjax()
    app.offline_mathjax_source = source
    if source is None:
        logger.info("offline_mathjax: no local MathJax (install Debian's libjs-mathjax); "
                    "maths will load MathJax from its CDN")
        return
    config.mathjax_path = f"{TARGET}/MathJax.js?config=TeX-AMS_CHTML"
    config.mathjax2_config = MATHJAX2_CONFIG
    logger.info(f"offline_mathjax: serving MathJax from {source}")


def _drop_mathjax3_config(app):
    # MyST fills mathjax3_config at builder-inited; MathJax 2 would read it as its own config.
    if getattr(app, "offline_mathjax_source", None) is not None:
        app.config.mathjax3_config = None


def _copy(app, exception):
    source = getattr(app, "offline_mathjax_source", None)
    if exception is not None or source is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / TARGET
    for rel in SUBSET:
        src, dst = source / rel, target / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        else:
            logger.warning(f"offline_mathjax: {src} is missing; maths may not render offline")


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _drop_mathjax3_config, priority=900)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
