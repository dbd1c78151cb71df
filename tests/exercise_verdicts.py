"""What the tests of the exercise checks assert about a verdict (shared by
``tests/test_exercise_checks_*.py``)."""

from __future__ import annotations

from coursepkg.exercises import CheckResult


def assert_fails(verdict, *words: str) -> None:
    """``verdict`` is a failing :class:`~coursepkg.exercises.CheckResult` whose hint (more
    than a few words) mentions each of ``words``."""
    assert isinstance(verdict, CheckResult) and not verdict.passed, verdict
    assert len(verdict.message) > 20, f"a failure must come with a hint: {verdict}"
    for word in words:
        assert word in verdict.message, verdict
