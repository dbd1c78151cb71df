"""Tests of chapter 4's defences: the contractive penalty, double backpropagation and
defensive distillation, as losses for the one training loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursepkg.defences import gradient_regularisation as gr
from coursepkg.models import SmallCNN
from coursepkg.train import train


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return SmallCNN("fashion-mnist", width=2, hidden=8).eval()


@pytest.fixture
def images():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def tanh_mlp(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 6), nn.Sigmoid(),
                         nn.Linear(6, 3)).to(dtype)


def autograd_norms(stages, h):
    """Per stage and per example, the squared Frobenius norm of autograd's full Jacobian."""
    out = []
    for f in stages:
        per = [torch.autograd.functional.jacobian(f, h[i:i + 1]).pow(2).sum() for i in range(len(h))]
        out.append(torch.stack(per))
        h = f(h)
    return out


# --------------------------------------------------------------------------------------
# Contractive penalty: the closed form against autograd's Jacobian
# --------------------------------------------------------------------------------------
def test_exact_contractive_norms_match_autograd_jacobian_of_the_small_cnn(tiny_cnn, images):
    logits, norms = gr.layerwise_jacobian_norms(tiny_cnn, images, method="exact")
    b = tiny_cnn.blocks
    stages = [lambda t: b.conv1(b.normalize(t)), b.conv2, b.conv3, lambda t: b.fc1(b.flatten(t)), b.logits]
    expected = autograd_norms(stages, images)
    assert list(norms) == ["layer1", "layer2", "layer3", "layer4", "layer5"]
    for got, want in zip(norms.values(), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, tiny_cnn(images))


def test_exact_contractive_norms_match_autograd_for_smooth_activations():
    net = tanh_mlp(torch.float64)
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64)
    _, norms = gr.layerwise_jacobian_norms(net, x, method="exact")
    stages = [lambda t: net[2](net[1](net[0](t))), lambda t: net[4](net[3](t)), net[5]]
    for got, want in zip(norms.values(), autograd_norms(stages, x)):
        torch.testing.assert_close(got, want)


def test_projection_estimate_is_unbiased_for_the_whole_network_jacobian():
    net = tanh_mlp(torch.float64)
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    torch.manual_seed(3)
    _, est = gr.layerwise_jacobian_norms(net, x, method="projection", samples=4000, create_graph=False)
    want = torch.stack([torch.autograd.functional.jacobian(net, x[i:i + 1]).pow(2).sum() for i in range(2)])
    # relative standard error of the mean of 4000 draws is about sqrt(2 / 4000) ~ 2 %
    torch.testing.assert_close(est["network"], want, rtol=0.1, atol=0)


def test_contractive_loss_adds_weighted_penalty_and_trains(tiny_cnn, images):
    y = torch.tensor([0, 3, 7])
    ce = F.cross_entropy(tiny_cnn(images), y)
    penalty = gr.contractive_penalty(tiny_cnn, images)
    torch.testing.assert_close(gr.contractive_loss(0.0)(tiny_cnn, images, y), ce)
    torch.testing.assert_close(gr.contractive_loss(0.01)(tiny_cnn, images, y), ce + 0.01 * penalty)
    before = penalty.item()
    train(tiny_cnn, images, y, gr.contractive_loss(1e-2), epochs=30, batch_size=3, lr=1e-2, progress=False,
          device="cpu")
    assert gr.contractive_penalty(tiny_cnn, images).item() < before


def test_auto_falls_back_to_projection_for_non_chain_models(images):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

        def forward(self, x):
            return self.a(x) + self.a(x.flip(-1))

    _, norms = gr.layerwise_jacobian_norms(Residual(), images, samples=2)
    assert list(norms) == ["network"]
    with pytest.raises(TypeError, match="projection"):
        gr.layerwise_jacobian_norms(Residual(), images, method="exact")


# --------------------------------------------------------------------------------------
# Input-gradient penalty (double backpropagation)
# --------------------------------------------------------------------------------------
class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))

    def forward(self, x):
        return self.bias.expand(len(x), 3)


def test_input_gradient_penalty_is_zero_for_a_constant_model():
    x = torch.rand(4, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0])
    for norm in ("l1", "l2"):
        assert torch.equal(gr.input_gradient_penalty(Constant(), x, y, norm=norm), torch.zeros(4))


@pytest.mark.parametrize("norm, power", [("l1", 1), ("l1", 2), ("l2", 1), ("l2", 2)])
def test_input_gradient_penalty_matches_finite_differences(norm, power):
    net = tanh_mlp(torch.float64)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    h = 1e-6
    basis = torch.eye(16, dtype=torch.float64).view(16, 1, 4, 4)
    fd = torch.empty(3, 16, dtype=torch.float64)
    for i in range(3):
        plus = F.cross_entropy(net(x[i] + h * basis), y[i].repeat(16), reduction="none")
        minus = F.cross_entropy(net(x[i] - h * basis), y[i].repeat(16), reduction="none")
        fd[i] = (plus - minus) / (2 * h)
    q = fd.abs().sum(1) if norm == "l1" else fd.norm(dim=1)
    got = gr.input_gradient_penalty(net, x, y, norm=norm, power=power)
    torch.testing.assert_close(got, q ** power, rtol=1e-6, atol=1e-9)


def test_double_backprop_gives_the_penalty_a_gradient_in_the_weights():
    """The loss's gradient in one weight equals a finite difference of the loss: only true
    when the input gradient is differentiated through (create_graph=True)."""
    net = tanh_mlp(torch.float64)
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    loss = gr.input_gradient_loss(2.0, norm="l2", power=2)
    weight = net[1].weight
    loss(net, x, y).backward()
    analytic = weight.grad[3, 5].item()
    h = 1e-6
    with torch.no_grad():
        weight[3, 5] += h
        plus = loss(net, x, y).item()
        weight[3, 5] -= 2 * h
        minus = loss(net, x, y).item()
    assert analytic == pytest.approx((plus - minus) / (2 * h), rel=1e-5)
    ce_only = F.cross_entropy(net(x), y)
    (ce_grad,) = torch.autograd.grad(ce_only, weight)
    assert abs(analytic - ce_grad[3, 5].item()) > 1e-6  # the penalty contributes


# --------------------------------------------------------------------------------------
# Defensive distillation
# --------------------------------------------------------------------------------------
def test_soft_labels_sum_to_one_and_soften_with_temperature():
    net = tanh_mlp()
    x = torch.rand(8, 1, 4, 4)
    cold, hot = gr.soft_labels(net, x, 1.0), gr.soft_labels(net, x, 100.0)
    torch.testing.assert_close(cold.sum(1), torch.ones(8))
    torch.testing.assert_close(hot.sum(1), torch.ones(8))
    assert torch.equal(cold.argmax(1), hot.argmax(1))
    assert (hot.amax(1) <= cold.amax(1) + 1e-7).all()
    assert not cold.requires_grad


def test_temperature_module_and_losses():
    net = tanh_mlp()
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    torch.testing.assert_close(gr.Temperature(net, 20.0)(x), net(x) / 20.0)
    torch.testing.assert_close(gr.temperature_loss(20.0)(net, x, y), F.cross_entropy(net(x) / 20.0, y))
    # a student identical to its teacher has loss equal to the soft labels' entropy
    p = gr.soft_labels(net, x, 5.0)
    entropy = -(p * p.log()).sum(1).mean()
    torch.testing.assert_close(gr.distillation_loss(net, 5.0)(net, x, y), entropy)


def test_student_trained_at_temperature_reproduces_the_teacher():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    y = teacher(x).argmax(1)
    student = tanh_mlp()
    train(student, x, y, gr.distillation_loss(teacher, 10.0), epochs=60, batch_size=50, lr=1e-2,
          progress=False, device="cpu")
    agree = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean().item()
    assert agree >= 0.9, f"the student should reproduce the teacher's labels, agreement {agree:.2f}"


@pytest.mark.parametrize("make", [
    lambda: gr.temperature_loss(0.0), lambda: gr.temperature_loss(-1.0),
    lambda: gr.distillation_loss(tanh_mlp(), 0.0), lambda: gr.Temperature(tanh_mlp(), float("nan")),
    lambda: gr.soft_labels(tanh_mlp(), torch.rand(1, 1, 4, 4), -2.0),
    lambda: gr.contractive_loss(-1.0), lambda: gr.input_gradient_loss(-0.1),
    lambda: gr.input_gradient_loss(1.0, norm="linf"), lambda: gr.input_gradient_loss(1.0, power=3),
    lambda: gr.layerwise_jacobian_norms(tanh_mlp(), torch.rand(1, 1, 4, 4), method="svd"),
])
def test_bad_arguments_get_one_line_errors(make):
    with pytest.raises(ValueError) as err:
        make()
    assert "\n" not in str(err.value)


def test_distillation_loss_rejects_a_teacher_that_is_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        gr.distillation_loss(lambda x: x, 10.0)


# --------------------------------------------------------------------------------------
# The recipes
# --------------------------------------------------------------------------------------
def test_recipes_are_registered_with_their_budgets():
    from coursepkg import zoo

    for name in ("contractive", "input_gradient"):
        assert set(zoo.recipe(name).uses) == {"gradreg_train_subset", "gradreg_epochs", "batch_size", "lr"}
    for name in ("distillation_teacher", "distillation_student"):  # the baseline's budget
        assert set(zoo.recipe(name).uses) == set(zoo.recipe("standard").uses)
    assert zoo.recipe("distillation_student").defaults["temperature"] == 100.0


def test_large_logits_saturate_float32_softmax_and_zero_the_input_gradient():
    """The mechanism of defensive distillation's apparent robustness: once the gap between
    the top two logits exceeds about 104, every float32 softmax output is exactly 0 or 1
    and the cross-entropy's input gradient is exactly zero (Carlini and Wagner 2016);
    below about 87 the other classes' probabilities are still normal floats."""
    net = tanh_mlp()
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    hot = gr.Temperature(net, 1e-3)  # logits x 1000, as if trained at a high temperature
    with torch.no_grad():
        top2 = hot(x).topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    y = hot(x).argmax(1)
    grad_norm = gr.input_gradient_penalty(hot, x, y, create_graph=False)
    assert (gap > 110).sum() >= 5 and (gap < 80).sum() >= 5, "the test needs both kinds of image"
    assert torch.all(grad_norm[gap > 110] == 0)
    assert torch.all(grad_norm[gap < 80] > 0)
    assert torch.equal(net(x).argmax(1), y)  # the scaling changes no prediction
    assert torch.all(gr.input_gradient_penalty(net, x, y, create_graph=False) > 0)
