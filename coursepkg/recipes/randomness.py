"""Recipes of the chapter "Randomness" (chapter 5): no training, and the chapter's attack sets.

Both randomised defences of the chapter -- stochastic activation pruning and random
resizing and padding (:mod:`coursepkg.defences.randomness`) -- wrap the shared ``standard``
classifier at test time, unchanged: nothing is trained for them.  The random resizing
resizes its canvas back to 28 x 28, so the standard classifier needs no retraining.
Imported by :mod:`coursepkg.zoo` with the other recipe modules; it registers nothing.

What the module does hold is the chapter's two evaluations, built here once so that the
chapter and chapter 7's table ask the results store the very same question
(:mod:`coursepkg.evaluate.store`) and the table reads the chapter's per-image results back:

* :func:`one_draw_attacks` -- the papers' evaluation: FGSM and PGD on one draw of the
  randomness (the *claimed* figure);
* :func:`chapter_attacks` -- the adaptive evaluation: PGD through EOT (Athalye et al. 2018,
  section 4.2), the course's strongest attacks through the same EOT view, the one-draw
  attacks, and SPSA (Uesato et al. 2018), which needs no gradient, on the first survivors.
"""

from __future__ import annotations

import functools
from typing import Callable


def one_draw_attacks(*, eps: float, profile) -> dict[str, Callable]:
    """FGSM and PGD (``pgd_restarts`` restarts) on one draw of the model's randomness."""
    from ..attacks import fgsm, pgd

    return {"FGSM": functools.partial(fgsm, eps=eps),
            "PGD": functools.partial(pgd, eps=eps, restarts=profile.pgd_restarts)}


def eot_pgd(model, n: int, *, eps: float, profile) -> Callable:
    """PGD (``pgd_steps`` steps) on the average of ``n`` draws of ``model``'s logits."""
    from ..adaptive import EOT, attack_via
    from ..attacks import pgd

    return attack_via(EOT(model, n), pgd, eps=eps, steps=profile.pgd_steps)


def spsa_on_first(cap: int, *, eps: float) -> Callable:
    """SPSA at ``eps`` on at most the first ``cap`` images it is handed -- in a cascade, the
    first survivors of the gradient attacks (SPSA costs many forward passes per image)."""
    from ..attacks import spsa

    def spsa_check(model, x, y, **_):
        out = x.clone()
        out[:cap] = spsa(model, x[:cap], y[:cap], eps=eps)
        return out
    return spsa_check


def chapter_attacks(model, *, eps: float, profile) -> dict[str, Callable]:
    """Every attack the chapter runs on a randomised ``model``, the strongest first:
    EOT-PGD with ``eot_max_samples`` draws, the strongest attacks through the same EOT view,
    one-draw FGSM and PGD, and SPSA on the first ``random_spsa_subset`` survivors."""
    from ..adaptive import EOT, attack_via
    from ..evaluate import strongest_attacks

    n = profile.eot_max_samples
    found = {f"EOT-PGD, n={n}": eot_pgd(model, n, eps=eps, profile=profile)}
    view = EOT(model, n)
    for name, attack in strongest_attacks(eps=eps, profile=profile).items():
        found[f"EOT {name}"] = attack_via(view, attack)
    found.update({f"one-draw {name}": attack
                  for name, attack in one_draw_attacks(eps=eps, profile=profile).items()})
    found["SPSA"] = spsa_on_first(profile.random_spsa_subset, eps=eps)
    return found


def eot_attack_names(profile) -> list[str]:
    """The names, in :func:`chapter_attacks`, of EOT-PGD and the strongest attacks through EOT."""
    from ..evaluate import strongest_attacks

    return [f"EOT-PGD, n={profile.eot_max_samples}",
            *(f"EOT {name}" for name in strongest_attacks(profile=profile))]


#: the fractions of stochastic activation pruning the chapter tries, smallest first
SAP_FRACTIONS = (0.25, 0.5, 1.0, 2.0)


def choose_sap_fraction(classifier, x, y, *, k: int, tolerance: float = 0.03) -> dict:
    """The chapter's choice of SAP's one setting: the smallest fraction of
    ``SAP_FRACTIONS`` whose mean clean accuracy over ``k`` (seeded) draws is within
    ``tolerance`` of the undefended ``classifier``'s on ``x, y`` (the largest when none is).
    Returns ``{"fraction": f, "undefended": acc, "clean": {fraction: mean accuracy}}``."""
    from ..defences.randomness import StochasticActivationPruning
    from ..evaluate import accuracy, randomised_accuracy

    bare = accuracy(classifier, x, y)
    clean = {f: randomised_accuracy(StochasticActivationPruning(classifier, f), x, y, k=k).expected
             for f in SAP_FRACTIONS}
    chosen = next((f for f in SAP_FRACTIONS if clean[f] >= bare - tolerance), SAP_FRACTIONS[-1])
    return {"fraction": chosen, "undefended": bare, "clean": clean}
