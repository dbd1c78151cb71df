"""Input purification: transform the image, then classify it.

A *purifier* is a ``torch.nn.Module`` from images in [0, 1] to images in [0, 1] of the same
shape, meant to wash an adversarial perturbation out before the classifier sees it.
:class:`Purified` puts one in front of a classifier and gives one defended model, so every
attack and every evaluation of the course applies to it unchanged.

================================================  =========================================  ==============================================
purifier                                          paper                                      what autograd sees
================================================  =========================================  ==============================================
:class:`JPEG`                                     Guo et al. 2018; Dziugaite et al. 2016     nothing: PIL computes it, the gradient is zero
:class:`BitDepth`                                 Xu et al. 2018; Guo et al. 2018            rounding: zero gradient almost everywhere
:class:`TVMinimisation`                           Guo et al. 2018 (after Rudin et al. 1992)  a random mask and an iterative solver
:class:`coursepkg.defences.pixelcnn.PixelDefend`  Song et al. 2018                           an argmax: zero gradient
================================================  =========================================  ==============================================

Image quilting (Guo et al. 2018) is not implemented; the chapter says why.
The attacks that see through all of them live in :mod:`coursepkg.adaptive`.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _check_images(x: torch.Tensor, who: str) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() != 4:
        raise ValueError(f"{who} expects a float tensor N x C x H x W of images in [0, 1]")


def no_gradient(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` as the output of a step autograd cannot see into: its gradient w.r.t. ``x`` is zero.

    A purifier computed outside autograd (PIL, an argmax) gives a gradient attack nothing to
    follow.  Rather than make the attack crash, the graph is kept and carries a zero
    gradient -- exactly what a white-box attacker who differentiates the defended model
    naively gets.
    """
    return value.detach() + 0.0 * x


class Purified(nn.Module):
    """``classifier(purifier(x))``: a purifier in front of a classifier, as one model.

    ``purifier`` maps images in [0, 1] to images in [0, 1]; ``classifier`` maps images to
    logits.  Wrap the purifier in :class:`coursepkg.adaptive.BPDA` to attack it adaptively.
    """

    def __init__(self, purifier: nn.Module, classifier: nn.Module):
        super().__init__()
        if not isinstance(purifier, nn.Module) or not isinstance(classifier, nn.Module):
            raise TypeError("purifier and classifier must both be torch.nn.Module instances")
        self.purifier = purifier
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purifier(x))


# --------------------------------------------------------------------------------------
# JPEG compression
# --------------------------------------------------------------------------------------
class JPEG(nn.Module):
    """JPEG compression and decompression at ``quality`` (1..95), through PIL.

    Guo et al. (2018) and Dziugaite et al. (2016) proposed it as a purifier: the lossy
    quantisation of the discrete cosine coefficients throws away high-frequency detail,
    adversarial perturbations included.  PIL encodes one image at a time (a loop over the
    batch that no library avoids); its result is outside autograd, so the gradient through
    this module is zero (:func:`no_gradient`).
    """

    def __init__(self, quality: int = 75):
        super().__init__()
        if isinstance(quality, bool) or int(quality) != quality or not 1 <= int(quality) <= 95:
            raise ValueError(f"quality must be an integer in 1..95 (PIL's range), got {quality!r}")
        self.quality = int(quality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        _check_images(x, "JPEG")
        if x.shape[1] not in (1, 3):
            raise ValueError(f"JPEG needs grey (1) or RGB (3) channels, got {x.shape[1]}")
        pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = np.empty_like(pixels)
        for k, image in enumerate(pixels):
            buffer = io.BytesIO()
            array = image[:, :, 0] if image.shape[2] == 1 else image
            Image.fromarray(array).save(buffer, format="JPEG", quality=self.quality)
            decoded = np.asarray(Image.open(buffer))
            out[k] = decoded.reshape(image.shape)
        value = torch.from_numpy(out).to(device=x.device, dtype=x.dtype).permute(0, 3, 1, 2) / 255
        return no_gradient(x, value)

    def extra_repr(self) -> str:
        return f"quality={self.quality}"


# --------------------------------------------------------------------------------------
# Bit-depth reduction
# --------------------------------------------------------------------------------------
class BitDepth(nn.Module):
    """Bit-depth reduction to ``bits`` bits per channel (Xu et al. 2018; Guo et al. 2018).

    ``x -> round(x (2^b - 1)) / (2^b - 1)``: a staircase with 2^b levels.  A perturbation
    smaller than half a step is rounded away; the gradient of ``round`` is zero almost
    everywhere (autograd returns exactly zero), so a white-box attack sees a flat model.

    ``first_threshold`` moves every rounding threshold by the same amount, so that the
    lowest one sits at that value instead of ``1 / (2 (2^b - 1))``:
    ``x -> clip(round((x - s) (2^b - 1)), 0, 2^b - 1) / (2^b - 1)`` with
    ``s = first_threshold - 1 / (2 (2^b - 1))``.  The levels are unchanged.  It is the
    default quantiser applied to images brightened by ``-s`` (a background at 0 becomes a
    grey just below the threshold), which is how chapter 3 puts a threshold within an
    attacker's reach of the background without changing the images or the classifier.
    """

    def __init__(self, bits: int = 3, *, first_threshold: float | None = None):
        super().__init__()
        if isinstance(bits, bool) or int(bits) != bits or not 1 <= int(bits) <= 8:
            raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")
        self.bits = int(bits)
        top = self.levels - 1
        default = 0.5 / top
        if first_threshold is None:
            first_threshold = default
        if not 0.0 < float(first_threshold) < 1.0 / top:
            raise ValueError(f"first_threshold must lie in (0, {1.0 / top:.4g}) for {self.bits} bit(s) "
                             f"(so every level stays reachable), got {first_threshold!r}")
        self.first_threshold = float(first_threshold)
        self.shift = self.first_threshold - default

    @property
    def levels(self) -> int:
        return 2 ** self.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = self.levels - 1
        if self.shift == 0.0:
            return torch.round(x.clamp(0, 1) * top) / top
        return torch.round((x.clamp(0, 1) - self.shift) * top).clamp(0, top) / top

    def extra_repr(self) -> str:
        if self.shift == 0.0:
            return f"bits={self.bits}"
        return f"bits={self.bits}, first_threshold={self.first_threshold:.4g}"


# --------------------------------------------------------------------------------------
# Total-variation minimisation with random pixel dropping
# --------------------------------------------------------------------------------------
def _gradient(z: torch.Tensor) -> torch.Tensor:
    """Forward differences (the discrete gradient), zero across the last row/column: N x C x 2 x H x W."""
    dx = F.pad(z[..., :, 1:] - z[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(z[..., 1:, :] - z[..., :-1, :], (0, 0, 0, 1))
    return torch.stack((dx, dy), dim=2)


def _divergence(p: torch.Tensor) -> torch.Tensor:
    """Minus the adjoint of :func:`_gradient`: ``<grad z, p> = -<z, div p>``."""
    px, py = p[:, :, 0], p[:, :, 1]
    div_x = F.pad(px[..., :, :-1], (0, 1, 0, 0)) - F.pad(px[..., :, :-1], (1, 0, 0, 0))
    div_y = F.pad(py[..., :-1, :], (0, 0, 0, 1)) - F.pad(py[..., :-1, :], (0, 0, 1, 0))
    return div_x + div_y


def total_variation(z: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation per image, ``sum_ij ||(grad z)_ij||_2`` (Rudin et al. 1992), shape N."""
    return _gradient(z).pow(2).sum(2).sqrt().flatten(1).sum(1)


def tv_objective(z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """``1/2 ||mask * (z - x)||^2 + weight * TV(z)`` per image, the objective :func:`tv_minimise` solves."""
    return 0.5 * (mask * (z - x)).pow(2).flatten(1).sum(1) + weight * total_variation(z)


def tv_minimise(x: torch.Tensor, mask: torch.Tensor, weight: float, iterations: int = 60) -> torch.Tensor:
    """Solve ``min_z 1/2 ||mask * (z - x)||^2 + weight * TV(z)`` for the whole batch at once.

    The primal-dual algorithm of Chambolle and Pock (2011, Algorithm 1) with step sizes
    ``tau = sigma = 1/sqrt(8)`` (``||grad||^2 <= 8``): a dual ascent step projected on the
    ball of radius ``weight``, a closed-form proximal step on the masked data term
    ``z = (v + tau mask x) / (1 + tau mask)``, then over-relaxation.  Every operation is a
    tensor operation on the batch: no loop over images, and autograd can follow it.
    """
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    tau = sigma = 1.0 / math.sqrt(8.0)
    z = x.clone()
    z_bar = z
    p = torch.zeros_like(_gradient(x))
    for _ in range(int(iterations)):
        p = p + sigma * _gradient(z_bar)
        # project each (dx, dy) pair on the disc of radius weight; the floor under the norm
        # keeps the derivative of sqrt finite where p = 0
        norm = p.pow(2).sum(2, keepdim=True).clamp_min(1e-20).sqrt()
        p = p / torch.clamp(norm / max(weight, 1e-12), min=1.0)
        z_next = (z + tau * _divergence(p) + tau * mask * x) / (1.0 + tau * mask)
        z_bar = 2.0 * z_next - z
        z = z_next
    return z.clamp(0.0, 1.0)


class TVMinimisation(nn.Module):
    """Total-variation minimisation with random pixel dropping (Guo et al. 2018, section 3.2).

    Each call keeps every pixel with probability ``keep`` (a fresh Bernoulli mask per image
    and per call, also in eval mode: the randomness is part of the defence) and returns the
    image of least total variation that stays close to the kept pixels,
    ``argmin_z 1/2 ||mask * (z - x)||^2 + weight * TV(z)`` (:func:`tv_minimise`).  Random,
    and iterative: the gradient a white-box attack gets is that of one random draw, through
    ``iterations`` unrolled solver steps.
    """

    def __init__(self, keep: float = 0.5, weight: float = 0.1, iterations: int = 60):
        super().__init__()
        if not 0.0 < float(keep) <= 1.0:
            raise ValueError(f"keep must be a probability in (0, 1], got {keep}")
        if float(weight) < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if int(iterations) < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations}")
        self.keep, self.weight, self.iterations = float(keep), float(weight), int(iterations)

    def sample_mask(self, x: torch.Tensor) -> torch.Tensor:
        """A Bernoulli(keep) mask, one value per pixel shared by its channels (N x 1 x H x W)."""
        return torch.bernoulli(torch.full((len(x), 1, *x.shape[2:]), self.keep, device=x.device, dtype=x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, "TVMinimisation")
        return tv_minimise(x, self.sample_mask(x), self.weight, self.iterations)

    def extra_repr(self) -> str:
        return f"keep={self.keep}, weight={self.weight}, iterations={self.iterations}"


class SoftBitDepth(nn.Module):
    """A differentiable stand-in for :class:`BitDepth`, for :class:`coursepkg.adaptive.BPDA`.

    Each step of the staircase becomes a logistic ramp:
    ``h(x) = (1 / (2^b - 1)) sum_k sigmoid(sharpness * ((2^b - 1) x - k + 1/2))``, k = 1 .. 2^b - 1,
    which tends to the staircase as ``sharpness`` grows.  Its gradient is large only near a
    rounding threshold -- where a small change of x does change the rounded image -- so an
    attack that follows it spends its budget on the pixels it can actually flip.
    """

    def __init__(self, bits: int = 3, sharpness: float = 10.0):
        super().__init__()
        if isinstance(bits, bool) or int(bits) != bits or not 1 <= int(bits) <= 8:
            raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")
        if not float(sharpness) > 0:
            raise ValueError(f"sharpness must be positive, got {sharpness}")
        self.bits, self.sharpness = int(bits), float(sharpness)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = 2 ** self.bits - 1
        thresholds = torch.arange(1, top + 1, device=x.device, dtype=x.dtype) - 0.5
        ramps = torch.sigmoid(self.sharpness * (x.unsqueeze(-1) * top - thresholds))
        return ramps.sum(-1) / top

    def extra_repr(self) -> str:
        return f"bits={self.bits}, sharpness={self.sharpness}"
