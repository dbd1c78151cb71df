"""Tests of chapter 5: SAP, random resizing and padding, Gaussian noise, and the k-draw evaluation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursepkg import evaluate
from coursepkg.defences import randomness as R
from coursepkg.models import SmallCNN


# ------------------------------------------------------------------------------------------
# Stochastic activation pruning
# ------------------------------------------------------------------------------------------
def test_sap_keeps_the_expectation_of_every_activation():
    torch.manual_seed(0)
    h = torch.rand(2, 40) * (torch.rand(2, 40) > 0.3)  # some exact zeros, as after a ReLU
    draws = 20_000
    out = R.stochastic_activation_pruning(h.repeat(draws, 1), samples=15).view(draws, 2, 40)
    mean, std = out.mean(0), out.std(0)
    # the Monte-Carlo mean is within 5 standard errors of h, element by element
    assert torch.all((mean - h).abs() <= 5 * std / draws ** 0.5 + 1e-6)


def test_sap_keeps_each_activation_with_the_stated_probability():
    torch.manual_seed(1)
    h = torch.rand(1, 30)
    draws, r = 20_000, 10
    kept = R.stochastic_activation_pruning(h.repeat(draws, 1), samples=r) != 0
    p = h / h.sum()
    expected = 1 - (1 - p) ** r
    assert torch.allclose(kept.float().mean(0), expected[0], atol=5 * (0.25 / draws) ** 0.5)
    assert torch.allclose(R.sap_keep_probability(p, r), expected, atol=1e-6)


def test_sap_keeps_at_most_r_activations_with_multinomial_sampling():
    torch.manual_seed(2)
    h = torch.rand(500, 100)
    kept = (R.stochastic_activation_pruning(h, samples=7) != 0).sum(1)
    assert kept.max() <= 7 and kept.min() >= 1


def test_sap_is_the_identity_when_r_is_large():
    torch.manual_seed(3)
    h = torch.rand(3, 20) + 0.05
    out = R.stochastic_activation_pruning(h, samples=200_000)
    assert torch.allclose(out, h, rtol=1e-5, atol=1e-6)


def test_sap_wrapper_is_the_classifier_when_the_fraction_is_large():
    torch.manual_seed(4)
    net = SmallCNN("fashion-mnist", width=2, hidden=8).eval()
    x = torch.rand(2, 1, 28, 28)
    sap = R.StochasticActivationPruning(net, fraction=2000.0, sampler="bernoulli")
    with torch.no_grad():
        assert torch.allclose(sap(x), net(x), rtol=1e-4, atol=1e-4)
    assert sap.layers == ("conv1", "conv2", "conv3", "fc1")


def test_sap_is_batched_one_draw_per_example_and_no_loop(monkeypatch):
    torch.manual_seed(5)
    calls = []
    real = torch.multinomial

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", counting)
    net = SmallCNN("fashion-mnist", width=2, hidden=8).eval()
    sap = R.StochasticActivationPruning(net, fraction=0.5)
    x = torch.rand(1, 1, 28, 28).repeat(64, 1, 1, 1)
    with torch.no_grad():
        out = sap(x)
    assert len(calls) == len(sap.layers)  # one batched draw per layer, not one per example
    assert all(shape[0] == 64 for shape in calls)
    assert len(torch.unique(out, dim=0)) > 1  # identical inputs, independent draws


def test_sap_handles_all_zero_rows_and_gives_finite_gradients():
    h = torch.zeros(2, 10)
    h[1, 3] = 2.0
    out = R.stochastic_activation_pruning(h, samples=3)
    assert torch.equal(out, h)
    torch.manual_seed(6)
    net = SmallCNN("fashion-mnist", width=2, hidden=8).eval()
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    (grad,) = torch.autograd.grad(R.StochasticActivationPruning(net, 0.3)(x).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_sap_rejects_bad_arguments():
    net = SmallCNN("fashion-mnist", width=2, hidden=8)
    with pytest.raises(ValueError, match="fraction"):
        R.StochasticActivationPruning(net, fraction=0)
    with pytest.raises(ValueError, match="unknown layers"):
        R.StochasticActivationPruning(net, layers=("conv9",))
    with pytest.raises(ValueError, match="logits"):
        R.StochasticActivationPruning(net, layers=("logits",))
    with pytest.raises(TypeError, match="sequence"):
        R.StochasticActivationPruning(net, layers="conv1")
    with pytest.raises(TypeError, match="BlockModel"):
        R.StochasticActivationPruning(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="sampler"):
        R.StochasticActivationPruning(net, sampler="poisson")
    with pytest.raises(ValueError, match="samples"):
        R.stochastic_activation_pruning(torch.rand(2, 3), samples=0)


# ------------------------------------------------------------------------------------------
# Random resizing and padding, Gaussian noise
# ------------------------------------------------------------------------------------------
def test_random_resize_pad_keeps_shape_and_range_and_is_fresh_every_call():
    torch.manual_seed(7)
    x = torch.rand(32, 1, 28, 28)
    a, b = (R.random_resize_pad(x, min_size=28, max_size=32, padded=32) for _ in range(2))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, b)  # fresh randomness on every call
    same = x[:1].repeat(32, 1, 1, 1)
    out = R.random_resize_pad(same, min_size=28, max_size=32, padded=32)
    assert len(torch.unique(out, dim=0)) > 1  # one draw per image


def test_random_resize_pad_without_room_is_the_identity():
    x = torch.rand(4, 1, 28, 28)
    out = R.random_resize_pad(x, min_size=28, max_size=29, padded=28)
    assert torch.allclose(out, x, atol=1e-5)  # float32 grid coordinates


def test_random_resize_pad_at_the_original_size_is_a_shift_into_the_canvas():
    torch.manual_seed(8)
    x = torch.rand(6, 1, 28, 28)
    out = R.random_resize_pad(x, min_size=28, max_size=29, padded=31, out_size=31)
    for i in range(len(x)):  # every result is x padded at one of the 16 integer offsets
        pads = [F.pad(x[i], (left, 3 - left, top, 3 - top)) for left in range(4) for top in range(4)]
        assert min(float((out[i] - p).abs().max()) for p in pads) < 1e-5


def test_random_resize_pad_model_is_differentiable_and_checks_arguments():
    torch.manual_seed(9)
    net = SmallCNN("fashion-mnist", width=2, hidden=8).eval()
    model = R.RandomResizePad(net)
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="min_size"):
        R.RandomResizePad(net, min_size=30, max_size=29)
    with pytest.raises(ValueError, match="mode"):
        R.RandomResizePad(net, mode="bicubic")
    with pytest.raises(ValueError, match="square"):
        R.random_resize_pad(torch.rand(2, 1, 28, 20), min_size=28, max_size=30, padded=30)


def test_gaussian_noise():
    net = SmallCNN("fashion-mnist", width=2, hidden=8).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(R.GaussianNoise(net, 0.0)(x), net(x))
        noisy = R.GaussianNoise(net, 0.3)
        assert not torch.equal(noisy(x), noisy(x))
    with pytest.raises(ValueError, match="sigma"):
        R.GaussianNoise(net, -1)


# ------------------------------------------------------------------------------------------
# Evaluating a randomised model over k draws
# ------------------------------------------------------------------------------------------
class Coin(nn.Module):
    """Predicts class 0 with probability x[..., 0, 0] (the first pixel), else class 1."""

    def __init__(self):
        super().__init__()
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        p = x[:, 0, 0, 0]
        zero = torch.rand(len(x), device=x.device) < p
        return F.one_hot(torch.where(zero, 0, 1), 2).float()


def coin_inputs(probabilities):
    x = torch.zeros(len(probabilities), 1, 2, 2)
    x[:, 0, 0, 0] = torch.as_tensor(probabilities)
    return x, torch.zeros(len(probabilities), dtype=torch.long)


def test_k_draw_rules_on_a_model_with_a_known_answer():
    torch.manual_seed(10)
    x, y = coin_inputs([1.0] * 10 + [0.0] * 10 + [0.8] * 20)
    result = evaluate.randomised_accuracy(Coin(), x, y, k=101)
    assert result.k == 101 and result.n == 40
    # p = 1: always right; p = 0: never; p = 0.8: the majority of 101 draws is right
    # (failure chance ~1e-10) and all 101 draws are right with chance 0.8^101 ~ 1e-10
    assert result.majority == pytest.approx(30 / 40)
    assert result.worst == pytest.approx(10 / 40)
    assert result.expected == pytest.approx((10 + 20 * 0.8) / 40, abs=0.02)
    interval = result.interval("majority")
    assert interval.lo <= result.majority <= interval.hi


def test_draws_run_as_batches():
    model = Coin()
    x, y = coin_inputs([0.5] * 30)
    correct = evaluate.draws_correct(model, x, y, k=10, batch_size=100)
    assert correct.shape == (10, 30) and correct.dtype == torch.bool
    assert model.forwards == 3  # 10 images x 10 draws a pass


def test_one_draw_overstates_robustness_when_the_attack_succeeds_at_random():
    torch.manual_seed(11)
    x, y = coin_inputs([1.0] * 400)

    def half(model, xb, yb, **_):  # an attack that fools each draw with probability 1/2
        return coin_inputs([0.5] * len(xb))[0]

    single = evaluate.robust_accuracy(Coin(), x, y, half).robust_accuracy
    over_k = evaluate.randomised_robust_accuracy(Coin(), x, y, half, k=16)
    assert 0.4 <= single <= 0.6  # one draw: about half look robust
    assert over_k.robust("worst") <= 0.01  # 0.5^16: practically none survives 16 draws
    assert single >= over_k.robust("worst") + 0.3
    # majority of 16 fair coins (more than 8 right): probability 0.402
    assert abs(over_k.robust("majority") - 0.402) <= 4 * (0.25 / 400) ** 0.5


def test_cascade_attacks_only_the_survivors_and_gives_the_same_result():
    torch.manual_seed(12)
    x, y = coin_inputs([1.0] * 20)
    seen = []

    def breaks_first_half(model, xb, yb, **_):
        seen.append(len(xb))
        out = xb.clone()
        out[: len(xb) // 2, 0, 0, 0] = 0.0
        return out

    def harmless(model, xb, yb, **_):
        seen.append(len(xb))
        return xb.clone()

    attacks = {"breaks": breaks_first_half, "harmless": harmless}
    cascaded = evaluate.randomised_robust_accuracy(Coin(), x, y, attacks, k=4)
    assert seen == [20, 10]
    alone = evaluate.randomised_robust_accuracy(Coin(), x, y, attacks, k=4, cascade=False)
    assert seen[2:] == [20, 20]
    assert cascaded.robust("worst") == alone.robust("worst") == 0.5
    assert alone.attack_accuracy("worst") == {"breaks": 0.5, "harmless": 1.0}


def test_randomised_evaluation_rejects_bad_arguments():
    x, y = coin_inputs([1.0] * 4)
    result = evaluate.randomised_accuracy(Coin(), x, y, k=3)
    with pytest.raises(ValueError, match="rule"):
        result.value("median")
    with pytest.raises(ValueError, match="k"):
        evaluate.randomised_accuracy(Coin(), x, y, k=0)
    with pytest.raises(ValueError, match="empty"):
        evaluate.randomised_accuracy(Coin(), x[:0], y[:0], k=3)
    with pytest.raises(TypeError, match="attacks"):
        evaluate.randomised_robust_accuracy(Coin(), x, y, 3, k=3)


def test_k_defaults_to_the_profile():
    from coursepkg.config import profile

    x, y = coin_inputs([1.0] * 3)
    assert evaluate.randomised_accuracy(Coin(), x, y).k == profile().random_eval_draws


@pytest.mark.slow
def test_sap_and_resizing_cost_little_clean_accuracy_on_the_zoo_model():
    from coursepkg import zoo
    from coursepkg.data import load_dataset, subset

    torch.manual_seed(13)
    model = zoo.get("standard")
    x, y = subset(*load_dataset("fashion-mnist", "test"), 300)
    bare = evaluate.accuracy(model, x, y)
    sap = evaluate.randomised_accuracy(R.StochasticActivationPruning(model, 1.0), x, y, k=4)
    assert sap.expected >= bare - 0.06
    resized = evaluate.randomised_accuracy(R.RandomResizePad(model), x, y, k=4)
    assert resized.expected >= bare - 0.15


def test_single_draw_rule_reads_the_first_draw():
    torch.manual_seed(14)
    x, y = coin_inputs([0.5] * 200)
    result = evaluate.randomised_accuracy(Coin(), x, y, k=8)
    single = result.correct("single")
    assert single.dtype == torch.bool and 0.35 <= result.value("single") <= 0.65
    bare = evaluate.RandomisedAccuracy(3, torch.ones(2))
    with pytest.raises(ValueError, match="first draw"):
        bare.correct("single")
