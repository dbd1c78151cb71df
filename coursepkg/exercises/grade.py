"""Grade students' notebooks by their check cells: ``python -m coursepkg.exercises.grade``.

A checked exercise ends with a code cell tagged ``check`` that calls a ``check_*`` function of
:mod:`coursepkg.exercises` and shows its :class:`~coursepkg.exercises.CheckResult`:
``✓ Correct (...)`` or ``✗ Not yet (...): hint``.  This command executes each notebook it is
given (with nbclient, in the notebook's folder, errors allowed so that one broken cell does
not hide the other exercises) -- or, with ``--no-execute``, reads notebooks the students
already ran -- and prints, per check cell, one of:

* ``pass``: the cell printed ``✓ Correct``;
* ``not yet``: it printed ``✗ Not yet`` (the hint is reported);
* ``error``: the cell raised (e.g. the student's function is not defined);
* ``not run``: the cell has no output (only with ``--no-execute``).

Usage::

    python -m coursepkg.exercises.grade submissions/*.ipynb
    python -m coursepkg.exercises.grade --no-execute --csv grades.csv submissions/*.ipynb

The CSV has one row per notebook and check cell: ``notebook, cell, exercise, status,
message``.  Executing a chapter takes as long as the chapter (minutes on a CPU); the checks
themselves take seconds.  Run it only on notebooks you trust: it runs their code.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ._check import FAIL_MARK, PASS_MARK

CHECK_TAG = "check"
STATUSES = ("pass", "not yet", "error", "not run")
_EXERCISE_RE = re.compile(r"^\s*(?:#{1,6}\s*|\*\*)Exercise\s+(\d+)\s*\(([^\n]*?)\)\.?\*?\*?",
                          re.MULTILINE)


@dataclass(frozen=True)
class Grade:
    """The verdict of one check cell of one notebook."""

    notebook: str
    cell: int          # index of the check cell in the notebook
    exercise: str      # "Exercise 2 (a targeted attack)", or the cell index when unlabelled
    status: str        # one of STATUSES
    message: str


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def is_check_cell(cell) -> bool:
    """A code cell tagged ``check``."""
    return cell.get("cell_type") == "code" and CHECK_TAG in _tags(cell)


def _output_text(output) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    elif output.get("output_type") in ("execute_result", "display_data"):
        text = output.get("data", {}).get("text/plain", "")
    else:
        return ""
    return text if isinstance(text, str) else "".join(text)


def verdict(cell) -> tuple[str, str]:
    """``(status, message)`` of an executed check cell, from its outputs."""
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
            found = _EXERCISE_RE.findall(cell.source)
            if found:
                number, title = found[-1]
                current = f"Exercise {number} ({title.strip()})"
        elif is_check_cell(cell):
            names[i] = current or f"check cell {i}"
    return names


def execute(nb, path: Path, *, timeout: int = 1200, kernel_name: str | None = None):
    """Run every cell of ``nb`` (errors allowed) in ``path``'s folder; return ``nb``."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, allow_errors=True,
                            kernel_name=kernel_name or nb.metadata.get("kernelspec", {})
                            .get("name", "python3"),
                            resources={"metadata": {"path": str(Path(path).parent)}})
    client.execute()
    return nb


def grade_notebook(path: Path, *, run: bool = True, timeout: int = 1200,
                   kernel_name: str | None = None) -> list[Grade]:
    """The grades of every check cell of the notebook at ``path``."""
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such notebook")
    nb = nbformat.read(path, as_version=4)
    if run:
        execute(nb, path, timeout=timeout, kernel_name=kernel_name)
    names = _exercise_names(nb)
    grades = []
    for i, cell in enumerate(nb.cells):
        if is_check_cell(cell):
            status, message = verdict(cell)
            grades.append(Grade(path.name, i, names[i], status, message))
    return grades


def write_csv(grades: list[Grade], target) -> None:
    writer = csv.writer(target)
    writer.writerow(["notebook", "cell", "exercise", "status", "message"])
    for g in grades:
        writer.writerow([g.notebook, g.cell, g.exercise, g.status, g.message])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursepkg.exercises.grade",
        description="Execute students' notebooks and report each check cell: pass, not yet, "
                    "error.")
    parser.add_argument("notebooks", nargs="+", type=Path, metavar="STUDENT.ipynb")
    parser.add_argument("--no-execute", action="store_true",
                        help="read the outputs already in the notebooks instead of running them")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="also write one row per notebook and check cell to FILE")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell (1200)")
    parser.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
    args = parser.parse_args(argv)

    all_grades: list[Grade] = []
    failures = 0
    for path in args.notebooks:
        try:  # one unreadable notebook must not stop a class's grading
            grades = grade_notebook(path, run=not args.no_execute, timeout=args.timeout,
                                    kernel_name=args.kernel)
        except Exception as error:  # noqa: BLE001
            print(f"{path}: could not grade ({type(error).__name__}: {error})", file=sys.stderr)
            failures += 1
            continue
        passed = sum(g.status == "pass" for g in grades)
        print(f"{path}: {passed}/{len(grades)} checks passed")
        if not grades:
            print("  no cell tagged `check`: is this a student copy of a chapter?")
        for g in grades:
            print(f"  {g.status:8s} cell {g.cell:3d}  {g.exercise}: {g.message}")
        all_grades.extend(grades)
    if args.csv is not None:
        with args.csv.open("w", newline="", encoding="utf-8") as f:
            write_csv(all_grades, f)
        print(f"wrote {args.csv}")
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
