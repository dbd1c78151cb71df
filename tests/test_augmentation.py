"""Tests of chapter 2's defences: adversarial training, logit pairing and TRADES as losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import coursepkg.attacks as attacks
from coursepkg.config import profile
from coursepkg.defences import augmentation as aug
from coursepkg.train import cross_entropy_loss


class TinyNet(nn.Module):
    """A small classifier of 1 x 4 x 4 images into 3 classes that records its mode at every call."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.net(x)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 4, 4, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return x, y


def shifted(x, eps=0.1):
    """A deterministic stand-in for an adversarial example: every pixel moved by eps, inside [0, 1]."""
    return (x + eps * torch.where(x < 0.5, 1.0, -1.0)).clamp(0, 1)


def fake_attack(model, x, y, **kwargs):
    return shifted(x)


# --------------------------------------------------------------------------------------
# The objectives against hand computations
# --------------------------------------------------------------------------------------
def test_mixed_loss_interpolates_clean_and_adversarial_cross_entropy(batch):
    x, y = batch
    x, model = x.double(), TinyNet().double()  # float64: the two sides differ only by rounding
    x_adv = shifted(x)
    clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(x_adv), y)
    assert torch.allclose(aug.mixed_adversarial_loss(model, x, x_adv, y, clean_weight=1.0), clean)
    assert torch.allclose(aug.mixed_adversarial_loss(model, x, x_adv, y, clean_weight=0.0), adv)
    assert torch.allclose(aug.mixed_adversarial_loss(model, x, x_adv, y, clean_weight=0.3), 0.3 * clean + 0.7 * adv)


def test_adversarial_training_with_clean_weight_one_is_standard_training(batch):
    x, y = batch
    model = TinyNet()

    def must_not_run(*args, **kwargs):
        raise AssertionError("the attack ran although its term has weight zero")

    loss = aug.adversarial_training(must_not_run, clean_weight=1.0)
    assert torch.allclose(loss(model, x, y), cross_entropy_loss(model, x, y))


def test_logit_pairing_penalty_is_mean_squared_logit_distance():
    g = torch.Generator().manual_seed(2)
    # float64, so a wrong formula (off by far more than 1e-12) cannot hide in float32 rounding
    za = torch.randn(5, 4, generator=g, dtype=torch.float64)
    zb = torch.randn(5, 4, generator=g, dtype=torch.float64)
    by_hand = sum(float(((za[i] - zb[i]) ** 2).sum()) for i in range(5)) / 5
    assert aug.logit_pairing_penalty(za, zb).item() == pytest.approx(by_hand, rel=1e-12)
    assert aug.logit_pairing_penalty(za, za).item() == 0.0
    with pytest.raises(ValueError, match="logits_clean"):
        aug.logit_pairing_penalty(za, zb[:, :3])


def test_logit_pairing_loss_equals_its_equation(batch, monkeypatch):
    x, y = batch
    monkeypatch.setattr(attacks, "pgd", fake_attack)
    x, model = x.double(), TinyNet().double()  # float64: the two formulas agree to ~1e-15, not ~1e-6
    loss = aug.logit_pairing(0.1, steps=3, clean_weight=0.5, pairing_weight=0.7)
    z, z_adv = model(x), model(shifted(x))
    expected = (0.5 * F.cross_entropy(z, y) + 0.5 * F.cross_entropy(z_adv, y)
                + 0.7 * F.mse_loss(z, z_adv, reduction="sum") / len(x))
    assert loss(model, x, y).item() == pytest.approx(expected.item(), rel=1e-10)


def test_trades_kl_vanishes_at_the_clean_point_and_matches_torch(batch):
    # In float32 the two formulas differ by a few eps_32 * |log p| ~ 1e-7 on a KL of ~5e-4, i.e.
    # ~1e-4 relative: a tight comparison there is rounding noise.  In float64 that noise is
    # ~1e-12 relative, so rel=1e-9 still catches any wrong term (a missing p, a swapped p/q).
    x, y = batch
    x, model = x.double(), TinyNet().double()
    assert aug.trades_kl(model(x), model(x)).abs().item() < 1e-12
    assert torch.allclose(aug.trades_objective(model, x, x, y, beta=6.0), F.cross_entropy(model(x), y),
                          rtol=0, atol=1e-12)
    z, z_adv = model(x), model(shifted(x))
    independent = F.kl_div(F.log_softmax(z_adv, 1), F.softmax(z, 1), reduction="batchmean")
    assert aug.trades_kl(z, z_adv).item() == pytest.approx(independent.item(), rel=1e-9)
    assert aug.trades_kl(z, z_adv).item() > 0


def test_trades_perturbation_stays_in_the_ball_and_raises_the_kl(batch):
    x, _ = batch
    model = TinyNet()
    x_adv = aug.trades_perturbation(model, x, eps=0.1, steps=5)
    assert (x_adv - x).abs().max().item() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        noise = (x + 0.1 * torch.empty_like(x).uniform_(-1, 1)).clamp(0, 1)
        assert aug.trades_kl(model(x), model(x_adv)) > aug.trades_kl(model(x), model(noise))


# --------------------------------------------------------------------------------------
# How the losses treat the model
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [
    lambda: aug.pgd_training(0.1, steps=2),
    lambda: aug.fgsm_training(0.1),
    lambda: aug.rfgsm_training(0.1),
    lambda: aug.fast_fgsm_training(0.1),
    lambda: aug.logit_pairing(0.1, steps=2),
    lambda: aug.trades(0.1, steps=2),
], ids=["pgd", "fgsm", "rfgsm", "fast", "alp", "trades"])
def test_losses_craft_in_eval_mode_and_score_in_train_mode(batch, factory):
    x, y = batch
    model = TinyNet().train()
    value = factory()(model, x, y)
    assert value.dim() == 0 and torch.isfinite(value)
    assert model.training, "the loss must leave the model in the mode it found it"
    assert False in model.modes, "the adversarial examples must be crafted in eval mode"
    assert model.modes[-1] is True, "the training objective must be computed in train mode"
    assert all(p.grad is None for p in model.parameters()), "crafting must leave no .grad on parameters"
    assert all(p.requires_grad for p in model.parameters())
    value.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_hyperparameters_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="clean_weight"):
        aug.pgd_training(0.1, steps=3, clean_weight=1.5)
    with pytest.raises(ValueError, match="eps"):
        aug.pgd_training(-0.1, steps=3)
    with pytest.raises(ValueError, match="steps"):
        aug.trades(0.1, steps=0)
    with pytest.raises(ValueError, match="pairing_weight"):
        aug.logit_pairing(0.1, steps=3, pairing_weight=-1)
    with pytest.raises(ValueError, match="beta"):
        aug.trades(0.1, steps=3, beta=-2)
    with pytest.raises(TypeError, match="attack"):
        aug.adversarial_training("pgd")


# --------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------
def test_recipes_are_registered_and_take_their_budgets_from_the_profile(monkeypatch):
    from coursepkg import zoo
    from coursepkg.data import dataset_info
    from coursepkg.recipes import augmentation as recipes

    names = {"fgsm_training", "rfgsm_training", "fast_fgsm_training", "pgd_training", "logit_pairing", "trades"}
    assert names <= set(zoo.recipes())

    def small_dataset(name, split):  # random images, so the test reads no files
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return torch.rand(300, 1, 28, 28, generator=g), torch.randint(0, 10, (300,), generator=g)

    monkeypatch.setattr(recipes, "load_dataset", small_dataset)
    tiny = profile("quick").replace(adv_train_subset=64, adv_epochs=2, adv_train_steps=1, pgd_steps=2)
    info = dataset_info("fashion-mnist")
    model = recipes._build(info, width=4)
    facts = recipes.fit_fgsm_training(model, info, tiny, torch.device("cpu"))
    assert facts["epochs"] == 2 and facts["examples"] == 64
    assert [m["epoch"] for m in facts["monitor"]] == [1, 2]
    facts = recipes.fit_pgd_training(recipes._build(info, width=4), info, tiny, torch.device("cpu"))
    assert facts["epochs"] == 2 and facts["examples"] == 64


def test_large_eps_recipe_trains_and_monitors_at_its_own_budget(monkeypatch):
    from coursepkg import zoo
    from coursepkg.data import dataset_info
    from coursepkg.recipes import augmentation as recipes

    assert "fgsm_training_large_eps" in zoo.recipes()
    budgets = []
    real_fgsm = attacks.fgsm

    def spy_fgsm(model, x, y, *, eps, **kw):  # records the budget of every FGSM call
        budgets.append(eps)
        return real_fgsm(model, x, y, eps=eps, **kw)

    def small_dataset(name, split):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return torch.rand(300, 1, 28, 28, generator=g), torch.randint(0, 10, (300,), generator=g)

    monkeypatch.setattr(recipes, "load_dataset", small_dataset)
    monkeypatch.setattr(attacks, "fgsm", spy_fgsm)
    tiny = profile("quick").replace(co_train_subset=64, co_epochs=2, pgd_steps=2)
    info = dataset_info("fashion-mnist")
    facts = recipes.fit_fgsm_training_large_eps(recipes._build(info, width=4), info, tiny,
                                                torch.device("cpu"), eps_scale=2.0)
    assert facts["examples"] == 64 and facts["epochs"] == 2
    assert facts["eps"] == pytest.approx(2 * info.eps)
    assert [m["epoch"] for m in facts["monitor"]] == [1, 2]
    assert budgets and all(b == pytest.approx(2 * info.eps) for b in budgets)
    with pytest.raises(ValueError, match="eps_scale"):
        recipes.fit_fgsm_training_large_eps(recipes._build(info, width=4), info, tiny,
                                            torch.device("cpu"), eps_scale=0.0)


@pytest.mark.slow
def test_pgd_training_raises_pgd_accuracy_over_standard_training():
    """On a small Fashion-MNIST problem, PGD training must beat standard training under PGD."""
    from coursepkg.data import load_dataset, subset
    from coursepkg.models import SmallCNN
    from coursepkg.evaluate import accuracy
    from coursepkg.train import train

    x, y = subset(*load_dataset("fashion-mnist", "train"), 3000)
    xt, yt = subset(*load_dataset("fashion-mnist", "test"), 300)
    eps = 0.1

    def pgd_accuracy(model):
        x_adv = attacks.pgd(model, xt, yt, eps=eps, steps=10)
        return accuracy(model, x_adv, yt)

    torch.manual_seed(0)  # the initial weights: the margin asserted below must not depend on luck
    standard, robust = SmallCNN(width=8), SmallCNN(width=8)
    kw = dict(epochs=3, batch_size=64, lr=2e-3, device="cpu", progress=False)
    train(standard, x, y, cross_entropy_loss, **kw)
    train(robust, x, y, aug.pgd_training(eps, steps=3), **kw)
    acc_standard, acc_robust = pgd_accuracy(standard), pgd_accuracy(robust)
    assert acc_robust > acc_standard + 0.2, (acc_standard, acc_robust)


# --------------------------------------------------------------------------------------
# The chapter's analysis tools
# --------------------------------------------------------------------------------------
def test_precomputed_attack_returns_the_rows_crafted_for_each_image():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(40, 1, 4, 4, generator=g)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    attack = aug.precomputed_attack(x, x_adv)
    idx = torch.tensor([5, 0, 39, 5, 17])
    out = attack(TinyNet(), x[idx], torch.zeros(5, dtype=torch.long), eps=0.1)
    assert torch.equal(out, x_adv[idx])


def test_precomputed_attack_refuses_unknown_images_and_bad_shapes():
    x = torch.rand(10, 1, 4, 4)
    attack = aug.precomputed_attack(x, x.clone())
    with pytest.raises(ValueError, match="not among"):
        attack(TinyNet(), x[:2] + 0.5, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="one shape"):
        aug.precomputed_attack(x, x[:5])


def test_loss_surface_matches_a_direct_computation(batch):
    x, y = batch
    model = TinyNet().eval()
    e1, e2, surf = aug.loss_surface(model, x[0], y[0], eps=0.1, n=5, seed=0)
    assert surf.shape == e1.shape == e2.shape == (5, 5)
    assert float(e1[0, 0]) == 0.0 and float(e1[-1, 0]) == pytest.approx(0.1)
    with torch.no_grad():  # the origin of the grid is the clean loss
        clean = F.cross_entropy(model(x[:1]), y[:1]).item()
    assert float(surf[0, 0]) == pytest.approx(clean, rel=1e-5, abs=1e-6)
    point = x[:1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(point), y[:1]), point)
    r = torch.randint(0, 2, x[:1].shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    corner = (x[:1] + 0.1 * grad.sign() + 0.1 * r).clamp(0, 1)
    with torch.no_grad():
        expected = F.cross_entropy(model(corner), y[:1]).item()
    assert float(surf[-1, -1]) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="one image"):
        aug.loss_surface(model, x[:2], y[:2], eps=0.1)
