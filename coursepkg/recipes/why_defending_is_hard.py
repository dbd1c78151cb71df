"""Recipes of the chapter "Why defending is hard" (chapter 7).

* ``pgd_training_eps`` -- PGD adversarial training (Madry et al. 2018) at a chosen training
  budget ``train_eps`` (``0``: plain cross-entropy), every model on the same small budget
  (``tradeoff_train_subset`` images, ``tradeoff_epochs`` epochs, ``adv_train_steps`` PGD
  steps).  The chapter trains it at several ``train_eps`` to draw clean against robust
  accuracy, the tension Tsipras et al. (2019) describe.  Chapter 2's ``pgd_training`` is
  the same loss at ``info.eps`` on a larger budget; the sweep does not reuse it, so that
  every point of the curve has had the same training budget.
"""

from __future__ import annotations

from ..data import load_dataset, subset
from ..defences import augmentation as losses
from ..models import classifier_for
from ..train import cross_entropy_loss, train
from ..zoo import register

#: the profile fields the recipe reads (they key its checkpoints)
TRADEOFF_USES = ("tradeoff_train_subset", "tradeoff_epochs", "adv_train_steps", "batch_size", "lr")


def _build(info, *, width=16, **_):
    return classifier_for(info, width=width)


@register("pgd_training_eps", build=_build, defaults={"width": 16, "train_eps": 0.1},
          uses=TRADEOFF_USES)
def fit_pgd_training_eps(model, info, profile, device, *, seed=0, train_eps=0.1, **_):
    """PGD training (Madry et al. 2018) at training budget ``train_eps`` on the sweep's budget."""
    train_eps = float(train_eps)
    if not 0.0 <= train_eps <= 1.0:
        raise ValueError(f"train_eps must lie in [0, 1], got {train_eps}")
    x, y = subset(*load_dataset(info.name, "train"), profile.tradeoff_train_subset, seed=seed)
    loss = (cross_entropy_loss if train_eps == 0.0
            else losses.pgd_training(train_eps, steps=profile.adv_train_steps))
    log = train(model, x, y, loss, epochs=profile.tradeoff_epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, progress=False,
                desc=f"PGD training at eps {train_eps:g}")
    return {**log.as_dict(), "train_eps": train_eps}
