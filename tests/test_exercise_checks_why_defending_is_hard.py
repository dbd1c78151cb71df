"""coursepkg.exercises.why_defending_is_hard: the check of chapter 7's transfer exercise."""

from __future__ import annotations

import pytest

from coursepkg import attacks, evaluate, zoo
from coursepkg.exercises import check_transfer_success
from coursepkg.exercises.why_defending_is_hard import TRANSFER_PAIR

pytestmark = pytest.mark.skipif(not all(zoo.cached(r) for r in TRANSFER_PAIR),
                                reason="the zoo's baseline and distilled network are not cached")


def correct(source, target, x, y, eps):
    x_adv = attacks.pgd(source, x, y, eps=eps)
    right = evaluate.predictions(target, x) == y
    fooled = evaluate.predictions(target, x_adv) != y
    return float((right & fooled).sum() / right.sum())


def test_a_correct_function_passes():
    verdict = check_transfer_success(correct)
    assert verdict.passed, verdict


def test_counting_every_image_gets_the_denominator_hint():
    def over_all(source, target, x, y, eps):
        x_adv = attacks.pgd(source, x, y, eps=eps)
        right = evaluate.predictions(target, x) == y
        fooled = evaluate.predictions(target, x_adv) != y
        return float((right & fooled).float().mean())
    verdict = check_transfer_success(over_all)
    assert not verdict.passed and "count only" in verdict.message


def test_returning_accuracy_gets_a_hint():
    def accuracy(source, target, x, y, eps):
        return 1.0 - correct(source, target, x, y, eps)
    verdict = check_transfer_success(accuracy)
    assert not verdict.passed and "still gets right" in verdict.message


def test_a_white_box_attack_on_the_target_is_not_transfer():
    def white_box(source, target, x, y, eps):
        return correct(target, target, x, y, eps)
    assert not check_transfer_success(white_box).passed


@pytest.mark.parametrize("bad", [None, 3, lambda *a: "0.5", lambda *a: 1.5,
                                 lambda *a: float("nan")])
def test_bad_answers_get_a_hint_not_a_traceback(bad):
    verdict = check_transfer_success(bad)
    assert not verdict.passed and len(verdict.message) > 20


def test_an_unfinished_stub_gets_a_hint():
    def stub(source, target, x, y, eps):
        raise NotImplementedError
    verdict = check_transfer_success(stub)
    assert not verdict.passed and "not written yet" in verdict.message
