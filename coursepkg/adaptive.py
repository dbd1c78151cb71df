"""Adaptive attacks change the model an attack sees, never the attack.

Athalye, Carlini and Wagner (2018) circumvented most of the defences of ICLR 2018 with two
ideas, both written here as ``torch.nn.Module`` wrappers.  Every attack of
:mod:`coursepkg.attacks` runs through them unchanged.

* :class:`BPDA` -- *Backward Pass Differentiable Approximation* (their section 4.1).  The
  forward pass runs the real, non-differentiable step ``g`` (a purifier, say); the backward
  pass uses the gradient of a differentiable ``h`` with ``h(x) ~ g(x)`` -- by default the
  identity, ``h(x) = x``, which fits any purifier built to change its input little.
* :class:`EOT` -- *Expectation over Transformation* (their section 4.2, after Athalye et al.
  2018, "Synthesizing robust adversarial examples").  A randomised model is replaced by its
  average over ``samples`` draws of its randomness, so a gradient attack follows
  ``E_t[grad f(t(x))]`` instead of the gradient of one draw.  The draws run as one batch.

For a random purifier in front of a classifier the two combine:
``EOT(Purified(BPDA(purifier), classifier), samples)``.

For a purifier that quantises each pixel on its own (bit-depth reduction), a third attack
searches the purifier's *output* space directly: :class:`ReachableSet` and
:func:`attack_reachable_set` (after the observation of Athalye et al., section 4.1, that
the attack should be run where the classifier sees the input).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class _ForwardValueBackwardSurrogate(torch.autograd.Function):
    """Returns ``value`` exactly; passes the incoming gradient to ``surrogate`` unchanged."""

    @staticmethod
    def forward(ctx, surrogate: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye et al. 2018, section 4.1).

    ``BPDA(transform, approximation=None)`` is a module whose forward pass returns
    ``transform(x)`` -- bit for bit, computed without autograd -- and whose backward pass
    is the vector-Jacobian product of ``approximation`` at ``x``: the identity when
    ``approximation`` is None (the gradient then passes straight through, so an attack gets
    the classifier's gradient *at the transformed point*), or any differentiable module of
    the same output shape.

    >>> defended = Purified(BPDA(JPEG(75)), classifier)   # doctest: +SKIP
    >>> x_adv = pgd(defended, x, y, eps=0.1)               # doctest: +SKIP
    """

    def __init__(self, transform: nn.Module, approximation: nn.Module | None = None):
        super().__init__()
        if not isinstance(transform, nn.Module):
            raise TypeError(f"transform must be a torch.nn.Module, got {type(transform).__name__}")
        if approximation is not None and not isinstance(approximation, nn.Module):
            raise TypeError("approximation must be a torch.nn.Module (or None for the identity)")
        self.transform = transform
        self.approximation = approximation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            value = self.transform(x.detach())
        surrogate = x if self.approximation is None else self.approximation(x)
        if surrogate.shape != value.shape:
            raise ValueError(
                f"the approximation's output has shape {tuple(surrogate.shape)} but the transform's has "
                f"{tuple(value.shape)}; BPDA needs the same shape"
            )
        return _ForwardValueBackwardSurrogate.apply(surrogate, value.to(surrogate.dtype))


AVERAGES = ("logits", "probabilities")


class EOT(nn.Module):
    """Expectation over Transformation (Athalye et al. 2018, section 4.2): average over the randomness.

    ``EOT(model, samples)(x)`` evaluates the randomised ``model`` on ``samples`` copies of
    the batch in *one* forward pass (``x`` repeated, not a Python loop) and averages:

    * ``average="logits"`` (default): ``(1/n) sum_k f_k(x)`` -- the mean logits, whose
      gradient is the mean of the draws' gradients, ``E_t[grad f(t(x))]`` estimated from n
      draws;
    * ``average="probabilities"``: ``log((1/n) sum_k softmax(f_k(x)))`` -- logits whose
      softmax is the expected prediction of the randomised model.

    ``max_batch`` (optional) caps how many rows one forward pass holds; the repeated batch is
    then cut into chunks of at most that size (still batched, for memory only).  For a
    deterministic model EOT changes nothing but the cost.
    """

    def __init__(self, model: nn.Module, samples: int, *, average: str = "logits",
                 max_batch: int | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(samples, bool) or int(samples) != samples or int(samples) < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        if max_batch is not None and int(max_batch) < 1:
            raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}")
        self.model = model
        self.samples = int(samples)
        self.average = average
        self.max_batch = None if max_batch is None else int(max_batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, batch = self.samples, len(x)
        repeated = x.repeat(n, *([1] * (x.dim() - 1)))  # draw k is rows k*batch .. (k+1)*batch - 1
        if self.max_batch is None or len(repeated) <= self.max_batch:
            out = self.model(repeated)
        else:
            out = torch.cat([self.model(repeated[i:i + self.max_batch])
                             for i in range(0, len(repeated), self.max_batch)])
        out = out.view(n, batch, *out.shape[1:])
        if self.average == "logits":
            return out.mean(0)
        return torch.logsumexp(F.log_softmax(out, dim=-1), dim=0) - math.log(n)

    def extra_repr(self) -> str:
        return f"samples={self.samples}, average={self.average!r}"


def attack_via(view: nn.Module, attack: Callable, **fixed) -> Callable:
    """``attack`` crafted on ``view`` whatever model it is handed: an adaptive attack for evaluations.

    :func:`coursepkg.evaluate.robust_accuracy` hands every attack the model it evaluates.
    For an adaptive evaluation the attack must *see* another model -- ``view``, e.g.
    ``EOT(Purified(BPDA(purifier), classifier), n)`` -- while the real defended model
    judges the result.  ``attack_via(view, pgd, steps=100)`` is that attack; ``fixed``
    keyword arguments go to ``attack`` on every call.
    """
    if not isinstance(view, nn.Module):
        raise TypeError(f"view must be a torch.nn.Module, got {type(view).__name__}")
    if not callable(attack):
        raise TypeError("attack must be callable, e.g. coursepkg.attacks.pgd")

    def adaptive_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        return attack(view, x, y, **{**fixed, **kwargs})

    adaptive_attack.__name__ = f"{getattr(attack, '__name__', 'attack')}_via_{type(view).__name__}"
    return adaptive_attack


# ------------------------------------------------------------------------------------------
# Attacking an elementwise quantiser in its output space
# ------------------------------------------------------------------------------------------
def reachable_levels(quantiser: nn.Module, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest and highest output of ``quantiser`` per pixel over the L∞ ball of radius ``eps``.

    ``quantiser`` must act on each pixel alone and be non-decreasing (``BitDepth``), so the
    outputs reachable from ``[x - eps, x + eps] ∩ [0, 1]`` are exactly its levels between
    ``quantiser(x - eps)`` and ``quantiser(x + eps)``: a pixel whose whole interval lies
    between two rounding thresholds has one reachable value, whatever the attacker does.
    """
    with torch.no_grad():
        return quantiser((x - eps).clamp(0, 1)), quantiser((x + eps).clamp(0, 1))


def preimage_in_ball(quantiser: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float,
                     iterations: int = 40) -> torch.Tensor:
    """An input within ``eps`` of ``x`` (L∞) that ``quantiser`` maps to ``target``, pixel by pixel.

    For a non-decreasing elementwise quantiser the set of inputs of the ball that give a
    reachable level is an interval; a batched bisection finds its point nearest ``x``
    (``x`` itself where the level is already ``quantiser(x)``).  Raises if ``target`` is not
    reachable somewhere.
    """
    with torch.no_grad():
        current = quantiser(x)
        up = target > current
        # bisection between x (quantises below the target) and the ball's end (at or above it)
        low = x.clone()
        high = torch.where(up, (x + eps).clamp(0, 1), (x - eps).clamp(0, 1))
        for _ in range(int(iterations)):
            middle = (low + high) / 2
            reached = torch.where(up, quantiser(middle) >= target, quantiser(middle) <= target)
            high = torch.where(reached, middle, high)
            low = torch.where(reached, low, middle)
        out = torch.where(target == current, x, high)
        if not torch.equal(quantiser(out), target):
            raise ValueError("target holds a level the quantiser cannot reach from the eps-ball of x "
                             "(use reachable_levels to build targets)")
        return out


class ReachableSet(nn.Module):
    """The classifier on the quantised images an attacker can reach, parameterised by the unit cube.

    For a pixel with reachable levels ``[lo, hi]`` (:func:`reachable_levels`), ``u`` in
    [0, 1] picks ``z = lo + u (hi - lo)``; the module returns ``classifier(quantiser(z))``
    with the quantiser behind :class:`BPDA` (identity backward: the straight-through
    estimator), so any attack of the course run with ``eps=1`` on ``u`` searches exactly
    the set of purified images the eps-ball can produce.  With ``rounded=False`` the
    classifier sees ``z`` itself: a continuous relaxation whose set *contains* every
    reachable purified image, so an attack on it that fails to fool the classifier is
    evidence that no attack through the quantiser will.
    """

    def __init__(self, classifier: nn.Module, quantiser: nn.Module, low: torch.Tensor, high: torch.Tensor,
                 *, rounded: bool = True):
        super().__init__()
        if not isinstance(classifier, nn.Module) or not isinstance(quantiser, nn.Module):
            raise TypeError("classifier and quantiser must both be torch.nn.Module instances")
        if low.shape != high.shape or bool((high < low).any()):
            raise ValueError("low and high must have the same shape with low <= high (see reachable_levels)")
        self.classifier, self.quantiser = classifier, quantiser
        self.register_buffer("low", low.detach())
        self.register_buffer("high", high.detach())
        self.rounded = bool(rounded)

    def point(self, u: torch.Tensor) -> torch.Tensor:
        """``lo + u (hi - lo)``, the (unrounded) image that ``u`` picks."""
        return self.low + u * (self.high - self.low)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = self.point(u)
        return self.classifier(BPDA(self.quantiser)(z) if self.rounded else z)


def budget_from(kwargs: dict, default: float | None) -> float:
    """Pop ``eps`` from an attack call's keyword arguments (else ``default``) and check it.

    The attacks built here run another attack with ``eps=1`` on a reparametrised view, so
    the caller's L-infinity budget has to be taken out of the keywords first.
    """
    eps = kwargs.pop("eps", default)
    if eps is None or float(eps) < 0:
        raise ValueError(f"eps must be given and >= 0 (the L∞ budget in pixel units), got {eps!r}")
    return float(eps)


def attack_reachable_set(classifier: nn.Module, quantiser: nn.Module, attack: Callable, **fixed) -> Callable:
    """An adaptive attack on ``Purified(quantiser, classifier)`` run in the quantiser's output space.

    On a batch it (1) computes the levels each pixel can reach within ``eps``
    (:func:`reachable_levels`), (2) runs ``attack`` (e.g. ``coursepkg.attacks.pgd``, with the
    ``fixed`` keyword arguments and ``eps=1``) on :class:`ReachableSet` from the point
    ``u`` that gives the clean purified image, (3) quantises the result and (4) maps it
    back to an input of the eps-ball that purifies to it (:func:`preimage_in_ball`).
    Steps (3)-(4) are exact, so the defended model sees precisely the purified image the
    attack chose.  Unlike BPDA in the input space, no step is spent inside the staircase's flat parts.
    ``eps`` is read from the call (as :func:`coursepkg.evaluate.robust_accuracy` passes it) or from ``fixed``.
    """
    if not isinstance(classifier, nn.Module) or not isinstance(quantiser, nn.Module):
        raise TypeError("classifier and quantiser must both be torch.nn.Module instances")
    if not callable(attack):
        raise TypeError("attack must be callable, e.g. coursepkg.attacks.pgd")
    fixed = dict(fixed)
    default_eps = fixed.pop("eps", None)

    def reachable_set_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        eps = budget_from(kwargs, default_eps)
        low, high = reachable_levels(quantiser, x, float(eps))
        span = high - low
        start = torch.where(span > 0, (quantiser(x) - low) / span.clamp_min(1e-12), torch.zeros_like(x))
        view = ReachableSet(classifier, quantiser, low, high).to(x.device)
        u = attack(view, start, y, **{**fixed, **kwargs, "eps": 1.0})
        with torch.no_grad():
            target = quantiser(view.point(u))
        return preimage_in_ball(quantiser, x, target, float(eps))

    reachable_set_attack.__name__ = f"{getattr(attack, '__name__', 'attack')}_in_reachable_set"
    return reachable_set_attack
