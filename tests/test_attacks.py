"""Properties of every attack that hold for any model: budgets, the box, the model's state,
closed forms on linear models, restarts, and the errors bad input gets.

Fast (tiny random models); the behaviour on a trained CNN is in ``test_attacks_trained.py``.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from coursepkg.attacks import bim, cw_l2, deepfool, fgsm, jsma, pgd, rfgsm, spsa

TOL = 1e-6


# --------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------
def tiny_cnn(channels: int, size: int, classes: int = 4, dtype=torch.float32) -> nn.Module:
    """Conv + batch norm + dropout + linear: layers whose behaviour depends on train/eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(3 * size * size, classes),
    ).to(dtype)


class BinaryLinear(nn.Module):
    """Logits ``(0, w.x + b)``: the cross-entropy of either class is monotone in ``w.x``."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(float(b), dtype=w.dtype))

    def score(self, x):
        return x.flatten(1) @ self.w + self.b

    def forward(self, x):
        s = self.score(x)
        return torch.stack([torch.zeros_like(s), s], 1)


def linf_attacks(steps=3):
    return {
        "fgsm": fgsm,
        "rfgsm": rfgsm,
        "pgd": functools.partial(pgd, steps=steps, restarts=2),
        "pgd-cw-loss": functools.partial(pgd, steps=steps, loss="cw"),
        "bim": functools.partial(bim, steps=steps),
        "spsa": functools.partial(spsa, iters=2, samples=4),
    }


UNBOUNDED = {
    "cw_l2": functools.partial(cw_l2, steps=3, search_steps=2),
    "deepfool": functools.partial(deepfool, steps=3),
    "jsma": functools.partial(jsma, gamma=0.2),
}


def model_state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])


# --------------------------------------------------------------------------------------
# The contract, over random shapes and budgets
# --------------------------------------------------------------------------------------
shapes = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(3, 8))
dtypes = st.sampled_from([torch.float32, torch.float64])


def random_batch(shape, dtype, seed):
    n, c, size = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size, size, generator=g, dtype=torch.float64).to(dtype)
    x[0, 0, 0, 0] = 0.0  # the corners of the box are where clipping goes wrong
    x[-1, -1, -1, -1] = 1.0
    y = torch.randint(0, 4, (n,), generator=g)
    return x, y


def check_contract(model, attack, x, y, *, before):
    x_adv = attack(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert model_state(model) == before, "the attack changed the model's mode or requires_grad"
    assert all(p.grad is None for p in model.parameters()), "the attack left a gradient on a parameter"
    return x_adv


@pytest.mark.parametrize("name", list(linf_attacks()))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, dtype=dtypes, eps=st.floats(0.0, 1.0), training=st.booleans(),
       frozen=st.booleans(), seed=st.integers(0, 2**16))
def test_linf_attacks_keep_the_contract(name, shape, dtype, eps, training, frozen, seed):
    x, y = random_batch(shape, dtype, seed)
    model = tiny_cnn(shape[1], shape[2], dtype=dtype).train(training)
    model[3].train(not training)  # a model left half in train mode must stay so
    model[0].weight.requires_grad_(not frozen)
    before = model_state(model)
    x_adv = check_contract(model, functools.partial(linf_attacks()[name], eps=eps), x, y, before=before)
    assert float((x_adv - x).abs().max()) <= eps + TOL


@settings(max_examples=15, deadline=None)
@given(shape=shapes, dtype=dtypes, eps=st.floats(0.0, 5.0), random_start=st.booleans(),
       seed=st.integers(0, 2**16))
def test_l2_pgd_keeps_the_contract(shape, dtype, eps, random_start, seed):
    x, y = random_batch(shape, dtype, seed)
    model = tiny_cnn(shape[1], shape[2], dtype=dtype)
    before = model_state(model)
    attack = functools.partial(pgd, eps=eps, norm="l2", steps=3, random_start=random_start)
    x_adv = check_contract(model, attack, x, y, before=before)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5


@pytest.mark.parametrize("name", list(UNBOUNDED))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, dtype=dtypes, training=st.booleans(), seed=st.integers(0, 2**16))
def test_minimal_perturbation_attacks_keep_the_contract(name, shape, dtype, training, seed):
    x, y = random_batch(shape, dtype, seed)
    model = tiny_cnn(shape[1], shape[2], dtype=dtype).train(training)
    before = model_state(model)
    x_adv = check_contract(model, UNBOUNDED[name], x, y, before=before)
    if name == "jsma":  # at most gamma of the features change
        changed = ((x_adv - x).abs() > 0).flatten(1).sum(1)
        assert int(changed.max()) <= 0.2 * x[0].numel()


def test_targeted_pgd_keeps_the_contract():
    x, y = random_batch((3, 1, 6), torch.float32, 0)
    model = tiny_cnn(1, 6)
    before = model_state(model)
    attack = functools.partial(pgd, eps=0.3, steps=3, target=(y + 1) % 4)
    x_adv = check_contract(model, attack, x, y, before=before)
    assert float((x_adv - x).abs().max()) <= 0.3 + TOL


def test_an_existing_parameter_gradient_is_left_untouched():
    x, y = random_batch((2, 1, 5), torch.float32, 1)
    model = tiny_cnn(1, 5)
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    pgd(model, x, y, eps=0.1, steps=2)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))


def test_zero_budget_returns_x():
    x, y = random_batch((2, 1, 5), torch.float32, 2)
    model = tiny_cnn(1, 5)
    for attack in linf_attacks().values():
        assert torch.equal(attack(model, x, y, eps=0.0), x)


# --------------------------------------------------------------------------------------
# Closed forms on a linear model
# --------------------------------------------------------------------------------------
def linear_case(d=6, n=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=dtype)
    x = torch.rand(n, 1, 1, d, generator=g, dtype=dtype)
    y = torch.randint(0, 2, (n,), generator=g)
    return BinaryLinear(w, b=0.1).to(dtype), x, y


def ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_fgsm_is_the_exact_linf_worst_case_of_a_linear_model(seed, eps):
    model, x, y = linear_case(seed=seed)
    x_adv = fgsm(model, x, y, eps=eps)
    # Closed form: the loss of y grows with the score of the other class, sign(+/-w) per pixel.
    direction = torch.where(y == 0, 1.0, -1.0).to(x)[:, None] * model.w.detach().sign()
    expected = (x + eps * direction.view_as(x)).clamp(0, 1)
    torch.testing.assert_close(x_adv, expected)
    # Independent check: no vertex of the (clipped) L-infinity ball has a higher loss.
    d = x[0].numel()
    vertices = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=x.dtype)
    for i in range(len(x)):
        corners = (x[i].flatten() + eps * vertices).clamp(0, 1).view(-1, 1, 1, d)
        worst = ce(model, corners, y[i].repeat(len(corners))).max()
        assert float(ce(model, x_adv[i:i + 1], y[i:i + 1])) >= float(worst) - 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_pgd_reaches_the_worst_case_loss_of_a_linear_model(seed):
    model, x, y = linear_case(seed=seed)
    worst = ce(model, fgsm(model, x, y, eps=0.2), y)
    for restarts, random_start in [(1, True), (3, True), (1, False)]:
        x_adv = pgd(model, x, y, eps=0.2, steps=20, restarts=restarts, random_start=random_start)
        torch.testing.assert_close(ce(model, x_adv, y), worst, rtol=1e-9, atol=1e-9)


def test_l2_pgd_reaches_the_l2_worst_case_of_a_linear_model():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, generator=g, dtype=torch.float64)
    model = BinaryLinear(w)
    x = 0.4 + 0.2 * torch.rand(4, 1, 1, 8, generator=g, dtype=torch.float64)  # far from the box's faces
    y = torch.tensor([0, 1, 0, 1])
    eps = 0.1
    direction = torch.where(y == 0, 1.0, -1.0).to(x)[:, None] * w / w.norm()
    expected = x + eps * direction.view_as(x)  # the L2 worst case: along +/- w
    # From x, every step is along w; from a random start, steps of 2 eps halve (at least) the
    # component orthogonal to w at each projection, so 60 steps leave nothing measurable.
    for run in (dict(random_start=False, steps=20), dict(random_start=True, steps=60, step_size=2 * eps)):
        x_adv = pgd(model, x, y, eps=eps, norm="l2", **run)
        torch.testing.assert_close(ce(model, x_adv, y), ce(model, expected, y), rtol=1e-9, atol=1e-12)


def test_deepfool_finds_the_exact_distance_to_a_linear_boundary():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(8, generator=g, dtype=torch.float64)
    model = BinaryLinear(w, b=-w.sum() / 2)
    x = 0.45 + 0.1 * torch.rand(6, 1, 1, 8, generator=g, dtype=torch.float64)
    y = model(x).argmax(1)
    overshoot = 0.02
    x_adv = deepfool(model, x, y, overshoot=overshoot)
    distance = model.score(x).abs() / w.norm()  # |w.x + b| / ||w||, the exact L2 distance
    found = (x_adv - x).flatten(1).norm(dim=1)
    expected = (1 + overshoot) * (distance + 1e-4 / w.norm())
    torch.testing.assert_close(found, expected)
    assert bool((model(x_adv).argmax(1) != y).all())


def test_attacks_aim_at_the_true_label_even_when_the_model_is_wrong():
    # R+FGSM's random sign step can cancel its gradient step on a linear model (for 6 pixels
    # with probability 1/64 an example, so ~7% of unseeded runs failed): seed its draw.
    torch.manual_seed(0)
    model, x, y = linear_case(n=8, seed=5)
    wrong = model(x).argmax(1) != y
    assert bool(wrong.any()) and bool((~wrong).any())  # the case needs both kinds of example
    before = ce(model, x, y)
    for attack in (fgsm, functools.partial(pgd, steps=5), rfgsm):
        assert bool((ce(model, attack(model, x, y, eps=0.1), y) > before).all())


def test_targeted_pgd_lowers_the_loss_of_the_target():
    model, x, y = linear_case(n=6, seed=6)
    target = 1 - y
    x_adv = pgd(model, x, y, eps=0.2, steps=10, target=target)
    assert bool((ce(model, x_adv, target) < ce(model, x, target)).all())


# --------------------------------------------------------------------------------------
# Restarts keep each example's strongest run
# --------------------------------------------------------------------------------------
def test_restarts_keep_each_examples_strongest_run():
    x, y = random_batch((16, 1, 6), torch.float32, 7)
    model = tiny_cnn(1, 6).eval()
    run = dict(eps=0.05, steps=2, step_size=0.01)  # weak on purpose, so the runs differ
    torch.manual_seed(11)
    singles = [pgd(model, x, y, restarts=1, **run) for _ in range(3)]  # the same random draws ...
    torch.manual_seed(11)
    best = pgd(model, x, y, restarts=3, **run)  # ... as the three restarts here
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(s), y, reduction="none") for s in singles])
        wrong = torch.stack([model(s).argmax(1) != y for s in singles])
    key = wrong.double() * 1e6 + losses.double()  # misclassified first, then the highest loss
    expected = torch.stack(singles)[key.argmax(0), torch.arange(len(x))]
    torch.testing.assert_close(best, expected)
    assert not torch.equal(singles[0], singles[1])


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
ALL_ATTACKS = {**{k: functools.partial(v, eps=0.1) for k, v in linf_attacks().items()}, **UNBOUNDED}


@pytest.mark.parametrize("name", list(ALL_ATTACKS))
def test_bad_input_is_rejected_with_the_parameter_named(name):
    attack = ALL_ATTACKS[name]
    model = tiny_cnn(1, 5)
    x, y = random_batch((3, 1, 5), torch.float32, 8)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        attack(model, x + 1.5, y)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        attack(model, x - 0.5, y)
    with pytest.raises(ValueError, match="x and y"):
        attack(model, x, y[:2])
    with pytest.raises(TypeError, match="x must be a floating-point"):
        attack(model, (x * 255).to(torch.uint8), y)
    for bad in (float("nan"), float("inf")):
        x_bad = x.clone()
        x_bad[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match="x holds NaN or infinite"):
            attack(model, x_bad, y)
    if "eps" in getattr(attack, "keywords", {}):
        with pytest.raises(ValueError, match="eps must be"):
            attack.func(model, x, y, eps=-0.1)


def test_bad_options_are_rejected_with_the_parameter_named():
    model = tiny_cnn(1, 5)
    x, y = random_batch((3, 1, 5), torch.float32, 9)
    cases = [
        (functools.partial(pgd, eps=0.1, norm="l1"), "norm"),
        (functools.partial(pgd, eps=0.1, steps=0), "steps"),
        (functools.partial(pgd, eps=0.1, restarts=0), "restarts"),
        (functools.partial(pgd, eps=0.1, loss="mse"), "loss"),
        (functools.partial(pgd, eps=0.1, target=y[:2]), "target"),
        (functools.partial(rfgsm, eps=0.1, alpha=0.2), "alpha"),
        (functools.partial(cw_l2, steps=0), "steps"),
        (functools.partial(jsma, gamma=1.5), "gamma"),
        (functools.partial(jsma, theta=0.0), "theta"),
        (functools.partial(spsa, eps=0.1, delta=0.0), "delta"),
        (functools.partial(deepfool, overshoot=-1.0), "overshoot"),
    ]
    for attack, name in cases:
        with pytest.raises(ValueError, match=name):
            attack(model, x, y)


# --------------------------------------------------------------------------------------
# JSMA's pair search and SPSA's early stop, against direct computations
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("seed", range(5))
def test_jsma_pair_choice_matches_a_brute_force_search(sign, seed):
    """The vectorised pair search picks the pair a loop over all pairs picks (Papernot et al.
    2016, Algorithm 3): admissible when sign*a > 0 and sign*b < 0, both pixels in the domain."""
    from coursepkg.attacks.jsma import _pair_choice

    g = torch.Generator().manual_seed(seed)
    n, d = 4, 7
    alpha = torch.randn(n, d, generator=g, dtype=torch.float64)
    beta = torch.randn(n, d, generator=g, dtype=torch.float64)
    domain = torch.rand(n, d, generator=g) > 0.3
    domain[-1] = False  # an example with no admissible pair at all
    pairs, found = _pair_choice(alpha, beta, domain, sign)
    for i in range(n):
        best, best_score = None, -1.0
        for p, q in itertools.permutations(range(d), 2):
            a, b = alpha[i, p] + alpha[i, q], beta[i, p] + beta[i, q]
            if domain[i, p] and domain[i, q] and sign * a > 0 and sign * b < 0 and abs(a * b) > best_score:
                best, best_score = {p, q}, float(abs(a * b))
        assert bool(found[i]) == (best is not None)
        if best is not None:
            assert set(pairs[i].tolist()) == best


class ConstantLogits(nn.Module):
    """Always class 0, whatever the input; counts the images it is shown."""

    def __init__(self):
        super().__init__()
        self.images = 0

    def forward(self, x):
        self.images += len(x)
        return torch.tensor([1.0, 0.0], dtype=x.dtype).expand(len(x), 2)


def test_spsa_spends_no_queries_on_examples_already_fooled():
    x, _ = random_batch((5, 1, 4), torch.float32, 12)
    model = ConstantLogits()
    x_adv = spsa(model, x, torch.ones(5, dtype=torch.long), eps=0.1, iters=3, samples=4)
    assert model.images == len(x), "every example is misclassified from the start: one look, no estimates"
    assert float((x_adv - x).abs().max()) <= 0.1 + TOL
    model.images = 0
    spsa(model, x, torch.zeros(5, dtype=torch.long), eps=0.1, iters=3, samples=4)  # never fooled
    assert model.images == len(x) * (3 + 1) + len(x) * 3 * 2 * 4  # 4 looks, 3 estimates of 2 x 4 probes
