"""The two editions of the HTML book: the instructors' (``_build/html``, with solutions) and
the students' (``_build/student/html``, from ``book/student/``, without them), both written
by the one build command (``book/_ext/student_edition.py``).

The unit tests run anywhere; the tests of the built editions read ``_build`` and are skipped
until the book has been built.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from coursepkg import teaching

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import student_edition  # noqa: E402

INSTRUCTORS = ROOT / "_build" / "html"
STUDENTS = ROOT / "_build" / "student" / "html"
NOTEBOOKS = teaching.chapter_notebooks(ROOT)
SOLUTION_TITLE = '<p class="admonition-title">Solution</p>'


def test_the_extension_is_registered():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["sphinx"]["local_extensions"].get("student_edition") == "book/_ext"


def test_the_students_toc_points_every_page_into_book_student():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    moved = student_edition.student_toc(toc)
    assert moved["root"] == "book/student/intro"
    files = [f for f in teaching.toc_files(ROOT)]
    assert len(files) > 3
    text = yaml.safe_dump(moved)
    for entry in files:
        assert f"book/student/{entry[len('book/'):]}" in text, entry
    assert toc["root"] == "book/intro", "the book's own toc is not modified"


def test_the_students_config_executes_nothing_and_does_not_recurse():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    student = student_edition.student_config(config)
    assert student["execute"]["execute_notebooks"] == "off"
    assert not any("student" in p for p in student["exclude_patterns"])
    assert student["sphinx"]["config"]["student_edition"] is False
    assert student["title"].endswith(student_edition.TITLE_SUFFIX)
    assert config["execute"]["execute_notebooks"] == "force", "the book's config is untouched"


def test_outputs_are_copied_to_matching_cells_only():
    out = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    executed = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)", outputs=out, execution_count=1),
        nbformat.v4.new_code_cell("def f():\n    return 'SECRET'", metadata={"tags": ["solution"]},
                                  outputs=out, execution_count=2),
        nbformat.v4.new_code_cell("check(f)", metadata={"tags": ["check"]}, outputs=out,
                                  execution_count=3),
        nbformat.v4.new_code_cell("y = 1", outputs=out, execution_count=4)])
    student = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("*Student copy*"),
        nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)"),
        nbformat.v4.new_code_cell("def f():\n    raise NotImplementedError",
                                  metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("check(f)", metadata={"tags": ["check"]}),
        nbformat.v4.new_code_cell("y = 2  # edited since")])
    merged, stale = student_edition.with_outputs(dict(student), dict(executed))
    cells = merged["cells"]
    assert cells[1]["outputs"] == out and cells[1]["execution_count"] == 1
    assert cells[2]["outputs"] == [] and cells[3]["outputs"] == []
    assert cells[4]["outputs"] == [] and stale == 1
    assert student.cells[1].outputs == [], "the student copy itself is not modified"


def test_glued_values_are_put_back_where_myst_nb_reads_them():
    # myst-nb moves glue outputs out of the executed notebook into NN_name.glue.json, with
    # the mime prefix stripped from their data; the edition restores them (prefix included).
    prefix = "application/papermill.record/"
    glue = {"n_eval": {"output_type": "display_data", "data": {"text/plain": "'500'"},
                       "metadata": {"scrapbook": {"name": "n_eval", "mime_prefix": prefix}}}}
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys")])
    student = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("*copy*"),
                                              nbformat.v4.new_code_cell("import sys")])
    merged, _ = student_edition.with_outputs(dict(student), dict(executed), glue)
    (output,) = merged["cells"][1]["outputs"]
    assert output["data"] == {prefix + "text/plain": "'500'"}
    assert output["metadata"]["scrapbook"]["name"] == "n_eval"
    assert glue["n_eval"]["data"] == {"text/plain": "'500'"}, "the glue file is not modified"


# --------------------------------------------------------------------------------------------
# The built editions
# --------------------------------------------------------------------------------------------


def _page_text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def solution_lines(path: Path) -> list[str]:
    """Distinctive lines of the chapter's code solutions: not in the student's stub, not
    comments, long enough not to occur elsewhere by chance."""
    nb = nbformat.read(ROOT / path, as_version=4)
    lines = []
    for cell in nb.cells:
        if cell.cell_type == "code" and teaching.is_solution(cell):
            stub = cell.metadata.get(teaching.STUB_KEY, "")
            for line in cell.source.splitlines():
                line = line.strip()
                if len(line) >= 25 and not line.startswith(("#", '"""', "def ", "import ",
                                                              "from ")) and line not in stub:
                    lines.append(line)
    return lines


def shown_elsewhere(path: Path) -> str:
    """The text of the chapter outside its solution cells: sources, and the outputs of the
    build's executed copy.  A solution line found there (chapter 6 prints the package's
    ``Detected.forward``, which ends with the solution's line) is the chapter's to avoid,
    not something the students' edition can strip."""
    executed = ROOT / "_build" / "jupyter_execute" / "book" / path.name
    nb = nbformat.read(executed if executed.exists() else ROOT / path, as_version=4)
    parts = []
    for cell in nb.cells:
        if teaching.is_solution(cell):
            continue
        parts.append(cell.source)
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = output.get("text", "") or output.get("data", {}).get("text/plain", "")
            parts.append(text if isinstance(text, str) else "".join(text))
    return "\n".join(parts)


def _built(path: Path):
    instructors = INSTRUCTORS / "book" / f"{path.stem}.html"
    students = STUDENTS / "book" / "student" / f"{path.stem}.html"
    if not instructors.exists() or not students.exists():
        pytest.skip(f"no built editions of {path.stem} ({instructors.relative_to(ROOT)}, "
                    f"{students.relative_to(ROOT)}): run the README's build command first")
    return instructors, students


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_students_edition_has_no_solution_and_the_instructors_has_them(path):
    instructors, students = _built(path)
    lines = solution_lines(path)
    assert lines, f"{path}: no code solution to look for"
    mine, theirs = _page_text(instructors), _page_text(students)
    shown = [line for line in lines if line in mine]
    assert shown, f"{path}: the instructors' edition shows none of its code solutions"
    elsewhere = shown_elsewhere(path)
    leaked = [line for line in lines if line in theirs and line not in elsewhere]
    assert not leaked, f"{path}: the students' edition shows solution code: {leaked[:3]}"
    assert SOLUTION_TITLE in instructors.read_text(encoding="utf-8")
    assert SOLUTION_TITLE not in students.read_text(encoding="utf-8"), \
        f"{path}: a worked solution is in the students' edition"
    assert teaching.MARKDOWN_STUB.split("*")[2].strip() in theirs  # "Your solution here."


def test_the_students_edition_leaks_nothing_through_its_sources():
    """The ``.ipynb`` a reader downloads from a page (``_sources``) is the student copy."""
    if not (STUDENTS / "_sources").is_dir():
        pytest.skip("no students' edition built: run the README's build command first")
    lines = [line for path in NOTEBOOKS for line in solution_lines(path)
             if line not in shown_elsewhere(path)]
    sources = [p for p in (STUDENTS / "_sources").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".ipynb") for p in sources)
    text = " ".join(p.read_text(encoding="utf-8", errors="replace") for p in sources)
    leaked = [line for line in lines if line in text]
    assert not leaked, f"solutions in the students' _sources: {leaked[:3]}"


def test_the_students_edition_keeps_the_figures_and_launches_the_student_copies():
    path = NOTEBOOKS[0]
    instructors, students = _built(path)
    page = students.read_text(encoding="utf-8")
    assert page.count("<img") >= max(1, instructors.read_text(encoding="utf-8")
                                     .count("<img") - 2), "the executed figures are kept"
    colab = re.findall(r'href="(https://colab\.research\.google\.com[^"]*)"', page)
    assert colab and all(link.endswith(f"book/student/{path.stem}.ipynb") for link in colab)
