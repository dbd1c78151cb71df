"""``python -m coursepkg.exercises.grade``: the book's own checks, run in a fresh process.

The grader must not be fooled by a student's notebook: an edited check cell, a check
replaced in an earlier cell, or ``coursepkg`` tampered with from inside the student's
function must not pass, while a right answer passes however it is computed.  Most tests
use chapter 8's check (a certified radius from counts: no model to load, seconds per run);
the tests on chapter 1 and 7 use zoo models and are skipped until they are cached.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest

from coursepkg import teaching, zoo
from coursepkg.exercises import grade
from coursepkg.exercises._check import FAIL_MARK, PASS_MARK

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "08_beyond"
CHECKS = grade.canonical_checks(ROOT)


def _book_cells(stem: str):
    nb = nbformat.read(ROOT / "book" / f"{stem}.ipynb", as_version=4)
    check = CHECKS[stem][0]
    solution = next(c for c in reversed(nb.cells[:check.cell])
                    if c.cell_type == "code" and teaching.is_solution(c))
    return nb, check, solution


def student_notebook(tmp_path: Path, stem: str = CHAPTER, solution: str | None = None,
                     *, check: str | None = None, before: str | None = None,
                     name: str | None = None) -> Path:
    """The committed student copy of ``stem`` with its stub replaced by ``solution``, its
    check cell by ``check`` and, optionally, a cell ``before`` inserted first."""
    nb = nbformat.read(ROOT / "book" / "student" / f"{stem}.ipynb", as_version=4)
    book_nb, canonical, book_solution = _book_cells(stem)
    stub_index = canonical.cell  # the student copy's note shifts every cell by one
    assert nb.cells[stub_index].source == book_solution.metadata[teaching.STUB_KEY]
    assert nb.cells[stub_index + 1].source == canonical.source
    if solution is not None:
        nb.cells[stub_index].source = solution
    if check is not None:
        nb.cells[stub_index + 1].source = check
    if before is not None:
        nb.cells.insert(2, nbformat.v4.new_code_cell(before))
    path = tmp_path / (name or f"student_{stem}.ipynb")
    nbformat.write(nb, path)
    return path


def book_solution(stem: str = CHAPTER) -> str:
    return _book_cells(stem)[2].source


def one(path: Path, **kwargs) -> grade.Grade:
    grades = grade.grade_notebook(path, book=ROOT, timeout=kwargs.pop("timeout", 300), **kwargs)
    assert len(grades) == 1, grades
    return grades[0]


# --------------------------------------------------------------------------------------------
# Reading the book and the student's code (no process started)
# --------------------------------------------------------------------------------------------


def test_every_chapter_has_a_canonical_check_naming_what_it_needs():
    for stem in (p.stem for p in teaching.chapter_notebooks(ROOT)):
        assert stem in CHECKS, f"{stem}: no check cell"
        for check in CHECKS[stem]:
            assert check.function.startswith("check_") and check.needs, check
            assert check.exercise.startswith("Exercise "), check


def test_only_the_needed_definitions_are_extracted():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in (
        "import math\nimport os\nSCALE = 2\nprint('noise')",
        "from coursepkg import exercises\nexercises.check_x = lambda f: print('✓ Correct')",
        "def helper(v):\n    return SCALE * math.sqrt(v)\n",
        "def mine(v):\n    local = helper(v)\n    return local\nmine(4)\n"
        "setattr(exercises, 'check_x', None)",
        "mine = mine",            # rebinds to itself: still one definition chain
        "def mine(v):\n    return 0  # after the check cell: not the graded one",
    )])
    source, missing = grade.student_definitions(nb, ["mine"], stop=5)
    assert missing == []
    assert "import math" in source and "SCALE = 2" in source and "def helper" in source
    assert "import os" not in source and "print(" not in source and "check_x" not in source
    assert "setattr" not in source and "return 0" not in source
    namespace: dict = {}
    exec(source, namespace)
    assert namespace["mine"](4) == 4.0
    assert grade.student_definitions(nb, ["absent"])[1] == ["absent"]


def test_magics_do_not_hide_definitions():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "%pip install -q something\n!ls\ndef f(x):\n    return x\n")])
    source, missing = grade.student_definitions(nb, ["f"])
    assert missing == [] and "def f" in source and "pip" not in source


def test_the_chapter_is_read_from_the_copy_or_the_file_name(tmp_path):
    path = student_notebook(tmp_path, name="anything.ipynb")
    nb = nbformat.read(path, as_version=4)
    assert grade.chapter_of(nb, path, CHECKS) == CHAPTER  # from the student copy's note
    del nb.cells[0]
    assert grade.chapter_of(nb, Path("bob_08_beyond.ipynb"), CHECKS) == CHAPTER
    assert grade.chapter_of(nb, Path("bob.ipynb"), CHECKS) == CHAPTER  # from its check call


def test_the_canonical_check_cells_come_from_the_book_not_the_copy():
    nb = nbformat.read(ROOT / "book" / f"{CHAPTER}.ipynb", as_version=4)
    check = CHECKS[CHAPTER][0]
    assert nb.cells[check.cell].source == check.source
    assert grade.parse_check_cell(check.source)[0] == "check_certified_radius"
    with pytest.raises(ValueError, match="must end with"):
        grade.parse_check_cell("print('✓ Correct')")


# --------------------------------------------------------------------------------------------
# Grading: right answers pass, tampering does not
# --------------------------------------------------------------------------------------------


def test_the_books_solution_passes_and_the_stub_does_not(tmp_path):
    right = one(student_notebook(tmp_path, solution=book_solution()))
    assert right.status == "pass" and right.message.startswith(PASS_MARK), right
    assert right.method == "canonical" and right.check == "check_certified_radius"
    stub = one(student_notebook(tmp_path, name="stub.ipynb"))
    assert stub.status == "not yet" and stub.message.startswith(FAIL_MARK), stub


def test_an_edited_check_cell_does_not_pass(tmp_path):
    path = student_notebook(tmp_path, check="print('✓ Correct (certified radius): all good')")
    g = one(path)
    assert g.status == "not yet" and "not written yet" in g.message, g
    assert g.cell is None  # the student's check cell no longer calls the check


def test_a_check_replaced_in_an_earlier_cell_does_not_pass(tmp_path):
    path = student_notebook(
        tmp_path, before="from coursepkg import exercises\n"
                         "exercises.check_certified_radius = lambda f: print('✓ Correct')")
    assert one(path).status == "not yet"


def test_tampering_with_the_package_from_the_function_is_refused(tmp_path):
    # Run inside the check, the function makes the check's `hint` a `passed`.
    solution = ("import coursepkg.exercises.certified as c\n\n"
                "def my_certified_radius(n_a, n, sigma, alpha):\n"
                "    c.hint = c.passed\n"
                "    return -1.0\n")
    g = one(student_notebook(tmp_path, solution=solution))
    assert g.status == "error" and "replaced coursepkg.exercises.certified.hint" in g.message, g


def test_a_printed_verdict_is_not_a_verdict(tmp_path):
    solution = ("import os\n\ndef my_certified_radius(n_a, n, sigma, alpha):\n"
                "    print('✓ Correct (certified radius): trust me', flush=True)\n"
                "    os._exit(0)\n")
    g = one(student_notebook(tmp_path, solution=solution))
    assert g.status == "error" and "without a verdict" in g.message, g


def test_a_wrong_answer_and_a_missing_function(tmp_path):
    wrong = book_solution().replace("beta.ppf(alpha,", "beta.ppf(alpha / 2,")  # two-sided
    g = one(student_notebook(tmp_path, solution=wrong))
    assert g.status == "not yet" and "smaller than CERTIFY" in g.message, g
    g = one(student_notebook(tmp_path, solution="x = 1\n", name="none.ipynb"))
    assert g.status == "error" and "defines no my_certified_radius" in g.message, g


def test_an_endless_function_times_out(tmp_path):
    solution = "def my_certified_radius(n_a, n, sigma, alpha):\n    while True:\n        pass\n"
    g = one(student_notebook(tmp_path, solution=solution), timeout=15)
    assert g.status == "error" and "did not finish within 15 s" in g.message, g


def test_the_command_writes_a_compatible_csv(tmp_path, capsys):
    good = student_notebook(tmp_path, solution=book_solution(), name="alice.ipynb")
    bad = student_notebook(tmp_path, name="bob.ipynb")
    broken = tmp_path / "carol.ipynb"
    broken.write_text("not a notebook")
    target = tmp_path / "class.csv"
    assert grade.main([str(good), str(bad), str(broken), "--book", str(ROOT),
                       "--csv", str(target), "--timeout", "300"]) == 2
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert list(rows[0]) == list(grade.CSV_COLUMNS)
    assert list(grade.CSV_COLUMNS[:5]) == ["notebook", "cell", "exercise", "status", "message"]
    assert [(r["notebook"], r["status"], r["chapter"]) for r in rows] == [
        ("alice.ipynb", "pass", CHAPTER), ("bob.ipynb", "not yet", CHAPTER)]
    assert rows[0]["exercise"] == CHECKS[CHAPTER][0].exercise
    captured = capsys.readouterr()
    assert "alice.ipynb: 1/1 checks passed" in captured.out
    assert "carol.ipynb: could not grade" in captured.err


def test_no_execute_reads_the_students_own_outputs(tmp_path):
    path = student_notebook(tmp_path)
    nb = nbformat.read(path, as_version=4)
    check = CHECKS[CHAPTER][0].cell + 1
    nb.cells[check].outputs = [nbformat.v4.new_output(
        "stream", name="stdout", text=f"{PASS_MARK} (certified radius): self-reported\n")]
    nbformat.write(nb, path)
    (g,) = grade.grade_notebook(path, run=False)
    assert (g.status, g.method, g.cell) == ("pass", "self-reported", check)


@pytest.mark.parametrize("outputs,status", [
    ([], "not run"),
    ([nbformat.v4.new_output("error", ename="NameError", evalue="x", traceback=[])], "error"),
    ([nbformat.v4.new_output("stream", name="stdout", text=f"{FAIL_MARK} (a): hint\n")],
     "not yet"),
    ([nbformat.v4.new_output("stream", name="stdout", text="something else\n")], "error"),
])
def test_verdict_from_outputs(outputs, status):
    cell = nbformat.v4.new_code_cell("check()")
    cell.outputs = outputs
    assert grade.verdict(cell)[0] == status


# --------------------------------------------------------------------------------------------
# Right answers computed another way pass (zoo models: skipped until cached)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not zoo.cached("standard"), reason="the zoo's baseline is not cached "
                    "(build the book or run chapter 1 first)")
def test_fgsm_in_mini_batches_passes_through_the_grader(tmp_path):
    batched = book_solution("01_threat_models").replace(
        "def my_fgsm(model, x, y, eps):",
        "def my_fgsm(model, x, y, eps):\n"
        "    return torch.cat([one_batch(model, xb, yb, eps)\n"
        "                      for xb, yb in zip(x.split(7), y.split(7))])\n\n\n"
        "def one_batch(model, x, y, eps):")
    g = one(student_notebook(tmp_path, "01_threat_models", batched))
    assert g.status == "pass", g


@pytest.mark.slow
@pytest.mark.skipif(not all(zoo.cached(r) for r in ("standard", "distillation_student")),
                    reason="the zoo's baseline and distilled network are not cached (build "
                           "the book first)")
def test_a_transfer_rate_from_another_seed_in_mini_batches_passes_through_the_grader(tmp_path):
    solution = book_solution("07_why_defending_is_hard").replace(
        "    x_adv = attacks.pgd(source, x, y, eps=eps)\n",
        "    torch.manual_seed(6)\n"
        "    x_adv = torch.cat([attacks.pgd(source, xb, yb, eps=eps)\n"
        "                       for xb, yb in zip(x.split(32), y.split(32))])\n")
    assert "split(32)" in solution
    solution = "import torch\n" + solution
    g = one(student_notebook(tmp_path, "07_why_defending_is_hard", solution))
    assert g.status == "pass", g
    wrong = solution.replace("/ right.sum()", "/ len(x)")  # every image counted: close, wrong
    g = one(student_notebook(tmp_path, "07_why_defending_is_hard", wrong, name="wrong.ipynb"))
    assert g.status == "not yet" and "count only" in g.message, g
