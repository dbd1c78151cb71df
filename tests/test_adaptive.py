"""BPDA and EOT: the wrappers that make attacks adaptive (coursepkg.adaptive)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursepkg.adaptive import (BPDA, EOT, ReachableSet, attack_reachable_set, attack_via, preimage_in_ball,
                                 reachable_levels)
from coursepkg.defences.purification import JPEG, BitDepth, Purified, TVMinimisation


def tiny_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    return model.eval()


def images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


class NoisyInput(nn.Module):
    """A random purifier for the tests: adds uniform noise and records every draw it made."""

    def __init__(self, scale: float = 0.2):
        super().__init__()
        self.scale = scale
        self.draws: list[torch.Tensor] = []

    def forward(self, x):
        noise = self.scale * (torch.rand_like(x) - 0.5)
        self.draws.append(noise)
        return x + noise


# ------------------------------------------------------------------------------------------
# BPDA
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("purifier", [BitDepth(2), JPEG(30), BitDepth(5)])
def test_bpda_forward_is_the_purifier_bit_for_bit(purifier):
    x = images()
    assert torch.equal(BPDA(purifier)(x), purifier(x))


def test_bpda_forward_of_a_random_purifier_is_one_draw_of_it():
    x, tv = images(), TVMinimisation(keep=0.5, weight=0.05, iterations=20)
    torch.manual_seed(3)
    expected = tv(x)
    torch.manual_seed(3)
    assert torch.equal(BPDA(tv)(x), expected)


@pytest.mark.parametrize("purifier", [BitDepth(2), JPEG(30)])
def test_bpda_identity_gradient_is_the_classifiers_gradient_at_the_purified_point(purifier):
    x, clf = images(), tiny_classifier()
    y = torch.arange(len(x)) % 5
    through_bpda = loss_gradient(Purified(BPDA(purifier), clf), x, y)
    at_purified = loss_gradient(clf, purifier(x), y)
    assert through_bpda.abs().sum() > 0
    torch.testing.assert_close(through_bpda, at_purified)


def test_bpda_gradient_is_the_vector_jacobian_product_of_the_approximation():
    x, clf = images(), tiny_classifier()
    y = torch.arange(len(x)) % 5
    purifier = BitDepth(3)
    approximation = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Sigmoid())
    through_bpda = loss_gradient(Purified(BPDA(purifier, approximation), clf), x, y)
    # independently: v = grad of the loss at purifier(x), then J_h(x)^T v
    v = loss_gradient(clf, purifier(x), y)
    _, vjp = torch.autograd.functional.vjp(approximation, x, v)
    torch.testing.assert_close(through_bpda, vjp)


def test_without_bpda_the_non_differentiable_purifiers_give_zero_gradient():
    x, clf = images(), tiny_classifier()
    y = torch.zeros(len(x), dtype=torch.long)
    for purifier in (BitDepth(3), JPEG(50)):
        assert loss_gradient(Purified(purifier, clf), x, y).abs().max() == 0


def test_bpda_rejects_an_approximation_of_another_shape():
    with pytest.raises(ValueError, match="same shape"):
        BPDA(BitDepth(3), nn.Flatten())(images())
    with pytest.raises(TypeError, match="transform"):
        BPDA(lambda x: x)


def test_pgd_runs_unchanged_through_bpda_and_moves_where_plain_pgd_cannot():
    from coursepkg.attacks import pgd

    x, clf = images(8), tiny_classifier()
    y = clf(BitDepth(2)(x)).argmax(1)
    plain = pgd(Purified(BitDepth(2), clf), x, y, eps=0.2, steps=5, random_start=False)
    adaptive = pgd(Purified(BPDA(BitDepth(2)), clf), x, y, eps=0.2, steps=5, random_start=False)
    assert torch.equal(plain, x)  # zero gradient, no random start: PGD never moves
    assert (adaptive - x).abs().max() > 0.1
    assert (adaptive - x).abs().max() <= 0.2 + 1e-6


# ------------------------------------------------------------------------------------------
# EOT
# ------------------------------------------------------------------------------------------
def test_eot_of_a_deterministic_model_is_the_model():
    x, clf = images(), tiny_classifier()
    torch.testing.assert_close(EOT(clf, 7)(x), clf(x))


def test_eot_output_and_gradient_equal_an_explicit_loop_over_the_same_draws():
    x, clf = images(5), tiny_classifier()
    y = torch.arange(len(x)) % 5
    noisy = NoisyInput()
    model = Purified(noisy, clf)
    samples = 6
    x_var = x.clone().requires_grad_(True)
    out = EOT(model, samples)(x_var)
    (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), x_var)

    assert len(noisy.draws) == 1 and noisy.draws[0].shape[0] == samples * len(x)  # one batched forward
    draws = noisy.draws[0].view(samples, *x.shape)
    x_loop = x.clone().requires_grad_(True)
    loop_out = sum(clf(x_loop + draws[k]) for k in range(samples)) / samples
    (loop_grad,) = torch.autograd.grad(F.cross_entropy(loop_out, y, reduction="sum"), x_loop)
    torch.testing.assert_close(out, loop_out)
    torch.testing.assert_close(grad, loop_grad)


def test_eot_mean_logit_gradient_is_the_mean_of_the_draws_gradients():
    x, clf = images(4), tiny_classifier()
    noisy = NoisyInput()
    samples = 5
    x_var = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(EOT(Purified(noisy, clf), samples)(x_var)[:, 2].sum(), x_var)
    draws = noisy.draws[0].view(samples, *x.shape)
    per_draw = []
    for k in range(samples):
        xk = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(clf(xk + draws[k])[:, 2].sum(), xk)
        per_draw.append(g)
    torch.testing.assert_close(grad, torch.stack(per_draw).mean(0))


def test_eot_probabilities_average_the_softmax_of_the_draws():
    x, clf = images(4), tiny_classifier()
    noisy = NoisyInput(scale=1.0)
    out = EOT(Purified(noisy, clf), 8, average="probabilities")(x)
    draws = noisy.draws[0].view(8, *x.shape)
    expected = torch.stack([F.softmax(clf(x + d), 1) for d in draws]).mean(0)
    torch.testing.assert_close(F.softmax(out, 1), expected)


def test_eot_chunks_give_the_same_average_as_one_batch():
    x, clf = images(4), tiny_classifier()
    noisy = NoisyInput()
    out = EOT(Purified(noisy, clf), 5, max_batch=6)(x)
    assert [len(d) for d in noisy.draws] == [6, 6, 6, 2]
    draws = torch.cat(noisy.draws).view(5, *x.shape)
    torch.testing.assert_close(out, torch.stack([clf(x + d) for d in draws]).mean(0))


def test_eot_converges_to_the_expectation_of_a_random_purifier():
    # E[x + U(-s/2, s/2)] = x, so for a linear classifier the EOT logits tend to clf(x)
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x = images(3)
    out = EOT(Purified(NoisyInput(scale=0.5), linear), 4000)(x)
    torch.testing.assert_close(out, linear(x), atol=0.02, rtol=0)


@pytest.mark.parametrize("kwargs, message", [({"samples": 0}, "samples"), ({"samples": 2.5}, "samples"),
                                             ({"samples": 2, "average": "median"}, "average"),
                                             ({"samples": 2, "max_batch": 0}, "max_batch")])
def test_eot_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EOT(tiny_classifier(), **kwargs)


def test_attack_via_crafts_on_the_view_and_passes_the_keyword_arguments():
    seen = {}

    def recording_attack(model, x, y, **kwargs):
        seen["model"], seen["kwargs"] = model, kwargs
        return x

    view, other = tiny_classifier(1), tiny_classifier(2)
    attack = attack_via(view, recording_attack, steps=7)
    x = images(2)
    assert torch.equal(attack(other, x, torch.zeros(2, dtype=torch.long), eps=0.1), x)
    assert seen["model"] is view and seen["kwargs"] == {"steps": 7, "eps": 0.1}
    with pytest.raises(TypeError, match="view"):
        attack_via(lambda x: x, recording_attack)


# ------------------------------------------------------------------------------------------
# The reachable set of an elementwise quantiser
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 3])
def test_reachable_levels_match_a_dense_scan_of_the_ball(bits):
    quantiser, x, eps = BitDepth(bits), images(4), 0.1
    low, high = reachable_levels(quantiser, x, eps)
    offsets = torch.linspace(-eps, eps, 201).view(-1, 1, 1, 1, 1)
    scanned = quantiser((x + offsets).clamp(0, 1))  # every value of a fine grid over the ball
    assert torch.equal(low, scanned.min(0).values) and torch.equal(high, scanned.max(0).values)


@pytest.mark.parametrize("bits", [1, 2, 5])
def test_preimage_in_ball_purifies_to_any_reachable_target_and_stays_in_the_ball(bits):
    quantiser, x, eps = BitDepth(bits), images(5), 0.1
    low, high = reachable_levels(quantiser, x, eps)
    pick = torch.rand(x.shape, generator=torch.Generator().manual_seed(3))
    target = quantiser(low + pick * (high - low))  # a random reachable purified image
    x_in = preimage_in_ball(quantiser, x, target, eps)
    assert torch.equal(quantiser(x_in), target)
    assert (x_in - x).abs().max() <= eps + 1e-6 and x_in.min() >= 0 and x_in.max() <= 1
    unchanged = target == quantiser(x)
    assert torch.equal(x_in[unchanged], x[unchanged])  # the nearest point: x where no change is needed


def test_preimage_in_ball_rejects_an_unreachable_target():
    quantiser, x = BitDepth(1), torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="cannot reach"):
        preimage_in_ball(quantiser, x, torch.ones_like(x), 0.1)


def test_reachable_set_view_spans_exactly_the_reachable_purified_images():
    quantiser, x, eps = BitDepth(2), images(3), 0.1
    classifier = tiny_classifier()
    low, high = reachable_levels(quantiser, x, eps)
    view = ReachableSet(classifier, quantiser, low, high)
    for u in (torch.zeros_like(x), torch.ones_like(x)):
        assert torch.allclose(view(u), classifier(quantiser(view.point(u))))
    assert torch.equal(view.point(torch.zeros_like(x)), low) and torch.equal(view.point(torch.ones_like(x)), high)
    u = torch.full_like(x, 0.3).requires_grad_(True)
    view(u).sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0  # straight-through: not the staircase's zero


def test_attack_reachable_set_returns_inputs_in_the_ball_and_beats_the_naive_gradient():
    from coursepkg.attacks import pgd

    quantiser, x, eps = BitDepth(1), images(6), 0.2
    classifier = tiny_classifier()
    y = classifier(quantiser(x)).argmax(1)  # every example right on the defended model
    defended = Purified(quantiser, classifier)
    attack = attack_reachable_set(classifier, quantiser, pgd, steps=10, restarts=1)
    x_adv = attack(defended, x, y, eps=eps)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    fooled = (defended(x_adv).argmax(1) != y).sum()
    naive = (defended(pgd(defended, x, y, eps=eps, steps=10)).argmax(1) != y).sum()
    assert fooled >= naive and fooled > 0
    with pytest.raises(ValueError, match="eps"):
        attack_reachable_set(classifier, quantiser, pgd)(defended, x, y)
