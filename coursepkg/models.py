"""Small classifiers that map images in [0, 1] to logits.

Every model of the course is a ``torch.nn.Module`` from images in [0, 1] to logits.  The
normalisation by the dataset's mean and standard deviation is the first layer *inside* the
model, so an attack's budget eps is always measured in pixel space.

* :class:`SmallCNN` -- for 28 x 28 grey images (Fashion-MNIST, MNIST);
* :class:`SmallResNet` -- a pre-activation ResNet for 32 x 32 colour images (CIFAR-10).

Both expose

* ``model.activations(x)`` -- an ordered dict of every block's output (detectors and
  activation pruning read these);
* ``model.mc_dropout(True)`` -- keeps dropout sampling in eval mode (Monte-Carlo dropout,
  Gal and Ghahramani 2016; used by the uncertainty detector of Feinman et al. 2017).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .data import DatasetInfo, dataset_info


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the model's first layer."""

    def __init__(self, mean, std):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if (std <= 0).any():
            raise ValueError("std must be positive in every channel")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MCDropout(nn.Dropout):
    """Dropout that can stay on in eval mode (``always_on = True``) for Monte-Carlo dropout."""

    def __init__(self, p: float = 0.5):
        super().__init__(p)
        self.always_on = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=self.training or self.always_on)


class BlockModel(nn.Module):
    """A classifier written as an ordered list of named blocks.

    ``forward`` runs the blocks in order; :meth:`activations` returns each block's output.
    Subclasses fill ``self.blocks`` (an ``nn.ModuleDict``) after the ``normalize`` layer.
    """

    blocks: nn.ModuleDict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x

    def activations(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Every block's output, in order; the last entry is the logits."""
        out = OrderedDict()
        for name, block in self.blocks.items():
            x = block(x)
            out[name] = x
        return out

    def mc_dropout(self, on: bool = True) -> "BlockModel":
        """Keep every dropout layer sampling in eval mode (``on=True``) or restore it."""
        for module in self.modules():
            if isinstance(module, MCDropout):
                module.always_on = bool(on)
        return self

    @property
    def has_dropout(self) -> bool:
        return any(isinstance(m, MCDropout) and m.p > 0 for m in self.modules())


def _conv_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU())


class SmallCNN(BlockModel):
    """Three 3x3 convolutions with max pooling, then two fully connected layers.

    Blocks: ``normalize``, ``conv1`` (28x28), ``conv2`` (14x14), ``conv3`` (7x7),
    ``flatten``, ``fc1``, ``logits``.  ``width`` scales the channels (16, 32, 64 at width 16).
    About 0.22 M parameters at width 16 (the zoo's default), 0.46 M at 32: small enough that the quick profile trains
    it -- adversarially too -- on two CPU cores.
    """

    def __init__(self, info: DatasetInfo | str = "fashion-mnist", *, width: int = 32,
                 hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        info = dataset_info(info) if isinstance(info, str) else info
        c, h, w = info.shape
        if (h, w) != (28, 28):
            raise ValueError(f"SmallCNN expects 28x28 images, {info.name} has {h}x{w}; use SmallResNet")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.blocks = nn.ModuleDict(OrderedDict(
            normalize=Normalize(info.mean, info.std),
            conv1=nn.Sequential(_conv_relu(c, width), nn.MaxPool2d(2)),
            conv2=nn.Sequential(_conv_relu(width, 2 * width), nn.MaxPool2d(2)),
            conv3=_conv_relu(2 * width, 2 * width),
            flatten=nn.Flatten(),
            fc1=nn.Sequential(nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(), MCDropout(dropout)),
            logits=nn.Linear(hidden, info.num_classes),
        ))


class PreActBlock(nn.Module):
    """A pre-activation residual block (He et al. 2016, "Identity mappings")."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class SmallResNet(BlockModel):
    """A small pre-activation ResNet for 32 x 32 colour images (CIFAR-10).

    Blocks: ``normalize``, ``stem``, ``stage1`` .. ``stage3`` (32, 16, 8 pixels), ``pool``,
    ``dropout``, ``logits``.  Widths ``width``, ``2 width``, ``4 width``.
    """

    def __init__(self, info: DatasetInfo | str = "cifar10", *, width: int = 32,
                 blocks_per_stage: int = 1, dropout: float = 0.0):
        super().__init__()
        info = dataset_info(info) if isinstance(info, str) else info
        c, h, w = info.shape
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        def stage(c_in, c_out, stride):
            layers = [PreActBlock(c_in, c_out, stride)]
            layers += [PreActBlock(c_out, c_out) for _ in range(blocks_per_stage - 1)]
            return nn.Sequential(*layers)

        self.blocks = nn.ModuleDict(OrderedDict(
            normalize=Normalize(info.mean, info.std),
            stem=nn.Conv2d(c, width, 3, padding=1, bias=False),
            stage1=stage(width, width, 1),
            stage2=stage(width, 2 * width, 2),
            stage3=stage(2 * width, 4 * width, 2),
            pool=nn.Sequential(nn.BatchNorm2d(4 * width), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            dropout=MCDropout(dropout),
            logits=nn.Linear(4 * width, info.num_classes),
        ))


def classifier_for(info: DatasetInfo | str, **kwargs) -> BlockModel:
    """The course's default architecture for a dataset: SmallCNN for 28x28, SmallResNet for 32x32."""
    info = dataset_info(info) if isinstance(info, str) else info
    if info.shape[1:] == (28, 28):
        return SmallCNN(info, **kwargs)
    return SmallResNet(info, **kwargs)
