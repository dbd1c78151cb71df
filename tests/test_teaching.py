"""Student copies (`python -m coursepkg.teaching`): what they remove, what they keep, and that
the committed copies match the chapters."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from coursepkg import teaching

ROOT = Path(__file__).resolve().parents[1]


def chapter_notebook():
    """A small chapter: set-up cell, prose, an exercise with a code and a markdown solution."""
    setup = new_code_cell('import sys\nif "google.colab" in sys.modules:\n    pass',
                          metadata={"tags": ["remove-cell"]})
    work = new_code_cell("x = 1 + 1\nx", execution_count=3,
                         outputs=[new_output("execute_result", {"text/plain": "2"},
                                             execution_count=3)])
    code_solution = new_code_cell("from coursepkg import config\nprint(config.profile())",
                                  metadata={"tags": ["solution", "hide-input"]},
                                  execution_count=4,
                                  outputs=[new_output("stream", name="stdout", text="quick\n")])
    md_solution = new_markdown_cell("```{admonition} Solution\n:class: dropdown\nSECRET ANSWER\n```",
                                    metadata={"tags": ["solution"]})
    cells = [new_markdown_cell("# 2. A chapter"), setup, work,
             new_markdown_cell("### Exercise 1\nDo it."), code_solution,
             new_markdown_cell("### Exercise 2\nExplain it."), md_solution]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                                                            "display_name": "Python 3",
                                                            "language": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


def test_solutions_are_emptied_and_everything_else_kept():
    nb = chapter_notebook()
    copy = teaching.student_copy(nb, Path("book/02_x.ipynb"))
    assert copy.cells[0].source == teaching.header_cell_text(Path("book/02_x.ipynb"))
    kept, original = copy.cells[1:], nb.cells
    assert len(kept) == len(original)
    for before, after in zip(original, kept):
        assert after.cell_type == before.cell_type
        if teaching.is_solution(before):
            stub = teaching.CODE_STUB if before.cell_type == "code" else teaching.MARKDOWN_STUB
            assert after.source == stub
            assert "solution" in after.metadata["tags"]
            assert "hide-input" not in after.metadata["tags"]
        else:
            assert after.source == before.source
            assert after.metadata == before.metadata
        if after.cell_type == "code":
            assert after.outputs == [] and after.execution_count is None
    text = nbformat.writes(copy)
    assert "SECRET ANSWER" not in text and "print(config.profile())" not in text


def test_the_source_notebook_is_not_modified():
    nb = chapter_notebook()
    before = nbformat.writes(nb)
    teaching.student_copy(nb, Path("book/02_x.ipynb"))
    assert nbformat.writes(nb) == before


def test_student_copy_is_idempotent_and_valid():
    nb = chapter_notebook()
    once = teaching.student_copy(nb, Path("book/02_x.ipynb"))
    twice = teaching.student_copy(once, Path("book/02_x.ipynb"))
    assert nbformat.writes(once) == nbformat.writes(twice)
    nbformat.validate(once)


@pytest.fixture
def tiny_book(tmp_path):
    """A repository root with a _toc.yml naming one notebook and one markdown page."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
        "      - file: book/02_x\n      - file: book/03_planned\n", encoding="utf-8")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n", encoding="utf-8")
    (tmp_path / "book" / "03_planned.md").write_text("# 3. Planned\n", encoding="utf-8")
    nbformat.write(chapter_notebook(), tmp_path / "book" / "02_x.ipynb")
    return tmp_path


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coursepkg.teaching", "--root", str(root),
                           "--no-api", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_fails_until_copies_are_written_then_passes(tiny_book):
    missing = run_cli(tiny_book, "--check")
    assert missing.returncode == 1 and "missing: book/student/02_x.ipynb" in missing.stdout
    assert not (tiny_book / "book/student").exists(), "--check writes nothing"
    assert run_cli(tiny_book).returncode == 0
    assert sorted(p.name for p in (tiny_book / "book/student").iterdir()) == ["02_x.ipynb"]
    assert run_cli(tiny_book, "--check").returncode == 0


def test_check_fails_when_a_chapter_changes(tiny_book):
    run_cli(tiny_book)
    path = tiny_book / "book" / "02_x.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].source = "x = 2 + 2"
    nbformat.write(nb, path)
    stale = run_cli(tiny_book, "--check")
    assert stale.returncode == 1 and "out of date: book/student/02_x.ipynb" in stale.stdout
    run_cli(tiny_book)
    copy = json.loads((tiny_book / "book/student/02_x.ipynb").read_text(encoding="utf-8"))
    assert "x = 2 + 2" in "".join(copy["cells"][3]["source"])


def test_copies_of_notebooks_removed_from_the_toc_are_deleted(tiny_book):
    run_cli(tiny_book)
    orphan = tiny_book / "book" / "student" / "09_gone.ipynb"
    orphan.write_text("{}", encoding="utf-8")
    assert run_cli(tiny_book, "--check").returncode == 1
    run_cli(tiny_book)
    assert not orphan.exists()


def test_toc_files_are_read_in_order(tiny_book):
    assert teaching.toc_files(tiny_book) == ["book/intro", "book/02_x", "book/03_planned"]
    assert teaching.chapter_notebooks(tiny_book) == [Path("book/02_x.ipynb")]


def test_api_members_describe_each_object_once():
    modules = teaching.public_modules()
    members = teaching.api_members(modules)
    seen = {}
    for module, names in members.items():
        for name in names:
            obj = getattr(__import__(module, fromlist=[name]), name)
            assert id(obj) not in seen, f"{module}.{name} also documented in {seen[id(obj)]}"
            seen[id(obj)] = module
    from coursepkg import config
    assert "profile" in members["coursepkg.config"]
    assert seen[id(config.Profile)] == "coursepkg.config"


def test_committed_student_copies_and_api_page_are_up_to_date():
    report = teaching.sync(ROOT, write=False)
    assert report.clean, (report.describe()
                          + "\nrun `python -m coursepkg.teaching` and commit book/student/ and book/api.md")


_XREF = re.compile(r":(mod|func|class|meth|attr|data|exc|obj):`~?(coursepkg(?:\.\w+)+)`")


def _documented_docstrings(modules, members):
    """(where, docstring) for every text autodoc puts on the API page."""
    for module_name in modules:
        module = importlib.import_module(module_name)
        yield module_name, module.__doc__ or ""
        for name in members[module_name]:
            obj = getattr(module, name)
            yield f"{module_name}.{name}", obj.__doc__ or ""
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and getattr(value, "__doc__", None):
                        yield f"{module_name}.{name}.{attr}", value.__doc__


def test_cross_references_in_the_api_page_point_at_documented_objects():
    """A ``-n`` build fails on a reference to a target the API page does not describe (such as
    a function in ``coursepkg.recipes``, which the page leaves out): catch it without a build."""
    modules = teaching.public_modules()
    members = teaching.api_members(modules)
    documented = set(modules)
    for module_name, names in members.items():
        for name in names:
            documented.add(f"{module_name}.{name}")
    broken = []
    for where, text in _documented_docstrings(modules, members):
        for _, target in _XREF.findall(text):
            parent = target.rpartition(".")[0]
            method_of_class = parent in documented and parent not in modules
            if target not in documented and not method_of_class:
                broken.append(f"{where}: {target}")
    assert not broken, "references to objects the API page leaves out:\n" + "\n".join(broken)
