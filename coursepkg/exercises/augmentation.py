"""Checks for the coding exercises of chapter 2."""

from __future__ import annotations

import torch

from ._check import CheckResult, call_student, hint, passed, zoo_setting

__all__: list[str] = ["check_trades_loss"]

#: How many test images ``check_trades_loss`` scores (the chapter's first, seed 0).
TRADES_IMAGES = 64
#: The weights of the KL term it tries: 0 (the clean loss alone), 1, and the paper's 6.
TRADES_BETAS = (0.0, 1.0, 6.0)
#: Relative tolerance on the loss and on its gradient (see ``check_trades_loss``).
TRADES_RTOL = 1e-4


def _parameter_gradient(model: torch.nn.Module, value: torch.Tensor) -> torch.Tensor:
    """The gradient of ``value`` with respect to the model's parameters, as one vector."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                      for p, g in zip(params, grads)])


def check_trades_loss(my_trades_loss) -> CheckResult:
    """Check ``my_trades_loss(model, x, x_adv, y, beta)`` against TRADES' objective.

    The reference is :func:`coursepkg.defences.augmentation.trades_objective`, Zhang et al.
    (2019), eq. (5): ``CE(f(x), y) + beta * mean_i KL(f(x_i) || f(x'_i))``, ``f`` the
    softmax of the logits, the KL summed over classes and averaged over the batch, and the
    gradient flowing through both ``f(x)`` and ``f(x')`` (as in the paper's code).  The
    check scores the zoo's TRADES model (``zoo.get("trades")``) on the chapter's first
    ``TRADES_IMAGES`` test images (``subset(..., seed=0)``) and on their TRADES
    perturbations (:func:`~coursepkg.defences.augmentation.trades_perturbation`, seeded),
    for every ``beta`` of ``TRADES_BETAS``, and compares two things with the
    reference's: the value, and its gradient with respect to the model's weights (what a
    training loop uses).

    This is a closed-form comparison on fixed inputs, so the only slack is float32's:
    equivalent formulas (``F.kl_div`` or an explicit sum, ``log_softmax`` or the log of a
    softmax, a mean over the batch or a sum divided by its size) differ by about a part in
    a million here, and both the value and the gradient must agree to a relative
    ``TRADES_RTOL``, a hundred times that.  Every misreading of the objective -- the KL
    the other way round, averaged over classes too, summed over the batch, the cross-entropy
    of ``x'``, a target ``f(x)`` cut from the gradient -- moves one or the other by
    fifty times that tolerance or more (the KL the other way round, the closest, by half a
    per cent at ``beta = 1``).
    """
    name = "TRADES' objective"
    from ..data import dataset_info
    from ..defences.augmentation import trades_objective, trades_perturbation

    info = dataset_info("fashion-mnist")
    model, x, y = zoo_setting("trades", TRADES_IMAGES)
    with torch.random.fork_rng():  # leave the notebook's generators alone
        torch.manual_seed(0)
        x_adv = trades_perturbation(model, x, eps=info.eps, steps=5)
        for p in model.parameters():  # the zoo freezes them; a loss needs their gradient
            p.requires_grad_(True)
        lines = []
        for beta in TRADES_BETAS:
            given = (x.clone(), x_adv.clone(), y.clone())
            value, failure = call_student(name, my_trades_loss, model, *given, beta)
            if failure is not None:
                return failure
            if not isinstance(value, torch.Tensor):
                return hint(name, f"return the loss as a tensor (the training loop calls "
                                  f".backward() on it), got {type(value).__name__}")
            if value.numel() != 1:
                return hint(name, f"return one number for the whole batch (a scalar "
                                  f"tensor), got shape {tuple(value.shape)}")
            if not all(torch.equal(a, b) for a, b in zip(given, (x, x_adv, y))):
                return hint(name, "your function changed its inputs: work on copies")
            value = value.reshape(())
            if not bool(torch.isfinite(value)):
                return hint(name, f"at beta = {beta} the loss is {float(value.detach())}: take the "
                                  "log of probabilities in a numerically safe way")
            reference = trades_objective(model, x, x_adv, y, beta=beta)
            v, r = float(value.detach()), float(reference.detach())
            if abs(v - r) > TRADES_RTOL * max(1.0, abs(r)):
                what = ("the clean cross-entropy term" if beta == 0.0 else
                        "the KL term: which distribution comes first, and what is "
                        "summed and what is averaged?")
                return hint(name, f"at beta = {beta} your loss is {v:.5f}, the "
                                  f"reference {r:.5f}: check {what}")
            if not value.requires_grad:
                return hint(name, "your loss carries no gradient: compute it with "
                                  "torch operations on the model's outputs (no .item(), "
                                  "no torch.no_grad())")
            grad = _parameter_gradient(model, value)
            grad_ref = _parameter_gradient(model, reference)
            error = float((grad - grad_ref).norm() / grad_ref.norm().clamp_min(1e-12))
            if error > TRADES_RTOL:
                return hint(name, f"at beta = {beta} the value is right but its gradient "
                                  f"with respect to the weights is off by {error:.1%}: "
                                  "let the gradient flow through both model calls, as in "
                                  "the objective (nothing detached)")
            lines.append(f"beta = {beta}: {v:.4f} (reference {r:.4f}; relative error "
                         f"of the gradient {error:.1g})")
    return passed(name, f"on {len(x)} test images and their TRADES perturbations; "
                        + "; ".join(lines))
