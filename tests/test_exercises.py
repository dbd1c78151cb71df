"""Checked exercises: the book's solution passes its check, the student copy's stub fails it.

A checked exercise is a code cell tagged ``solution`` (with the student's starting code in its
``student_stub`` metadata) followed by a code cell tagged ``check`` that calls a ``check_*``
function of :mod:`coursepkg.exercises` (CONTRIBUTING.md, "Exercises").  Both cells are
self-contained -- they import what they use -- so each is run here in a fresh namespace:

* the book's solution, then the check: the verdict must be a pass;
* the student copy's stub (exactly what ``python -m coursepkg.teaching`` writes), then the
  same check: the verdict must be a failure with a hint, not an exception.

The checks run on zoo models (cached after the book build) and a few test images.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from coursepkg import teaching
from coursepkg.exercises import CheckResult
from coursepkg.exercises._check import FAIL_MARK, PASS_MARK

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = teaching.chapter_notebooks(ROOT)
EXECUTED = ROOT / "_build" / "jupyter_execute" / "book"


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def checked_pairs(path: Path) -> list[tuple[int, object, object]]:
    """``[(index of the check cell, solution cell, check cell)]`` of one chapter notebook."""
    nb = nbformat.read(ROOT / path, as_version=4)
    pairs = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or teaching.CHECK_TAG not in _tags(cell):
            continue
        solution = next((c for c in reversed(nb.cells[:i])
                         if c.cell_type == "code" and teaching.is_solution(c)), None)
        pairs.append((i, solution, cell))
    return pairs


PAIRS = [(path, i, solution, check) for path in NOTEBOOKS
         for i, solution, check in checked_pairs(path)]
PAIR_IDS = [f"{path.stem}-cell{i}" for path, i, _, _ in PAIRS]


def run(*sources: str):
    """Execute the sources in one fresh namespace; return the value of the last expression."""
    namespace: dict = {"__name__": "__exercise__"}
    *body, last = sources
    for source in body:
        exec(compile(source, "<cell>", "exec"), namespace)
    tree = ast.parse(last)
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        raise AssertionError("a check cell must end with the call of its check_* function")
    final = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<check>", "exec"), namespace)
    return eval(compile(final, "<check>", "eval"), namespace)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_chapter_has_a_checked_coding_exercise(path):
    pairs = checked_pairs(path)
    assert pairs, f"{path}: no cell tagged {teaching.CHECK_TAG!r} (a checked coding exercise)"
    for i, solution, check in pairs:
        assert solution is not None, f"{path} cell {i}: a check cell with no solution before it"
        assert teaching.STUB_KEY in solution.metadata, (
            f"{path} cell {i}: the solution before a check needs the student's starting code "
            f"in its {teaching.STUB_KEY!r} metadata")
        assert "exercises.check_" in check.source, f"{path} cell {i}: call a check_* function"
        assert not teaching.is_solution(check), f"{path} cell {i}: a check is not a solution"


@pytest.mark.slow
@pytest.mark.parametrize("path,i,solution,check", PAIRS, ids=PAIR_IDS)
def test_the_books_solution_passes_its_check(path, i, solution, check):
    verdict = run(solution.source, check.source)
    assert isinstance(verdict, CheckResult), f"{path} cell {i}: the check returned {verdict!r}"
    assert verdict.passed, f"{path} cell {i}: the book's own solution fails: {verdict}"


@pytest.mark.slow
@pytest.mark.parametrize("path,i,solution,check", PAIRS, ids=PAIR_IDS)
def test_the_student_copys_stub_fails_its_check_with_a_hint(path, i, solution, check):
    nb = nbformat.read(ROOT / path, as_version=4)
    student = teaching.student_copy(nb, path)
    stub = student.cells[i].source  # the header cell shifts the student copy by one
    assert stub == solution.metadata[teaching.STUB_KEY]
    assert student.cells[i + 1].source == check.source, "the check cell is the same in both"
    verdict = run(stub, check.source)
    assert isinstance(verdict, CheckResult), f"{path} cell {i}: the check returned {verdict!r}"
    assert not verdict.passed, f"{path} cell {i}: the untouched stub passes its check"
    assert len(verdict.message) > 20, f"{path} cell {i}: a failure must come with a hint"


@pytest.mark.parametrize("path,i,solution,check", PAIRS, ids=PAIR_IDS)
def test_the_built_book_shows_the_check_passing(path, i, solution, check):
    executed = EXECUTED / path.name
    if not executed.exists():
        pytest.skip(f"no executed copy of {path.name}: build the book first")
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    match = [c for c in cells if c["cell_type"] == "code"
             and "".join(c["source"]) == check.source]
    assert match, f"{path}: the check cell is missing from the executed notebook"
    shown = json.dumps(match[0].get("outputs", []), ensure_ascii=False)
    assert PASS_MARK in shown and FAIL_MARK not in shown, (
        f"{path} cell {i}: the book's run does not show a passing check")


def test_a_check_result_reads_as_one_line():
    good, bad = CheckResult("fgsm", True, "all 64 images"), CheckResult("fgsm", False, "hint")
    assert str(good).startswith(PASS_MARK) and str(bad).startswith(FAIL_MARK)
    assert bool(good) and not bool(bad)
