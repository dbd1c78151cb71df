"""Tests of coursepkg.plots.diagrams: every figure draws, and what it draws is computed right."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from coursepkg import plots
from coursepkg.plots import diagrams as d


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# (function, the number of axes it draws: panels plus colour bars)
FIGURES = [("lp_balls", 2), ("minmax_picture", 3), ("bpda_diagram", 1),
           ("pixelcnn_receptive_field", 3), ("gradient_masking_picture", 3),
           ("eot_picture", 3), ("detector_as_extra_class", 3),
           ("certified_radius_picture", 2)]


def test_every_diagram_is_listed_and_re_exported():
    assert sorted(name for name, _ in FIGURES) == sorted(d.__all__)
    for name in d.__all__:
        assert getattr(plots, name) is getattr(d, name)
        assert name in plots.__doc__


@pytest.mark.parametrize("name, n_axes", FIGURES)
def test_each_diagram_returns_a_figure_with_its_panels(name, n_axes, tmp_path):
    fig = getattr(plots, name)()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    fig.savefig(tmp_path / f"{name}.png", dpi=40)  # draws every artist: no late exception
    assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_options_are_honoured_and_bad_input_rejected():
    assert len(plots.lp_balls(eps=0.5).axes) == 2
    assert len(plots.minmax_picture(norm="l2", eps=0.3, steps=3).axes) == 3
    assert len(plots.pixelcnn_receptive_field(size=5, first_kernel=3, layers=2).axes) == 3
    assert len(plots.certified_radius_picture(p_a=0.99, sigma=0.25).axes) == 2
    for call in (lambda: plots.lp_balls(eps=0), lambda: plots.lp_balls(gradient=(0, 0)),
                 lambda: plots.minmax_picture(norm="l3"), lambda: plots.minmax_picture(steps=0),
                 lambda: plots.pixelcnn_receptive_field(size=1),
                 lambda: plots.pixelcnn_receptive_field(first_kernel=4),
                 lambda: plots.eot_picture(samples=1),
                 lambda: plots.detector_as_extra_class(true_class=7),
                 lambda: plots.certified_radius_picture(p_a=0.5),
                 lambda: plots.certified_radius_picture(p_a=1.0),
                 lambda: plots.certified_radius_picture(sigma=-1)):
        with pytest.raises(ValueError):
            call()


# ---------------------------------------------------------------------------- lp balls
@pytest.mark.parametrize("g", [(1.0, 0.45), (-0.3, 2.0), (0.7, -0.7), (-2.0, -0.1)])
@pytest.mark.parametrize("norm, p, q", [("linf", math.inf, 1), ("l2", 2, 2), ("l1", 1, math.inf)])
def test_dual_maximiser_is_on_the_boundary_and_attains_the_dual_norm(g, norm, p, q):
    g = torch.tensor(g, dtype=torch.float64)
    eps = 0.7
    delta = d._dual_maximiser(g, eps, norm)
    assert float(delta.norm(p=p)) == pytest.approx(eps)
    assert float(g @ delta) == pytest.approx(eps * float(g.norm(p=q)))
    # no point of the ball does better: a dense sample of its boundary
    angles = torch.linspace(0, 2 * math.pi, 2001, dtype=torch.float64)
    circle = torch.stack([angles.cos(), angles.sin()], 1)
    boundary = eps * circle / circle.norm(p=p, dim=1, keepdim=True)
    assert float((boundary @ g).max()) <= float(g @ delta) + 1e-9


def test_l0_best_step_changes_one_coordinate_inside_the_box_and_beats_the_others():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.rand(2, generator=gen, dtype=torch.float64)
        g = torch.randn(2, generator=gen, dtype=torch.float64)
        delta = d._l0_best_step(x, g)
        assert int((delta != 0).sum()) <= 1
        assert bool(((x + delta >= 0) & (x + delta <= 1)).all())
        for i in range(2):  # every one-coordinate move to 0 or 1
            for v in (0.0, 1.0):
                other = torch.zeros(2, dtype=torch.float64)
                other[i] = v - x[i]
                assert float(g @ delta) >= float(g @ other) - 1e-12


# ---------------------------------------------------------------------------- min-max
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_path_stays_in_the_ball_and_raises_the_loss(norm):
    theta = torch.tensor(d._THETA0, dtype=torch.float64)
    x = torch.zeros(2, dtype=torch.float64)
    eps = 0.5
    path = d._pgd_path(theta, x, eps, 6, norm)
    assert path.shape == (7, 2)
    p = math.inf if norm == "linf" else 2
    assert float((path - x).norm(p=p, dim=1).max()) <= eps + 1e-9
    losses = d._toy_loss(theta, path)
    assert float(losses[-1]) > float(losses[0])
    # the end is (close to) the worst point of the ball, found by a grid search
    grid = torch.linspace(-eps, eps, 201, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
    if norm == "l2":
        zz = zz[zz.norm(dim=1) <= eps]
    assert float(losses[-1]) >= 0.97 * float(d._toy_loss(theta, zz).max())


def test_outer_step_lowers_the_loss_at_the_adversarial_point_and_the_worst_case():
    theta0 = torch.tensor(d._THETA0, dtype=torch.float64)
    x = torch.zeros(2, dtype=torch.float64)
    x_adv = d._pgd_path(theta0, x, 0.5, 6, "linf")[-1]
    theta1 = d._outer_step(theta0, x_adv, 1.0)
    assert float(d._toy_loss(theta1, x_adv)) < float(d._toy_loss(theta0, x_adv))
    worst1 = d._toy_loss(theta1, d._pgd_path(theta1, x, 0.5, 6, "linf")[-1])
    assert float(worst1) < float(d._toy_loss(theta0, x_adv))


# ---------------------------------------------------------------------------- PixelCNN
def test_masks_are_the_pixelcnn_masks():
    a, b = d._pixelcnn_masks(5)
    assert a.shape == (5, 5) and b.shape == (3, 3)
    assert a[2, 2] == 0 and b[1, 1] == 1  # A hides the centre, B keeps it
    assert int(a.sum()) == 12 and int(b.sum()) == 5


@pytest.mark.parametrize("first_kernel, layers", [(5, 4), (3, 3), (7, 1)])
def test_receptive_field_is_causal_and_has_the_blind_spot(first_kernel, layers):
    rows, cols = 8, 15
    pixel = (7, 7)
    a, b = d._pixelcnn_masks(first_kernel)
    field = d._receptive_field(rows, cols, pixel, [a] + [b] * layers)
    before = d._raster_before(rows, cols, pixel)
    assert not bool((field & ~before).any())  # never the pixel itself or anything after it
    assert bool(field[pixel[0], pixel[1] - 1])  # its left neighbour is seen
    # the blind spot: the pixel just above-right beyond the first kernel's reach is never
    # seen, however many layers are stacked
    deep = d._receptive_field(rows, cols, pixel, [a] + [b] * 30)
    c = first_kernel // 2
    assert not bool(deep[pixel[0] - 1, pixel[1] + c + 1])
    assert bool(deep[pixel[0] - 2, pixel[1] + c + 1])  # one row further up it is reached
    assert bool((before & ~deep).any())


def test_receptive_field_matches_the_gradients_of_a_real_pixelcnn():
    """An independent computation: which inputs the logits of one pixel depend on."""
    from coursepkg.defences.pixelcnn import PixelCNN

    torch.manual_seed(0)
    model = PixelCNN("fashion-mnist", channels=8, layers=4, first_kernel=5).double().eval()
    i, j = 20, 14
    depends = torch.zeros(28, 28, dtype=torch.bool)
    for seed in range(3):
        x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64).requires_grad_(True)
        (g,) = torch.autograd.grad(model(x)[0, :, i, j].sum(), x)
        depends |= g[0, 0] != 0
    a, b = d._pixelcnn_masks(5)
    field = d._receptive_field(28, 28, (i, j), [a] + [b] * 4)
    assert torch.equal(depends, field)


# ---------------------------------------------------------------------------- masking
def test_masked_models_have_zero_gradient_at_x_but_high_loss_a_step_away():
    grads = d._masking_gradients()
    assert grads["smooth"] > 0.1
    assert grads["saturated"] == 0.0 and grads["quantised"] == 0.0
    at_x = d._masking_losses(torch.tensor(0.0))
    at_eps = d._masking_losses(torch.tensor(0.6))
    for name in ("saturated", "quantised"):
        assert float(at_eps[name]) > float(at_x[name]) + 0.5
    assert float(at_x["saturated"]) == 0.0  # the softmax saturates in float32


# ---------------------------------------------------------------------------- EOT
def test_eot_average_gradient_agrees_with_the_expected_gradient():
    x = torch.zeros(2, dtype=torch.float64)
    truth = d._eot_gradients(x, d._eot_shifts(20000, 0.5, 1)).mean(0)
    # the expectation in closed form: E[sin(4 z1 + 1) cos(3 z2)] for z ~ N(0, s^2 I)
    s2 = 0.25
    exact = torch.tensor([1.0 + 0.9 * 4 * math.cos(1.0) * math.exp(-(16 + 9) * s2 / 2),
                          0.5], dtype=torch.float64)
    assert torch.allclose(truth, exact, atol=0.03)
    singles = d._eot_gradients(x, d._eot_shifts(8, 0.5, 0))
    cos = torch.nn.functional.cosine_similarity(singles, exact[None], dim=1)
    mean_cos = torch.nn.functional.cosine_similarity(singles.mean(0), exact, dim=0)
    assert float(mean_cos) > float(cos.mean())  # the average is steadier than one sample


# ---------------------------------------------------------------------------- detector
def test_joined_decision_needs_a_wrong_class_above_both_the_true_class_and_the_detector():
    assert d._joined_decision([4.0, 1.0], 0.5) == 0
    assert d._joined_decision([2.0, 3.0], 3.5) == 2  # the label flipped, but flagged
    assert d._joined_decision([2.0, 3.0], 2.5) == 1  # the attack succeeds
    outcomes = [d._joined_decision(list(l), det) for _, l, det in d._DETECTOR_CASES]
    assert outcomes == [0, 4, 1]  # clean, flagged, fooled: what the titles say


# ---------------------------------------------------------------------------- smoothing
@pytest.mark.parametrize("p_a, sigma", [(0.9, 0.5), (0.6, 0.25), (0.999, 1.0)])
def test_certified_radius_is_sigma_times_the_normal_quantile(p_a, sigma):
    from scipy.stats import norm

    radius = d._certified_radius(p_a, sigma)
    assert radius == pytest.approx(sigma * norm.ppf(p_a), rel=1e-9)
    # the drawn linear classifier gives class A exactly probability p_a, and the
    # certified circle touches its boundary (the bound is tight for linear classifiers)
    u, dist = d._smoothing_setup(p_a, sigma)
    assert float(u.norm()) == pytest.approx(1.0)
    assert float(torch.special.ndtr(torch.tensor(dist / sigma, dtype=torch.float64))) \
        == pytest.approx(p_a, rel=1e-9)
    assert dist == pytest.approx(radius)


def test_certified_picture_votes_match_p_a():
    fig = plots.certified_radius_picture(p_a=0.9, sigma=0.5, samples=2000)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    votes = next(lab for lab in labels if "class A" in lab)
    n_a = int(votes.split("(")[1].split(" of")[0])
    assert abs(n_a / 2000 - 0.9) < 4 * math.sqrt(0.9 * 0.1 / 2000)
