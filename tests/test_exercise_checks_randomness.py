"""The check of chapter 5's coding exercise (the EOT gradient): the reference and an
equivalent loop pass, and answers that are wrong -- some only a little -- fail with a hint
instead of an exception."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursepkg.adaptive import EOT
from coursepkg.exercises import check_eot_gradient
from exercise_verdicts import assert_fails

pytestmark = pytest.mark.slow  # loads the zoo's baseline (trained once, then cached)


def eot_gradient(model, x, y, n, *, average_logits=True, reduction="sum"):
    """The EOT gradient with optional mistakes, for the tests."""
    x = x.detach().clone().requires_grad_(True)
    copies = x.repeat(n, 1, 1, 1)
    logits = model(copies).view(n, len(x), -1)
    if average_logits:
        loss = F.cross_entropy(logits.mean(0), y, reduction=reduction)
    else:  # the mean of the draws' losses: another estimator, not the chapter's
        loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(n), reduction=reduction) / n
    return torch.autograd.grad(loss, x)[0]


def test_the_reference_passes():
    verdict = check_eot_gradient(eot_gradient)
    assert verdict.passed, verdict
    assert "mean cosine" in verdict.message


def test_the_package_eot_and_a_loop_over_draws_pass():
    def through_eot(model, x, y, n):
        x = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(EOT(model, n)(x), y, reduction="sum")
        return torch.autograd.grad(loss, x)[0]

    def loop(model, x, y, n):
        x = x.detach().clone().requires_grad_(True)
        logits = sum(model(x) for _ in range(n)) / n
        return torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)[0]

    assert check_eot_gradient(through_eot).passed
    assert check_eot_gradient(loop).passed


@pytest.mark.parametrize("wrong,words", [
    (lambda m, x, y, n: eot_gradient(m, x, y, 1), ("cosine", "n draws")),
    (lambda m, x, y, n: eot_gradient(m, x, y, n, average_logits=False), ("cosine",)),
    (lambda m, x, y, n: eot_gradient(m, x, y, n).sign(), ("cosine",)),
    (lambda m, x, y, n: eot_gradient(m, x, y, n, reduction="mean"), ("size", "reduction")),
    (lambda m, x, y, n: eot_gradient(m, x, y, n) * n, ("size",)),
])
def test_close_but_wrong_gradients_fail_with_a_hint(wrong, words):
    assert_fails(check_eot_gradient(wrong), *words)


def test_bad_answers_fail_with_a_hint():
    def in_place(model, x, y, n):
        grad = eot_gradient(model, x, y, n)
        x.add_(1.0)
        return grad

    assert_fails(check_eot_gradient(in_place), "copy")
    assert_fails(check_eot_gradient(lambda m, x, y, n: eot_gradient(m, x, y, n)[0]),
                 "shape")
    assert_fails(check_eot_gradient(lambda m, x, y, n: 0.0), "tensor")
    assert_fails(check_eot_gradient(lambda m, x, y, n: torch.zeros_like(x)), "zero")
    assert_fails(check_eot_gradient(lambda m, x, y, n: torch.full_like(x, float("nan"))),
                 "NaN")


def test_a_stub_or_a_non_function_fails_with_a_hint():
    def stub(model, x, y, n):
        raise NotImplementedError

    assert_fails(check_eot_gradient(stub), "NotImplementedError")
    assert_fails(check_eot_gradient("my_eot_gradient"), "expected a function")
