"""The students' edition of the book: the same build, from the student copies, without solutions.

The build of the book (``jupyter-book build .``) writes the instructors' edition to
``_build/html``: every chapter with its solutions.  At ``build-finished`` this extension
writes the students' edition to ``_build/student/html``, built from ``book/student/`` (the
student copies of ``python -m coursepkg.teaching``: code solutions replaced by the
student's starting code, markdown solutions by a note), so that nothing of a solution -- page,
search index, downloadable ``.ipynb``, launch button -- is in it:

1. it assembles a source tree in ``_build/student/src``: the book's ``_config.yml`` and
   ``_toc.yml`` with every page ``book/name`` moved to ``book/student/name`` (so the
   launch buttons open the student copies) and execution turned off; the pages, ``references.bib``, the extensions and the measured
   times; and each student copy **with the outputs this build just computed**, copied cell
   by cell from the executed chapter in ``_build/jupyter_execute/book/`` (a cell whose
   source differs from the chapter's -- a solution, or a stale copy -- gets none; check
   cells get none, since the book's run shows the book's solution passing);
2. it runs a second Sphinx build of that tree, in a fresh process, with execution off, so no
   chapter is executed twice: the edition costs the parsing and writing of the pages, not
   their running time.

Every warning of the second build is repeated as a warning of this one, so ``-W`` fails on
either edition.  Publish ``_build/student/html`` alone for students; ``_build/html`` is the
instructors' edition.  ``student_edition = False`` (``sphinx: config:`` in ``_config.yml``)
turns the edition off.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Where the edition is written, relative to the build folder (``_build``).
EDITION_DIR = Path("student")
#: Pages of the source tree besides the chapters: copied as they are.
_COPIED = ("references.bib", "benchmarks/chapter_times.json")
STUDENT_DIR = Path("book") / "student"
TITLE_SUFFIX = " (students' edition)"


def _root(app) -> Path:
    return Path(app.confdir)


def student_toc(toc: dict) -> dict:
    """``toc`` with every page ``book/name`` moved to ``book/student/name``: the chapters'
    student copies live there, and the other pages go with them so that relative links
    (``{doc}`intro```) still resolve."""
    toc = copy.deepcopy(toc)

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node and str(node[key]).startswith("book/"):
                    node[key] = (STUDENT_DIR / str(node[key])[len("book/"):]).as_posix()
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return toc


def student_config(config: dict) -> dict:
    """The book's ``_config.yml`` for the students' edition: execution off, student copies
    included, the title marked, the edition itself not rebuilt."""
    config = copy.deepcopy(config)
    config["title"] = str(config.get("title", "")) + TITLE_SUFFIX
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    config["exclude_patterns"] = [p for p in config.get("exclude_patterns", [])
                                  if "student" not in p]
    sphinx = config.setdefault("sphinx", {})
    sphinx.setdefault("config", {})["student_edition"] = False
    return config


def _source(cell) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def with_outputs(student: dict, executed: dict | None,
                 glue: dict | None = None) -> tuple[dict, int]:
    """The student copy (a notebook as JSON) with the executed chapter's outputs; returns it
    and the number of code cells whose source no longer matches (stale copy).

    ``glue`` is the chapter's ``NN_name.glue.json``: myst-nb moves the values a chapter
    glues (``{glue}`name```) out of the executed notebook into that file, so they are put
    back, as the hidden outputs myst-nb reads them from, on the first code cell.
    """
    student = copy.deepcopy(student)
    if executed is None:
        return student, 0
    cells = executed.get("cells", [])
    by_source: dict[str, list[dict]] = {}
    for cell in cells:
        if cell.get("cell_type") == "code":
            by_source.setdefault(_source(cell), []).append(cell)
    stale = 0
    for cell in student.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", []) or []
        if "solution" in tags or "check" in tags:
            continue
        matches = by_source.get(_source(cell))
        if not matches:
            stale += 1
            continue
        done = matches.pop(0)
        cell["outputs"] = copy.deepcopy(done.get("outputs", []))
        cell["execution_count"] = done.get("execution_count")
    if glue:
        first = next((c for c in student.get("cells", []) if c.get("cell_type") == "code"), None)
        if first is not None:
            for output in glue.values():
                output = copy.deepcopy(output)
                prefix = output.get("metadata", {}).get("scrapbook", {}).get("mime_prefix", "")
                output["data"] = {prefix + k: v for k, v in output.get("data", {}).items()}
                first.setdefault("outputs", []).append(output)
    if "widgets" in executed.get("metadata", {}):
        student.setdefault("metadata", {})["widgets"] = executed["metadata"]["widgets"]
    return student, stale


def assemble(root: Path, build: Path) -> Path:
    """Write the students' edition's source tree to ``build/student/src``; return it."""
    src = build / EDITION_DIR / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / STUDENT_DIR).mkdir(parents=True)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    chapters = {f"book/{p.stem}" for p in (root / "book").glob("[0-9][0-9]_*.ipynb")
                if (root / STUDENT_DIR / p.name).exists()}
    (src / "_toc.yml").write_text(yaml.safe_dump(student_toc(toc), sort_keys=False),
                                  encoding="utf-8")
    (src / "_config.yml").write_text(yaml.safe_dump(student_config(config), sort_keys=False,
                                                    allow_unicode=True), encoding="utf-8")
    for page in (root / "book").glob("*.md"):
        shutil.copy2(page, src / STUDENT_DIR / page.name)
    for rel in _COPIED:
        if (root / rel).exists():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, src / rel)
    shutil.copytree(root / "book" / "_ext", src / "book" / "_ext",
                    ignore=shutil.ignore_patterns("__pycache__"))
    executed_dir = build / "jupyter_execute" / "book"
    for chapter in sorted(chapters):
        name = Path(chapter).name + ".ipynb"
        student = json.loads((root / STUDENT_DIR / name).read_text(encoding="utf-8"))
        done = executed_dir / name
        executed = json.loads(done.read_text(encoding="utf-8")) if done.exists() else None
        if executed is None:
            logger.warning(f"student_edition: no executed {done}; {name} is shown without "
                           "outputs")
        glue_file = executed_dir / (Path(chapter).name + ".glue.json")
        glue = json.loads(glue_file.read_text(encoding="utf-8")) if glue_file.exists() else None
        merged, stale = with_outputs(student, executed, glue)
        if stale:
            logger.warning(f"student_edition: {STUDENT_DIR / name} differs from its chapter in "
                           f"{stale} code cell(s): run `python -m coursepkg.teaching`")
        (src / STUDENT_DIR / name).write_text(json.dumps(merged, ensure_ascii=False, indent=1)
                                              + "\n", encoding="utf-8")
    return src


_BUILD_SCRIPT = """
import json, sys
from jupyter_book.sphinx import build_sphinx
args = json.loads(sys.argv[1])
result = build_sphinx(args["src"], args["out"], doctreedir=args["doctrees"], noconfig=True,
                      path_config=args["config"], confoverrides=args["overrides"],
                      builder="html", freshenv=True, keep_going=True, quiet=True)
sys.exit(result if isinstance(result, int) else 1)
"""


def build_edition(root: Path, build: Path, *, nitpicky: bool = False,
                  timeout: float = 1800) -> tuple[Path, list[str], float]:
    """Assemble and build the students' edition; ``(html folder, its warnings, seconds)``."""
    start = time.perf_counter()
    src = assemble(root, build)
    out = build / EDITION_DIR / "html"
    if out.exists():
        shutil.rmtree(out)
    args = {"src": str(src), "out": str(out), "doctrees": str(build / EDITION_DIR / ".doctrees"),
            "config": str(src / "_config.yml"),
            "overrides": {"latex_individualpages": False, **({"nitpicky": True} if nitpicky else {})}}
    done = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, json.dumps(args)], cwd=src,
                          capture_output=True, text=True, timeout=timeout)
    warnings = [line for line in done.stderr.splitlines()
                if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    if done.returncode != 0 and not warnings:
        warnings = [f"the students' edition's build exited with status {done.returncode}: "
                    + " ".join(done.stderr.strip().splitlines()[-3:])]
    return out, warnings, time.perf_counter() - start


def _on_build_finished(app, exception):
    if exception is not None or app.builder.name != "html" or not app.config.student_edition:
        return
    root = _root(app)
    if not (root / STUDENT_DIR).is_dir():
        logger.warning(f"student_edition: no {STUDENT_DIR}: run `python -m coursepkg.teaching`")
        return
    build = Path(app.outdir).parent
    logger.info("student_edition: building the students' edition (no execution) ...")
    out, warnings, seconds = build_edition(root, build, nitpicky=bool(app.config.nitpicky))
    for line in warnings:
        logger.warning(f"student_edition: {line}")
    logger.info(f"student_edition: wrote {out} in {seconds:.0f} s")


def setup(app):
    app.add_config_value("student_edition", True, "env")
    # After the slides and MathJax (priorities 500 and 800): the instructors' edition is done.
    app.connect("build-finished", _on_build_finished, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
