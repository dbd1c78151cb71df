"""Randomised defences (chapter 5): models that draw fresh randomness on every forward pass.

Each is an ``nn.Module`` from images in [0, 1] to logits wrapped around an *already
trained* classifier, so every attack of :mod:`coursepkg.attacks` runs on it unchanged and
:class:`coursepkg.adaptive.EOT` averages over its randomness.  All of them are random in
eval mode too: that is the defence.

* :class:`StochasticActivationPruning` -- SAP (Dhillon et al. 2018): at chosen layers,
  keep each activation with a probability that grows with its magnitude and rescale the
  survivors so that every activation keeps its expectation;
* :class:`RandomResizePad` and :func:`random_resize_pad` -- the input transformation of
  Xie et al. (2018), scaled to 28 x 28 images: resize to a random size, pad at a random
  offset, resize back to the classifier's size;
* :class:`GaussianNoise` -- Gaussian noise added to the input, the simplest randomised model.

Every random draw is batched: one independent draw per image per forward pass, no
Python loop over images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models import BlockModel


# ------------------------------------------------------------------------------------------
# Stochastic activation pruning
# ------------------------------------------------------------------------------------------
def sap_keep_probability(p: torch.Tensor, samples: int) -> torch.Tensor:
    """``1 - (1 - p)^r``: the chance that an activation of probability ``p`` is drawn at least once in ``r`` draws.

    Computed as ``-expm1(r log1p(-p))``, which stays accurate when ``p`` is tiny.
    """
    return -torch.expm1(samples * torch.log1p(-p.clamp(max=1.0)))


SAMPLERS = ("multinomial", "bernoulli")


def stochastic_activation_pruning(h: torch.Tensor, samples: int, sampler: str = "multinomial") -> torch.Tensor:
    """SAP on a batch of activations ``h`` (Dhillon et al. 2018, Algorithm 1), one draw per example.

    Per example, with the layer flattened to ``h_1 .. h_N``:

    1. ``p_j = |h_j| / sum_i |h_i|``;
    2. draw ``r = samples`` indices with replacement from ``p`` (``torch.multinomial``, all
       examples in one call);
    3. keep ``h_j`` if it was drawn at least once, scaled by ``1 / (1 - (1 - p_j)^r)``, and
       zero it otherwise.

    Activation ``j`` survives with probability exactly ``1 - (1 - p_j)^r``, so the scaling
    makes ``E[SAP(h)_j] = h_j`` (their equation 4).  The draw is not differentiable; the
    gradient flows through the kept activations and their scale.

    ``sampler="bernoulli"`` keeps each activation *independently* with that same
    probability: the same marginals and expectation, without the r draws (cheaper on a
    CPU), but not the paper's joint distribution (the number kept is no longer at most r).
    """
    if isinstance(samples, bool) or int(samples) != samples or int(samples) < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    samples = int(samples)
    flat = h.flatten(1)
    magnitude = flat.abs()
    total = magnitude.sum(1, keepdim=True)
    p = magnitude / total.clamp_min(torch.finfo(flat.dtype).tiny)
    alive = (total > 0).squeeze(1)  # an all-zero row has nothing to prune
    keep = sap_keep_probability(p, samples)
    if sampler == "multinomial":
        weights = torch.where(alive.unsqueeze(1), p, torch.ones_like(p)).detach()
        drawn = torch.multinomial(weights, samples, replacement=True)
        kept = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, drawn, True)
    else:
        kept = torch.rand_like(flat) < keep.detach()
    scale = 1.0 / keep.clamp_min(torch.finfo(flat.dtype).tiny)
    out = torch.where(kept, flat * scale, torch.zeros_like(flat))
    return out.view_as(h)


def _has_relu(block: nn.Module) -> bool:
    return any(isinstance(m, nn.ReLU) for m in block.modules())


class StochasticActivationPruning(nn.Module):
    """A trained :class:`~coursepkg.models.BlockModel` with SAP after some of its blocks (Dhillon et al. 2018).

    ``fraction`` sets the number of draws at each layer as a share of its activations,
    ``r = ceil(fraction * N)`` (the paper states r the same way); the larger it is, the
    fewer activations are pruned (``r -> infinity``: the identity).  ``layers`` names the
    blocks whose *outputs* are pruned; by default every block that contains a ReLU (for
    :class:`~coursepkg.models.SmallCNN`: ``conv1``, ``conv2``, ``conv3``, ``fc1``), i.e. the
    post-activation outputs the paper prunes, never the logits.  The classifier's weights
    are shared, not copied.  ``sampler``: see :func:`stochastic_activation_pruning`.
    """

    def __init__(self, classifier: BlockModel, fraction: float = 1.0,
                 layers: Sequence[str] | None = None, sampler: str = "multinomial"):
        super().__init__()
        if not isinstance(classifier, BlockModel):
            raise TypeError("classifier must be a coursepkg.models.BlockModel (it needs named blocks), "
                            f"got {type(classifier).__name__}")
        if isinstance(fraction, bool) or not float(fraction) > 0:
            raise ValueError(f"fraction must be a positive number (draws per activation), got {fraction!r}")
        names = list(classifier.blocks.keys())
        if layers is None:
            layers = [n for n in names[:-1] if _has_relu(classifier.blocks[n])]
        elif isinstance(layers, str):
            raise TypeError("layers must be a sequence of block names, e.g. ('conv1', 'fc1'), not a string")
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"unknown layers {unknown}: choose among the classifier's blocks {names}")
        if names[-1] in layers:
            raise ValueError(f"SAP prunes hidden activations; {names[-1]!r} is the logits layer")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.sampler = sampler
        self.classifier = classifier
        self.fraction = float(fraction)
        self.layers = tuple(layers)

    def samples_for(self, h: torch.Tensor) -> int:
        """The number of draws ``r`` at a layer whose output is ``h``."""
        return max(1, math.ceil(self.fraction * h[0].numel()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, block in self.classifier.blocks.items():
            x = block(x)
            if name in self.layers:
                x = stochastic_activation_pruning(x, self.samples_for(x), self.sampler)
        return x

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, layers={self.layers}, sampler={self.sampler!r}"


# ------------------------------------------------------------------------------------------
# Random resizing and padding
# ------------------------------------------------------------------------------------------
def random_resize_pad(x: torch.Tensor, *, min_size: int, max_size: int, padded: int,
                      out_size: int | None = None, mode: str = "bilinear",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Xie et al. (2018), one independent draw per image, batched.

    Each image (square, side ``s0``) is resized to a random side ``s`` drawn uniformly from
    the integers ``min_size .. max_size - 1``, placed at a random integer offset in a
    ``padded x padded`` canvas of zeros, and the canvas is resized to ``out_size`` (default
    ``s0``) for a classifier trained at the original size.  The resize, the padding and the
    resize back are one affine map of the image, so they are applied as one resampling
    (``F.grid_sample``, bilinear by default, zeros outside the image): values stay in
    [0, 1] and the result is differentiable in ``x``.
    """
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must be a batch of square images (N, C, H, H), got shape {tuple(x.shape)}")
    if not 1 <= min_size < max_size <= padded + 1:
        raise ValueError("need 1 <= min_size < max_size <= padded + 1 "
                         f"(got min_size={min_size}, max_size={max_size}, padded={padded})")
    n, side = len(x), x.shape[-1]
    out_size = side if out_size is None else int(out_size)
    dev = x.device
    size = torch.randint(min_size, max_size, (n,), generator=generator, device="cpu").to(dev, x.dtype)
    room = padded - size  # free pixels left of / above the image, drawn in 0 .. room
    u = torch.rand(n, 2, generator=generator, device="cpu").to(dev, x.dtype)
    offset = torch.floor(u * (room.unsqueeze(1) + 1))  # (left, top)
    # canvas coordinates in [-1, 1] (align_corners=False) -> input-image coordinates
    scale = padded / size
    centre = (2 * offset + size.unsqueeze(1)) / padded - 1  # the image's centre on the canvas
    theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = -centre * scale.unsqueeze(1)
    grid = F.affine_grid(theta, (n, x.shape[1], out_size, out_size), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


class RandomResizePad(nn.Module):
    """Random resizing and padding in front of a classifier (Xie et al. 2018), scaled to 28 x 28.

    The paper resizes a 299-pixel image to a random side in [299, 331) and pads it to 331,
    a growth of about 11% (331/299); here a 28-pixel image goes to a side in [``min_size``,
    ``max_size``) = [28, 32) and is padded to ``padded`` = 32, a growth of about 14%
    (32/28: the nearest whole-pixel canvas).  The course's classifiers
    are trained at 28 x 28, so the canvas is resized back to 28 x 28 before the (unchanged,
    already trained) classifier sees it: the image ends up shrunk by a factor between 28/32
    and 31/32 and shifted by a few pixels.  Fresh randomness on every forward pass.
    """

    def __init__(self, classifier: nn.Module, *, min_size: int = 28, max_size: int = 32,
                 padded: int = 32, mode: str = "bilinear"):
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        if not 1 <= min_size < max_size <= padded + 1:
            raise ValueError("need 1 <= min_size < max_size <= padded + 1 "
                             f"(got min_size={min_size}, max_size={max_size}, padded={padded})")
        self.classifier = classifier
        self.min_size, self.max_size, self.padded, self.mode = int(min_size), int(max_size), int(padded), mode

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The random resize-and-pad alone (images in, images of the same shape out)."""
        return random_resize_pad(x, min_size=self.min_size, max_size=self.max_size,
                                 padded=self.padded, mode=self.mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.transform(x))

    def extra_repr(self) -> str:
        return f"size in [{self.min_size}, {self.max_size}), padded={self.padded}, mode={self.mode!r}"


# ------------------------------------------------------------------------------------------
# Gaussian noise
# ------------------------------------------------------------------------------------------
class GaussianNoise(nn.Module):
    """``classifier(clip(x + sigma * n))`` with ``n ~ N(0, I)`` drawn afresh on every forward pass."""

    def __init__(self, classifier: nn.Module, sigma: float):
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
        if isinstance(sigma, bool) or not float(sigma) >= 0:
            raise ValueError(f"sigma must be a number >= 0 (the noise's standard deviation), got {sigma!r}")
        self.classifier, self.sigma = classifier, float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier((x + self.sigma * torch.randn_like(x)).clamp(0.0, 1.0))

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"
