"""Facts about the chapters that the book computes instead of typing: running times, exercises.

* **Running times.**  At ``config-inited`` this extension reads
  ``benchmarks/chapter_times.json`` (written by ``benchmarks/chapter_times.py`` from measured
  runs, never by hand) and adds a MyST substitution ``runtime_<stem>`` for every chapter of
  ``_toc.yml``, e.g. ``{{ runtime_02_augmentation }}`` in a chapter's "Before you start"
  box becomes "about 3.5 minutes in the quick profile on a 2-core CPU, from an empty model
  cache (measured 2026-11-29); the full profile on a GPU: not measured yet".
* **``{exercise-table}``**, a directive: a table of every exercise of every chapter
  notebook, read from its label line (CONTRIBUTING.md, "Exercises")::

      **Exercise 2 (a targeted attack).** ★★ · coding · lab · 20 min

  with whether the exercise is auto-checked (a code cell tagged ``check`` follows it before
  the next exercise).  :func:`parse_exercises` does the parsing; the tests call it.
* **``{chapter-slides}``**, a directive: a list of links to the slide decks that
  ``book/_ext/slides.py`` writes into ``_build/html/slides/``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TIMES_FILE = Path("benchmarks") / "chapter_times.json"

#: The settings every chapter's box names, in this order, with how to describe a missing one.
STANDARD_SETTINGS = {
    "quick-cpu": "the quick profile on a 2-core CPU",
    "full-gpu": "the full profile on a GPU",
}
CACHE_PHRASES = {"cold": "from an empty model cache",
                 "warm": "with every model already cached"}

#: ``**Exercise N (short title).** ★★ · coding · lab · 20 min`` (CONTRIBUTING.md).
LABEL_RE = re.compile(
    r"^\*\*Exercise (?P<number>\d+) \((?P<title>.+?)\)\.\*\*\s+"
    r"(?P<stars>★{1,3}) · (?P<kind>coding|written) · (?P<setting>homework|lab) · "
    r"(?P<minutes>\d+) min\b")
#: Any line that opens an exercise, labelled or not.
EXERCISE_LINE_RE = re.compile(r"^\s*(#{1,6}\s*|\*\*|__)Exercise\b", re.IGNORECASE)
CHECK_TAG = "check"
SOLUTION_TAG = "solution"


def _importable(root: Path) -> None:
    """Make ``coursepkg`` importable from the repository (it is installed, normally)."""
    if str(root) not in sys.path and (Path(root) / "coursepkg").is_dir():
        sys.path.append(str(root))


# --------------------------------------------------------------------------------------------
# Running times
# --------------------------------------------------------------------------------------------


def duration_text(seconds: float) -> str:
    """``83`` -> ``"about 1.5 minutes"``; ``40`` -> ``"about 40 seconds"`` (half minutes)."""
    if seconds < 60:
        return f"about {max(10, round(seconds / 10.0) * 10)} seconds"
    minutes = round(seconds / 30.0) / 2
    number = f"{minutes:g}"
    return f"about {number} minute" + ("" if number == "1" else "s")


def _vowel_sound(word: str) -> bool:
    """Whether ``word`` is said with a vowel first ("an Intel CPU", "an H200 GPU")."""
    acronym = len(word) > 1 and word[0].isupper() and (word[1].isupper() or word[1].isdigit())
    return word[:1] in ("AEFHILMNORSX" if acronym else "AEIOUaeiou")


def _setting_phrase(name: str, record: dict) -> str:
    profile = record.get("profile") or name.split("-")[0]
    machine = record.get("machine") or "machine"
    article = "an" if _vowel_sound(machine) else "a"
    return f"the {profile} profile on {article} {machine}"


def runtime_text(stem: str, times: dict) -> str:
    """The sentence ``{{ runtime_<stem> }}`` stands for, from the recorded ``times``.

    ``times`` is the content of ``benchmarks/chapter_times.json``: ``{setting: {"machine",
    "profile", "cache", "date", "seconds": {stem: seconds}}}``.  The two standard settings
    (quick profile on a CPU, full profile on a GPU) are always named -- "not measured yet"
    when there is no time for this chapter -- and any other recorded setting follows.
    """
    parts = []
    names = list(STANDARD_SETTINGS) + sorted(set(times) - set(STANDARD_SETTINGS))
    for name in names:
        record = times.get(name)
        seconds = (record or {}).get("seconds", {}).get(stem)
        if seconds is None:
            if name in STANDARD_SETTINGS:
                parts.append(f"{STANDARD_SETTINGS[name]}: not measured yet")
            continue
        phrase = _setting_phrase(name, record)
        cache = CACHE_PHRASES.get(record.get("cache"), "")
        when = f" (measured {record['date']})" if record.get("date") else ""
        parts.append(f"{duration_text(float(seconds))} in {phrase}"
                     f"{', ' + cache if cache else ''}{when}")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def load_times(root: Path = ROOT) -> dict:
    path = Path(root) / TIMES_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def chapter_stems(root: Path = ROOT) -> list[str]:
    """Stems of the chapter notebooks of ``_toc.yml`` (and of numbered chapters not yet
    notebooks, so that a box written early still renders)."""
    _importable(root)
    from coursepkg import teaching

    stems = [p.stem for p in teaching.chapter_notebooks(root)]
    for entry in teaching.toc_files(root):
        stem = Path(entry).name
        if re.fullmatch(r"\d\d_\w+", stem) and stem not in stems:
            stems.append(stem)
    return stems


def substitutions(root: Path = ROOT, times: dict | None = None) -> dict[str, str]:
    """``{"runtime_<stem>": sentence}`` for every chapter."""
    times = load_times(root) if times is None else times
    return {f"runtime_{stem}": runtime_text(stem, times) for stem in chapter_stems(root)}


def _add_substitutions(app, config):
    root = Path(app.confdir)
    if not (root / "_toc.yml").exists():
        root = ROOT
    ours = substitutions(root)
    config.myst_substitutions = {**ours, **(getattr(config, "myst_substitutions", None) or {})}
    extensions = list(getattr(config, "myst_enable_extensions", None) or [])
    if "substitution" not in extensions:
        extensions.append("substitution")
        config.myst_enable_extensions = extensions
    if not load_times(root):
        logger.warning(f"chapter_facts: no {TIMES_FILE}; every running time reads "
                       "'not measured yet' (run benchmarks/chapter_times.py)")


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------


@dataclass
class Exercise:
    """One exercise of a chapter, as its label line states it."""

    chapter: str          # notebook stem
    line: str             # the line that opens the exercise
    number: int | None = None
    title: str | None = None
    stars: int | None = None
    kind: str | None = None
    setting: str | None = None
    minutes: int | None = None
    checked: bool = False

    @property
    def labelled(self) -> bool:
        return self.number is not None


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def parse_label(line: str) -> dict | None:
    """The fields of a label line, or ``None`` if ``line`` does not follow the format."""
    m = LABEL_RE.match(line.strip())
    if not m:
        return None
    return {"number": int(m["number"]), "title": m["title"], "stars": len(m["stars"]),
            "kind": m["kind"], "setting": m["setting"], "minutes": int(m["minutes"])}


def parse_exercises(nb, chapter: str) -> list[Exercise]:
    """Every exercise of the notebook ``nb`` (an nbformat node or a dict of cells), in order.

    An exercise opens with a line of a markdown cell (not tagged ``solution``) that starts
    ``**Exercise`` or ``### Exercise`` (or a cell tagged ``exercise``: its first line).  Its
    fields come from the label line when the line follows the format, else they stay
    ``None``.  It is *checked* when a code cell tagged ``check`` comes after it and before
    the next exercise.
    """
    exercises: list[Exercise] = []
    for cell in nb["cells"]:
        tags = _tags(cell)
        if cell["cell_type"] == "code":
            if CHECK_TAG in tags and exercises:
                exercises[-1].checked = True
            continue
        if cell["cell_type"] != "markdown" or SOLUTION_TAG in tags:
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = [ln for ln in source.splitlines() if EXERCISE_LINE_RE.match(ln)]
        if not lines and "exercise" in tags and source.strip():
            lines = [source.strip().splitlines()[0]]
        for line in lines:
            exercises.append(Exercise(chapter=chapter, line=line.strip(),
                                      **(parse_label(line) or {})))
    return exercises


def all_exercises(root: Path = ROOT) -> list[Exercise]:
    import nbformat

    _importable(root)
    from coursepkg import teaching

    found = []
    for path in teaching.chapter_notebooks(root):
        nb = nbformat.read(Path(root) / path, as_version=4)
        found.extend(parse_exercises(nb, path.stem))
    return found


def _table(header: list[str], rows: list[list[str]], widths: list[int]) -> nodes.table:
    table = nodes.table(classes=["exercise-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for text in header:
        row += nodes.entry("", nodes.paragraph(text=text))
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for text in cells:
            row += nodes.entry("", nodes.paragraph(text=text))
        body += row
    return table


def _book_root(directive: Directive):
    """The repository root of the book being built, and ``coursepkg.teaching`` from it."""
    root = Path(directive.state.document.settings.env.srcdir)
    if not (root / "_toc.yml").exists():
        root = ROOT
    _importable(root)
    from coursepkg import teaching

    return root, teaching


class ExerciseTable(Directive):
    """``{exercise-table}``: every exercise of the chapter notebooks, one row each."""

    has_content = False

    def run(self):
        root, teaching = _book_root(self)
        for path in teaching.chapter_notebooks(root):
            self.state.document.settings.env.note_dependency(str(root / path))
        rows = []
        for ex in all_exercises(root):
            if ex.labelled:
                rows.append([ex.chapter, f"{ex.number}. {ex.title}", "★" * ex.stars, ex.kind,
                             ex.setting, str(ex.minutes), "yes" if ex.checked else "no"])
            else:
                heading = re.match(r"^\s*(?:#{1,6}\s*|\*\*)(.*?)(?:\*\*|$)", ex.line)
                rows.append([ex.chapter, heading.group(1).strip(" ."), "not labelled yet", "",
                             "", "", "yes" if ex.checked else "no"])
        header = ["chapter", "exercise", "difficulty", "kind", "setting", "minutes",
                  "auto-checked"]
        return [_table(header, rows, [14, 40, 8, 8, 8, 6, 8])]


def slides_href(docname: str, stem: str) -> str:
    """The relative link from the page ``docname`` to the deck of chapter ``stem``."""
    return "../" * docname.count("/") + f"slides/{stem}.slides.html"


class ChapterSlides(Directive):
    """``{chapter-slides}``: one link per chapter notebook to its generated slide deck."""

    has_content = False

    def run(self):
        env = self.state.document.settings.env
        root, teaching = _book_root(self)

        items = []
        for path in teaching.chapter_notebooks(root):
            href = slides_href(env.docname, path.stem)
            items.append(f'<li><a class="reference external" href="{href}">{path.stem}</a>'
                         " (slides)</li>")
        html = '<ul class="chapter-slides">\n' + "\n".join(items) + "\n</ul>"
        return [nodes.raw("", html, format="html")]


def setup(app):
    app.connect("config-inited", _add_substitutions)
    app.add_directive("exercise-table", ExerciseTable)
    app.add_directive("chapter-slides", ChapterSlides)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
