"""coursepkg.exercises.why_defending_is_hard: the check of chapter 7's transfer exercise."""

from __future__ import annotations

import pytest
import torch

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


# The tolerance follows from PGD's random start (rate_tolerance): a correct function passes
# whatever its random numbers, a weaker attack does not.

def test_a_correct_function_with_another_seed_passes():
    def other_seed(source, target, x, y, eps):
        torch.manual_seed(6)  # the seed of the quick profile's lowest rate in eight runs
        return correct(source, target, x, y, eps)
    verdict = check_transfer_success(other_seed)
    assert verdict.passed, verdict


def test_a_correct_function_in_mini_batches_passes():
    def batched(source, target, x, y, eps):
        x_adv = torch.cat([attacks.pgd(source, xb, yb, eps=eps)
                           for xb, yb in zip(x.split(32), y.split(32))])
        right = evaluate.predictions(target, x) == y
        fooled = evaluate.predictions(target, x_adv) != y
        return float((right & fooled).sum() / right.sum())
    verdict = check_transfer_success(batched)
    assert verdict.passed, verdict


def test_a_weaker_attack_close_to_the_rate_fails():
    def smaller_budget(source, target, x, y, eps):
        return correct(source, target, x, y, 0.8 * eps)
    verdict = check_transfer_success(smaller_budget)  # about 7 points below the reference
    assert not verdict.passed, verdict


def test_the_tolerance_grows_with_the_disagreements_and_shrinks_with_the_images():
    from coursepkg.exercises.why_defending_is_hard import rate_tolerance
    assert rate_tolerance(0, 163) < rate_tolerance(2, 163) < rate_tolerance(5, 163) < 0.06
    assert rate_tolerance(2, 400) == pytest.approx(rate_tolerance(2, 163) * 163 / 400)
    assert 0.03 < rate_tolerance(0, 163) < 0.04  # 3 sd of E[D] <= 4.6 disagreements
