"""SPSA (Uesato et al. 2018): a gradient-free L∞ attack from finite differences along random directions."""

from __future__ import annotations

import torch
from torch import nn

from ..config import profile
from ._common import (attack_loss, attack_mode, check_eps, check_inputs, check_loss, check_positive_int,
                      expand_as_batch, fooled)
from .gradient import _compute_space, _finish, _prepare

#: Images per forward pass when ``samples_per_pass`` is left to the attack: on a CPU, passes
#: beyond a few hundred images only add memory traffic (``benchmarks/RESULTS.md``); a GPU
#: wants them as large as memory allows.
MAX_IMAGES_PER_PASS = {"cpu": 512, "cuda": 16384}


def _spsa_gradient(model, x_adv, y, *, samples, delta, loss, samples_per_pass):
    """The SPSA estimate ``mean_i (L(x + delta v_i) - L(x - delta v_i)) / (2 delta) * v_i`` with
    Rademacher v_i (Spall 1992; Uesato et al. 2018, Algorithm 1), its samples batched."""
    n = len(x_adv)
    flat = x_adv.flatten(1)
    grad = torch.zeros_like(flat)
    for first in range(0, samples, samples_per_pass):
        k = min(samples_per_pass, samples - first)
        v = torch.empty((n, k, flat.shape[1]), device=x_adv.device, dtype=x_adv.dtype)
        v.bernoulli_(0.5).mul_(2).sub_(1)
        probes = flat[:, None].repeat(1, 2 * k, 1)  # n x 2k x d: x + delta v, then x - delta v
        probes[:, :k].add_(v, alpha=delta)
        probes[:, k:].sub_(v, alpha=delta)
        values = attack_loss(model(probes.view(n * 2 * k, *x_adv.shape[1:])),
                             y.repeat_interleave(2 * k), loss).view(n, 2 * k)
        slope = (values[:, :k] - values[:, k:]) / (2 * delta)  # n x k
        grad.add_(torch.bmm(slope[:, None, :], v).squeeze(1))
    return (grad / samples).view_as(x_adv)


def spsa(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, iters: int | None = None,
         samples: int | None = None, delta: float = 0.01, lr: float = 0.01, loss: str = "cw",
         samples_per_pass: int | None = None) -> torch.Tensor:
    """SPSA, gradient-free L∞ attack (Uesato et al. 2018, Algorithm 1).

    Every iteration estimates the gradient of the loss by simultaneous perturbation
    (Spall 1992): ``g = 1/n sum_i (L(x + delta v_i) - L(x - delta v_i)) / (2 delta) * v_i``
    over ``samples`` Rademacher directions v_i, takes an Adam step of size ``lr`` up that
    estimate and projects onto the eps-ball and [0, 1].  The loss defaults to the logit
    margin (``"cw"``), as in the paper.  Only forward passes are used, so masked or
    non-differentiable gradients do not stop it.  ``iters`` and ``samples`` default to the
    profile's; the probes of ``samples_per_pass`` samples go through the model in one
    batch (default: as many as fit in ``MAX_IMAGES_PER_PASS`` images).  Each example
    keeps its strongest iterate (misclassified first, else the highest loss), and an
    example stops as soon as an iterate is misclassified, as in the paper's early stopping:
    its later iterates could not make it more wrong, so no forward pass is spent on them.
    """
    check_inputs(x, y, eps=eps)
    check_loss(loss)
    eps = float(eps)
    iters = check_positive_int(profile().spsa_iters if iters is None else iters, "iters")
    samples = check_positive_int(profile().spsa_samples if samples is None else samples, "samples")
    delta = check_eps(delta, "delta")
    lr = check_eps(lr, "lr")
    if delta == 0:
        raise ValueError("delta must be positive (it is the finite-difference step)")
    limit = MAX_IMAGES_PER_PASS.get(_compute_space(model, x)[0].type, 2048)
    if samples_per_pass is not None:
        samples_per_pass = check_positive_int(samples_per_pass, "samples_per_pass")

    def per_pass(n_active: int) -> int:  # fewer examples left: more samples in one pass
        return samples_per_pass or max(1, limit // (2 * max(n_active, 1)))

    if eps == 0 or len(x) == 0:
        return x.detach().clone()
    xm, ym, _ = _prepare(model, x, y)
    lower, upper = (xm - eps).clamp(min=0.0), (xm + eps).clamp(max=1.0)
    x_adv = (xm + torch.empty_like(xm).uniform_(-eps, eps)).clamp_(min=lower, max=upper)
    best = xm.clone()
    best_loss = torch.full((len(xm),), float("-inf"), device=xm.device, dtype=xm.dtype)
    param = torch.nn.Parameter(x_adv)
    optimiser = torch.optim.Adam([param], lr=lr)
    active = torch.arange(len(xm), device=xm.device)  # the examples not yet misclassified
    with attack_mode(model), torch.no_grad():
        for step in range(iters + 1):
            now = param.data[active]
            logits = model(now)
            now_fooled, now_loss = fooled(logits, ym[active]), attack_loss(logits, ym[active], loss)
            better = now_fooled | (now_loss > best_loss[active])
            best[active] = torch.where(expand_as_batch(better, now), now, best[active])
            best_loss[active] = torch.where(better, now_loss, best_loss[active])
            active = active[~now_fooled]
            if step == iters or len(active) == 0:
                break
            grad = torch.zeros_like(param)
            grad[active] = -_spsa_gradient(model, param.data[active], ym[active], samples=samples,
                                           delta=delta, loss=loss, samples_per_pass=per_pass(len(active)))
            param.grad = grad
            optimiser.step()
            param.data.clamp_(min=lower, max=upper)
    return _finish(best, x, eps, "linf")
