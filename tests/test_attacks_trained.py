"""How the attacks behave on a real model: a small CNN trained here, in seconds, on a few
thousand Fashion-MNIST images (and, for SPSA, a smooth softplus network)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursepkg.attacks import cw_l2, deepfool, fgsm, jsma, pgd, spsa, train_substitute, transfer_attack
from coursepkg.data import load_dataset, subset
from coursepkg.evaluate import accuracy, perturbation_norms, predictions
from coursepkg.models import SmallCNN
from coursepkg.train import cross_entropy_loss, train

pytestmark = pytest.mark.slow

EPS = 0.1  # Fashion-MNIST's standard L-infinity budget


@pytest.fixture(autouse=True)
def seeded():
    """PGD's random starts, SPSA's probes and the substitute's initial weights draw on torch's
    global generator: seed it per test, so no threshold below depends on the tests' order."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def data():
    x_train, y_train = subset(*load_dataset("fashion-mnist", "train"), 4000, seed=1)
    x_test, y_test = subset(*load_dataset("fashion-mnist", "test"), 200, seed=1)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def cnn(data):
    x_train, y_train, *_ = data
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", width=8, hidden=64)
    train(model, x_train, y_train, cross_entropy_loss, epochs=3, batch_size=64, lr=3e-3,
          device="cpu", progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def test_set(cnn, data):
    *_, x_test, y_test = data
    assert accuracy(cnn, x_test, y_test) > 0.7, "the fixture model did not learn; the tests below would mean nothing"
    return x_test, y_test


def ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def test_pgd_loss_is_at_least_fgsm_loss(cnn, test_set):
    x, y = test_set
    fgsm_loss = ce(cnn, fgsm(cnn, x, y, eps=EPS), y)
    pgd_loss = ce(cnn, pgd(cnn, x, y, eps=EPS, steps=10), y)
    assert float(pgd_loss.mean()) >= float(fgsm_loss.mean())
    assert float((pgd_loss >= fgsm_loss - 1e-4).float().mean()) >= 0.9


def test_accuracy_falls_as_eps_grows_and_vanishes_at_eps_one(cnn, test_set):
    x, y = test_set
    budgets = [0.0, 0.02, 0.05, 0.1, 0.2, 1.0]
    accs = [accuracy(cnn, pgd(cnn, x, y, eps=e, steps=10), y) for e in budgets]
    assert all(later <= earlier + 0.01 for earlier, later in zip(accs, accs[1:])), accs
    assert accs[3] < accs[0] - 0.3, accs
    assert accs[-1] <= 0.01, f"PGD at eps = 1 leaves accuracy {accs[-1]:.3f}: masked gradients or a bug"


def test_targeted_pgd_reaches_its_targets(cnn, test_set):
    x, y = test_set
    target = (y + 1) % 10
    x_adv = pgd(cnn, x, y, eps=0.3, steps=20, target=target)
    assert float((predictions(cnn, x_adv) == target).float().mean()) > 0.8


def test_cw_defaults_succeed_and_beat_l2_pgd_at_equal_success(cnn, test_set):
    x, y = test_set
    x, y = x[:40], y[:40]
    correct = predictions(cnn, x) == y
    x, y = x[correct], y[correct]
    x_cw = cw_l2(cnn, x, y)  # the profile's steps and binary-search steps: the defaults
    cw_ok = predictions(cnn, x_cw) != y
    assert float(cw_ok.float().mean()) >= 0.9, "C&W with its default settings fails too often"
    assert torch.equal(x_cw[~cw_ok], x[~cw_ok]), "where C&W fails it must return x itself"
    cw_l2_norms = perturbation_norms(x, x_cw)["l2"][cw_ok]
    # L2 PGD at the smallest budget (of a grid) where it is at least as successful as C&W:
    for eps in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0):
        x_pgd = pgd(cnn, x, y, eps=eps, norm="l2", steps=20)
        pgd_ok = predictions(cnn, x_pgd) != y
        if pgd_ok.float().mean() >= cw_ok.float().mean():
            break
    pgd_l2_norms = perturbation_norms(x, x_pgd)["l2"][pgd_ok]
    assert float(cw_l2_norms.mean()) < float(pgd_l2_norms.mean())


def test_cw_binary_search_shrinks_the_perturbation(cnn, test_set):
    x, y = test_set
    x, y = x[:20], y[:20]
    one_constant = cw_l2(cnn, x, y, steps=50, search_steps=1, c_init=100.0)
    searched = cw_l2(cnn, x, y, steps=50, search_steps=4, c_init=100.0)  # starts at the same c
    both = (predictions(cnn, one_constant) != y) & (predictions(cnn, searched) != y)
    assert bool(both.any())
    l2_one = perturbation_norms(x, one_constant)["l2"][both]
    l2_searched = perturbation_norms(x, searched)["l2"][both]
    assert bool((l2_searched <= l2_one + 1e-6).all())  # the search keeps the best, so never worse
    assert float(l2_searched.mean()) < float(l2_one.mean())


def test_deepfool_lands_just_past_the_decision_boundary(cnn, test_set):
    x, y = test_set
    correct = predictions(cnn, x) == y
    x, y = x[correct][:100], y[correct][:100]
    x_adv = deepfool(cnn, x, y)
    fooled = predictions(cnn, x_adv) != y
    assert float(fooled.float().mean()) >= 0.95
    x, y, x_adv = x[fooled], y[fooled], x_adv[fooled]
    # Walk from x towards x_adv: the label must flip only near the end of the walk.
    fractions = torch.linspace(0, 1, 51)
    first_flip = torch.ones(len(x))
    for t in reversed(fractions.tolist()):
        flipped = predictions(cnn, x + t * (x_adv - x)) != y
        first_flip = torch.where(flipped, torch.tensor(t), first_flip)
    assert float(first_flip.median()) >= 0.9, f"median flip at {float(first_flip.median()):.2f} of the way"


def test_jsma_changes_at_most_its_fraction_of_pixels(cnn, test_set):
    x, y = test_set
    x, y = x[:30], y[:30]
    gamma = 0.1
    x_adv = jsma(cnn, x, y, gamma=gamma)
    changed = perturbation_norms(x, x_adv, tol=0.0)["l0"]
    assert int(changed.max()) <= gamma * x[0].numel()
    with torch.no_grad():
        logits = cnn(x)
    target = logits.scatter(1, y[:, None], float("-inf")).argmax(1)  # the default target
    assert float((predictions(cnn, x_adv) == target).float().mean()) >= 0.5


@pytest.fixture(scope="module")
def smooth_model(data):
    """A softplus network: smooth, so finite differences estimate its gradient well."""
    x_train, y_train, *_ = data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Softplus(), nn.Linear(64, 10))
    train(model, x_train, y_train, cross_entropy_loss, epochs=3, batch_size=64, lr=3e-3,
          device="cpu", progress=False)
    return model.eval()


def test_spsa_lowers_a_smooth_models_accuracy(smooth_model, test_set):
    x, y = test_set
    x, y = x[:100], y[:100]
    clean = accuracy(smooth_model, x, y)
    torch.manual_seed(0)
    noise = (x + EPS * torch.randint_like(x, 0, 2).mul(2).sub(1)).clamp(0, 1)
    attacked = accuracy(smooth_model, spsa(smooth_model, x, y, eps=EPS), y)  # the profile's budgets
    white_box = accuracy(smooth_model, pgd(smooth_model, x, y, eps=EPS), y)
    assert attacked < clean - 0.3, (clean, attacked)
    assert attacked < accuracy(smooth_model, noise, y) - 0.3
    # From forward passes alone it does at least half of what the gradient does.
    assert clean - attacked >= 0.5 * (clean - white_box), (clean, attacked, white_box)


def test_a_substitute_attack_transfers_well_above_chance(cnn, data, test_set):
    x_train, *_ = data
    x, y = test_set
    oracle_calls = []

    def label_only_oracle(images):
        oracle_calls.append(len(images))
        return predictions(cnn, images)  # labels, nothing else

    substitute = train_substitute(label_only_oracle, x_train[-150:], rounds=3, epochs=8, lam=0.1)
    # every point is labelled once: the seed images, then the points each augmentation adds
    assert substitute.substitute_facts["oracle_queries"] == sum(oracle_calls) == 150 * 4
    assert substitute.substitute_facts["set_sizes"] == [150, 300, 600]
    eps = 0.2
    transferred = transfer_attack(substitute, x, y, attack=functools.partial(pgd, steps=10), eps=eps)
    assert float((transferred - x).abs().max()) <= eps + 1e-6
    torch.manual_seed(0)
    noise = (x + eps * torch.randint_like(x, 0, 2).mul(2).sub(1)).clamp(0, 1)
    # "Chance": a perturbation of the same size that knows nothing about the model.
    assert accuracy(cnn, transferred, y) < accuracy(cnn, noise, y) - 0.2
