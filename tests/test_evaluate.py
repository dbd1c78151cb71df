"""coursepkg.evaluate: accuracy, the per-example worst case over attacks, norms, curves and
the gradient-masking checks, on models and attacks whose answers are known in advance."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from coursepkg import evaluate as ev
from coursepkg.attacks import fgsm, pgd


class ThresholdModel(nn.Module):
    """Class 1 exactly when the first pixel exceeds 0.5 (logits 0 and 10 (p - 0.5))."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        s = self.scale * (x.flatten(1)[:, 0] - 0.5)
        return torch.stack([torch.zeros_like(s), s], 1)


def flip_where(condition):
    """A fake attack that flips the first pixel of the examples where ``condition(x)`` holds."""

    def attack(model, x, y):
        x_adv = x.clone()
        hit = condition(x)
        x_adv[hit, 0, 0, 0] = 1.0 - x_adv[hit, 0, 0, 0]
        return x_adv

    return attack


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 1, 3, generator=g)
    model = ThresholdModel()
    y = (x[:, 0, 0, 0] > 0.5).long()
    y[:5] = 1 - y[:5]  # five examples the model gets wrong
    return model, x, y


def test_accuracy_counts_and_restores_the_mode(case):
    model, x, y = case
    model.train()
    assert ev.accuracy(model, x, y, batch_size=7) == pytest.approx(35 / 40)
    assert model.training


def test_robust_accuracy_is_the_per_example_worst_case(case):
    model, x, y = case
    by_second = flip_where(lambda x: x[:, 0, 0, 1] > 0.5)
    by_third = flip_where(lambda x: x[:, 0, 0, 2] > 0.7)
    result = ev.robust_accuracy(model, x, y, {"second": by_second, "third": by_third}, batch_size=9)
    clean = model(x).argmax(1) == y
    survives_second = clean & ~(x[:, 0, 0, 1] > 0.5)
    survives_third = clean & ~(x[:, 0, 0, 2] > 0.7)
    assert result.clean_accuracy == pytest.approx(float(clean.float().mean()))
    assert result.per_attack["second"] == pytest.approx(float(survives_second.float().mean()))
    assert result.per_attack["third"] == pytest.approx(float(survives_third.float().mean()))
    assert torch.equal(result.correct, survives_second & survives_third)
    assert result.robust_accuracy <= min(result.per_attack.values())
    assert result.robust_accuracy < min(result.per_attack.values())  # the union fools more than either
    assert result.success_rate == pytest.approx(1 - result.robust_accuracy / result.clean_accuracy)
    # x_adv holds the first attack that fooled each example; the rest keep x.
    for i in range(len(x)):
        expected = {None: x[i], "second": by_second(model, x[i:i + 1], y[i:i + 1])[0],
                    "third": by_third(model, x[i:i + 1], y[i:i + 1])[0]}[result.fooled_by[i]]
        assert torch.equal(result.x_adv[i], expected)
    assert set(result.as_dict()) == {"clean_accuracy", "robust_accuracy", "success_rate", "per_attack"}


def test_robust_accuracy_takes_lists_partials_and_passes_only_accepted_options(case):
    model, x, y = case
    no_eps = flip_where(lambda x: x[:, 0, 0, 1] > 0.5)  # an "attack" that takes no budget
    result = ev.robust_accuracy(model, x, y, [functools.partial(fgsm, loss="cw", eps=0.05), no_eps,
                                              no_eps])
    assert list(result.per_attack) == ["fgsm(loss=cw, eps=0.05)", "attack", "attack#2"]
    single = ev.robust_accuracy(model, x, y, fgsm, eps=0.05)
    assert list(single.per_attack) == ["fgsm"]
    # an option only some attacks take goes to those alone
    both = ev.robust_accuracy(model, x, y, [fgsm, functools.partial(fgsm, eps=0.05)], loss="cw",
                              eps=0.05)
    assert len(both.per_attack) == 2


def test_an_attack_that_ignores_the_budget_is_refused(case):
    """Counting an attack's examples against an eps-robust accuracy when the attack never saw
    eps (C&W's unbounded examples, say) would report a figure for another threat model."""
    model, x, y = case
    no_eps = flip_where(lambda x: x[:, 0, 0, 1] > 0.5)
    with pytest.raises(TypeError, match="takes no eps"):
        ev.robust_accuracy(model, x, y, [fgsm, no_eps], eps=0.05)
    with pytest.raises(TypeError, match="no attack takes step"):
        ev.robust_accuracy(model, x, y, fgsm, eps=0.05, step=3)  # a misspelt steps=


def test_robust_accuracy_rejects_bad_arguments(case):
    model, x, y = case
    with pytest.raises(ValueError, match="attacks is empty"):
        ev.robust_accuracy(model, x, y, [])
    with pytest.raises(TypeError, match="attacks"):
        ev.robust_accuracy(model, x, y, 3)
    with pytest.raises(ValueError, match="eps"):
        ev.robust_accuracy(model, x, y, fgsm, eps=-1)
    with pytest.raises(ValueError, match="x and y"):
        ev.robust_accuracy(model, x, y[:3], fgsm, eps=0.1)


def test_perturbation_norms_match_a_direct_computation():
    x = torch.zeros(2, 1, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0], x_adv[0, 0, 1, 1] = 0.3, 0.4
    x_adv[1, 0, 0, 1] = 0.1
    norms = ev.perturbation_norms(x, x_adv)
    assert norms["l0"].tolist() == [2, 1]
    torch.testing.assert_close(norms["l2"], torch.tensor([0.5, 0.1]))
    torch.testing.assert_close(norms["linf"], torch.tensor([0.4, 0.1]))
    with pytest.raises(ValueError, match="same shape"):
        ev.perturbation_norms(x, x_adv[:1])


def test_attack_success_rate_counts_only_clean_correct_examples(case):
    model, x, y = case
    x_adv = flip_where(lambda x: x[:, 0, 0, 1] > 0.5)(model, x, y)
    clean = model(x).argmax(1) == y
    expected = float((x[clean, 0, 0, 1] > 0.5).float().mean())
    assert ev.attack_success_rate(model, x, x_adv, y) == pytest.approx(expected)


def test_accuracy_vs_eps_starts_at_the_clean_accuracy(case):
    model, x, y = case
    curve = ev.accuracy_vs_eps(model, x, y, fgsm, [0.0, 0.1, 0.6])
    assert curve.accuracy[0] == pytest.approx(ev.accuracy(model, x, y))
    assert curve.accuracy[-1] == 0.0  # a shift of 0.6 crosses the threshold from anywhere
    assert curve.as_dict()["eps"] == [0.0, 0.1, 0.6]
    with pytest.raises(ValueError, match="eps"):
        ev.accuracy_vs_eps(model, x, y, fgsm, [-0.1])


class Quantised(nn.Module):
    """A model behind a rounding step: zero gradient almost everywhere (shattered gradients)."""

    def __init__(self, inner, levels=4):
        super().__init__()
        self.inner, self.levels = inner, levels

    def forward(self, x):
        return self.inner(torch.round(x * self.levels) / self.levels)


def smooth_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_sanity_checks_pass_a_linear_model_and_flag_a_quantised_one():
    torch.manual_seed(0)
    x = torch.rand(60, 1, 4, 4)
    linear = smooth_model()
    y = ev.predictions(linear, x)
    healthy = ev.sanity_checks(linear, x, y, eps=0.05, steps=10)
    assert healthy.passed, healthy.as_table()
    masked = Quantised(linear)
    report = ev.sanity_checks(masked, x, ev.predictions(masked, x), eps=0.05, steps=10, transfer_from=linear)
    assert not report.passed
    failed = {c.name for c in report.failures}
    assert "unbounded attack reaches near-zero accuracy" in failed
    assert "white-box beats transfer" in failed
    assert "NO" in report.as_table() and "<table>" in report._repr_html_()
    assert {"more steps and restarts change little",
            "targeted on every class no stronger than untargeted"} <= {c.name for c in healthy.checks}


class LabelOnly(nn.Module):
    """Answers a one-hot vector of its inner model's label: every input gradient is zero."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        logits = self.inner(x)
        return 10 * torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).to(logits) + 0 * logits


def test_white_box_equal_to_noise_fails_the_noise_check():
    """PGD that does no better than random noise is a warning sign, not a pass (chapter 1's
    label-only model once passed with PGD 0.860 against noise 0.862)."""
    torch.manual_seed(0)
    x = torch.rand(60, 1, 4, 4)
    hidden = LabelOnly(smooth_model())
    report = ev.sanity_checks(hidden, x, ev.predictions(hidden, x), eps=0.05, steps=5,
                              more_effort=1, targeted_all=False)
    noise_check = next(c for c in report.checks if c.name == "white-box beats random noise")
    assert not noise_check.passed, noise_check.detail
