"""The Jacobian-based saliency map attack (Papernot et al. 2016, "The limitations of deep learning")."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._common import attack_mode, check_inputs
from .gradient import _prepare

#: Pair saliency scores are N x d x d; examples are scored in chunks of at most this many entries.
_MAX_PAIR_ENTRIES = 8_000_000


def _pair_choice(alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor, sign: float):
    """The best pixel pair per example (Papernot et al. 2016, Algorithm 3) and whether one exists.

    With ``a = dZ_t/dx_p + dZ_t/dx_q`` and ``b`` the same sum for the other classes, a pair
    ``p != q`` of pixels still in the search domain is admissible when ``sign * a > 0`` and
    ``sign * b < 0``; its saliency is ``|a| * |b| = -a * b``.  A pixel outside the domain
    gets ``sign * alpha = -inf``, so every pair holding it fails the first test: the N x d x d
    scores are built with a handful of in-place operations and no pair mask.
    """
    n, d = alpha.shape
    chunk = max(1, _MAX_PAIR_ENTRIES // (d * d))
    alpha = torch.where(domain, alpha * sign, torch.full_like(alpha, float("-inf")))
    beta = beta * sign  # now admissible means a > 0 and b < 0, for either sign of theta
    pairs, found = [], []
    for i in range(0, n, chunk):
        a = alpha[i:i + chunk, :, None] + alpha[i:i + chunk, None, :]
        b = beta[i:i + chunk, :, None] + beta[i:i + chunk, None, :]
        admissible = (a > 0).logical_and_(b < 0)
        score = a.mul_(b).neg_().masked_fill_(~admissible, -1.0)  # -inf * b is never admissible
        score.diagonal(dim1=1, dim2=2).fill_(-1.0)  # a pixel does not pair with itself
        best = score.flatten(1).argmax(1)
        pairs.append(torch.stack([best // d, best % d], 1))
        found.append(score.flatten(1).gather(1, best[:, None]).squeeze(1) >= 0)
    return torch.cat(pairs), torch.cat(found)


def jsma(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
         theta: float = 1.0, gamma: float = 0.1) -> torch.Tensor:
    """JSMA: change pixel pairs chosen by the saliency map until the target class wins
    (Papernot et al. 2016, Algorithms 2-3, saliency map of eq. 8 applied to pairs).

    Each iteration computes, on the logits Z, ``alpha = grad Z_t`` and ``beta = grad sum_{j != t} Z_j``,
    picks the admissible pixel pair with the largest ``|alpha| * |beta|`` and adds ``theta``
    to both pixels (``theta < 0``: subtracts).  A changed pixel leaves the search domain, so
    at most ``gamma * d`` of the d input features ever change.  ``target=None`` aims, per
    example, at the most likely class other than the true label y.  An example stops when
    it is classified as its target or no admissible pair remains.
    """
    check_inputs(x, y, target=target)
    theta = float(theta)
    if not math.isfinite(theta) or theta == 0 or abs(theta) > 1:
        raise ValueError(f"theta must be a non-zero number in [-1, 1], got {theta}")
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be a fraction in [0, 1], got {gamma}")
    if len(x) == 0:
        return x.detach().clone()
    xm, ym, tm = _prepare(model, x, y, target)
    shape = xm.shape
    n, d = len(xm), xm[0].numel()
    x_adv = xm.flatten(1).clone()
    domain = x_adv < 1 if theta > 0 else x_adv > 0
    max_iters = int(math.floor(gamma * d / 2))
    with attack_mode(model):
        if tm is None:
            with torch.no_grad():
                logits = model(xm)
            tm = logits.scatter(1, ym[:, None], float("-inf")).argmax(1)
        active = torch.arange(n, device=xm.device)
        for _ in range(max_iters):
            x_in = x_adv[active].view(-1, *shape[1:]).requires_grad_(True)
            logits = model(x_in)
            t = tm[active]
            going = logits.argmax(1) != t
            if not bool(going.any()):
                break
            (grad_target,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), x_in, retain_graph=True)
            (grad_all,) = torch.autograd.grad(logits.sum(), x_in)
            alpha = grad_target.flatten(1)[going]
            beta = grad_all.flatten(1)[going] - alpha
            active = active[going]
            pairs, found = _pair_choice(alpha, beta, domain[active], 1.0 if theta > 0 else -1.0)
            active, pairs = active[found], pairs[found]
            if len(active) == 0:
                break
            rows = active[:, None].expand_as(pairs)
            x_adv[rows, pairs] = (x_adv[rows, pairs] + theta).clamp_(0.0, 1.0)
            domain[rows, pairs] = False
    return x_adv.view(shape).detach().to(x)



