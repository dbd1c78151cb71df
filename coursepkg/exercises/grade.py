"""Grade students' notebooks with the book's own checks: ``python -m coursepkg.exercises.grade``.

A checked exercise ends, in the book, with a code cell tagged ``check`` that calls a
``check_*`` function of :mod:`coursepkg.exercises` on the function the student wrote, e.g.
``exercises.check_fgsm(my_fgsm)``.  The grader does not trust the student's notebook to run
that check: a student can edit the check cell, or replace the check (or the reference it
compares with) in an earlier cell.  For every chapter it grades, it instead

1. takes the **canonical check cells** from the book's own chapter notebooks (``book/0*.ipynb``
   of the course's repository, cells tagged ``check``; never the student's copy of them);
2. extracts from the student's notebook **only the definitions the check needs**: the last
   ``def``, ``class``, ``import`` or plain assignment of each name the check cell uses (e.g.
   ``my_fgsm``) before the student's check cell, and, recursively, of the names those use.
   Every other statement -- a test call, a print, ``exercises.check_fgsm = ...``,
   ``setattr(...)`` -- is left out;
3. runs each check in a **fresh Python process** (``python -m coursepkg.exercises._runner``,
   in an empty temporary folder, with a timeout) that imports a fresh
   :mod:`coursepkg.exercises`, takes the check from it before any student code runs, executes
   the definitions, calls the check on them, and refuses the verdict if the student's code
   replaced a function of :mod:`coursepkg` (or of ``torch``, its functional API,
   ``builtins``) on the way.  The verdict travels on a private channel, so a student's own
   ``print("✓ Correct")`` is not one.

Each check is reported as

* ``pass``: the check returned ``✓ Correct``;
* ``not yet``: it returned ``✗ Not yet`` (its hint is reported);
* ``error``: the notebook does not define what the check needs, the definitions raised, the
  check did not finish within the timeout, or the submission tampered with the package;
* ``not run``: only with ``--no-execute``, a check cell without output.

Usage::

    python -m coursepkg.exercises.grade submissions/*.ipynb --csv grades.csv
    python -m coursepkg.exercises.grade --book path/to/course submissions/*.ipynb

The chapter of a notebook is read from the student copy's first cell (it names its chapter),
else from the file name (``alice_01_threat_models.ipynb``), else from the checks its code
calls; ``--chapter 01_threat_models`` forces it.  The CSV has one row per notebook and
check: ``notebook, cell, exercise, status, message, chapter, check, seconds, method``
(``cell``: the index of the student's check cell, empty when the student deleted it).
A check takes seconds on a CPU once the zoo's models are cached (build the book first, or
import a model cache), and no notebook is executed as a whole.

``--no-execute`` reads the outputs the students' own runs left in their check cells instead
(``method`` is then ``self-reported``): fast, but a student can edit a cell or an output, so
use it only for a quick look, never for marks.  The grader runs students' code: run it in a
container or a throw-away account.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import csv
import json
import os
import re
import secrets
import subprocess
import symtable
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ._check import FAIL_MARK, PASS_MARK

CHECK_TAG = "check"
STATUSES = ("pass", "not yet", "error", "not run")
#: Columns of the CSV: the first five are those of the grader's first version.
CSV_COLUMNS = ("notebook", "cell", "exercise", "status", "message", "chapter", "check",
               "seconds", "method")
#: Seconds one check may take in its process (it loads zoo models; training one, on an empty
#: model cache, can take minutes on a CPU).
DEFAULT_TIMEOUT = 900
_EXERCISE_RE = re.compile(r"^\s*(?:#{1,6}\s*|\*\*)Exercise\s+(\d+)\s*\(([^\n]*?)\)\.?\*?\*?",
                          re.MULTILINE)
_STUDENT_NOTE_RE = re.compile(r"Student copy of `(?:[^`]*/)?([^`/]+)\.ipynb`")
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Grade:
    """The verdict of one check of one notebook."""

    notebook: str
    cell: int | None   # index of the student's check cell; None when it is gone
    exercise: str      # "Exercise 2 (a targeted attack)", or the cell index when unlabelled
    status: str        # one of STATUSES
    message: str
    chapter: str = ""  # the chapter's stem, "01_threat_models"
    check: str = ""    # the check function, "check_fgsm"
    seconds: float = 0.0
    method: str = "canonical"  # or "self-reported" (--no-execute)


@dataclass(frozen=True)
class CanonicalCheck:
    """A check cell of the book's own chapter notebook, parsed."""

    chapter: str            # the notebook's stem
    cell: int               # its index in the book's notebook
    exercise: str
    source: str
    function: str           # "check_fgsm"
    args: tuple[str, ...]   # the call's argument expressions, as source
    kwargs: tuple[tuple[str, str], ...]
    needs: tuple[str, ...]  # the names the cell uses and does not define: "my_fgsm"


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def is_check_cell(cell) -> bool:
    """A code cell tagged ``check``."""
    return cell.get("cell_type") == "code" and CHECK_TAG in _tags(cell)


def _source(cell) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def _output_text(output) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    elif output.get("output_type") in ("execute_result", "display_data"):
        text = output.get("data", {}).get("text/plain", "")
    else:
        return ""
    return text if isinstance(text, str) else "".join(text)


def verdict(cell) -> tuple[str, str]:
    """``(status, message)`` from the outputs of an executed check cell (``--no-execute``)."""
    outputs = cell.get("outputs", []) or []
    for output in outputs:
        if output.get("output_type") == "error":
            return "error", f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
    for output in outputs:
        for line in _output_text(output).splitlines():
            if line.startswith(PASS_MARK):
                return "pass", line
            if line.startswith(FAIL_MARK):
                return "not yet", line
    if not outputs:
        return "not run", "the check cell has no output: run the notebook first"
    return "error", "the check cell printed no verdict (was it changed?)"


def _exercise_names(nb) -> dict[int, str]:
    """``{index of a check cell: "Exercise N (title)"}`` from the last exercise before it."""
    names, current = {}, None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found = _EXERCISE_RE.findall(_source(cell))
            if found:
                number, title = found[-1]
                current = f"Exercise {number} ({title.strip()})"
        elif is_check_cell(cell):
            names[i] = current or f"check cell {i}"
    return names


# --------------------------------------------------------------------------------------------
# Reading code: which names a piece of code binds and which it needs
# --------------------------------------------------------------------------------------------


def _python_source(source: str) -> str:
    """A cell's source without IPython's magics and shell escapes (blank lines keep numbers)."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append("" if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)


def _referenced(table: symtable.SymbolTable, top: bool) -> set[str]:
    """Names ``table`` and its children read from the module's namespace."""
    names = set()
    for symbol in table.get_symbols():
        if not symbol.is_referenced():
            continue
        if top:
            if not symbol.is_imported():
                names.add(symbol.get_name())
        elif symbol.is_global() and not symbol.is_declared_global():
            names.add(symbol.get_name())
        elif symbol.is_declared_global():
            names.add(symbol.get_name())
    for child in table.get_children():
        names |= _referenced(child, top=False)
    return names


def _needs(node: ast.AST) -> tuple[set[str], set[str]]:
    """``(names read when the statement runs, names read later by its functions' bodies)``."""
    source = ast.unparse(node)
    table = symtable.symtable(source, "<cell>", "exec")
    at_once = set()
    for symbol in table.get_symbols():
        if symbol.is_referenced() and not symbol.is_imported():
            at_once.add(symbol.get_name())
    later = set()
    for child in table.get_children():
        later |= _referenced(child, top=False)
    return at_once - _BUILTINS, later - _BUILTINS


def _bound(node: ast.stmt) -> set[str]:
    """The names a definition statement binds (empty when it is not a definition)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Import):
        return {(a.asname or a.name.split(".")[0]) for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {(a.asname or a.name) for a in node.names if a.name != "*"}
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    names = set()
    for target in targets:
        parts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        if not all(isinstance(p, ast.Name) for p in parts):
            return set()  # an attribute or item assignment is not a definition
        names |= {p.id for p in parts}
    return names


def _definitions(nb, stop: int | None) -> list[tuple[int, ast.stmt, set[str]]]:
    """Every top-level definition of the code cells before ``stop``, in order, with its names."""
    found = []
    for i, cell in enumerate(nb.cells[:stop]):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_python_source(_source(cell)))
        except SyntaxError:
            continue  # a cell that does not parse defines nothing
        for node in tree.body:
            names = _bound(node)
            if names:
                found.append((i, node, names))
    return found


def student_definitions(nb, needs, stop: int | None = None) -> tuple[str, list[str]]:
    """``(source, missing)``: the definitions of ``needs`` in ``nb`` (before cell ``stop``).

    Each name is taken from its last definition (``def``, ``class``, ``import``, or an
    assignment to plain names) before ``stop``; the names such a definition reads -- when
    it runs (an assignment's value, a decorator) or later (a function's body) -- are taken
    the same way, recursively.  ``missing`` lists the names of ``needs`` that no definition
    binds.  The source keeps the notebook's order and nothing but those definitions.
    """
    defs = _definitions(nb, stop)
    chosen: set[int] = set()
    missing = []

    def last_before(name: str, limit: int) -> int | None:
        for k in range(limit - 1, -1, -1):
            if name in defs[k][2]:
                return k
        return None

    todo = [(name, len(defs), True) for name in needs]
    seen = set()
    while todo:
        name, limit, direct = todo.pop()
        if (name, limit) in seen:
            continue
        seen.add((name, limit))
        k = last_before(name, limit)
        if k is None:
            if direct:
                missing.append(name)
            continue
        if k in chosen:
            continue
        chosen.add(k)
        at_once, later = _needs(defs[k][1])
        todo += [(n, k, False) for n in at_once]
        todo += [(n, len(defs), False) for n in later - defs[k][2]]
    body = [defs[k][1] for k in sorted(chosen)]
    return ast.unparse(ast.Module(body=body, type_ignores=[])) + "\n", sorted(set(missing))


# --------------------------------------------------------------------------------------------
# The book's canonical checks
# --------------------------------------------------------------------------------------------


def parse_check_cell(source: str):
    """``(function, args, kwargs, needs)`` of a check cell ending ``exercises.check_x(...)``."""
    tree = ast.parse(_python_source(source))
    last = tree.body[-1] if tree.body else None
    call = last.value if isinstance(last, ast.Expr) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr.startswith("check_")):
        raise ValueError("a check cell must end with the call exercises.check_*(...)")
    at_once, later = _needs(tree)
    needs = sorted((at_once | later) - {"exercises", "coursepkg"}
                   - {n for node in tree.body for n in _bound(node)})
    args = tuple(ast.unparse(a) for a in call.args)
    kwargs = tuple((k.arg, ast.unparse(k.value)) for k in call.keywords if k.arg)
    return call.func.attr, args, kwargs, tuple(needs)


def book_root(path: Path | None = None) -> Path:
    """The course repository holding the chapters (``_toc.yml`` and ``book/``).

    ``path`` (a repository root, or its ``book`` folder) or, by default, the clone this
    package was installed from (``pip install -e .``).
    """
    candidates = [Path(path)] if path is not None else [Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        for root in (candidate, candidate.parent):
            if (root / "_toc.yml").is_file() and (root / "book").is_dir():
                return root
    raise FileNotFoundError(
        f"no course repository (with _toc.yml and book/) at {candidates[0]}: pass the clone "
        "of the course holding the book's chapters with --book")


def canonical_checks(root: Path | None = None) -> dict[str, list[CanonicalCheck]]:
    """``{chapter stem: its check cells}`` read from the book's chapter notebooks."""
    import nbformat

    from .. import teaching

    root = book_root(root)
    checks: dict[str, list[CanonicalCheck]] = {}
    for rel in teaching.chapter_notebooks(root):
        nb = nbformat.read(root / rel, as_version=4)
        names = _exercise_names(nb)
        for i, cell in enumerate(nb.cells):
            if is_check_cell(cell) and not teaching.is_solution(cell):
                function, args, kwargs, needs = parse_check_cell(_source(cell))
                checks.setdefault(rel.stem, []).append(CanonicalCheck(
                    rel.stem, i, names[i], _source(cell), function, args, kwargs, needs))
    return checks


def chapter_of(nb, path: Path, checks: dict[str, list[CanonicalCheck]]) -> str | None:
    """The chapter a student's notebook belongs to (see the module's doc), or None."""
    for cell in nb.cells[:2]:
        if cell.get("cell_type") == "markdown":
            found = _STUDENT_NOTE_RE.search(_source(cell))
            if found and found.group(1) in checks:
                return found.group(1)
    for stem in sorted(checks, key=len, reverse=True):
        if stem in Path(path).name:
            return stem
    code = "\n".join(_source(c) for c in nb.cells if c.get("cell_type") == "code")
    calls = {stem: sum(f"{c.function}(" in code for c in cs) for stem, cs in checks.items()}
    best = max(calls, key=calls.get, default=None)
    return best if best is not None and calls[best] > 0 else None


def _student_check_cell(nb, check: CanonicalCheck) -> int | None:
    """The index of the student's cell that calls ``check.function``, if any."""
    calls = [i for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"
             and f"{check.function}(" in _source(c)]
    tagged = [i for i in calls if is_check_cell(nb.cells[i])]
    found = tagged or calls
    return found[0] if found else None


# --------------------------------------------------------------------------------------------
# Running a check in a fresh process
# --------------------------------------------------------------------------------------------


def run_check(check: CanonicalCheck, definitions: str, *, timeout: float = DEFAULT_TIMEOUT,
              python: str | None = None) -> tuple[str, str, float]:
    """``(status, message, seconds)`` of ``check`` run on ``definitions`` in a fresh process."""
    nonce = secrets.token_hex(16)
    request = {"nonce": nonce, "definitions": definitions, "function": check.function,
               "args": list(check.args), "kwargs": dict(check.kwargs)}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coursepkg-grade-") as folder:
        try:
            done = subprocess.run([python or sys.executable, "-m", "coursepkg.exercises._runner"],
                                  input=json.dumps(request), capture_output=True, text=True,
                                  cwd=folder, timeout=timeout,
                                  env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        except subprocess.TimeoutExpired:
            return ("error", f"the check did not finish within {timeout:g} s (an endless loop? "
                             "or zoo models still to train: raise --timeout)",
                    time.perf_counter() - start)
    seconds = time.perf_counter() - start
    for line in done.stdout.splitlines():
        if line.startswith(nonce):
            answer = json.loads(line[len(nonce):])
            return answer["status"], answer["message"], seconds
    tail = " ".join(done.stderr.strip().splitlines()[-2:])[-300:]
    return ("error", f"the check's process ended without a verdict (exit status "
                     f"{done.returncode}){': ' + tail if tail else ''}", seconds)


def grade_notebook(path: Path, *, run: bool = True, timeout: float = DEFAULT_TIMEOUT,
                   book: Path | None = None, chapter: str | None = None,
                   checks: dict[str, list[CanonicalCheck]] | None = None) -> list[Grade]:
    """The grades of every canonical check of the chapter of the notebook at ``path``.

    ``run=False`` reads the notebook's own check-cell outputs instead (``--no-execute``).
    """
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such notebook")
    nb = nbformat.read(path, as_version=4)
    if not run:
        names = _exercise_names(nb)
        return [Grade(path.name, i, names[i], *verdict(cell), method="self-reported")
                for i, cell in enumerate(nb.cells) if is_check_cell(cell)]
    checks = canonical_checks(book) if checks is None else checks
    stem = chapter or chapter_of(nb, path, checks)
    if stem is None or stem not in checks:
        raise ValueError(f"{path}: cannot tell which chapter this notebook is (pass --chapter "
                         f"with one of {', '.join(sorted(checks))})")
    grades = []
    for check in checks[stem]:
        cell = _student_check_cell(nb, check)
        source, missing = student_definitions(nb, check.needs, stop=cell)
        if missing:
            grades.append(Grade(path.name, cell, check.exercise, "error",
                                f"the notebook defines no {', '.join(missing)} (before its "
                                "check cell): write it in the exercise's solution cell",
                                stem, check.function))
            continue
        status, message, seconds = run_check(check, source, timeout=timeout)
        grades.append(Grade(path.name, cell, check.exercise, status, message, stem,
                            check.function, round(seconds, 1)))
    return grades


def write_csv(grades: list[Grade], target) -> None:
    """One row per grade, with the columns of ``CSV_COLUMNS``."""
    writer = csv.writer(target)
    writer.writerow(CSV_COLUMNS)
    for g in grades:
        writer.writerow([g.notebook, "" if g.cell is None else g.cell, g.exercise, g.status,
                         g.message, g.chapter, g.check, g.seconds, g.method])


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module's doc); exit status 2 when a notebook could not be
    graded at all."""
    parser = argparse.ArgumentParser(
        prog="python -m coursepkg.exercises.grade",
        description="Run the book's own checks on the functions of students' notebooks, each "
                    "in a fresh process, and report each: pass, not yet, error.")
    parser.add_argument("notebooks", nargs="+", type=Path, metavar="STUDENT.ipynb")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="also write one row per notebook and check to FILE")
    parser.add_argument("--book", type=Path, default=None, metavar="DIR",
                        help="the course's repository holding the canonical chapters "
                             "(default: the clone coursepkg is installed from)")
    parser.add_argument("--chapter", default=None, metavar="STEM",
                        help="grade every notebook as this chapter, e.g. 01_threat_models")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per check ({DEFAULT_TIMEOUT})")
    parser.add_argument("--no-execute", action="store_true",
                        help="read the check cells' outputs in the notebooks instead "
                             "(self-reported: never for marks)")
    args = parser.parse_args(argv)

    checks = None
    if not args.no_execute:
        try:
            checks = canonical_checks(args.book)
        except (FileNotFoundError, ValueError) as error:
            print(f"cannot read the book's checks: {error}", file=sys.stderr)
            return 2
    all_grades: list[Grade] = []
    failures = 0
    for path in args.notebooks:
        try:  # one unreadable notebook must not stop a class's grading
            grades = grade_notebook(path, run=not args.no_execute, timeout=args.timeout,
                                    chapter=args.chapter, checks=checks)
        except Exception as error:  # noqa: BLE001
            print(f"{path}: could not grade ({type(error).__name__}: {error})", file=sys.stderr)
            failures += 1
            continue
        passed = sum(g.status == "pass" for g in grades)
        print(f"{path}: {passed}/{len(grades)} checks passed")
        if not grades:
            print("  no check to grade: is this a student copy of a chapter?")
        for g in grades:
            where = "   -" if g.cell is None else f"{g.cell:4d}"
            print(f"  {g.status:8s} cell {where}  {g.exercise}: {g.message}")
        all_grades.extend(grades)
    if args.csv is not None:
        with args.csv.open("w", newline="", encoding="utf-8") as f:
            write_csv(all_grades, f)
        print(f"wrote {args.csv}")
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
