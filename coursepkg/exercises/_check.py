"""What every exercise check returns: a pass, or a hint that does not give the answer away."""

from __future__ import annotations

from dataclasses import dataclass

PASS_MARK = "✓ Correct"
FAIL_MARK = "✗ Not yet"


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a ``check_*`` function of :mod:`coursepkg.exercises`.

    ``passed`` is the verdict; ``message`` says what was measured (on a pass) or gives a hint
    (on a failure) -- never the solution.  In a notebook the result shows as one line.
    """

    exercise: str
    passed: bool
    message: str

    def __str__(self) -> str:
        mark = PASS_MARK if self.passed else FAIL_MARK
        return f"{mark} ({self.exercise}): {self.message}"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return self.passed


def passed(exercise: str, message: str) -> CheckResult:
    """A passing verdict for ``exercise``, with what was measured."""
    return CheckResult(exercise, True, message)


def hint(exercise: str, message: str) -> CheckResult:
    """A failing verdict for ``exercise``, with a hint."""
    return CheckResult(exercise, False, message)


def call_student(exercise: str, function, *args, **kwargs):
    """Call the student's ``function``; return ``(value, None)`` or ``(None, CheckResult)``.

    A student function that is missing, not callable, unfinished (``NotImplementedError``)
    or raising gets a failing verdict naming the problem, instead of a traceback.
    """
    if function is None or not callable(function):
        return None, hint(exercise, f"expected a function, got {type(function).__name__}: "
                                    "define it in the cell above and run that cell first")
    try:
        return function(*args, **kwargs), None
    except NotImplementedError:
        return None, hint(exercise, "the function is not written yet (it raises "
                                    "NotImplementedError): replace the stub's body")
    except Exception as error:  # the student's code failed: say how, keep the notebook alive
        return None, hint(exercise, f"the function raised {type(error).__name__}: {error}")
