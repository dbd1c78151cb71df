"""The check of chapter 8's coding exercise (the certified radius from counts): the
closed form passes, and the usual mistakes -- the point estimate, a two-sided bound, no
abstention -- fail with a hint instead of an exception."""

from __future__ import annotations

import math

import pytest
from scipy.stats import beta, norm

from coursepkg.exercises import check_certified_radius
from exercise_verdicts import assert_fails


def radius(n_a, n, sigma, alpha, *, level=None, abstain=True, point=False):
    """The certified radius with optional mistakes, for the tests."""
    if point:
        p = n_a / n
    else:
        p = 0.0 if n_a == 0 else beta.ppf(alpha if level is None else level,
                                           n_a, n - n_a + 1)
    if abstain and p <= 0.5:
        return 0.0
    return sigma * norm.ppf(min(p, 1 - 1e-16)) if p > 0 else -math.inf


def test_the_closed_form_passes():
    verdict = check_certified_radius(radius)
    assert verdict.passed, verdict
    assert "abstentions" in verdict.message


def test_a_float32_answer_passes():
    import numpy as np

    assert check_certified_radius(lambda *a: np.float32(radius(*a))).passed


@pytest.mark.parametrize("wrong,words", [
    (lambda n_a, n, s, a: radius(n_a, n, s, a, point=True), ("larger", "estimate")),
    (lambda n_a, n, s, a: radius(n_a, n, s, a, level=a / 2), ("smaller",)),
    (lambda n_a, n, s, a: radius(n_a, n, s, a, level=2 * a), ("larger",)),
    (lambda n_a, n, s, a: radius(n_a, n, s, a, abstain=False), ("negative",)),
    (lambda n_a, n, s, a: radius(n_a, n, s, a) * (1 + 1e-3), ("larger",)),
    (lambda n_a, n, s, a: radius(n_a, n, s, a) / s, ("larger",)),  # sigma forgotten
])
def test_close_but_wrong_radii_fail_with_a_hint(wrong, words):
    assert_fails(check_certified_radius(wrong), *words)


def test_bad_answers_fail_with_a_hint():
    assert_fails(check_certified_radius(lambda *a: "0.5"), "one number")
    assert_fails(check_certified_radius(lambda *a: (0.5, 1)), "one number")
    assert_fails(check_certified_radius(lambda *a: math.nan), "NaN")

    def stub(n_a, n, sigma, alpha):
        raise NotImplementedError

    assert_fails(check_certified_radius(stub), "NotImplementedError")
    assert_fails(check_certified_radius(3.0), "expected a function")
