"""Chapter 6: detectors, the joined model, and the evaluation of a detector."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from coursepkg import attacks
from coursepkg.defences import detection as det
from coursepkg.evaluate import detection as evd
from coursepkg.models import SmallCNN


def tiny_cnn(dropout: float = 0.0, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN("fashion-mnist", width=4, hidden=16, dropout=dropout).eval()


def images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


class Fixed(nn.Module):
    """A 'detector' whose score is the mean pixel (easy to reason about)."""

    def forward(self, x):
        return x.flatten(1).mean(1)


# --------------------------------------------------------------------------------------
# Kernel density
# --------------------------------------------------------------------------------------
def test_gaussian_log_density_matches_a_direct_computation():
    torch.manual_seed(0)
    feats, bank = torch.randn(4, 3, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    classes = torch.tensor([0, 1, 2, 1])
    h = 0.8
    got = det.gaussian_log_density(feats, bank, labels, classes, h)
    for i in range(4):
        members = bank[labels == classes[i]]
        kernel = [math.exp(-float(((feats[i] - m) ** 2).sum()) / (2 * h * h)) / (2 * math.pi * h * h) ** 1.5
                  for m in members]
        assert float(got[i]) == pytest.approx(math.log(sum(kernel) / len(members)), rel=1e-9, abs=1e-9)


def test_kernel_density_score_is_differentiable_and_uses_the_predicted_class():
    model = tiny_cnn()
    x_train, y_train = images(30, seed=2), torch.arange(30) % 10
    kde = det.KernelDensity(model, x_train, y_train, bandwidth=1.2)
    x = images(3).requires_grad_(True)
    score = kde(x)
    (grad,) = torch.autograd.grad(score.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        predicted = model(x).argmax(1)
        assert torch.allclose(-kde.log_density(x, predicted), kde(x))


def test_kernel_density_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bandwidth"):
        det.KernelDensity(tiny_cnn(), images(4), torch.zeros(4, dtype=torch.long), bandwidth=0)
    with pytest.raises(ValueError, match="class"):
        det.gaussian_log_density(torch.zeros(1, 2), torch.zeros(2, 2), torch.tensor([0, 0]),
                                 torch.tensor([1]), 1.0)


# --------------------------------------------------------------------------------------
# Bayesian uncertainty
# --------------------------------------------------------------------------------------
def test_mc_dropout_variance_is_zero_without_dropout_and_positive_with_it():
    x = images(5)
    with_dropout = tiny_cnn(dropout=0.5)
    torch.manual_seed(0)
    assert torch.allclose(det.mc_dropout_uncertainty(with_dropout, x, 8, dropout=False), torch.zeros(5), atol=1e-7)
    assert torch.allclose(det.mc_dropout_uncertainty(tiny_cnn(dropout=0.0), x, 8), torch.zeros(5), atol=1e-7)
    u = det.mc_dropout_uncertainty(with_dropout, x, 8)
    assert (u > 0).all()
    # dropout is switched back off afterwards
    assert not any(m.always_on for m in with_dropout.modules() if hasattr(m, "always_on"))


def test_mc_dropout_uncertainty_is_the_summed_variance_of_the_passes():
    model, x = tiny_cnn(dropout=0.5), images(3)
    torch.manual_seed(5)
    u = det.mc_dropout_uncertainty(model, x, 6)
    torch.manual_seed(5)  # the same masks: one batch of 6 copies
    model.mc_dropout(True)
    probs = torch.softmax(model(x.repeat(6, 1, 1, 1)), 1).view(6, 3, -1)
    model.mc_dropout(False)
    expected = probs.var(0, unbiased=False).sum(1)
    assert torch.allclose(u, expected, atol=1e-6)


def test_bayesian_uncertainty_needs_dropout_and_two_samples():
    with pytest.raises(ValueError, match="dropout"):
        det.BayesianUncertainty(tiny_cnn(dropout=0.0), 5)
    with pytest.raises(ValueError, match="samples"):
        det.mc_dropout_uncertainty(tiny_cnn(dropout=0.5), images(2), 1)


# --------------------------------------------------------------------------------------
# Logistic regression
# --------------------------------------------------------------------------------------
def test_logistic_combination_separates_separable_scores_and_is_differentiable():
    torch.manual_seed(0)
    clean = torch.randn(200, 2)
    adv = torch.randn(200, 2) + torch.tensor([3.0, 0.0])
    lr = det.LogisticCombination(2).fit(clean, adv)
    assert lr.weight[0] > 0 and abs(float(lr.weight[1])) < float(lr.weight[0])
    assert evd.auc(lr(clean), lr(adv)) > 0.95
    scores = torch.zeros(1, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(lr(scores).sum(), scores)
    assert torch.allclose(grad[0], lr.weight / lr.std)
    with pytest.raises(ValueError, match="N x 2"):
        lr.fit(torch.zeros(3, 3), adv)


# --------------------------------------------------------------------------------------
# The joined model
# --------------------------------------------------------------------------------------
def test_extra_logit_crosses_the_top_class_exactly_at_the_threshold():
    model, x = tiny_cnn(), images(8)
    scores = Fixed()(x)
    threshold = float(scores.median())
    joined = det.Detected(model, Fixed(), threshold, gain=3.0)
    with torch.no_grad():
        out = joined(x)
        lead = out[:, -1] - model(x).max(1).values
    assert torch.allclose(lead, 3.0 * (scores - threshold), atol=1e-6)
    predicted_adversarial = out.argmax(1) == out.shape[1] - 1
    assert torch.equal(predicted_adversarial, scores > threshold)
    assert torch.equal(joined.detects(x), scores > threshold)


def test_evasion_view_counts_detection_as_the_true_class():
    model, x = tiny_cnn(), images(6)
    y = torch.arange(6) % 10
    joined = det.Detected(model, Fixed(), -1.0)  # fires on every image
    view = det.Evasion(joined, x, y)
    with torch.no_grad():
        g, e = joined(x), view(x)
    p = torch.softmax(g, 1)
    q = torch.softmax(e, 1)
    assert torch.allclose(q.gather(1, y[:, None]).squeeze(1), p.gather(1, y[:, None]).squeeze(1) + p[:, -1],
                          atol=1e-6)
    assert torch.equal(e.argmax(1), y)  # detected everywhere: "correct" for the attack
    # a subset of the rows, in another order, finds its own labels
    with torch.no_grad():
        assert torch.allclose(view(x[[4, 1]]), e[[4, 1]], atol=1e-6)


def test_evasion_view_refuses_a_row_beyond_its_budget():
    model, x = tiny_cnn(), images(6)
    y = torch.arange(6) % 10
    view = det.Evasion(det.Detected(model, Fixed(), 0.0), x, y, max_distance=0.5)
    with torch.no_grad():
        view(x[[2, 0]] + 0.01)  # within the budget: fine
        with pytest.raises(ValueError, match="budget"):
            view(1 - x[[0]])  # far from every clean image: its label is unknown
    with pytest.raises(ValueError, match="max_distance"):
        det.Evasion(det.Detected(model, Fixed(), 0.0), x, y, max_distance=-1.0)


def test_evades_means_wrong_class_and_not_flagged():
    model, x = tiny_cnn(), images(6)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = (pred + 1) % 10
    never = det.Detected(model, Fixed(), 10.0)
    always = det.Detected(model, Fixed(), -10.0)
    assert evd.evades(never, x, wrong).all()
    assert not evd.evades(never, x, pred).any()
    assert not evd.evades(always, x, wrong).any()


def test_detected_and_evading_reject_bad_arguments():
    with pytest.raises(TypeError, match="detector"):
        det.Detected(tiny_cnn(), "no", 0.0)
    with pytest.raises(ValueError, match="threshold"):
        det.Detected(tiny_cnn(), Fixed(), float("nan"))
    with pytest.raises(TypeError, match="attack"):
        det.evading(3)
    with pytest.raises(ValueError, match="layer"):
        det.DetectorNetwork(tiny_cnn(), det.DetectorHead(4), "conv9")


# --------------------------------------------------------------------------------------
# ROC, AUC, thresholds
# --------------------------------------------------------------------------------------
def test_auc_known_answers():
    assert evd.auc([0, 1, 2], [3, 4]) == pytest.approx(1.0)
    assert evd.auc([3, 4], [0, 1, 2]) == pytest.approx(0.0)
    assert evd.auc([1, 1], [1, 1]) == pytest.approx(0.5)
    assert evd.auc([0, 1, 2], [1.5, 3]) == pytest.approx(5 / 6)


def test_auc_equals_the_mann_whitney_statistic_with_ties():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 6, (40,), generator=g).double()
    adv = torch.randint(2, 8, (30,), generator=g).double()
    pairs = (adv[:, None] > clean[None]).double() + 0.5 * (adv[:, None] == clean[None]).double()
    assert evd.auc(clean, adv) == pytest.approx(float(pairs.mean()), abs=1e-12)
    roc = evd.roc_curve(clean, adv)
    assert float(roc.fpr[0]) == 0 and float(roc.tpr[-1]) == 1 and float(roc.fpr[-1]) == 1


def test_threshold_at_fpr_flags_the_chosen_share():
    clean = torch.arange(100).double()
    t = evd.threshold_at_fpr(clean, 0.05)
    assert evd.detection_rate(clean, t) == pytest.approx(0.05)
    assert evd.detection_rate(clean, evd.threshold_at_fpr(clean, 0.0)) == 0.0
    with pytest.raises(ValueError, match="fpr"):
        evd.threshold_at_fpr(clean, 1.5)
    with pytest.raises(ValueError, match="empty"):
        evd.auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        evd.auc([float("nan")], [1.0])


def test_detected_at_fpr_sets_threshold_and_gain():
    model, x = tiny_cnn(), images(40)
    joined = evd.detected_at_fpr(model, Fixed(), x, fpr=0.1, gain=2.0)
    assert float(joined.detects(x).float().mean()) == pytest.approx(0.1)
    assert joined.gain == pytest.approx(2.0 / float(Fixed()(x).double().std()), rel=1e-5)


# --------------------------------------------------------------------------------------
# Attacks through a detector
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pgd_through_the_evasion_view_evades_a_differentiable_detector():
    """PGD on the joined model beats a detector that a static PGD trips over."""
    torch.manual_seed(0)
    model = tiny_cnn()
    x = images(12, seed=3) * 0.5
    with torch.no_grad():
        y = model(x).argmax(1)
    detector = Fixed()  # mean brightness: a static attack brightens the image, a smart one need not
    joined = det.Detected(model, detector, float(detector(x).max()) + 1e-4)
    static = attacks.pgd(model, x, y, eps=0.3, steps=20)
    adaptive = evd.evasion(joined, x, y, det.evading(attacks.pgd, steps=40), eps=0.3)
    static_success = evd.static_evasion(joined, x, static, y)
    assert adaptive.success.value >= static_success.value
    assert adaptive.success.value >= 0.5
    assert (evd.evades(joined, adaptive.x_adv[adaptive.evaded], y[adaptive.evaded])).all()


def test_auc_interval_matches_hanley_mcneil_and_shrinks_with_n():
    clean, adv = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.5, 2.5, 3.5, 4.5])
    a = evd.auc(clean, adv)  # 13 of 16 pairs in order: 0.8125
    assert a == pytest.approx(13 / 16)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = ((a * (1 - a) + 3 * (q1 - a * a) + 3 * (q2 - a * a)) / 16) ** 0.5
    iv = evd.auc_interval(clean, adv)
    assert iv.value == pytest.approx(a)
    assert iv.hi == pytest.approx(min(1.0, a + 1.959964 * se), abs=1e-5)
    assert iv.lo == pytest.approx(a - 1.959964 * se, abs=1e-5)
    more = evd.auc_interval(clean.repeat(10), adv.repeat(10))  # same AUC, 10x the images
    assert more.hi - more.lo < iv.hi - iv.lo
    with pytest.raises(ValueError, match="confidence"):
        evd.auc_interval(clean, adv, confidence=1.5)


# --------------------------------------------------------------------------------------
# Carlini and Wagner's target-class density attack
# --------------------------------------------------------------------------------------
def test_target_class_density_is_the_density_of_the_given_class_and_tiles_for_eot():
    model = tiny_cnn()
    x_train, y_train = images(30, seed=2), torch.arange(30) % 10
    kde = det.KernelDensity(model, x_train, y_train, bandwidth=1.2)
    x, classes = images(3), torch.tensor([4, 0, 7])
    score = det.TargetClassDensity(kde, classes)
    with torch.no_grad():
        assert torch.allclose(score(x), -kde.log_density(x, classes))
        twice = score(torch.cat([x, x]))  # EOT's layout: the same images, draw after draw
        assert torch.allclose(twice, torch.cat([score(x), score(x)]))
        with pytest.raises(ValueError, match="target classes"):
            score(x[:2])
    combined = det.Combined([kde, Fixed()], det.LogisticCombination(2))
    swapped = det._with_target_density(combined, classes)
    assert isinstance(swapped.detectors[0], det.TargetClassDensity)
    assert swapped.detectors[1] is combined.detectors[1] and swapped.combination is combined.combination
    assert det.has_density(combined) and not det.has_density(Fixed())


def test_target_class_density_attack_returns_examples_that_evade_or_the_clean_image():
    torch.manual_seed(0)
    model = tiny_cnn()
    x_train, y_train = images(40, seed=2), torch.arange(40) % 10
    kde = det.KernelDensity(model, x_train, y_train, bandwidth=1.2)
    x = images(10, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)
        threshold = float(kde(x).max()) + 0.05  # no clean image flagged, a little room
    joined = det.Detected(model, kde, threshold)
    attack = det.target_class_density_attack(attacks.pgd, targets=2, steps=10)
    x_adv = attack(joined, x, y, eps=0.3)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    moved = (x_adv != x).flatten(1).any(1)
    assert moved.any(), "an attack at eps = 0.3 on an untrained network should fool some"
    assert evd.evades(joined, x_adv[moved], y[moved]).all()  # kept only when fooled, undetected
    with pytest.raises(TypeError, match="KernelDensity"):
        attack(det.Detected(model, Fixed(), 0.5), x, y, eps=0.3)
    with pytest.raises(ValueError, match="targets"):
        det.target_class_density_attack(attacks.pgd, targets=0)
