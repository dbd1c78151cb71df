"""Tests of chapter 8's certified defences: randomised smoothing and interval bound propagation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from coursepkg.defences import certified as cert
from coursepkg.models import Normalize, SmallCNN


def small_cnn(seed: int = 0, width: int = 2) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN("fashion-mnist", width=width, hidden=8).eval()


def box_points(x: torch.Tensor, eps: float, k: int, seed: int) -> torch.Tensor:
    """``k`` random points of the clipped L∞ box around each image (half of them corners)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    u = torch.rand((k, *x.shape), generator=g)
    u[: k // 2] = u[: k // 2].round()  # corners of the box
    return lo + u * (hi - lo)


# --------------------------------------------------------------------------------------
# Interval bound propagation
# --------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 0.3), batch=st.integers(1, 3))
def test_interval_bounds_contain_every_point_of_the_box(seed, eps, batch):
    model = small_cnn(seed % 7)
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    lower, upper = cert.interval_bounds(model, x, eps)
    assert bool((lower <= upper).all())
    points = box_points(x, eps, 8, seed)
    with torch.no_grad():
        out = model(points.flatten(0, 1)).view(8, batch, -1)
    tol = 1e-4 * (1 + out.abs())
    assert bool((out >= lower - tol).all()) and bool((out <= upper + tol).all())
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(seed + 1))
    margins = cert.margin_upper_bounds(model, x, y, eps)
    true_margins = out - out.gather(2, y.view(1, -1, 1).expand(8, -1, 1))
    assert bool((true_margins <= margins + tol).all())
    # the elided last layer is never looser than subtracting two logit intervals
    naive = upper - lower.gather(1, y[:, None])
    assert bool((margins <= naive + 1e-4).all())


def test_interval_bounds_of_one_linear_layer_are_its_exact_range():
    torch.manual_seed(0)
    layer = nn.Linear(16, 3)
    model = nn.Sequential(nn.Flatten(), layer)
    x = 0.2 + 0.6 * torch.rand(4, 1, 4, 4)  # far enough from 0 and 1 that the box is not clipped
    eps = 0.1
    lower, upper = cert.interval_bounds(model, x, eps)
    centre = layer(x.flatten(1))
    spread = eps * layer.weight.abs().sum(1)
    torch.testing.assert_close(lower, centre - spread)
    torch.testing.assert_close(upper, centre + spread)
    # both ends are reached, at the corners x ± eps sign(w_j)
    for j in range(3):
        corner = x.flatten(1) + eps * layer.weight[j].sign()
        torch.testing.assert_close(layer(corner)[:, j], upper[:, j])


def test_interval_bounds_propagate_the_models_own_normalisation():
    norm = Normalize([0.3], [0.4])
    x = torch.rand(2, 1, 4, 4)
    lower, upper = cert.interval_bounds(nn.Sequential(norm), x, 0.05)
    torch.testing.assert_close(lower, ((x - 0.05).clamp(0, 1) - 0.3) / 0.4)
    torch.testing.assert_close(upper, ((x + 0.05).clamp(0, 1) - 0.3) / 0.4)


def test_at_eps_zero_the_bounds_are_the_output_and_certify_exactly_the_correct():
    model = small_cnn(3)
    x = torch.rand(5, 1, 28, 28)
    lower, upper = cert.interval_bounds(model, x, 0.0)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(lower, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(upper, out, atol=1e-5, rtol=1e-5)
    y = out.argmax(1)
    assert bool(cert.ibp_certified(model, x, y, 0.0).all())
    assert not bool(cert.ibp_certified(model, x, (y + 1) % 10, 0.0).any())


def test_certified_accuracy_falls_as_eps_grows():
    model = small_cnn(4)
    x = torch.rand(20, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
    values = [cert.certified_accuracy(model, x, y, e) for e in (0.0, 1e-4, 1e-3, 1e-2, 0.3)]
    assert values == sorted(values, reverse=True) and values[0] == 1.0 and values[-1] == 0.0


def test_ibp_loss_ramps_eps_and_kappa_and_is_clean_during_warm_up():
    loss = cert.ibp_loss(0.1, warmup=2, rampup=4, kappa_end=0.5)
    schedule = [loss.schedule(s) for s in range(8)]
    assert schedule[:2] == [(0.0, 1.0), (0.0, 1.0)]
    assert schedule[4] == pytest.approx((0.05, 0.75))
    assert schedule[6] == pytest.approx((0.1, 0.5)) and schedule[7] == pytest.approx((0.1, 0.5))
    model = small_cnn(5)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(loss(model, x, y), F.cross_entropy(model(x), y))  # step 0: warm-up
    for _ in range(5):
        loss(model, x, y)
    worst = cert.margin_upper_bounds(model, x, y, 0.1)
    expected = 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(worst, y)
    torch.testing.assert_close(loss(model, x, y), expected)  # step 6: full eps


def test_ibp_loss_is_an_upper_bound_the_optimiser_can_use():
    model = small_cnn(6).train()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    value = cert.ibp_loss(0.1, rampup=0)(model, x, y)
    value.backward()
    value = value.detach()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():  # the worst-case cross-entropy bounds the clean one, so the mix does
        assert float(value) >= float(F.cross_entropy(model(x), y)) - 1e-6


def test_ibp_rejects_what_it_cannot_bound():
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(TypeError, match="does not support Tanh"):
        cert.interval_bounds(nn.Sequential(nn.Flatten(), nn.Linear(16, 2), nn.Tanh()), x, 0.1)
    with pytest.raises(ValueError, match="eps"):
        cert.interval_bounds(nn.Sequential(nn.Flatten()), x, -0.1)
    with pytest.raises(TypeError, match="image tensor"):
        cert.interval_bounds(nn.Sequential(nn.Flatten()), x.long(), 0.1)
    with pytest.raises(TypeError, match="last layer"):
        cert.margin_upper_bounds(nn.Sequential(nn.Flatten()), x, y, 0.1)
    with pytest.raises(ValueError, match="one per image"):
        cert.margin_upper_bounds(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), x, y[:1], 0.1)
    dropout_model = SmallCNN("fashion-mnist", width=2, hidden=8, dropout=0.5).mc_dropout(True)
    with pytest.raises(TypeError, match="mc_dropout"):
        cert.interval_bounds(dropout_model, torch.rand(1, 1, 28, 28), 0.1)
    with pytest.raises(ValueError, match="rampup"):
        cert.ibp_loss(0.1, rampup=-1)
    with pytest.raises(ValueError, match="eps"):
        cert.ibp_loss(0.0, rampup=1)
    with pytest.raises(ValueError, match="kappa_end"):
        cert.ibp_loss(0.1, rampup=1, kappa_end=2.0)
    with pytest.raises(ValueError, match="empty"):
        cert.certified_accuracy(small_cnn(), torch.rand(0, 1, 28, 28), torch.zeros(0).long(), 0.1)


# --------------------------------------------------------------------------------------
# Randomised smoothing: the statistics
# --------------------------------------------------------------------------------------
def test_clopper_pearson_lower_bound_matches_known_values():
    # 5 of 10: the exact two-sided 95% interval is [0.1871, 0.8129], so its lower end is the
    # one-sided 97.5% bound; all of n: alpha ** (1 / n) in closed form
    assert float(cert.clopper_pearson_lower(5, 10, 0.025)) == pytest.approx(0.18709, abs=1e-5)
    assert float(cert.clopper_pearson_lower(10, 10, 0.05)) == pytest.approx(0.05 ** 0.1, rel=1e-9)
    assert float(cert.clopper_pearson_lower(0, 10, 0.05)) == 0.0
    bounds = cert.clopper_pearson_lower(torch.arange(0, 101), torch.full((101,), 100), 0.001)
    assert bool((bounds[1:] > bounds[:-1]).all()) and bool((bounds <= torch.arange(101) / 100).all())


def test_binomial_p_value_matches_scipy_binomtest():
    from scipy.stats import binomtest

    for a, b in [(10, 0), (7, 3), (60, 40), (5, 5)]:
        expected = binomtest(a, a + b, 0.5).pvalue
        assert float(cert.binomial_p_value(a, b)) == pytest.approx(expected, rel=1e-9)
    assert float(cert.binomial_p_value(10, 0)) == pytest.approx(2 * 0.5 ** 10)


class LinearTwoClass(nn.Module):
    """Logits (0, w.x + b) for 1 x 4 x 4 images: its smoothed classifier is known in closed form."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = w.flatten(), b

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


def linear_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(16, generator=g)
    x = torch.rand(40, 1, 4, 4, generator=g)
    b = -float((x.flatten(1) @ w).median())  # half of the points on each side
    return LinearTwoClass(w, b), x, (x.flatten(1) @ w + b) / w.norm()  # signed distance to the plane


def test_certify_of_a_linear_classifier_is_sound_and_close_to_the_exact_radius():
    # For a linear f, g = f and the distance to the hyperplane is the exact robust radius;
    # Cohen et al.'s bound is tight there: sigma * Phi^-1(p_A) -> that distance as n grows.
    base, x, distance = linear_case()
    torch.manual_seed(0)
    smoothed = cert.Smoothed(base, sigma=0.5)
    label, radius = smoothed.certify(x, n0=100, n=20_000, alpha=0.001)
    certified = label != cert.ABSTAIN
    assert bool((label[certified] == (distance[certified] > 0).long()).all())
    assert bool((radius[certified] <= distance[certified].abs() + 1e-6).all())  # sound
    far = distance.abs() > 0.2
    assert bool(certified[far].all())
    assert bool((radius[far] >= 0.85 * distance[far].abs()).all())  # and nearly tight
    assert bool((radius[~certified] == 0).all())
    assert float(radius.max()) <= 0.5 * torch.distributions.Normal(0, 1).icdf(
        torch.tensor(0.001 ** (1 / 20_000))) + 1e-5  # the largest radius n can give


def test_predict_abstains_on_the_boundary_and_answers_far_from_it():
    base, x, distance = linear_case(1)
    torch.manual_seed(1)
    smoothed = cert.Smoothed(base, sigma=0.25)
    on_plane = x - (distance[:, None] * base.w / base.w.norm()).view_as(x)
    assert (cert.Smoothed(base, 0.25).predict(on_plane, n=1000) == cert.ABSTAIN).float().mean() >= 0.9
    far = distance.abs() > 0.3
    pred = smoothed.predict(x[far], n=1000)
    assert bool((pred == (distance[far] > 0).long()).all())
    votes = smoothed(x[far]).argmax(1)  # the Monte-Carlo smoothed classifier, as logits
    assert bool((votes == pred).all())


def test_counts_draw_every_sample_in_batches():
    base, x, _ = linear_case(2)
    smoothed = cert.Smoothed(base, sigma=0.25, batch_size=64)  # several passes of several draws
    counts = smoothed.counts(x, 250)
    assert counts.shape == (len(x), 2) and bool((counts.sum(1) == 250).all())


def test_gaussian_noise_loss_adds_noise_of_the_stated_scale():
    seen = []

    class Spy(nn.Module):
        def forward(self, z):
            seen.append(z.detach())
            return torch.zeros(len(z), 3, requires_grad=True)

    x = torch.full((2000, 1, 4, 4), 0.5)
    cert.gaussian_noise_loss(0.25)(Spy(), x, torch.zeros(2000, dtype=torch.long))
    noise = seen[0] - x
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(noise.std()) == pytest.approx(0.25, rel=0.02)


def test_smoothing_rejects_bad_arguments():
    base, x, _ = linear_case()
    with pytest.raises(ValueError, match="sigma"):
        cert.Smoothed(base, sigma=0.0)
    with pytest.raises(TypeError, match="base"):
        cert.Smoothed(lambda z: z, sigma=0.25)
    smoothed = cert.Smoothed(base, sigma=0.25)
    with pytest.raises(ValueError, match="n0"):
        smoothed.certify(x, n0=0, n=10)
    with pytest.raises(ValueError, match="alpha"):
        smoothed.certify(x, n0=10, n=10, alpha=1.5)
    with pytest.raises(ValueError, match="N x C x H x W"):
        smoothed.predict(x.flatten(1), n=10)
    with pytest.raises(ValueError, match="sigma"):
        cert.gaussian_noise_loss(-1)
    with pytest.raises(ValueError, match="successes"):
        cert.clopper_pearson_lower(11, 10, 0.05)


# --------------------------------------------------------------------------------------
# Soundness against the course's strongest attacks (trained models)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion():
    from coursepkg.data import load_dataset, subset

    x_train, y_train = subset(*load_dataset("fashion-mnist", "train"), 2000, seed=0)
    x_test, y_test = subset(*load_dataset("fashion-mnist", "test"), 60, seed=0)
    return x_train, y_train, x_test, y_test


@pytest.mark.slow
def test_no_example_ibp_certifies_is_broken_by_the_strongest_attack(fashion):
    from coursepkg.evaluate.strongest import strongest
    from coursepkg.train import train

    x_train, y_train, x, y = fashion
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", width=4, hidden=32)
    train(model, x_train, y_train, cert.ibp_loss(0.1, rampup=16), epochs=2, batch_size=100,
          lr=2e-3, progress=False, device="cpu")
    eps = 0.05
    certified = cert.ibp_certified(model, x, y, eps)
    assert int(certified.sum()) >= 5, "the test needs some certified examples to mean anything"
    result = strongest(model, x[certified], y[certified], eps=eps, spsa=False)
    assert result.robust_accuracy == 1.0, "an attack broke an example IBP certified"


@pytest.mark.slow
def test_no_example_smoothing_certifies_is_broken_by_the_strongest_attack_through_eot(fashion):
    from coursepkg.adaptive import attack_via
    from coursepkg.evaluate import robust_accuracy
    from coursepkg.evaluate.strongest import strongest_attacks
    from coursepkg.train import train

    x_train, y_train, x, y = fashion
    sigma, r = 0.25, 0.1
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", width=4, hidden=32)
    train(model, x_train, y_train, cert.gaussian_noise_loss(sigma), epochs=2, batch_size=100,
          lr=2e-3, progress=False, device="cpu")
    torch.manual_seed(0)
    smoothed = cert.Smoothed(model, sigma, votes=500)
    label, radius = smoothed.certify(x, n0=50, n=500)
    # attacked at r, certified at 2r or more: p_A stays well above 1/2 over the whole ball,
    # so the Monte-Carlo vote that judges the attack is not what could make it fail
    keep = ((label == y) & (radius >= 2 * r)).nonzero().squeeze(1)[:8]
    assert len(keep) >= 5, "the test needs some certified examples to mean anything"
    # the course's strongest attacks, each crafted on the soft smoothed classifier (EOT over
    # the noise) and judged by the Monte-Carlo vote of g itself
    view = smoothed.soft(4)
    attacks = {k: attack_via(view, a) for k, a in strongest_attacks(norm="l2").items()}
    result = robust_accuracy(smoothed, x[keep], y[keep], attacks, eps=r, cascade=True)
    assert result.robust_accuracy == 1.0, "an attack broke an example smoothing certified"
