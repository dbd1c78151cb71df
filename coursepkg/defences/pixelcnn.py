"""A small PixelCNN and the purification of PixelDefend.

* :class:`PixelCNN` -- an autoregressive model of grey images (van den Oord et al. 2016):
  ``p(x) = prod_i p(x_i | x_1, ..., x_{i-1})`` over the pixels in raster order, each factor a
  discrete distribution over the 256 pixel values (a softmax, their section 5.3).  Masked
  convolutions keep the factorisation causal: the first layer (mask ``"A"``) never sees the
  pixel it predicts, the later ones (mask ``"B"``) see the features of that pixel, which
  only hold information from the pixels before it.
* :class:`PixelDefend` -- the purification of Song et al. (2018, Algorithm 1): visit the
  pixels in raster order and move each one to its most likely value under the PixelCNN,
  conditioned on the pixels purified so far, within ``eps_defend`` of its input value.

PixelDefend costs one PixelCNN evaluation per pixel (784 on Fashion-MNIST).  Each one is
computed on the pixel's *receptive cone* only (:meth:`PixelCNN.logits_at`), a few rows
above the pixel and a few columns either side, shrinking layer by layer, which gives
exactly the logits of the whole image (checked in ``tests/test_pixelcnn.py``) at a
fraction of the cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetInfo, dataset_info
from .purification import no_gradient

LEVELS = 256  #: the pixel values an 8-bit grey image takes


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as integer pixel values 0..255 (``round(255 x)``)."""
    return (x * (LEVELS - 1)).round().clamp(0, LEVELS - 1).long()


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only the pixels above and to the left (van den Oord et al. 2016, fig. 1).

    Mask ``"A"`` also hides the centre pixel (the first layer: a pixel must not see itself);
    mask ``"B"`` keeps it (later layers: the centre then holds only earlier pixels' information).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, mask: str):
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(c_in, c_out, kernel_size, padding=kernel_size // 2)
        centre = kernel_size // 2
        keep = torch.zeros(kernel_size, kernel_size)
        keep[:centre, :] = 1  # every row above the centre
        keep[centre, :centre + (mask == "B")] = 1  # the centre row, left of (or up to) the centre
        self.register_buffer("mask", keep[None, None])
        self.mask_type = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ResidualMaskedBlock(nn.Module):
    """``x + conv_B(relu(x))``: a 3x3 mask-B convolution with a skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = MaskedConv2d(channels, channels, 3, "B")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.relu(x))


class PixelCNN(nn.Module):
    """A small PixelCNN over 256 grey levels (van den Oord et al. 2016).

    ``forward(x)`` maps images in [0, 1] (N x 1 x H x W) to logits N x 256 x H x W, where
    ``logits[:, :, i, j]`` parameterises ``p(x_ij | pixels before (i, j) in raster order)``.
    Layers: a ``first_kernel`` x ``first_kernel`` mask-A convolution, ``layers`` residual
    3x3 mask-B convolutions, then two 1x1 convolutions to the 256 logits.
    """

    def __init__(self, info: DatasetInfo | str = "fashion-mnist", *, channels: int = 32,
                 layers: int = 4, first_kernel: int = 5):
        super().__init__()
        info = dataset_info(info) if isinstance(info, str) else info
        if info.channels != 1:
            raise ValueError(
                f"this PixelCNN models grey images; {info.name} has {info.channels} channels "
                "(colour needs the channel masks of van den Oord et al. 2016, section 3.4)"
            )
        if channels < 1 or layers < 0:
            raise ValueError(f"channels must be >= 1 and layers >= 0, got {channels} and {layers}")
        self.image_shape = info.shape
        self.first = MaskedConv2d(1, channels, first_kernel, "A")
        self.body = nn.Sequential(*[ResidualMaskedBlock(channels) for _ in range(layers)])
        # the 1x1 head as linear layers on channels-last features: the same maths as 1x1
        # convolutions, several times faster on a CPU for 256 outputs
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(channels, channels), nn.ReLU(),
                                  nn.Linear(channels, LEVELS))
        #: how far the logits of a pixel look: rows above it, columns either side
        self.reach = first_kernel // 2 + layers

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden features before the 1x1 head (N x channels x H x W)."""
        return self.body(self.first(2 * x - 1))

    def logits_last(self, x: torch.Tensor) -> torch.Tensor:
        """The logits channels-last, N x H x W x 256."""
        return self.head(self.features(x).permute(0, 2, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_last(x).permute(0, 3, 1, 2)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x)`` in nats per image (a vector of length N), x in [0, 1] read as 8-bit levels."""
        logits = self.logits_last(x)
        levels = to_levels(x).reshape(-1)
        per_pixel = F.cross_entropy(logits.reshape(-1, LEVELS), levels, reduction="none")
        return per_pixel.view(len(x), -1).sum(1)

    def sampled_nll(self, x: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """An unbiased estimate of :meth:`nll` from a random ``fraction`` of the pixel positions.

        The convolutions still run on whole images; only the 256-way head and its softmax --
        most of a training step's cost on a CPU -- are evaluated at the sampled positions
        (the same positions for every image of the batch), and the sum is rescaled.
        """
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        feats = self.features(x).flatten(2)  # N x C x HW
        positions = feats.shape[2]
        count = max(1, round(fraction * positions))
        chosen = torch.randperm(positions, generator=generator)[:count].to(x.device)
        logits = self.head(feats[:, :, chosen].transpose(1, 2))  # N x count x 256
        levels = to_levels(x).flatten(1)[:, chosen]
        per_pixel = F.cross_entropy(logits.reshape(-1, LEVELS), levels.reshape(-1), reduction="none")
        return per_pixel.view(len(x), count).sum(1) * (positions / count)

    @torch.no_grad()
    def bits_per_dim(self, x: torch.Tensor, *, batch_size: int = 500) -> float:
        """The mean negative log-likelihood in bits per pixel: ``-log2 p(x) / (H W)``."""
        dev = next(self.parameters()).device
        total = sum(float(self.nll(x[i:i + batch_size].to(dev)).sum()) for i in range(0, len(x), batch_size))
        return total / (len(x) * x[0].numel() * math.log(2))

    def logits_at(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The logits of pixel (i, j) (N x 256), computed on its receptive cone only.

        The logits of (i, j) depend on rows ``i - reach .. i`` and columns
        ``j - reach .. j + reach``.  The first layer runs on that window; before each later
        layer the features are cropped to the part the remaining layers still need (one row
        and one column less per 3x3 layer).  A crop's own zero padding only spoils the ring
        at its cut edges, which the next crop removes, so the result equals
        ``self(x)[:, :, i, j]`` exactly -- with about four times less arithmetic than the
        whole window, and far less than the whole image.
        """
        _, h, w = self.image_shape
        top, left = max(i - self.reach, 0), max(j - self.reach, 0)
        feats = self.first(2 * x[:, :, top:i + 1, left:min(j + self.reach, w - 1) + 1] - 1)
        remaining = len(self.body)
        for block in self.body:
            r0, c0 = max(i - remaining, 0), max(j - remaining, 0)
            c1 = min(j + remaining, w - 1)
            feats = block(feats[:, :, r0 - top:, c0 - left:c1 - left + 1].contiguous())
            top, left = r0, c0
            remaining -= 1
        return self.head(feats[:, :, i - top, j - left])


def pixeldefend(pixelcnn: PixelCNN, x: torch.Tensor, eps_defend: float, *,
                progress: bool = False) -> torch.Tensor:
    """PixelDefend's purification (Song et al. 2018, Algorithm 1), batched over images.

    For every pixel (i, j) in raster order, with ``x'`` the image purified so far:
    ``x'_ij = argmax_{v : |v - x_ij| <= eps_defend} p_CNN(v | x'_<(i,j))``, v on the 256
    grey levels.  ``eps_defend`` is in pixel units ([0, 1]); 0 returns the 8-bit rounding
    of ``x``.  Returns a new tensor in [0, 1]; nothing here is differentiable.
    """
    if not 0.0 <= float(eps_defend) <= 1.0:
        raise ValueError(f"eps_defend must lie in [0, 1] (pixel units), got {eps_defend}")
    steps = math.floor(float(eps_defend) * (LEVELS - 1) + 1e-6)
    dev = next(pixelcnn.parameters()).device
    was_training = pixelcnn.training
    pixelcnn.eval()
    levels = to_levels(x.detach().to(dev))  # N x 1 x H x W, the input's values
    purified = levels.float() / (LEVELS - 1)
    _, h, w = pixelcnn.image_shape
    grid = torch.arange(LEVELS, device=dev)
    bar = _progress(h * w, progress)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                if steps > 0:
                    logits = pixelcnn.logits_at(purified, i, j)  # N x 256
                    centre = levels[:, 0, i, j, None]
                    allowed = (grid[None] - centre).abs() <= steps
                    best = logits.masked_fill(~allowed, float("-inf")).argmax(1)
                    purified[:, 0, i, j] = best.float() / (LEVELS - 1)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    pixelcnn.train(was_training)
    return purified.to(x)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="PixelDefend", leave=False, mininterval=1.0)


class PixelDefend(nn.Module):
    """PixelDefend as a purifier module: images in [0, 1] -> purified images in [0, 1].

    Put it in front of a classifier with :class:`coursepkg.defences.purification.Purified`.
    Its output is an argmax, so autograd sees a constant: the gradient through it is zero
    (:func:`coursepkg.defences.purification.no_gradient`), which is why white-box attacks
    stall and :class:`coursepkg.adaptive.BPDA` is needed.
    """

    def __init__(self, pixelcnn: PixelCNN, eps_defend: float, *, batch_size: int = 1000,
                 progress: bool = False):
        super().__init__()
        if not 0.0 <= float(eps_defend) <= 1.0:
            raise ValueError(f"eps_defend must lie in [0, 1] (pixel units), got {eps_defend}")
        self.pixelcnn = pixelcnn
        self.eps_defend = float(eps_defend)
        self.batch_size = int(batch_size)
        self.progress = progress

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([pixeldefend(self.pixelcnn, x[k:k + self.batch_size], self.eps_defend,
                                     progress=self.progress)
                         for k in range(0, len(x), self.batch_size)])
        return no_gradient(x, out)

    def extra_repr(self) -> str:
        return f"eps_defend={self.eps_defend}"


# --------------------------------------------------------------------------------------
# What an attacker within eps can make PixelDefend output
# --------------------------------------------------------------------------------------
def pixeldefend_candidates(pixelcnn: PixelCNN, x: torch.Tensor, context: torch.Tensor, eps_defend: float,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PixelDefend's output at every pixel for every attacker shift within ``eps``, the context held fixed.

    PixelDefend moves pixel (i, j) of its input ``x'`` to
    ``argmax_{|v - x'_ij| <= eps_defend} p(v | context_<(i,j))``.  With the conditioning
    pixels fixed to ``context`` (e.g. the purified clean image), that output depends on
    ``x'_ij`` alone, and an attacker can shift ``x'_ij`` by ``a`` levels, ``|a| <= 255 eps``.
    Returns ``(outputs, shifts)``: ``outputs`` is N x C x H x W x K, the output in [0, 1] for
    each of the K shifts ``shifts`` (a vector of levels).  A pixel whose outputs all agree
    is locked: no perturbation within eps moves it while the context stands.
    """
    steps = math.floor(float(eps_defend) * (LEVELS - 1) + 1e-6)
    reach = math.floor(float(eps) * (LEVELS - 1) + 1e-6)
    dev = next(pixelcnn.parameters()).device
    levels = to_levels(x.detach().to(dev)).unsqueeze(-1)  # N x 1 x H x W x 1
    with torch.no_grad():
        logits = pixelcnn.logits_last(context.detach().to(dev)).unsqueeze(1)  # N x 1 x H x W x 256
    grid = torch.arange(LEVELS, device=dev)
    shifts = torch.arange(-reach, reach + 1, device=dev)
    outputs = []
    for a in shifts.tolist():  # 2 * 255 eps + 1 masked argmaxes over the batch
        centre = (levels + a).clamp(0, LEVELS - 1)
        outputs.append(logits.masked_fill((grid - centre).abs() > steps, float("-inf")).argmax(-1))
    return torch.stack(outputs, -1).float().div(LEVELS - 1).to(x), shifts


class NearestCandidate(nn.Module):
    """Snaps every pixel to the nearest of its own candidate values (``candidates``: N x C x H x W x K)."""

    def __init__(self, candidates: torch.Tensor):
        super().__init__()
        self.register_buffer("candidates", candidates)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        nearest = (self.candidates - z.unsqueeze(-1)).abs().argmin(-1, keepdim=True)
        return self.candidates.gather(-1, nearest).squeeze(-1)


def attack_pixeldefend_outputs(classifier: nn.Module, purifier: "PixelDefend", attack, **fixed):
    """An adaptive attack on ``Purified(purifier, classifier)`` run in PixelDefend's output space.

    On a batch: purify ``x`` once; with that purified image as the fixed context, list the
    outputs each pixel can take under every shift within ``eps``
    (:func:`pixeldefend_candidates`); run ``attack`` (``eps=1``, the ``fixed`` keyword
    arguments) on :class:`coursepkg.adaptive.ReachableSet` over those outputs; then give
    every pixel the smallest shift that produces the output the attack chose.  The real
    PixelDefend then re-purifies with the *new* context, which can differ from the plan:
    the attack is exact pixel by pixel, an approximation across pixels, and so only an
    upper bound on what survives, like every attack.
    """
    from ..adaptive import ReachableSet, budget_from

    fixed = dict(fixed)
    default_eps = fixed.pop("eps", None)

    def pixeldefend_output_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        eps = budget_from(kwargs, default_eps)
        with torch.no_grad():
            context = purifier(x)
        outputs, shifts = pixeldefend_candidates(purifier.pixelcnn, x, context, purifier.eps_defend, float(eps))
        view = ReachableSet(classifier, NearestCandidate(outputs), outputs.min(-1).values,
                            outputs.max(-1).values).to(x.device)
        span = view.high - view.low
        start = torch.where(span > 0, (context - view.low) / span.clamp_min(1e-12), torch.zeros_like(x))
        u = attack(view, start, y, **{**fixed, **kwargs, "eps": 1.0})
        with torch.no_grad():
            chosen = view.quantiser(view.point(u))
            cost = torch.where(outputs == chosen.unsqueeze(-1), shifts.abs(), torch.full_like(shifts, LEVELS))
            shift = shifts[cost.argmin(-1)]
            x_adv = (to_levels(x) + shift).clamp(0, LEVELS - 1).to(x.dtype) / (LEVELS - 1)
            return torch.minimum(torch.maximum(x_adv, x - float(eps)), x + float(eps)).clamp(0, 1)

    pixeldefend_output_attack.__name__ = f"{getattr(attack, '__name__', 'attack')}_in_pixeldefend_outputs"
    return pixeldefend_output_attack
