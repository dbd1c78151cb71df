"""What every attack shares: input checks, the model's state, and the losses it maximises.

* :func:`check_inputs` -- the one-line errors of the attack contract (eps < 0, images
  outside [0, 1], integer or non-finite images, a batch-size mismatch);
* :func:`attack_mode` -- a context manager that puts the model in eval mode with frozen
  parameters for the attack and restores both afterwards, so an attack leaves the model as
  it found it (and never leaves a ``.grad`` on a parameter);
* :func:`attack_loss` -- the per-example objective an attack *maximises*: the
  cross-entropy (Goodfellow et al. 2015) or the margin of Carlini and Wagner (2017, their
  objective f_6), untargeted or targeted.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("ce", "cw")


def check_inputs(x: torch.Tensor, y: torch.Tensor, *, eps: float | None = None,
                 target: torch.Tensor | None = None) -> None:
    """Raise a one-line error naming the parameter when the attack's inputs break the contract."""
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a torch.Tensor of images in [0, 1], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor in [0, 1], got dtype {x.dtype}; "
                        "convert integer images with x.float() / 255")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch (N x ...), got shape {tuple(x.shape)}")
    if not torch.is_tensor(y):
        raise TypeError(f"y must be a tensor of integer labels, got {type(y).__name__}")
    if y.dim() != 1 or y.is_floating_point() or y.is_complex():
        raise ValueError(f"y must be a 1-D tensor of integer labels, got shape {tuple(y.shape)} "
                         f"and dtype {y.dtype}")
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples, got {len(x)} and {len(y)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or infinite values; pass finite images in [0, 1]")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(f"x must lie in [0, 1], got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]; "
                         "the models normalise inside, so pass raw pixels")
    if eps is not None:
        check_eps(eps)
    if target is not None:
        if not torch.is_tensor(target) or target.dim() != 1 or target.is_floating_point():
            raise ValueError("target must be a 1-D tensor of integer labels (or None for an untargeted attack)")
        if len(target) != len(x):
            raise ValueError(f"target must hold one label per example, got {len(target)} for {len(x)} examples")


def check_eps(eps: float, name: str = "eps") -> float:
    """``eps`` as a float, or a one-line error when it is negative or not finite."""
    try:
        value = float(eps)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number, got {eps!r}") from err
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps}")
    return value


def check_seed(seed) -> int:
    """``seed`` as a non-negative integer, or a one-line error."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (or None: the caller's generators), "
                         f"got {seed!r}")
    return seed


def check_positive_int(value, name: str) -> int:
    """``value`` as an int >= 1, or a one-line error naming the parameter."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run an attack on ``model`` in eval mode with its parameters frozen, then restore both.

    Freezing the parameters (``requires_grad=False``) means the backward pass computes the
    gradient with respect to the input only -- the cheapest backward there is -- and that no
    ``.grad`` is ever accumulated on a parameter.  Every module's own ``training`` flag is
    restored, not just the root's, so a model left half in train mode stays that way.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    grad_flags = [p.requires_grad for p in params]
    try:
        model.eval()
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in zip(params, grad_flags):
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``max_{j != label} z_j - z_label`` per example: positive exactly when ``label`` is not predicted."""
    label_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(1) - label_logit


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                target: torch.Tensor | None = None) -> torch.Tensor:
    """The per-example objective an attack maximises (a vector of length N).

    * ``"ce"``: the cross-entropy L(x, y) of the true label (Goodfellow et al. 2015, eq. 3),
      or, targeted, minus the cross-entropy of the target, -L(x, t);
    * ``"cw"``: the margin ``max_{j != y} Z_j - Z_y`` on the logits Z (Carlini and Wagner
      2017, objective f_6 with kappa = 0), or, targeted, ``Z_t - max_{j != t} Z_j``.
    """
    if loss == "ce":
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    if loss == "cw":
        if target is None:
            return margin(logits, y)
        return -margin(logits, target)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def fooled(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per example: the attack succeeded (prediction != y, or == target when targeted)."""
    pred = logits.argmax(1)
    return pred != y if target is None else pred == target


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The nearest point of the L-infinity ball of radius eps around x that lies in [0, 1]."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def per_example_norm(t: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """The Lp norm of every example of ``t`` (flattened), shape N."""
    return t.flatten(1).norm(p=p, dim=1)


def expand_as_batch(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector to broadcast against a batch ``like`` (N x 1 x 1 ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))
