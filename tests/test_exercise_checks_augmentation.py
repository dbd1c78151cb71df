"""The check of chapter 2's coding exercise (TRADES' objective): the reference and an
equivalent formula pass; every close misreading of the objective fails with a hint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursepkg.defences import augmentation as aug
from coursepkg.exercises import check_trades_loss
from exercise_verdicts import assert_fails

pytestmark = pytest.mark.slow  # loads the zoo's TRADES model (trained once, then cached)


def kl(log_q, p, reduction="batchmean"):
    return F.kl_div(log_q, p, reduction=reduction)


def trades(model, x, x_adv, y, beta, *, reverse=False, reduction="batchmean",
           adversarial_ce=False, detach=False):
    """TRADES' objective with optional mistakes, for the tests."""
    logits, logits_adv = model(x), model(x_adv)
    p = F.softmax(logits, 1).detach() if detach else F.softmax(logits, 1)
    term = (kl(F.log_softmax(logits, 1), F.softmax(logits_adv, 1), reduction) if reverse
            else kl(F.log_softmax(logits_adv, 1), p, reduction))
    ce = F.cross_entropy(logits_adv if adversarial_ce else logits, y)
    return ce + beta * term


def test_the_package_objective_passes():
    verdict = check_trades_loss(
        lambda m, x, x_adv, y, beta: aug.trades_objective(m, x, x_adv, y, beta=beta))
    assert verdict.passed, verdict


def test_an_equivalent_formula_passes():
    def explicit(model, x, x_adv, y, beta):
        p, q = F.softmax(model(x), 1), F.softmax(model(x_adv), 1)
        ce = -p.gather(1, y[:, None]).log().sum() / len(y)
        return ce + beta * (p * (p.log() - q.log())).sum(1).mean()

    assert check_trades_loss(explicit).passed
    assert check_trades_loss(trades).passed


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("mistake,words", [
    ({"reverse": True}, ("KL term",)),  # the closest: half a per cent at beta = 1
    ({"reduction": "mean"}, ("KL term",)),
    ({"reduction": "sum"}, ("KL term",)),
    ({"adversarial_ce": True}, ("cross-entropy",)),
    ({"detach": True}, ("gradient", "detached")),
])
def test_a_misread_objective_fails_with_its_hint(mistake, words):
    verdict = check_trades_loss(
        lambda m, x, x_adv, y, beta: trades(m, x, x_adv, y, beta, **mistake))
    assert_fails(verdict, *words)


def test_a_loss_without_its_kl_term_fails_after_beta_zero():
    assert_fails(check_trades_loss(lambda m, x, x_adv, y, beta: trades(m, x, x_adv, y, 0.0)),
                 "beta = 1.0")


@pytest.mark.parametrize("function,words", [
    (lambda m, x, x_adv, y, beta: trades(m, x, x_adv, y, beta).item(), ("tensor",)),
    (lambda m, x, x_adv, y, beta: F.cross_entropy(m(x), y, reduction="none"), ("scalar",)),
    (lambda m, x, x_adv, y, beta: trades(m, x, x_adv, y, beta).detach(), ("no gradient",)),
    (lambda m, x, x_adv, y, beta: trades(m, x, x_adv, y, beta) * float("inf"),
     ("numerically",)),
    (lambda m, x, y, beta: None, ("raised TypeError",)),
    (42, ("expected a function",)),
])
def test_bad_answers_get_a_hint_not_an_exception(function, words):
    assert_fails(check_trades_loss(function), *words)


def test_the_stub_fails_with_a_hint():
    def my_trades_loss(model, x, x_adv, y, beta):
        raise NotImplementedError

    assert_fails(check_trades_loss(my_trades_loss), "not written yet")


def test_the_check_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    check_trades_loss(lambda m, x, x_adv, y, beta: aug.trades_objective(m, x, x_adv, y,
                                                                         beta=beta))
    assert torch.equal(torch.get_rng_state(), state)
