"""A reveal.js slide deck per chapter, generated from the executed notebooks by the book build.

At ``build-finished`` (HTML builders only) every chapter notebook of ``_toc.yml`` that myst-nb
wrote to ``_build/jupyter_execute/`` -- the notebook *with* the outputs of this build -- is
turned into ``_build/html/slides/<stem>.slides.html`` by nbconvert's ``SlidesExporter``:

* :func:`slide_notebook` sets the slide metadata of every cell that has none: a markdown cell
  opening with a ``#`` or ``##`` heading starts a slide, one opening with ``###`` a
  sub-slide, other cells continue the current slide (a new sub-slide starts when the slide
  would grow too tall to read); code cells without outputs, cells tagged ``remove-cell`` or
  ``solution`` (and ``check``: the grading cells), and outputs that are long text or
  widgets are skipped.  An author marks a cell ``"slideshow": {"slide_type": "skip"}`` to
  keep it out of the deck.  MyST-only syntax (directives, roles, substitutions) becomes
  plain Markdown (:func:`plain_markdown`).
* Code inputs are hidden: the slides show prose, figures, equations and tables.
* Everything loads from the book itself, so a deck works offline: reveal.js from
  ``_static/revealjs/`` (copied from the ``sphinx-revealjs`` package, a dependency of the
  ``book`` extra, which ships reveal.js's ``dist`` files), MathJax from ``_static/mathjax/``
  (``offline_mathjax.py``); the template loads no jQuery, RequireJS, Mermaid or widget
  manager from a CDN.  ``$COURSE_REVEALJS_DIR`` may name another reveal.js (a directory
  holding ``dist/reveal.js``).
"""

from __future__ import annotations

import copy
import logging as logging_module
import os
import re
import shutil
from pathlib import Path

import nbformat
from sphinx.util import logging

logger = logging.getLogger(__name__)

SLIDES_DIR = "slides"                 # under the HTML output
REVEAL_TARGET = "revealjs"            # under _static/
SKIP_TAGS = {"remove-cell", "solution", "check"}
#: A text output longer than this (lines or characters) is left out of the slides.
MAX_TEXT_LINES = 12
MAX_TEXT_CHARS = 1200
#: A rough height budget per slide, in lines of text (a figure counts ``FIGURE_LINES``).
SLIDE_LINES = 22
FIGURE_LINES = 14
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
THEME = "white"                       # reveal.js's white theme uses only bundled fonts

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{#- The course's deck: nbconvert's reveal template with every CDN script removed. -#}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
{%- from 'mathjax.html.j2' import mathjax -%}
{%- if resources.course_mathjax_url -%}
{{ mathjax(resources.course_mathjax_url) }}
{%- endif -%}
{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
<style>
.reveal .slides section .jp-Cell { overflow-x: auto; }
.reveal .slides section.course-scroll { overflow-y: auto; }
</style>
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
(function () {
  function fitTallSlides() {
    var limit = window.innerHeight * 0.95;
    document.querySelectorAll('.reveal .slides section').forEach(function (s) {
      if (s.querySelector('section')) { return; }
      if (s.scrollHeight > limit) {
        s.classList.add('course-scroll');
        s.style.height = '95vh';
        s.style.top = '0px';
      }
    });
  }
  function retypeset() {
    if (window.MathJax && MathJax.Hub) {
      MathJax.Hub.Queue(["Rerender", MathJax.Hub, Reveal.getCurrentSlide()]);
    }
  }
  Reveal.initialize({
    controls: true, progress: true, history: true, hash: true,
    transition: "{{ resources.reveal.transition | default('slide', true) }}",
    slideNumber: true,
    plugins: [RevealNotes],
    width: 1100, height: 760
  }).then(fitTallSlides);
  Reveal.on('slidechanged', function () { retypeset(); fitTallSlides(); });
})();
</script>
{% endblock footer_js %}
"""


# --------------------------------------------------------------------------------------------
# Notebook -> slide notebook
# --------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<arg>[^\n]*)\n"
    r"(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL)
_ROLE_RE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]*)`")
_TARGET_RE = re.compile(r"^\([\w:.-]+\)=[ \t]*\n", re.MULTILINE)
_SUBST_RE = re.compile(r"\{\{\s*([\w-]+)\s*\}\}")


def _role_text(match: re.Match) -> str:
    role, text = match["role"], match["text"]
    if role == "cite" or role.startswith("cite:"):
        return "[" + ", ".join(k.strip() for k in text.split(",")) + "]"
    if role in ("math",):
        return f"${text}$"
    explicit = re.match(r"(.*?)\s*<[^>]*>$", text, re.DOTALL)
    return explicit.group(1) if explicit and explicit.group(1) else text.strip("<>")


def plain_markdown(text: str, substitutions: dict[str, str] | None = None) -> str:
    """MyST -> the Markdown nbconvert renders: ``{{ name }}`` substituted, each directive
    (an admonition, a figure, ...) turned into a quoted block under its bold title, roles
    reduced to their text (citations to ``[key]``), target labels ``(name)=`` removed."""
    substitutions = substitutions or {}
    text = _SUBST_RE.sub(lambda m: substitutions.get(m.group(1), m.group(0)), text)
    text = _TARGET_RE.sub("", text)

    def directive(match: re.Match) -> str:
        name, arg = match["name"], match["arg"].strip()
        body_lines = [ln for ln in match["body"].splitlines()
                      if not re.match(r"^:[\w-]+:", ln)]
        body = plain_markdown("\n".join(body_lines), substitutions).strip()
        if name in ("math",):
            return f"$$\n{body}\n$$"
        if name in ("code-cell", "code-block", "code"):
            return f"```{arg}\n{body}\n```"
        title = arg or name.capitalize()
        quoted = "\n".join("> " + ln if ln else ">" for ln in body.splitlines())
        return f"> **{title}**\n>\n{quoted}" if body else f"> **{title}**"

    previous = None
    while previous != text:  # nested directives: innermost first
        previous = text
        text = _FENCE_RE.sub(directive, text)
    return _ROLE_RE.sub(_role_text, text)


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []) or [])


def _text_of(output) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        data = output.get("data", {})
        text = data.get("text/plain", "") if set(data) <= {"text/plain"} else ""
    return text if isinstance(text, str) else "".join(text)


def _keep_output(output) -> bool:
    if output.get("output_type") == "error":
        return False
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return False
    data = output.get("data", {})
    if WIDGET_MIME in data:
        return False
    text = _text_of(output)
    return not (text.count("\n") >= MAX_TEXT_LINES or len(text) > MAX_TEXT_CHARS)


def _markdown_height(text: str) -> int:
    return max(1, sum(1 + len(ln) // 90 for ln in text.splitlines()))


def _height(cell) -> int:
    """A rough height of the cell on a slide, in lines of text."""
    if cell.cell_type == "markdown":
        return _markdown_height(cell.source)
    lines = 0
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if any(k.startswith("image/") for k in data):
            lines += FIGURE_LINES
        elif "text/html" in data:
            html = data["text/html"]
            html = html if isinstance(html, str) else "".join(html)
            lines += max(2, html.count("<tr"))
        else:
            lines += _text_of(output).count("\n") + 1
    return lines


def split_markdown(source: str, budget: int = SLIDE_LINES) -> list[str]:
    """``source`` cut at blank lines (never inside a fenced block) into pieces of at most
    about ``budget`` lines each, so that a long cell spreads over several sub-slides."""
    blocks, current, fence = [], [], None
    for line in source.splitlines():
        marker = re.match(r"^\s*(`{3,}|~{3,})", line)
        if marker:
            if fence is None:
                fence = marker.group(1)
            elif marker.group(1).startswith(fence):
                fence = None
        if not line.strip() and fence is None:
            if current:
                blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    pieces, piece, used = [], [], 0
    for block in blocks:
        height = _markdown_height(block)
        if piece and used + height > budget and not re.match(r"#{1,6}\s", piece[-1]):
            pieces.append("\n\n".join(piece))
            piece, used = [], 0
        piece.append(block)
        used += height
    if piece:
        pieces.append("\n\n".join(piece))
    return pieces or [source]


def _split_long_markdown(nb) -> None:
    cells = []
    for cell in nb.cells:
        preset = (cell.get("metadata", {}).get("slideshow") or {}).get("slide_type")
        if cell.cell_type != "markdown" or preset or _height(cell) <= SLIDE_LINES:
            cells.append(cell)
            continue
        first, *rest = split_markdown(cell.source)
        cell.source = first
        cells.append(cell)
        for piece in rest:
            new = nbformat.v4.new_markdown_cell(piece)
            new.metadata["tags"] = list(cell.get("metadata", {}).get("tags", []))
            cells.append(new)
    nb.cells = cells


def slide_notebook(nb, substitutions: dict[str, str] | None = None):
    """A copy of ``nb`` ready for ``SlidesExporter`` (the rules are in the module docstring).

    Cells that already carry ``metadata.slideshow.slide_type`` keep it.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not (_tags(cell) & SKIP_TAGS):
            cell.source = plain_markdown(cell.source, substitutions)
    _split_long_markdown(nb)
    used = 0  # lines on the current (sub-)slide
    for cell in nb.cells:
        meta = cell.setdefault("metadata", {})
        preset = (meta.get("slideshow") or {}).get("slide_type")
        if cell.cell_type == "code":
            outputs = [o for o in cell.get("outputs", []) if _keep_output(o)]
            if "remove-output" in _tags(cell):
                outputs = []
            cell.outputs = outputs
        skip = bool(_tags(cell) & SKIP_TAGS) or cell.cell_type == "raw" or \
            (cell.cell_type == "code" and not cell.outputs) or \
            (cell.cell_type == "markdown" and not cell.source.strip())
        if preset:
            slide_type = preset
        elif skip:
            slide_type = "skip"
        elif cell.cell_type == "markdown" and re.match(r"#{1,2}\s", cell.source.lstrip()):
            slide_type = "slide"
        elif cell.cell_type == "markdown" and re.match(r"#{3}\s", cell.source.lstrip()):
            slide_type = "subslide"
        else:
            height = _height(cell)
            slide_type = "subslide" if used and used + height > SLIDE_LINES else "-"
        if slide_type in ("slide", "subslide"):
            used = 0
        if slide_type != "skip":
            used += _height(cell)
        meta["slideshow"] = {"slide_type": slide_type}
    return nb


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def revealjs_source() -> Path | None:
    """A reveal.js directory holding ``dist/reveal.js``: ``$COURSE_REVEALJS_DIR``, else the
    copy that the ``sphinx-revealjs`` package ships."""
    candidates = [os.environ.get("COURSE_REVEALJS_DIR", "")]
    try:
        import sphinx_revealjs

        candidates.append(str(Path(sphinx_revealjs.__file__).parent / "_static" / "revealjs"))
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and (Path(candidate) / "dist" / "reveal.js").is_file():
            return Path(candidate)
    return None


def copy_revealjs(source: Path, static_dir: Path) -> Path:
    """Copy reveal.js's ``dist`` (without source maps), its notes plugin and its licence."""
    target = Path(static_dir) / REVEAL_TARGET
    ignore = shutil.ignore_patterns("*.map", "*.esm.js")
    shutil.copytree(source / "dist", target / "dist", dirs_exist_ok=True, ignore=ignore)
    shutil.copytree(source / "plugin" / "notes", target / "plugin" / "notes",
                    dirs_exist_ok=True, ignore=ignore)
    if (source / "LICENSE").is_file():
        shutil.copy2(source / "LICENSE", target / "LICENSE")
    return target


def export_deck(nb, *, reveal_prefix: str, mathjax_url: str | None, title: str) -> str:
    """The HTML of the deck of ``nb`` (already passed through :func:`slide_notebook`)."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(
        extra_loaders=[DictLoader({"course_slides.html.j2": TEMPLATE})],
        template_file="course_slides.html.j2",
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        reveal_url_prefix=reveal_prefix, reveal_theme=THEME,
        jquery_url="", require_js_url="", mathjax_url=mathjax_url or "")
    nb.metadata["title"] = title
    resources = {"course_mathjax_url": mathjax_url}
    quiet = logging_module.getLogger("traitlets")  # "Alternative text is missing": the
    level = quiet.level                            # figures' captions are in the prose
    quiet.setLevel(logging_module.ERROR)
    try:
        body, _ = exporter.from_notebook_node(nb, resources=resources)
    finally:
        quiet.setLevel(level)
    return body


def _title(nb, stem: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.MULTILINE)
            if m:
                return m.group(1).strip()
    return stem


def build_decks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    from chapter_facts import ROOT, _importable

    root = Path(app.srcdir) if (Path(app.srcdir) / "_toc.yml").exists() else ROOT
    _importable(root)
    from coursepkg import teaching

    source = revealjs_source()
    if source is None:
        logger.warning("slides: no reveal.js found (install the `book` extra: sphinx-revealjs); "
                       "no slide deck written")
        return
    outdir = Path(app.outdir)
    copy_revealjs(source, outdir / "_static")
    executed = outdir.parent / "jupyter_execute"
    mathjax = (outdir / "_static" / "mathjax" / "MathJax.js").exists() or \
        getattr(app, "offline_mathjax_source", None) is not None
    mathjax_url = "../_static/mathjax/MathJax.js?config=TeX-AMS_CHTML" if mathjax else None
    substitutions = dict(getattr(app.config, "myst_substitutions", None) or {})
    (outdir / SLIDES_DIR).mkdir(exist_ok=True)
    written = 0
    for path in teaching.chapter_notebooks(root):
        notebook = executed / path
        if not notebook.exists():
            notebook = root / path
            logger.info(f"slides: no executed copy of {path}; using the source (no outputs)")
        nb = nbformat.read(notebook, as_version=4)
        deck = slide_notebook(nb, substitutions)
        html = export_deck(deck, reveal_prefix=f"../_static/{REVEAL_TARGET}",
                           mathjax_url=mathjax_url, title=_title(nb, path.stem))
        (outdir / SLIDES_DIR / f"{path.stem}.slides.html").write_text(html, encoding="utf-8")
        written += 1
    logger.info(f"slides: wrote {written} decks to {outdir / SLIDES_DIR}")


def setup(app):
    # After offline_mathjax has copied MathJax (both at build-finished; it has priority 500).
    app.connect("build-finished", build_decks, priority=800)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
