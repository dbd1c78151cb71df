"""Gradient attacks bounded in an Lp ball: FGSM, R+FGSM, PGD and BIM.

All four maximise a per-example loss (:func:`~coursepkg.attacks.attack_loss`) of the *true* labels
inside ``{x' : ||x' - x||_p <= eps, 0 <= x' <= 1}``.  They differ in how many steps they
take and where they start.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import profile
from ._common import (attack_loss, attack_mode, check_eps, check_inputs, check_loss,
                      check_positive_int, expand_as_batch, fooled, per_example_norm, project_linf)

NORMS = ("linf", "l2")


def _compute_space(model: nn.Module, x: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype the model computes in (x's when the model has no tensors)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return x.device, x.dtype


def _prepare(model, x, y, target=None):
    """x, y and target moved to the model's device and dtype (no copy when they already match)."""
    dev, dtype = _compute_space(model, x)
    xm = x.detach().to(device=dev, dtype=dtype)
    ym = y.to(dev)
    tm = target.to(dev) if target is not None else None
    return xm, ym, tm


def _input_gradient(model, x_adv, y, loss, target):
    """The gradient of the summed per-example loss with respect to the input (parameters untouched)."""
    x_adv = x_adv.detach().requires_grad_(True)
    objective = attack_loss(model(x_adv), y, loss, target).sum()
    (grad,) = torch.autograd.grad(objective, x_adv)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, loss: str = "ce",
         target: torch.Tensor | None = None) -> torch.Tensor:
    """The fast gradient sign method (Goodfellow et al. 2015, eq. 3).

    ``x_adv = clip_[0,1](x + eps * sign(grad_x L(x, y)))``; targeted (``target`` given), it
    descends the loss of the target instead: ``x - eps * sign(grad_x L(x, t))``.
    ``loss="cw"`` uses the logit margin of Carlini and Wagner (2017) in place of the
    cross-entropy.
    """
    check_inputs(x, y, eps=eps, target=target)
    check_loss(loss)
    eps = float(eps)
    if eps == 0 or len(x) == 0:
        return x.detach().clone()
    xm, ym, tm = _prepare(model, x, y, target)
    with attack_mode(model):
        grad = _input_gradient(model, xm, ym, loss, tm)
    x_adv = xm + eps * grad.sign()
    return project_linf(x_adv.to(x), x.detach(), eps)


def rfgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float | None = None,
          loss: str = "ce") -> torch.Tensor:
    """R+FGSM: a random sign step, then FGSM (Tramèr et al. 2018, eq. 7).

    ``x' = x + alpha * sign(N(0, I))``, then ``x_adv = x' + (eps - alpha) * sign(grad_x' L(x', y))``,
    both clipped to [0, 1]; ``alpha`` defaults to ``eps / 2``.  The random step escapes the
    sharp curvature that makes single-step attacks weak against FGSM-trained models.
    """
    check_inputs(x, y, eps=eps)
    check_loss(loss)
    eps = float(eps)
    alpha = eps / 2 if alpha is None else check_eps(alpha, "alpha")
    if alpha > eps:
        raise ValueError(f"alpha must lie in [0, eps], got alpha={alpha} > eps={eps}")
    if eps == 0 or len(x) == 0:
        return x.detach().clone()
    xm, ym, _ = _prepare(model, x, y)
    x_start = (xm + alpha * torch.randn_like(xm).sign()).clamp_(0.0, 1.0)
    with attack_mode(model):
        grad = _input_gradient(model, x_start, ym, loss, None)
    x_adv = x_start + (eps - alpha) * grad.sign()
    return project_linf(x_adv.to(x), x.detach(), eps)


def _random_start(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """A uniformly random point of the L-infinity ball, or a random direction at a uniformly random radius (L2)."""
    if norm == "linf":
        return x + torch.empty_like(x).uniform_(-eps, eps)
    direction = torch.randn_like(x)
    direction /= expand_as_batch(per_example_norm(direction).clamp_min(1e-12), x)
    radius = eps * torch.rand(len(x), device=x.device, dtype=x.dtype)
    return x + direction * expand_as_batch(radius, x)


def _pgd_once(model, x, y, *, eps, norm, steps, step_size, random_start, loss, target):
    """One run of projected gradient ascent; the loop allocates only the gradient autograd returns."""
    lower = (x - eps).clamp_(min=0.0) if norm == "linf" else None
    upper = (x + eps).clamp_(max=1.0) if norm == "linf" else None
    x_adv = _random_start(x, eps, norm) if random_start else x.clone()
    if norm == "linf":
        x_adv.clamp_(min=lower, max=upper)
    else:
        _project_l2_(x_adv, x, eps)
    x_adv.requires_grad_(True)
    for _ in range(steps):
        objective = attack_loss(model(x_adv), y, loss, target).sum()
        (grad,) = torch.autograd.grad(objective, x_adv)
        with torch.no_grad():
            if norm == "linf":
                x_adv.add_(grad.sign(), alpha=step_size).clamp_(min=lower, max=upper)
            else:
                grad_norm = expand_as_batch(per_example_norm(grad).clamp_min_(1e-12), grad)
                x_adv.addcdiv_(grad, grad_norm, value=step_size)
                _project_l2_(x_adv, x, eps)
    return x_adv.detach()


def _project_l2_(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    """In place: onto the L2 ball of radius eps around x, then into [0, 1] (which only shrinks the norm)."""
    with torch.no_grad():
        delta = x_adv - x
        scale = (eps / per_example_norm(delta).clamp_min(1e-12)).clamp_(max=1.0)
        x_adv.copy_(x).add_(delta * expand_as_batch(scale, delta)).clamp_(0.0, 1.0)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
        steps: int | None = None, step_size: float | None = None, restarts: int = 1,
        random_start: bool = True, loss: str = "ce", target: torch.Tensor | None = None) -> torch.Tensor:
    """Projected gradient descent on the negative loss (Madry et al. 2018, eq. 2 and section 2.1).

    ``x_{k+1} = Proj_{B_eps(x) ∩ [0,1]^d}(x_k + step_size * s(grad L(x_k, y)))`` with
    ``s = sign`` for ``norm="linf"`` and ``s = g / ||g||_2`` for ``norm="l2"``, from a
    uniformly random point of the ball (``random_start``).  ``steps`` defaults to the
    profile's ``pgd_steps`` and ``step_size`` to ``2.5 * eps / steps`` (Madry et al.'s
    rule, enough to cross the ball from any start).  With ``restarts > 1`` every example
    keeps its strongest run: misclassified first, else the highest loss.  ``target``
    makes the attack targeted (it then maximises -L(x, t)).
    """
    check_inputs(x, y, eps=eps, target=target)
    check_loss(loss)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    eps = float(eps)
    steps = check_positive_int(profile().pgd_steps if steps is None else steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    step_size = 2.5 * eps / steps if step_size is None else check_eps(step_size, "step_size")
    if eps == 0 or len(x) == 0:
        return x.detach().clone()
    xm, ym, tm = _prepare(model, x, y, target)
    run = dict(eps=eps, norm=norm, steps=steps, step_size=step_size, random_start=random_start,
               loss=loss, target=tm)
    with attack_mode(model):
        best = _pgd_once(model, xm, ym, **run)
        if restarts > 1:
            best_fooled, best_loss = _score(model, best, ym, loss, tm)
            for _ in range(restarts - 1):
                candidate = _pgd_once(model, xm, ym, **run)
                cand_fooled, cand_loss = _score(model, candidate, ym, loss, tm)
                better = (cand_fooled & ~best_fooled) | ((cand_fooled == best_fooled) & (cand_loss > best_loss))
                best = torch.where(expand_as_batch(better, best), candidate, best)
                best_fooled = best_fooled | cand_fooled
                best_loss = torch.where(better, cand_loss, best_loss)
    return _finish(best, x, eps, norm)


@torch.no_grad()
def _score(model, x_adv, y, loss, target):
    logits = model(x_adv)
    return fooled(logits, y, target), attack_loss(logits, y, loss, target)


def _finish(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Back to x's dtype and device, with the ball and the box enforced exactly there."""
    x_adv = x_adv.to(x)
    x = x.detach()
    if norm == "linf":
        return project_linf(x_adv, x, eps)
    _project_l2_(x_adv, x, eps)
    return x_adv


def bim(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
        steps: int | None = None, step_size: float | None = None, restarts: int = 1,
        loss: str = "ce", target: torch.Tensor | None = None) -> torch.Tensor:
    """The basic iterative method (Kurakin et al. 2017, section 2.1): PGD started at x itself.

    ``x_{k+1} = Clip_{x,eps}(x_k + alpha * sign(grad L(x_k, y)))`` from ``x_0 = x``;
    the same as :func:`pgd` with ``random_start=False``.
    """
    return pgd(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size, restarts=restarts,
               random_start=False, loss=loss, target=target)
