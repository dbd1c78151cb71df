"""The check of chapter 1's coding exercise (FGSM from scratch): the reference passes, an
equivalent implementation passes, and answers that are wrong -- some only a little -- fail
with a hint instead of an exception."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursepkg import attacks
from coursepkg.exercises import check_fgsm
from exercise_verdicts import assert_fails

pytestmark = pytest.mark.slow  # loads the zoo's baseline (trained once, then cached)


def step(model, x, y, eps, *, direction=1.0, clip=True, use_sign=True):
    """FGSM with optional mistakes, for the tests."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    move = grad.sign() if use_sign else grad / grad.abs().max()
    x_adv = x.detach() + direction * eps * move
    return x_adv.clamp(0.0, 1.0) if clip else x_adv


def test_the_package_fgsm_passes():
    verdict = check_fgsm(lambda m, x, y, eps: attacks.fgsm(m, x, y, eps=eps))
    assert verdict.passed, verdict
    assert "100% of the images equal" in verdict.message


def test_an_image_by_image_fgsm_passes_despite_float_ties():
    def one_by_one(model, x, y, eps):
        return torch.cat([step(model, x[i:i + 1], y[i:i + 1], eps)
                          for i in range(len(x))])

    assert check_fgsm(one_by_one).passed


def test_aiming_at_the_predicted_labels_fails():
    # the same as FGSM on every image the model gets right: about a tenth differ
    def predicted(model, x, y, eps):
        with torch.no_grad():
            guess = model(x).argmax(1)
        return step(model, x, guess, eps)

    assert_fails(check_fgsm(predicted), "true label")


@pytest.mark.parametrize("mistake,words", [
    ({"clip": False}, ("box [0, 1]",)),
    ({"direction": -1.0}, ("go up",)),
    ({"use_sign": False}, ("whole budget",)),
])
def test_a_wrong_step_fails_with_its_hint(mistake, words):
    assert_fails(check_fgsm(lambda m, x, y, eps: step(m, x, y, eps, **mistake)), *words)


def test_a_budget_written_into_the_function_fails():
    assert_fails(check_fgsm(lambda m, x, y, eps: step(m, x, y, 0.1)), "L∞ ball")


def test_random_signs_fail():
    def noise(model, x, y, eps):
        return (x + eps * torch.randn_like(x).sign()).clamp(0, 1)

    assert_fails(check_fgsm(noise))


def test_changing_the_images_in_place_fails():
    def in_place(model, x, y, eps):
        x_adv = step(model, x, y, eps)
        x.copy_(x_adv)
        return x_adv

    assert_fails(check_fgsm(in_place), "in place")


@pytest.mark.parametrize("function,words", [
    (None, ("expected a function",)),
    ("my_fgsm", ("expected a function",)),
    (lambda m, x, y, eps: x.clone(), ("no pixel moved",)),
    (lambda m, x, y, eps: x[:10].clone(), ("shape",)),
    (lambda m, x, y, eps: x.tolist(), ("tensor",)),
    (lambda m, x, y, eps: x * float("nan"), ("NaN",)),
    (lambda m, x, y: x, ("raised TypeError",)),
])
def test_bad_answers_get_a_hint_not_an_exception(function, words):
    assert_fails(check_fgsm(function), *words)


def test_the_stub_fails_with_a_hint():
    def my_fgsm(model, x, y, eps):
        raise NotImplementedError

    assert_fails(check_fgsm(my_fgsm), "not written yet")


def test_the_check_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    check_fgsm(lambda m, x, y, eps: attacks.fgsm(m, x, y, eps=eps))
    assert torch.equal(torch.get_rng_state(), state)
