"""Recipe ``standard``: the undefended baseline of every chapter.

Plain empirical-risk minimisation, the cross-entropy of :func:`coursepkg.train.cross_entropy_loss`,
with the profile's training subset, epochs and learning rate.
"""

from __future__ import annotations

from ..data import load_dataset, subset
from ..models import classifier_for
from ..train import cross_entropy_loss, train
from ..zoo import register


def training_data(info, profile, seed: int = 0):
    """The profile's training subset of ``info``'s training split (the same for every recipe)."""
    x, y = load_dataset(info.name, "train")
    return subset(x, y, profile.train_subset, seed=seed)


@register("standard", build=lambda info, **hp: classifier_for(info, **hp),
          defaults={"width": 16, "dropout": 0.0},
          uses=("train_subset", "epochs", "batch_size", "lr"))
def fit_standard(model, info, profile, device, *, seed=0, **hp):
    """Standard training: minimise the cross-entropy on clean images."""
    x, y = training_data(info, profile)
    log = train(model, x, y, cross_entropy_loss, epochs=profile.epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"standard {info.name}")
    return log.as_dict()
