"""Checks for the coding exercises of chapter 4."""

from __future__ import annotations

import torch

from ._check import CheckResult, call_student, hint, passed, zoo_setting

__all__: list[str] = ["check_input_gradient_penalty"]

PENALTY_EXERCISE = "the input-gradient penalty"
PENALTY_IMAGES = 16
VALUE_RTOL = 1e-4  # float32: a sum of 784 terms, summed in another order, agrees to ~1e-6
WEIGHT_RTOL = 1e-3  # the weights' gradient goes through two backward passes: looser


def _penalty_setting():
    """The zoo's baseline on the CPU, in eval mode, and the chapter's first test images."""
    model, x, y = zoo_setting("standard", PENALTY_IMAGES, device="cpu")
    for p in model.parameters():  # the zoo hands models out frozen; training needs them
        p.requires_grad_(True)
    return model.eval(), x, y


def _relative_error(mine: torch.Tensor, ref: torch.Tensor) -> float:
    return float((mine - ref).norm() / ref.norm().clamp_min(1e-12))


def check_input_gradient_penalty(penalty) -> CheckResult:
    """Check an input-gradient penalty: per example ``||grad_x L(x, y)||_1`` (L the cross-entropy).

    The dual-norm form of the penalty of Ross and Doshi-Velez (2018, eq. 4) for an L∞ threat
    (Finlay and Oberman 2019): ``penalty(model, x, y)`` must return a tensor of shape ``(n,)``
    whose entry i is the ℓ1 norm of the gradient of example i's own cross-entropy with respect
    to its own pixels, and it must be differentiable with respect to the weights (double
    backpropagation: training takes its gradient).  Run on the zoo's baseline (CPU, eval mode)
    and the chapter's first 16 test images, compared with
    :func:`~coursepkg.defences.gradient_regularisation.input_gradient_penalty`:

    * the values agree to ``rtol = 1e-4`` (float32 sums of 784 terms in another order agree
      to about 1e-6; the usual mistakes -- the ℓ2 norm, a batch-mean loss, a missing
      absolute value -- are off by far more);
    * the gradient of ``penalty(...).mean()`` with respect to the weights agrees with the
      reference's to a relative error of 1e-3 (two backward passes in float32).
    """
    from ..defences.gradient_regularisation import input_gradient_penalty

    model, x, y = _penalty_setting()
    params = list(model.parameters())
    reference = input_gradient_penalty(model, x, y, norm="l1")  # before the student's code runs
    value, failure = call_student(PENALTY_EXERCISE, penalty, model, x.clone(), y.clone())
    if failure is not None:
        return failure
    if not isinstance(value, torch.Tensor):
        return hint(PENALTY_EXERCISE, f"return a tensor with one penalty per image, got "
                                      f"{type(value).__name__}")
    if value.shape != (len(x),):
        return hint(PENALTY_EXERCISE, f"the penalty has shape {tuple(value.shape)}; it must have "
                                      f"one entry per image, shape ({len(x)},): reduce over the "
                                      "pixels, not over the batch")
    if not torch.isfinite(value).all():
        return hint(PENALTY_EXERCISE, "the penalty contains NaN or inf values")
    close = torch.allclose(value.detach().float(), reference.detach(), rtol=VALUE_RTOL,
                           atol=VALUE_RTOL * float(reference.detach().abs().max()))
    if not close:
        error = _relative_error(value.detach().float(), reference.detach())
        return hint(PENALTY_EXERCISE, f"the values differ from the reference by {error:.1%} "
                                      "(relative): which norm is dual to L∞, and is each "
                                      "image's gradient that of its own loss, not of a batch "
                                      "average?")
    if not value.requires_grad:
        return hint(PENALTY_EXERCISE, "the values are right but cannot be differentiated with "
                                      "respect to the weights, so training could not use them: "
                                      "keep the graph of the input gradient")
    try:
        mine = torch.autograd.grad(value.mean(), params, allow_unused=True)
    except RuntimeError as error:
        return hint(PENALTY_EXERCISE, f"the penalty's gradient with respect to the weights "
                                      f"failed ({error}); keep the graph of the input gradient")
    ref = torch.autograd.grad(reference.mean(), params)
    mine = torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                      for g, p in zip(mine, params)])
    ref = torch.cat([g.flatten() for g in ref])
    error = _relative_error(mine, ref)
    if error > WEIGHT_RTOL:
        return hint(PENALTY_EXERCISE, f"the values are right but their gradient with respect to "
                                      f"the weights is off by {error:.1%} (relative): is the "
                                      "input gradient computed with create_graph=True?")
    return passed(PENALTY_EXERCISE, f"{len(x)} images: the values agree with the reference "
                                    f"(largest {float(reference.detach().max()):.3g}) to rtol "
                                    f"{VALUE_RTOL:g}, and their gradient with respect to the "
                                    f"weights to a relative error of {error:.1e}")
