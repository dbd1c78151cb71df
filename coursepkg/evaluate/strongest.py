"""The course's strongest evaluation: the yardstick of every "adaptive" column in the book.

:func:`~coursepkg.evaluate.strongest` attacks a model with a fixed, diverse ensemble and counts an example as
robust only if *every* attack fails on it (the per-example worst case; Carlini et al.
2019, section 4.3; the recipe of AutoAttack, Croce and Hein 2020):

* **APGD-CE** -- Auto-PGD on the cross-entropy, with the profile's restarts;
* **APGD-DLR-T** -- targeted Auto-PGD on the difference-of-logits-ratio loss towards each of
  the ``apgd_targets`` most likely wrong classes (immune to rescaled logits);
* **PGD-CE** and **PGD-margin** -- the course's PGD with restarts, on the cross-entropy and
  on Carlini and Wagner's logit margin;
* **SPSA** (Uesato et al. 2018), gradient-free, added when ``spsa=True`` or when
  :func:`~coursepkg.evaluate.gradient_masking_flags` finds the gradients zero, non-finite or random.

Defence-specific adaptive attacks (BPDA, EOT, an attack through a detector) join through
``extra``.  Every attack runs only on the examples all earlier ones failed on, so adding an
attack never raises the robust accuracy and costs only what survives.  Budgets are the
profile's fields ``apgd_steps``, ``apgd_restarts``, ``apgd_targets``, ``pgd_steps``,
``pgd_restarts``, ``spsa_iters`` and ``spsa_samples``.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import _common, apgd, apgd_targeted, pgd, spsa
from ..config import Profile
from ..config import profile as get_profile
from .core import RobustResult, _model_device, robust_accuracy

SPSA_CHOICES = ("auto", True, False)


def strongest_attacks(*, eps: float | None = None, norm: str = "linf",
                      profile: str | Profile | None = None, spsa_attack: bool = False) -> dict[str, Callable]:
    """The attacks of :func:`~coursepkg.evaluate.strongest`, by name, with the profile's budgets.

    ``eps`` is left to the caller (``robust_accuracy(..., eps=...)``) unless given here.
    Use them to compose the course's evaluation with a view of a model, e.g.
    ``{k: attack_via(EOT(model, n), a) for k, a in strongest_attacks().items()}``.
    """
    p = get_profile(profile)
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    fixed = {} if eps is None else {"eps": _common.check_eps(eps)}
    attacks = {
        "APGD-CE": functools.partial(apgd, loss="ce", norm=norm, steps=p.apgd_steps,
                                     restarts=p.apgd_restarts, **fixed),
        "APGD-DLR-T": functools.partial(apgd_targeted, norm=norm, steps=p.apgd_steps,
                                        top_k=p.apgd_targets, **fixed),
        "PGD-CE": functools.partial(pgd, loss="ce", norm=norm, steps=p.pgd_steps,
                                    restarts=p.pgd_restarts, **fixed),
        "PGD-margin": functools.partial(pgd, loss="cw", norm=norm, steps=p.pgd_steps,
                                        restarts=p.pgd_restarts, **fixed),
    }
    if spsa_attack:
        if norm != "linf":
            raise ValueError("SPSA is an L∞ attack; use spsa=False with norm='l2'")
        attacks["SPSA"] = functools.partial(spsa, iters=p.spsa_iters, samples=p.spsa_samples, **fixed)
    return attacks


def gradient_masking_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                           tol: float = 0.05) -> dict[str, float | bool]:
    """Cheap warning signs that gradient attacks may be blind on ``model`` (Athalye et al. 2018, s. 3).

    From two backward passes of the cross-entropy at the clean points:

    * ``zero_share`` -- the share of examples whose input gradient is exactly zero
      (vanishing gradients: saturated softmax, a quantiser, a non-differentiable step);
    * ``nonfinite_share`` -- the share with NaN or infinite gradients (exploding gradients);
    * ``mean_cosine`` -- the mean cosine between the two passes' gradients, below 0.99 when
      the model is random (stochastic gradients).

    ``masked`` is True when either share exceeds ``tol``, or the gradients disagree.
    """
    _common.check_inputs(x, y)
    dev = _model_device(model, x.device)
    xd, yd = x.to(dev), y.to(dev)

    def gradient():
        point = xd.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(point), yd, reduction="sum")
        (grad,) = torch.autograd.grad(loss, point)
        return grad.flatten(1)

    with _common.attack_mode(model):
        g1, g2 = gradient(), gradient()
    finite = torch.isfinite(g1).all(1) & torch.isfinite(g2).all(1)
    zero = (g1 == 0).all(1)
    cosine = F.cosine_similarity(torch.nan_to_num(g1), torch.nan_to_num(g2), dim=1)
    cosine = torch.where(zero & (g2 == 0).all(1), torch.ones_like(cosine), cosine)
    flags = {"zero_share": float(zero.float().mean()),
             "nonfinite_share": float((~finite).float().mean()),
             "mean_cosine": float(cosine[finite].mean()) if bool(finite.any()) else float("nan")}
    flags["masked"] = bool(flags["zero_share"] > tol or flags["nonfinite_share"] > tol
                           or not flags["mean_cosine"] >= 0.99)
    return flags


def strongest(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
              extra: Mapping[str, Callable] | None = None, spsa: str | bool = "auto",
              profile: str | Profile | None = None, batch_size: int = 500,
              progress: bool = False) -> RobustResult:
    """Robust accuracy of ``model`` under the course's strongest evaluation (per-example worst case).

    The attacks of :func:`~coursepkg.evaluate.strongest_attacks` run first, then every attack of ``extra`` (a
    dict ``name -> attack``, e.g. ``{"BPDA+EOT": attack_via(view, pgd, steps=100)}``), each
    on the examples all earlier attacks failed on.  ``spsa="auto"`` adds SPSA when
    :func:`~coursepkg.evaluate.gradient_masking_flags` flags the model; ``True``/``False`` force it.
    ``per_attack`` of the result is cumulative: the accuracy after that attack and every
    one before it.  Read the figure as an *upper bound* on the true robust accuracy: a
    stronger attack can only lower it.
    """
    eps = _common.check_eps(eps)
    _common.check_inputs(x, y, eps=eps)
    if spsa not in SPSA_CHOICES:
        raise ValueError(f"spsa must be one of {SPSA_CHOICES}, got {spsa!r}")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError("extra must be a dict name -> attack (or None)")
    use_spsa = spsa is True or (spsa == "auto" and norm == "linf"
                                and gradient_masking_flags(model, x, y)["masked"])
    attacks = strongest_attacks(norm=norm, profile=profile, spsa_attack=use_spsa)
    for name, attack in (extra or {}).items():
        if name in attacks:
            raise ValueError(f"extra attack {name!r} has the name of a built-in attack; rename it")
        attacks[name] = attack
    return robust_accuracy(model, x, y, attacks, eps=eps, batch_size=batch_size,
                           progress=progress, cascade=True)
