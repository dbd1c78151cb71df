"""DeepFool (Moosavi-Dezfooli et al. 2016): the smallest L2 step across the linearised boundary."""

from __future__ import annotations

import torch
from torch import nn

from ._common import attack_mode, check_eps, check_inputs, check_positive_int, expand_as_batch
from .gradient import _prepare


def _class_gradients(logits: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """The gradient of every logit with respect to the input: shape N x K x (input shape)."""
    grads = []
    for k in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, k].sum(), x_in, retain_graph=k < logits.shape[1] - 1)
        grads.append(g)
    return torch.stack(grads, 1)


def deepfool(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 50,
             overshoot: float = 0.02) -> torch.Tensor:
    """Multi-class DeepFool in L2 (Moosavi-Dezfooli et al. 2016, Algorithm 2, eqs. 10-11).

    At each step, for the true label y and every other class k, with
    ``f'_k = Z_k - Z_y`` and ``w'_k = grad Z_k - grad Z_y``, it picks the class whose
    linearised boundary is nearest, ``l = argmin_k |f'_k| / ||w'_k||_2``, and adds the
    step ``r = (|f'_l| + 1e-4) / ||w'_l||^2 * w'_l`` to the total perturbation.  The
    example returned is ``clip(x + (1 + overshoot) * r_total)``, which lies just past the
    boundary.  An example stops as soon as it is misclassified (or after ``steps``);
    examples already misclassified are returned unchanged.
    """
    check_inputs(x, y)
    steps = check_positive_int(steps, "steps")
    overshoot = check_eps(overshoot, "overshoot")
    if len(x) == 0:
        return x.detach().clone()
    xm, ym, _ = _prepare(model, x, y)
    r_total = torch.zeros_like(xm)
    x_adv = xm.clone()
    active = torch.arange(len(xm), device=xm.device)
    with attack_mode(model):
        for step in range(steps + 1):
            x_in = x_adv[active].requires_grad_(True)
            logits = model(x_in)
            still_correct = logits.argmax(1) == ym[active]
            if not bool(still_correct.any()) or step == steps:
                break
            keep = still_correct.nonzero().squeeze(1)
            active = active[keep]
            grads = _class_gradients(logits, x_in)[keep]  # N x K x ...
            logits = logits.detach()[keep]
            labels = ym[active]
            f_diff = logits - logits.gather(1, labels[:, None])  # N x K
            w_diff = grads - grads[torch.arange(len(active)), labels][:, None]  # N x K x ...
            w_norm = w_diff.flatten(2).norm(dim=2)  # N x K
            distance = f_diff.abs() / w_norm.clamp_min(1e-12)
            distance.scatter_(1, labels[:, None], float("inf"))
            nearest = distance.argmin(1)
            rows = torch.arange(len(active))
            w_l = w_diff[rows, nearest]
            scale = (f_diff[rows, nearest].abs() + 1e-4) / w_norm[rows, nearest].clamp_min(1e-12) ** 2
            r_total[active] += expand_as_batch(scale, w_l) * w_l
            x_adv[active] = (xm[active] + (1 + overshoot) * r_total[active]).clamp_(0.0, 1.0)
    return x_adv.detach().to(x)
