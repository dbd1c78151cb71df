"""The check of chapter 4's coding exercise (the input-gradient penalty, dual-norm form): the
package's penalty passes, an image-by-image one passes, and penalties that are wrong -- some
only a little -- fail with a hint instead of an exception."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursepkg.defences.gradient_regularisation import input_gradient_penalty
from coursepkg.exercises import check_input_gradient_penalty
from exercise_verdicts import assert_fails

pytestmark = pytest.mark.slow  # loads the zoo's baseline (trained once, then cached)


def penalty(model, x, y, *, p=1, create_graph=True, reduction="sum"):
    """The penalty with optional mistakes, for the tests."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction=reduction)
    (grad,) = torch.autograd.grad(loss, x, create_graph=create_graph)
    return grad.flatten(1).norm(p=p, dim=1)


def test_the_package_penalty_passes():
    verdict = check_input_gradient_penalty(input_gradient_penalty)
    assert verdict.passed, verdict
    assert "16 images" in verdict.message


def test_an_image_by_image_penalty_passes():
    def one_by_one(model, x, y):
        return torch.cat([penalty(model, x[i:i + 1], y[i:i + 1]) for i in range(len(x))])

    assert check_input_gradient_penalty(one_by_one).passed


@pytest.mark.parametrize("mistake", [
    {"p": 2},  # the L2 norm: the dual of an L2 threat, not of L-infinity
    {"reduction": "mean"},  # a batch-mean loss: every gradient divided by the batch size
])
def test_a_wrong_norm_or_reduction_fails(mistake):
    assert_fails(check_input_gradient_penalty(lambda m, x, y: penalty(m, x, y, **mistake)),
                 "differ from the reference")


def test_values_off_by_a_thousandth_fail():
    def close(model, x, y):
        return penalty(model, x, y) * 1.001

    assert_fails(check_input_gradient_penalty(close), "differ from the reference")


def test_a_signed_sum_instead_of_the_norm_fails():
    def signed(model, x, y):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x,
                                      create_graph=True)
        return grad.flatten(1).sum(1)

    assert_fails(check_input_gradient_penalty(signed), "differ from the reference")


def test_right_values_without_double_backpropagation_fail():
    assert_fails(check_input_gradient_penalty(
        lambda m, x, y: penalty(m, x, y, create_graph=False)), "differentiated")


def test_right_values_with_a_wrong_weight_gradient_fail():
    def wrong_graph(model, x, y):
        value = penalty(model, x, y)
        return value.detach() + 0.5 * (value - value.detach())  # half the true gradient

    assert_fails(check_input_gradient_penalty(wrong_graph), "gradient with respect to")


@pytest.mark.parametrize("answer", [None, 3, "my_input_gradient_penalty"])
def test_not_a_function_gets_a_hint(answer):
    assert_fails(check_input_gradient_penalty(answer), "expected a function")


def test_the_untouched_stub_gets_a_hint():
    def stub(model, x, y):
        raise NotImplementedError

    assert_fails(check_input_gradient_penalty(stub), "NotImplementedError")


@pytest.mark.parametrize("returned,words", [
    (lambda v: v.sum(), ("shape",)),
    (lambda v: v.tolist(), ("tensor",)),
    (lambda v: v * float("inf"), ("NaN or inf",)),
])
def test_a_malformed_result_gets_a_hint(returned, words):
    assert_fails(check_input_gradient_penalty(lambda m, x, y: returned(penalty(m, x, y))),
                 *words)
