"""Certified defences: randomised smoothing and interval bound propagation.

Chapter 8 of the book.  Unlike every other defence of the course, these come with a
*proof*: for a given input, no perturbation within a stated radius changes the answer.

**Randomised smoothing** (Cohen, Rosenfeld and Kolter 2019).  A base classifier ``f`` is
turned into the smoothed classifier

    g(x) = argmax_c P(f(x + delta) = c),   delta ~ N(0, sigma^2 I)         (their eq. 1)

and if the top class has probability ``p_A`` and the runner-up at most ``1 - p_A``, then
``g`` is constant on the L2 ball of radius ``sigma * Phi^-1(p_A)`` (their Theorem 1 with
``p_B = 1 - p_A``).  ``p_A`` is unknown; :meth:`Smoothed.certify` is the paper's CERTIFY
(their Algorithm, section 3.2.2): guess the top class from ``n0`` noisy samples, estimate
its probability from ``n`` fresh samples, and replace it by a one-sided Clopper-Pearson
lower bound at level ``1 - alpha``.  :meth:`Smoothed.predict` is their PREDICT, which
abstains when a binomial test cannot tell the top two classes apart.  Training with
Gaussian noise (:func:`gaussian_noise_loss`) makes ``f`` accurate under that noise.

**Interval bound propagation** (Gowal et al. 2018).  The L∞ box ``[x - eps, x + eps]``
(cut to [0, 1]) is pushed through the network layer by layer as an interval per unit:
an affine layer maps centre ``mu`` and radius ``r`` to ``W mu + b`` and ``|W| r`` (their
eq. 6), a monotone layer (ReLU, max pooling) maps each end on its own.  The logits'
intervals then bound every output any point of the box can produce; if the true class's
logit exceeds every other's at every point, the example is *certified*.
:func:`ibp_loss` trains for it (their eq. 7-8), with the budget ramped up from 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks._common import check_eps
from ..models import BlockModel, MCDropout, Normalize

__all__ = [
    "ABSTAIN", "GaussianNoise", "IBPLoss", "Smoothed", "binomial_p_value",
    "certified_accuracy", "certified_accuracy_curve", "clopper_pearson_lower",
    "gaussian_noise_loss", "ibp_certified", "ibp_loss", "interval_bounds",
    "margin_upper_bounds",
]

#: the label :meth:`Smoothed.predict` and :meth:`Smoothed.certify` return when they abstain
ABSTAIN = -1


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------
def _positive(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number, got {value!r}") from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value \
            or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _alpha(alpha) -> float:
    alpha = _positive(alpha, "alpha")
    if alpha >= 1:
        raise ValueError(f"alpha must lie in (0, 1) (e.g. 0.001), got {alpha}")
    return alpha


def _images(x) -> torch.Tensor:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError("x must be a floating-point image tensor in [0, 1]")
    if x.dim() != 4:
        raise ValueError(f"x must have shape N x C x H x W, got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------------------
# Randomised smoothing
# --------------------------------------------------------------------------------------
def gaussian_noise_loss(sigma: float):
    """The training loss of Cohen et al. (2019, section 4): cross-entropy on ``x + N(0, sigma^2 I)``.

    Noise is added in pixel space and not clipped, exactly as it is when the smoothed
    classifier is evaluated, so the base classifier learns the distribution it will see.
    """
    sigma = _positive(sigma, "sigma")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x + sigma * torch.randn_like(x)), y)

    loss.__name__ = f"gaussian_noise_loss(sigma={sigma})"
    return loss


def clopper_pearson_lower(successes, trials, alpha: float) -> torch.Tensor:
    """The one-sided ``(1 - alpha)`` Clopper-Pearson lower bound on a binomial proportion.

    ``B(alpha; k, n - k + 1)``, the ``alpha`` quantile of a beta distribution (Clopper and
    Pearson 1934), computed by ``scipy.stats.beta.ppf``; 0 when ``k = 0``.  Works on
    tensors or numbers elementwise; returns a float64 tensor.
    """
    from scipy.stats import beta

    alpha = _alpha(alpha)
    k = torch.as_tensor(successes, dtype=torch.float64).cpu()
    n = torch.as_tensor(trials, dtype=torch.float64).cpu()
    if bool((n < 1).any()) or bool((k < 0).any()) or bool((k > n).any()):
        raise ValueError("successes must lie in [0, trials] and trials must be >= 1")
    bound = beta.ppf(alpha, k.numpy(), (n - k + 1).numpy())
    return torch.where(k > 0, torch.as_tensor(bound, dtype=torch.float64), torch.zeros_like(k))


def binomial_p_value(n_a, n_b) -> torch.Tensor:
    """Two-sided p-value of ``n_a`` successes in ``n_a + n_b`` trials against ``p = 1/2``.

    The test of PREDICT (Cohen et al. 2019, section 3.2.1).  By symmetry it is
    ``min(1, 2 P(Bin(n_a + n_b, 1/2) <= min(n_a, n_b)))`` (``scipy.stats.binom.cdf``).
    """
    from scipy.stats import binom

    a = torch.as_tensor(n_a, dtype=torch.float64).cpu()
    b = torch.as_tensor(n_b, dtype=torch.float64).cpu()
    total = (a + b).numpy()
    p = 2 * binom.cdf(torch.minimum(a, b).numpy(), total, 0.5)
    p = torch.as_tensor(p, dtype=torch.float64).clamp(max=1.0)
    return torch.where(a + b > 0, p, torch.ones_like(p))


class Smoothed(nn.Module):
    """The smoothed classifier ``g`` of a base classifier (Cohen et al. 2019).

    * :meth:`counts` -- how often ``f(x + delta)`` picks each class over ``num`` draws;
    * :meth:`predict` -- PREDICT: the top class, or ``ABSTAIN``;
    * :meth:`certify` -- CERTIFY: the top class and its certified L2 radius, or ABSTAIN;
    * ``forward(x)`` -- a Monte-Carlo estimate of ``g`` as logits: the log of the vote
      shares over ``votes`` draws (without abstention).  Its gradient is zero, so attacks
      must see a differentiable view of it (:meth:`soft`, through EOT).

    Noise is drawn in batches: ``batch_size`` noisy images per forward pass, every example
    and every draw at once (the loop is over chunks of the ``N x num`` noisy batch, for
    memory, never over draws one at a time).
    """

    def __init__(self, base: nn.Module, sigma: float, *, votes: int = 100, batch_size: int = 4000):
        super().__init__()
        if not isinstance(base, nn.Module):
            raise TypeError(f"base must be a torch.nn.Module, got {type(base).__name__}")
        self.base = base
        self.sigma = _positive(sigma, "sigma")
        self.votes = _count(votes, "votes")
        self.batch_size = _count(batch_size, "batch_size")

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, votes={self.votes}"

    @torch.no_grad()
    def counts(self, x: torch.Tensor, num: int) -> torch.Tensor:
        """``N x K`` integer counts of ``f``'s answers on ``num`` noisy copies of each image."""
        x = _images(x)
        num = _count(num, "num")
        per_pass = max(1, self.batch_size // max(1, len(x)))  # draws per forward pass
        total = None
        done = 0
        while done < num:
            k = min(per_pass, num - done)
            noisy = x.repeat(k, 1, 1, 1)  # draw j of example i is row j * N + i
            noisy = noisy + self.sigma * torch.randn_like(noisy)
            logits = self.base(noisy)
            labels = logits.argmax(1).view(k, len(x))
            hits = F.one_hot(labels, logits.shape[1]).sum(0)
            total = hits if total is None else total + hits
            done += k
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = self.counts(x, self.votes)
        return torch.log(counts.float() / self.votes + 1e-12)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, n: int, alpha: float = 0.001) -> torch.Tensor:
        """PREDICT (Cohen et al. 2019, section 3.2.1): the top class of ``n`` draws, or ABSTAIN.

        Abstains unless a two-sided binomial test rejects "the top two classes are equally
        likely" at level ``alpha``; then the answer differs from ``g(x)`` with probability
        at most ``alpha`` (their Proposition 1).
        """
        alpha = _alpha(alpha)
        counts = self.counts(x, n).cpu()
        top2 = counts.topk(2, dim=1)
        p = binomial_p_value(top2.values[:, 0], top2.values[:, 1])
        out = torch.where(p <= alpha, top2.indices[:, 0], torch.full_like(top2.indices[:, 0], ABSTAIN))
        return out.to(x.device)

    @torch.no_grad()
    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float = 0.001
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """CERTIFY (Cohen et al. 2019, section 3.2.2): ``(label, radius)`` for every image.

        1. ``c_A``: the most frequent class of ``f`` over ``n0`` noisy samples (selection);
        2. ``n_A``: how often ``f`` answers ``c_A`` over ``n`` *fresh* samples (estimation);
        3. ``p_A_lower``: the one-sided ``(1 - alpha)`` Clopper-Pearson lower bound on it;
        4. if ``p_A_lower > 1/2`` return ``c_A`` and radius ``sigma * Phi^-1(p_A_lower)``,
           else ABSTAIN with radius 0.

        With probability at least ``1 - alpha`` over the noise, a returned ``c_A`` equals
        ``g(x + delta)`` for every ``||delta||_2 < radius`` (their Theorem 1 and Proposition 2).
        """
        alpha = _alpha(alpha)
        n0, n = _count(n0, "n0"), _count(n, "n")
        selected = self.counts(x, n0).argmax(1)
        counts = self.counts(x, n)
        n_a = counts.gather(1, selected[:, None]).squeeze(1).cpu()
        p_lower = clopper_pearson_lower(n_a, torch.full_like(n_a, n), alpha)
        certified = p_lower > 0.5
        from scipy.stats import norm  # float64 quantile: the radius never rounds upwards

        exact = self.sigma * norm.ppf(p_lower.double().clamp(0.5, 1 - 1e-16).numpy())
        radius = torch.from_numpy(exact).float()  # float32, rounded down if rounding moved it up
        radius = torch.where(radius.double() > torch.from_numpy(exact),
                             radius.nextafter(torch.zeros_like(radius)), radius)
        radius = torch.where(certified, radius, torch.zeros_like(radius))
        label = torch.where(certified, selected.cpu(), torch.full_like(selected.cpu(), ABSTAIN))
        return label.to(x.device), radius.to(x.device)

    def soft(self, samples: int) -> nn.Module:
        """A differentiable view for attacks: the mean softmax of ``f`` over ``samples`` noise draws.

        ``EOT(GaussianNoise(sigma) then f, samples, average="probabilities")`` -- the "soft"
        smoothed classifier that Salman et al. (2019) attack; use it with
        :func:`coursepkg.adaptive.attack_via` so that the real ``g`` judges the result.
        """
        from ..adaptive import EOT

        return EOT(nn.Sequential(GaussianNoise(self.sigma), self.base), _count(samples, "samples"),
                   average="probabilities", max_batch=self.batch_size)


class GaussianNoise(nn.Module):
    """``x + N(0, sigma^2 I)``, a fresh draw at every call (in train and eval mode alike)."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = _positive(sigma, "sigma")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


def certified_accuracy_curve(label: torch.Tensor, radius: torch.Tensor, y: torch.Tensor,
                             radii: Iterable[float]) -> list[float]:
    """Certified accuracy at each L2 radius: the share of examples certified correct with radius >= r."""
    right = (label == y.to(label.device))
    return [float((right & (radius >= float(r))).float().mean()) for r in radii]


# --------------------------------------------------------------------------------------
# Interval bound propagation
# --------------------------------------------------------------------------------------
def _layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order, nested ``Sequential`` and block models flattened."""
    if isinstance(model, BlockModel):
        children: Iterable[nn.Module] = model.blocks.values()
    elif isinstance(model, nn.Sequential):
        children = model
    else:
        return [model]
    out: list[nn.Module] = []
    for child in children:
        out.extend(_layers(child))
    return out


def _affine(layer: nn.Module, mu: torch.Tensor, r: torch.Tensor):
    """Centre and radius through an affine layer: ``(W mu + b, |W| r)`` (Gowal et al., eq. 6)."""
    if isinstance(layer, nn.Linear):
        return F.linear(mu, layer.weight, layer.bias), F.linear(r, layer.weight.abs())
    conv = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation,
            "groups": layer.groups}
    if layer.padding_mode != "zeros":
        raise TypeError("interval bounds support zero-padded convolutions only")
    return (F.conv2d(mu, layer.weight, layer.bias, **conv),
            F.conv2d(r, layer.weight.abs(), None, **conv))


def _interval_step(layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor):
    """One layer of interval propagation; a one-line TypeError for a layer it cannot bound."""
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        mu, r = _affine(layer, (upper + lower) / 2, (upper - lower) / 2)
        return mu - r, mu + r
    if isinstance(layer, Normalize):  # (x - mean) / std with std > 0: increasing, per channel
        return layer(lower), layer(upper)
    if isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                          nn.Flatten, nn.Identity)):  # monotone non-decreasing, elementwise order
        return layer(lower), layer(upper)
    if isinstance(layer, nn.Dropout):
        if isinstance(layer, MCDropout) and layer.always_on:
            raise TypeError("interval bounds need a deterministic model: call model.mc_dropout(False)")
        if layer.training and layer.p > 0:
            raise TypeError("interval bounds need the model in eval mode (dropout is on): call model.eval()")
        return lower, upper
    raise TypeError(f"interval bound propagation does not support {type(layer).__name__} layers; "
                    "use a SmallCNN (linear, conv, ReLU, pooling, flatten, normalisation)")


def _input_box(x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
    x = _images(x)
    eps = check_eps(eps, "eps")
    return (x - eps).clamp(0.0, 1.0), (x + eps).clamp(0.0, 1.0)


def interval_bounds(model: nn.Module, x: torch.Tensor, eps: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds on every logit of ``model`` over ``{x' : ||x' - x||_∞ <= eps} ∩ [0, 1]``.

    Layer by layer (Gowal et al. 2018, section 3): affine layers by centre and radius, monotone
    layers (ReLU, pooling, flatten, the model's own normalisation) on each end.  Every
    output of every point of the box lies between the two (the unit tests check it).
    """
    lower, upper = _input_box(x, eps)
    for layer in _layers(model):
        lower, upper = _interval_step(layer, lower, upper)
    return lower, upper


def margin_upper_bounds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
                        ) -> torch.Tensor:
    """Upper bounds on ``z_j - z_y`` over the box, ``N x K`` (0 in column ``y``).

    The bounds are propagated to the input of the last linear layer, and the specification
    ``c_j = e_j - e_y`` is folded into that layer before its interval is taken (Gowal et
    al. 2018, section 3, "elision of the last layer"): tighter than subtracting two logit
    intervals.  The example is certified when every entry off ``y`` is negative.
    """
    layers = _layers(model)
    last = layers[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError("margin bounds need a model whose last layer is nn.Linear (the logits)")
    if not torch.is_tensor(y) or y.dim() != 1 or y.is_floating_point() or len(y) != len(x):
        raise ValueError("y must be a 1-D tensor of integer labels, one per image")
    lower, upper = _input_box(x, eps)
    for layer in layers[:-1]:
        lower, upper = _interval_step(layer, lower, upper)
    mu, r = (upper + lower) / 2, (upper - lower) / 2
    y = y.to(x.device)
    w = last.weight[None, :, :] - last.weight[y][:, None, :]  # N x K x H: rows w_j - w_y
    b = last.bias[None, :] - last.bias[y][:, None] if last.bias is not None else 0.0
    return torch.einsum("nkh,nh->nk", w, mu) + torch.einsum("nkh,nh->nk", w.abs(), r) + b


def ibp_certified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                  batch_size: int = 500) -> torch.Tensor:
    """Per example: is ``model`` provably right on every point of the L∞ ball of radius ``eps``?"""
    _count(batch_size, "batch_size")
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            bound = margin_upper_bounds(model, x[i:i + batch_size], y[i:i + batch_size], eps)
            bound.scatter_(1, y[i:i + batch_size, None].to(bound.device), -math.inf)
            out.append((bound < 0).all(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def certified_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """The share of examples IBP certifies at L∞ radius ``eps`` (a lower bound on robust accuracy)."""
    if len(x) == 0:
        raise ValueError("x is empty: certified accuracy of no examples is undefined")
    return float(ibp_certified(model, x, y, eps).float().mean())


class IBPLoss:
    """The IBP training loss (Gowal et al. 2018, eq. 8) with their ramp-up schedule.

    ``L = kappa * CE(z(x), y) + (1 - kappa) * CE(z_hat(eps_t), y)``, where ``z_hat`` is the
    worst-case logit vector the bounds allow (:func:`margin_upper_bounds`, their eq. 7).
    Over the first ``warmup`` calls ``eps_t = 0`` and ``kappa = 1`` (clean training); over
    the next ``rampup`` calls ``eps_t`` grows linearly to ``eps`` and ``kappa`` falls
    linearly to ``kappa_end``; then both stay.  The schedule advances by one step per call,
    so one instance serves one training run (the training loop calls it once per batch).
    """

    def __init__(self, eps: float, *, rampup: int, warmup: int = 0, kappa_end: float = 0.5):
        self.eps = _positive(eps, "eps")
        if isinstance(rampup, bool) or int(rampup) != rampup or int(rampup) < 0:
            raise ValueError(f"rampup must be an integer >= 0 (training steps), got {rampup!r}")
        if isinstance(warmup, bool) or int(warmup) != warmup or int(warmup) < 0:
            raise ValueError(f"warmup must be an integer >= 0 (training steps), got {warmup!r}")
        self.rampup, self.warmup = int(rampup), int(warmup)
        self.kappa_end = check_eps(kappa_end, "kappa_end")
        if self.kappa_end > 1:
            raise ValueError(f"kappa_end must lie in [0, 1], got {kappa_end}")
        self.step = 0

    def schedule(self, step: int) -> tuple[float, float]:
        """``(eps_t, kappa_t)`` at training step ``step``."""
        if step < self.warmup:
            return 0.0, 1.0
        t = 1.0 if self.rampup == 0 else min(1.0, (step - self.warmup) / self.rampup)
        return t * self.eps, 1.0 - t * (1.0 - self.kappa_end)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps, kappa = self.schedule(self.step)
        self.step += 1
        clean = F.cross_entropy(model(x), y)
        if eps == 0.0 or kappa == 1.0:
            return clean
        worst = margin_upper_bounds(model, x, y, eps)  # z_hat - z_y; cross-entropy is shift-invariant
        return kappa * clean + (1 - kappa) * F.cross_entropy(worst, y)


def ibp_loss(eps: float, *, rampup: int, warmup: int = 0, kappa_end: float = 0.5) -> IBPLoss:
    """A fresh :class:`IBPLoss` (one per training run)."""
    return IBPLoss(eps, rampup=rampup, warmup=warmup, kappa_end=kappa_end)
