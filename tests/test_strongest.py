"""The course's strongest evaluation, its masking flags, and the intervals every accuracy carries."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from coursepkg.evaluate import (Interval, clopper_pearson_interval, gradient_masking_flags,
                                robust_accuracy, strongest, strongest_attacks, wilson_interval)
from coursepkg.attacks import pgd
from coursepkg.plots import Table


# --------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------
def test_wilson_interval_matches_its_closed_form_and_a_published_value():
    # Brown, Cai and DasGupta (2001): for k = 0 of n = 20 the 95% Wilson interval is [0, 0.161].
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=5e-4)
    # A direct computation at p = 0.61, n = 500, z = 1.959964.
    z, n, p = 1.959963984540054, 500, 0.61
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(305, 500) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_intervals_contain_the_estimate_and_shrink_with_n():
    for k, n in [(0, 10), (3, 10), (10, 10), (61, 100), (610, 1000)]:
        for lo, hi in (wilson_interval(k, n), clopper_pearson_interval(k, n)):
            assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert wilson_interval(610, 1000)[1] - wilson_interval(610, 1000)[0] < \
        wilson_interval(61, 100)[1] - wilson_interval(61, 100)[0]


def test_clopper_pearson_is_at_least_as_wide_as_wilson():
    for k, n in [(1, 20), (50, 100), (95, 100)]:
        (cl, ch), (wl, wh) = clopper_pearson_interval(k, n), wilson_interval(k, n)
        assert cl <= wl + 1e-12 and ch >= wh - 1e-12


@pytest.mark.parametrize("args", [(5, 0), (-1, 10), (11, 10), (1.5, 10)])
def test_intervals_reject_bad_counts(args):
    with pytest.raises(ValueError):
        wilson_interval(*args)


def test_interval_prints_with_its_bounds_and_in_a_table():
    iv = Interval.of(305, 500)
    assert format(iv) == f"0.610 [{iv.lo:.3f}, {iv.hi:.3f}]"
    assert "0.610 [" in str(Table([{"model": "m", "robust": iv}]))


# --------------------------------------------------------------------------------------
# strongest
# --------------------------------------------------------------------------------------
class Linear(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(18, 4)

    def forward(self, x):
        return self.fc(x.flatten(1)) * 5


class Saturated(nn.Module):
    """Logits multiplied by 1e4: float32 softmax saturates and the CE gradient is exactly zero."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * 1e4


class Noisy(nn.Module):
    """A randomised model: fresh noise on the input at every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x + 0.3 * torch.randn_like(x))


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, 3, 3, generator=gen)
    model = Linear()
    with torch.no_grad():
        y = model(x).argmax(1)  # every clean example correct
    return model, x, y


def test_strongest_is_never_above_any_of_its_attacks_alone(data):
    model, x, y = data
    result = strongest(model, x, y, eps=0.05, spsa=False)
    alone = robust_accuracy(model, x, y, strongest_attacks(), eps=0.05)
    assert result.robust_accuracy <= min(alone.per_attack.values()) + 1e-9
    assert list(result.per_attack) == ["APGD-CE", "APGD-DLR-T", "PGD-CE", "PGD-margin"]
    cumulative = list(result.per_attack.values())
    assert all(a >= b for a, b in zip(cumulative, cumulative[1:]))  # cascaded: never rises
    assert cumulative[-1] == result.robust_accuracy
    assert result.robust_interval.lo <= result.robust_accuracy <= result.robust_interval.hi


def test_an_extra_attack_can_only_lower_the_figure(data):
    model, x, y = data

    def oracle(model_, xb, yb, eps):  # "fools" every example by flipping it to a far point
        return torch.where(xb > 0.5, (xb - eps).clamp(0, 1), (xb + eps).clamp(0, 1))

    base = strongest(model, x, y, eps=0.02, spsa=False)
    more = strongest(model, x, y, eps=0.02, spsa=False, extra={"oracle": oracle})
    assert more.robust_accuracy <= base.robust_accuracy
    assert (more.correct <= base.correct).all()


def test_masking_flags_see_saturated_and_random_models(data):
    model, x, y = data
    assert not gradient_masking_flags(model, x, y)["masked"]
    saturated = gradient_masking_flags(Saturated(model), x, y)
    assert saturated["masked"] and saturated["zero_share"] > 0.5
    torch.manual_seed(0)
    noisy = gradient_masking_flags(Noisy(model), x, y)
    assert noisy["masked"] and noisy["mean_cosine"] < 0.99


def test_strongest_adds_spsa_only_when_the_flags_say_so(data):
    model, x, y = data
    saturated = Saturated(model)
    assert "SPSA" not in strongest(model, x[:8], y[:8], eps=0.05).per_attack
    assert "SPSA" in strongest(saturated, x[:8], y[:8], eps=0.05).per_attack


def test_strongest_beats_ce_pgd_on_a_saturated_model(data):
    """CE-PGD sees a zero gradient and moves nothing; the margin and DLR losses do not care."""
    model, x, y = data
    saturated = Saturated(model)
    ce_only = robust_accuracy(saturated, x, y, pgd, eps=0.1, random_start=False)
    result = strongest(saturated, x, y, eps=0.1, spsa=False)
    # started at x, an example whose gradient is exactly zero never moves, so it stays correct
    assert ce_only.robust_accuracy >= gradient_masking_flags(saturated, x, y)["zero_share"] > 0.5
    # the same decisions as the unsaturated model: the scale-free losses see through it
    assert result.robust_accuracy <= robust_accuracy(model, x, y, pgd, eps=0.1, loss="cw").robust_accuracy + 1e-9


def test_strongest_rejects_bad_arguments(data):
    model, x, y = data
    with pytest.raises(ValueError, match="spsa"):
        strongest(model, x, y, eps=0.1, spsa="sometimes")
    with pytest.raises(ValueError, match="built-in"):
        strongest(model, x, y, eps=0.1, extra={"PGD-CE": pgd})
    with pytest.raises(ValueError, match="eps"):
        strongest(model, x, y, eps=-1)
    with pytest.raises(TypeError, match="extra"):
        strongest(model, x, y, eps=0.1, extra=[pgd])
