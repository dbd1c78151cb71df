"""The L2 attack of Carlini and Wagner (2017), with its binary search over the constant c."""

from __future__ import annotations

import torch
from torch import nn

from ..config import profile
from ._common import (attack_mode, check_eps, check_inputs, check_positive_int, expand_as_batch, fooled,
                      margin)
from .gradient import _prepare

#: How far inside (0, 1) the change of variables starts, so that atanh stays finite at 0 and 1.
_TANH_SHRINK = 1 - 1e-6


def cw_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int | None = None,
          search_steps: int | None = None, c_init: float = 1e-2, confidence: float = 0.0,
          lr: float = 5e-2, target: torch.Tensor | None = None) -> torch.Tensor:
    """Carlini and Wagner's L2 attack (Carlini and Wagner 2017, section V.A: the L2 attack,
    with their loss f_6 and the tanh change of variables, both introduced in section IV).

    Minimises ``||x' - x||_2^2 + c * f(x')`` over ``x' = (tanh(w) + 1) / 2`` (the change of
    variables that keeps x' in [0, 1]) with Adam, where
    ``f(x') = max(Z_y - max_{j != y} Z_j, -confidence)`` on the logits Z (their f_6,
    untargeted at the true label; targeted: ``max(max_{j != t} Z_j - Z_t, -confidence)``).
    The constant c is found per example by binary search (``search_steps`` rounds of
    ``steps`` Adam steps, both from the profile by default): c is halved towards the last
    failure after a success and multiplied by ten until the first success.  Returns, per
    example, the successful x' of smallest L2 norm seen, or x itself where every c failed.

    Adam's learning rate ``lr`` defaults to 5e-2 rather than the paper's 1e-2: the quick
    profile's 100 steps per constant are too few at 1e-2 for the pixels to travel far enough
    in tanh space (about one example in ten then fails at every c), while 5e-2 succeeds on
    all of them with *smaller* perturbations (measured on the course's small CNN; see
    ``benchmarks/RESULTS.md``).  With the full profile's 1000 steps either rate works.
    """
    check_inputs(x, y, target=target)
    steps = check_positive_int(profile().cw_steps if steps is None else steps, "steps")
    search_steps = check_positive_int(profile().cw_search_steps if search_steps is None else search_steps,
                                      "search_steps")
    c_init = check_eps(c_init, "c_init")
    confidence = check_eps(confidence, "confidence")
    lr = check_eps(lr, "lr")
    if c_init == 0 or lr == 0:
        raise ValueError("c_init and lr must be positive")
    if len(x) == 0:
        return x.detach().clone()
    xm, ym, tm = _prepare(model, x, y, target)
    n = len(xm)
    c = torch.full((n,), c_init, device=xm.device, dtype=xm.dtype)
    lower = torch.zeros_like(c)
    upper = torch.full_like(c, float("inf"))
    best_l2 = torch.full_like(c, float("inf"))
    best_adv = xm.clone()
    w_start = torch.atanh((2 * xm - 1) * _TANH_SHRINK)
    with attack_mode(model):
        for _ in range(search_steps):
            w = w_start.clone().requires_grad_(True)
            optimiser = torch.optim.Adam([w], lr=lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=xm.device)
            for _ in range(steps):
                x_adv = (torch.tanh(w) + 1) / 2
                logits = model(x_adv)
                l2_squared = (x_adv - xm).flatten(1).pow(2).sum(1)
                gap = margin(logits, ym) if tm is None else -margin(logits, tm)  # > 0: fooled
                objective = l2_squared + c * (-gap).clamp(min=-confidence)
                with torch.no_grad():
                    success = fooled(logits, ym, tm) & (gap >= confidence)
                    improved = success & (l2_squared < best_l2)
                    best_l2 = torch.where(improved, l2_squared, best_l2)
                    best_adv = torch.where(expand_as_batch(improved, xm), x_adv, best_adv)
                    succeeded |= success
                optimiser.zero_grad(set_to_none=True)
                objective.sum().backward()
                optimiser.step()
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isfinite(upper), (lower + upper) / 2, c * 10)
    return best_adv.detach().to(x).clamp_(0.0, 1.0)
