"""Auto-PGD (APGD) and the difference-of-logits-ratio loss (Croce and Hein 2020).

PGD has two knobs that decide whether it finds an adversarial example -- the step size
and the number of steps -- and a poorly chosen pair makes a defence look robust.  APGD
removes the step size from the user's hands.  It starts with a large step, ``eta = 2 eps``,
adds momentum, and halves the step at fixed *checkpoints* whenever the last stretch made
too little progress, restarting each example from the best point it has found so far
(their Algorithm 1).  The only budget left is the number of iterations.

Croce and Hein also replace the cross-entropy, whose gradient vanishes when the logits are
large (a defence can inflate them), by the *difference of logits ratio* (their eq. 5):

    DLR(z, y) = - (z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)

with ``z_pi1 >= z_pi2 >= ...`` the sorted logits.  It is invariant to shifting *and* to
positive scaling of the logits, so neither trick can hide the gradient.  Its targeted
form (their eq. 6) divides ``-(z_y - z_t)`` by ``z_pi1 - (z_pi3 + z_pi4) / 2``.

Everything runs on the whole batch: every example carries its own step size, its own
progress counters and its own best point.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import profile
from ._common import attack_mode, check_inputs, check_positive_int, expand_as_batch, per_example_norm
from .gradient import NORMS, _finish, _prepare, _project_l2_, _random_start

APGD_LOSSES = ("ce", "dlr")
#: Croce and Hein's constants: momentum alpha, the share of improving steps rho below which
#: the step size is halved, and the checkpoint schedule p_1 and its increments.
MOMENTUM = 0.75
RHO = 0.75


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """The difference-of-logits-ratio loss per example (Croce and Hein 2020, eqs. 5 and 6).

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)``; targeted on
    ``target``: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``.  The attack
    *maximises* it; it is positive exactly when y is not the top class (untargeted).
    Needs at least three classes (four when targeted).
    """
    classes = logits.shape[1]
    if classes < (4 if target is not None else 3):
        raise ValueError(f"the DLR loss needs at least {4 if target is not None else 3} classes, "
                         f"the model has {classes}; use loss='ce'")
    ordered = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return -(z_y - others) / (ordered[:, 0] - ordered[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


def _objective(logits, y, loss, target):
    if loss == "dlr":
        return dlr_loss(logits, y, target)
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step (Croce and Hein 2020, section 3.2).

    ``p_0 = 0``, ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``;
    the checkpoints are ``ceil(p_j * steps)`` for ``p_j <= 1`` -- dense early, sparse late.
    """
    steps = check_positive_int(steps, "steps")
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = sorted({math.ceil(round(q * steps, 9)) for q in p[1:]})
    return [m for m in marks if 0 < m <= steps]


def _step(x_adv, grad, x, eta, eps, norm):
    """``P(x_adv + eta * s(grad))`` with s the sign (L∞) or the L2-normalised gradient."""
    if norm == "linf":
        z = x_adv + expand_as_batch(eta, x_adv) * grad.sign()
        return torch.minimum(torch.maximum(z, x - eps), x + eps).clamp_(0.0, 1.0)
    unit = grad / expand_as_batch(per_example_norm(grad).clamp_min(1e-12), grad)
    z = x_adv + expand_as_batch(eta, x_adv) * unit
    _project_l2_(z, x, eps)
    return z


def _project(z, x, eps, norm):
    if norm == "linf":
        return torch.minimum(torch.maximum(z, x - eps), x + eps).clamp_(0.0, 1.0)
    _project_l2_(z, x, eps)
    return z


def _apgd_once(model, x, y, *, eps, norm, steps, loss, target, random_start, any_wrong_label):
    """One run of APGD (Croce and Hein 2020, Algorithm 1) on a batch.

    Returns the best point per example: one that fools the model when any iterate did,
    else the one with the highest loss -- and a flag saying which examples were fooled.
    """
    n = len(x)

    def evaluate(point):
        point = point.detach().requires_grad_(True)
        logits = model(point)
        values = _objective(logits, y, loss, target)
        (grad,) = torch.autograd.grad(values.sum(), point)
        pred = logits.argmax(1)
        hit = pred != y if target is None or any_wrong_label else pred == target
        return values.detach(), grad.detach(), hit

    x0 = _project(_random_start(x, eps, norm), x, eps, norm) if random_start else x.clone()
    f0, g0, hit0 = evaluate(x0)
    eta = torch.full((n,), 2.0 * eps, device=x.device, dtype=x.dtype)

    best_x, best_f, best_g = x0.clone(), f0.clone(), g0.clone()
    fooled_x, fooled = x0.clone(), hit0.clone()

    x_prev, x_cur, g_cur, f_cur = x0, _step(x0, g0, x, eta, eps, norm), None, f0
    marks = set(checkpoints(steps))
    improving = torch.zeros(n, device=x.device)  # steps since the last checkpoint where f rose
    last_mark, best_f_at_mark = 0, best_f.clone()
    eta_reduced_at_mark = torch.zeros(n, dtype=torch.bool, device=x.device)

    for k in range(1, steps + 1):
        f_new, g_new, hit = evaluate(x_cur)
        improving += (f_new > f_cur).float()
        gain = f_new > best_f
        best_x[gain], best_f[gain], best_g[gain] = x_cur[gain], f_new[gain], g_new[gain]
        new_hit = hit & ~fooled
        fooled_x[new_hit], fooled = x_cur[new_hit], fooled | hit
        f_cur, g_cur = f_new, g_new

        if k in marks:
            # Condition 1: too few of the last stretch's steps improved the loss.
            stalled = improving < RHO * (k - last_mark)
            # Condition 2: the step was not halved last time and the best loss has not moved.
            stuck = ~eta_reduced_at_mark & (best_f <= best_f_at_mark)
            halve = stalled | stuck
            eta = torch.where(halve, eta / 2, eta)
            # restart those examples from their best point, whose gradient is kept
            x_cur = torch.where(expand_as_batch(halve, x_cur), best_x, x_cur)
            g_cur = torch.where(expand_as_batch(halve, g_cur), best_g, g_cur)
            f_cur = torch.where(halve, best_f, f_cur)
            eta_reduced_at_mark, best_f_at_mark = halve, best_f.clone()
            improving.zero_()
            last_mark = k
        if k == steps:
            break
        # The momentum step (their eq. 2): z from a gradient step, then a mix with the last move.
        z = _step(x_cur, g_cur, x, eta, eps, norm)
        x_next = _project(x_cur + MOMENTUM * (z - x_cur) + (1 - MOMENTUM) * (x_cur - x_prev), x, eps, norm)
        x_prev, x_cur = x_cur, x_next

    result = torch.where(expand_as_batch(fooled, best_x), fooled_x, best_x)
    score = torch.where(fooled, torch.full_like(best_f, float("inf")), best_f)
    return result, fooled, score


def _check(x, y, eps, norm, loss, steps, restarts, target):
    check_inputs(x, y, eps=eps, target=target)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss not in APGD_LOSSES:
        raise ValueError(f"loss must be one of {APGD_LOSSES}, got {loss!r}")
    steps = check_positive_int(profile().apgd_steps if steps is None else steps, "steps")
    return float(eps), steps, check_positive_int(restarts, "restarts")


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
         loss: str = "ce", steps: int | None = None, restarts: int = 1,
         target: torch.Tensor | None = None, seed: int | None = 0,
         any_wrong_label: bool = False) -> torch.Tensor:
    """Auto-PGD (Croce and Hein 2020, Algorithm 1): PGD with momentum and an adaptive step size.

    ``loss`` is ``"ce"`` (the cross-entropy, APGD-CE) or ``"dlr"`` (the difference of logits
    ratio, :func:`~coursepkg.attacks.dlr_loss`).  ``steps`` (default: the profile's ``apgd_steps``) is the only
    budget; the step size starts at ``2 eps`` and is halved per example at the
    :func:`checkpoints` when progress stalls.  Every run starts at a uniformly random point
    of the ball (as in the authors' implementation); each example keeps its strongest run
    (fooled first, else the highest loss).  ``target`` makes it targeted.
    ``seed`` fixes the random restarts (None: torch's global generator).  Batched; L∞ or L2.
    ``any_wrong_label=True`` (with a ``target``) keeps an iterate as soon as the model gets it
    wrong, whatever its label: the targeted loss is then only a guide for an untargeted
    evaluation, as in APGD-T of AutoAttack.
    """
    eps, steps, restarts = _check(x, y, eps, norm, loss, steps, restarts, target)
    if eps == 0 or len(x) == 0:
        return x.detach().clone()
    xm, ym, tm = _prepare(model, x, y, target)
    state = torch.random.get_rng_state() if seed is not None else None
    if seed is not None:
        torch.manual_seed(seed)
    try:
        with attack_mode(model):
            best, best_fooled, best_score = None, None, None
            for run in range(restarts):
                cand, cand_fooled, cand_score = _apgd_once(
                    model, xm, ym, eps=eps, norm=norm, steps=steps, loss=loss, target=tm,
                    random_start=True, any_wrong_label=any_wrong_label)
                if best is None:
                    best, best_fooled, best_score = cand, cand_fooled, cand_score
                    continue
                better = cand_score > best_score
                best = torch.where(expand_as_batch(better, best), cand, best)
                best_fooled, best_score = best_fooled | cand_fooled, torch.maximum(best_score, cand_score)
    finally:
        if state is not None:
            torch.random.set_rng_state(state)
    return _finish(best, x, eps, norm)


@torch.no_grad()
def top_other_classes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """The k classes other than y with the highest logits at x, per example (N x k)."""
    with attack_mode(model):
        logits = model(x)
    logits = logits.scatter(1, y[:, None].to(logits.device), float("-inf"))
    return logits.topk(k, dim=1).indices.to(y.device)


def apgd_targeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
                  top_k: int | None = None, steps: int | None = None, loss: str = "dlr",
                  seed: int | None = 0) -> torch.Tensor:
    """Targeted APGD (APGD-T of Croce and Hein 2020) over the ``top_k`` most likely other classes.

    For each of the ``top_k`` (default: the profile's ``apgd_targets``) classes with the
    highest logits other than y at the clean point, run APGD towards that class with the
    targeted DLR loss; an example is fooled by the first target that makes the model
    misclassify it.  An *untargeted* attack built from targeted runs: success means any
    label but y.
    """
    check_inputs(x, y, eps=eps)
    top_k = check_positive_int(profile().apgd_targets if top_k is None else top_k, "top_k")
    if len(x) == 0 or float(eps) == 0:
        return x.detach().clone()
    xm, ym, _ = _prepare(model, x, y)
    top_k = min(top_k, _num_classes(model, xm) - 1)
    targets = top_other_classes(model, xm, ym, top_k)
    result = x.detach().clone()
    open_ = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for j in range(top_k):
        idx = open_.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        adv = apgd(model, x[idx], y[idx], eps=eps, norm=norm, loss=loss, steps=steps, any_wrong_label=True,
                   target=targets[idx.to(targets.device), j].to(y.device), seed=seed)
        with torch.no_grad(), attack_mode(model):
            hit = model(adv.to(xm)).argmax(1).to(y.device) != y[idx].to(y.device)
        hit = hit.to(x.device)
        # Every example keeps the last attempt unless an earlier one fooled it already.
        result[idx] = adv
        open_[idx[hit]] = False
    return result


@torch.no_grad()
def _num_classes(model, x) -> int:
    with attack_mode(model):
        return int(model(x[:1]).shape[1])
