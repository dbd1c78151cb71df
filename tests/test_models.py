"""coursepkg.models: shapes, the [0, 1] domain with normalisation inside, activations, dropout switch."""

from __future__ import annotations

import pytest
import torch

from coursepkg.data import dataset_info
from coursepkg.models import MCDropout, Normalize, SmallCNN, SmallResNet, classifier_for


@pytest.mark.parametrize("name,cls", [("fashion-mnist", SmallCNN), ("mnist", SmallCNN), ("cifar10", SmallResNet)])
def test_logit_shapes(name, cls):
    info = dataset_info(name)
    model = classifier_for(info).eval()
    assert isinstance(model, cls)
    x = torch.rand(5, *info.shape)
    assert model(x).shape == (5, 10)


def test_normalisation_is_inside_the_model():
    info = dataset_info("fashion-mnist")
    model = SmallCNN(info).eval()
    first = model.blocks["normalize"]
    assert isinstance(first, Normalize)
    x = torch.rand(4, 1, 28, 28)
    expected = (x - info.mean[0]) / info.std[0]
    torch.testing.assert_close(first(x), expected)
    # the model's input is raw pixels: the blocks after normalize see the normalised image
    acts = model.activations(x)
    torch.testing.assert_close(acts["normalize"], expected)


def test_activations_end_with_the_logits():
    model = SmallCNN("fashion-mnist").eval()
    x = torch.rand(3, 1, 28, 28)
    acts = model.activations(x)
    assert list(acts)[-1] == "logits"
    torch.testing.assert_close(acts["logits"], model(x))
    assert acts["conv1"].shape[-1] == 14 and acts["conv3"].shape[-1] == 7
    resnet = SmallResNet("cifar10").eval()
    racts = resnet.activations(torch.rand(2, 3, 32, 32))
    assert racts["stage3"].shape[-1] == 8


def test_input_gradients_flow_to_pixels():
    torch.manual_seed(0)  # a fixed random model and input, so a zero gradient is a bug, not bad luck
    model = SmallCNN("fashion-mnist").eval()
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mc_dropout_switch():
    torch.manual_seed(0)
    model = SmallCNN("fashion-mnist", dropout=0.5).eval()
    assert model.has_dropout
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), model(x))  # eval mode: deterministic
    model.mc_dropout(True)
    assert not torch.equal(model(x), model(x))  # dropout samples although in eval mode
    assert not model.training
    model.mc_dropout(False)
    assert torch.equal(model(x), model(x))
    assert not SmallCNN("fashion-mnist").has_dropout


def test_mc_dropout_layer_matches_dropout_in_training():
    layer = MCDropout(0.3).train()
    torch.manual_seed(1)
    a = layer(torch.ones(1000))
    torch.manual_seed(1)
    b = torch.nn.functional.dropout(torch.ones(1000), 0.3, training=True)
    torch.testing.assert_close(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="28x28"):
        SmallCNN("cifar10")
    with pytest.raises(ValueError, match="dropout"):
        SmallCNN("mnist", dropout=1.5)
    with pytest.raises(ValueError, match="std"):
        Normalize([0.0], [0.0])
