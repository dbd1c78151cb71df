"""coursepkg.train: the loss falls, runs repeat, bad data and bad losses are reported."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coursepkg.models import SmallCNN
from coursepkg.evaluate import accuracy
from coursepkg.train import cross_entropy_loss, train


def separable_images(n=256, seed=0):
    """Two classes a CNN separates easily: bright top half versus bright bottom half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    x[y == 0, :, :14] += 0.7
    x[y == 1, :, 14:] += 0.7
    return x.clamp(0, 1), y


def test_loss_falls_and_model_learns():
    x, y = separable_images()
    torch.manual_seed(0)  # the initial weights: the thresholds below must not depend on luck
    model = SmallCNN("fashion-mnist", width=4, hidden=16)
    before = F.cross_entropy(model(x), y).item()
    log = train(model, x, y, cross_entropy_loss, epochs=3, batch_size=32, lr=3e-3,
                device="cpu", progress=False)
    after = F.cross_entropy(model(x), y).item()
    assert after < 0.5 * before
    assert log.epoch_loss[-1] < log.epoch_loss[0]
    assert accuracy(model, x, y) > 0.95
    assert not model.training  # left in eval mode


def test_runs_repeat_with_the_same_seed():
    x, y = separable_images(64)
    weights = []
    for _ in range(2):
        torch.manual_seed(123)
        model = SmallCNN("fashion-mnist", width=4, hidden=8)
        train(model, x, y, epochs=1, batch_size=16, seed=7, device="cpu", progress=False)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1])


def test_a_custom_loss_plugs_in():
    calls = []

    def counting_loss(model, xb, yb):
        calls.append(len(xb))
        return cross_entropy_loss(model, xb, yb)

    x, y = separable_images(50)
    train(SmallCNN("fashion-mnist", width=4, hidden=8), x, y, counting_loss, epochs=2, batch_size=20,
          device="cpu", progress=False)
    assert calls == [20, 20, 10] * 2


def test_bad_inputs_are_named():
    model = SmallCNN("fashion-mnist", width=4, hidden=8)
    x, y = separable_images(8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train(model, x * 255, y, progress=False, device="cpu")
    with pytest.raises(ValueError, match="same number"):
        train(model, x, y[:4], progress=False, device="cpu")
    with pytest.raises(TypeError, match="floating-point"):
        train(model, (x * 255).to(torch.uint8), y, progress=False, device="cpu")
    with pytest.raises(ValueError, match="scalar"):
        train(model, x, y, lambda m, a, b: F.cross_entropy(m(a), b, reduction="none"),
              progress=False, device="cpu")
    with pytest.raises(FloatingPointError, match="diverged"):
        train(model, x, y, lambda m, a, b: m(a).sum() * float("nan"), progress=False, device="cpu")
