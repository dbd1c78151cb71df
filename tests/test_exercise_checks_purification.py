"""The check of chapter 3's coding exercise (PGD through BPDA on bit-depth reduction): the
package's BPDA attack passes, a hand-written straight-through PGD passes, and attacks that
are wrong -- some only a little weaker -- fail with a hint instead of an exception."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursepkg import attacks
from coursepkg.adaptive import BPDA
from coursepkg.defences.purification import Purified
from coursepkg.exercises import check_bpda_pgd
from exercise_verdicts import assert_fails

pytestmark = pytest.mark.slow  # loads the zoo's baseline (trained once, then cached)


def bpda_pgd(classifier, purifier, x, y, eps, **kwargs):
    return attacks.pgd(Purified(BPDA(purifier), classifier), x, y, eps=eps, **kwargs)


def straight_through_pgd(classifier, purifier, x, y, eps, steps=20):
    """PGD with the straight-through trick, one run, written out."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        z = x_adv + (purifier(x_adv) - x_adv).detach()
        (grad,) = torch.autograd.grad(F.cross_entropy(classifier(z), y), x_adv)
        x_adv = x_adv.detach() + 2.5 * eps / steps * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


def test_the_package_bpda_attack_passes():
    verdict = check_bpda_pgd(bpda_pgd)
    assert verdict.passed, verdict
    assert "64 images" in verdict.message


def test_a_hand_written_straight_through_pgd_passes():
    assert check_bpda_pgd(straight_through_pgd).passed


def test_white_box_pgd_on_the_zero_gradient_fails():
    def naive(classifier, purifier, x, y, eps):
        return attacks.pgd(Purified(purifier, classifier), x, y, eps=eps)

    assert_fails(check_bpda_pgd(naive), "barely changes", "backward pass")


def test_one_step_through_bpda_is_close_but_too_weak():
    def one_step(classifier, purifier, x, y, eps):
        return attacks.fgsm(Purified(BPDA(purifier), classifier), x, y, eps=eps)

    assert_fails(check_bpda_pgd(one_step), "too weak")


def test_leaving_the_budget_fails():
    def too_far(classifier, purifier, x, y, eps):
        return (bpda_pgd(classifier, purifier, x, y, 1.5 * eps)).clamp(0, 1)

    assert_fails(check_bpda_pgd(too_far), "L∞ ball")


def test_a_budget_exceeded_by_a_hair_fails():
    def hair(classifier, purifier, x, y, eps):
        x_adv = bpda_pgd(classifier, purifier, x, y, eps)
        return torch.where(x < 0.5, x_adv + 1e-4, x_adv - 1e-4).clamp(0, 1)

    assert_fails(check_bpda_pgd(hair), "eps")


def test_leaving_the_box_fails():
    def unclipped(classifier, purifier, x, y, eps):
        return bpda_pgd(classifier, purifier, x, y, eps) - eps * (x == 0).float()

    assert_fails(check_bpda_pgd(unclipped), "[0, 1]")


@pytest.mark.parametrize("answer,words", [
    (None, ("expected a function",)),
    ("my_bpda_pgd", ("expected a function",)),
])
def test_not_a_function_gets_a_hint(answer, words):
    assert_fails(check_bpda_pgd(answer), *words)


def test_the_untouched_stub_and_a_crash_get_hints():
    def stub(classifier, purifier, x, y, eps):
        raise NotImplementedError

    def crash(classifier, purifier, x, y, eps):
        return x[:, :, :, 0] + y

    assert_fails(check_bpda_pgd(stub), "NotImplementedError")
    assert_fails(check_bpda_pgd(crash), "raised")


@pytest.mark.parametrize("returned,words", [
    (lambda x: x[:10], ("shape",)),
    (lambda x: x.numpy(), ("tensor",)),
    (lambda x: x * float("nan"), ("NaN",)),
])
def test_a_malformed_result_gets_a_hint(returned, words):
    assert_fails(check_bpda_pgd(lambda c, p, x, y, eps: returned(x)), *words)
