"""Recipes of the chapter "Beyond" (chapter 8): models trained for a certificate.

* ``gaussian_noise_025`` and ``gaussian_noise_050`` -- the base classifiers of randomised
  smoothing, trained on images with Gaussian noise of sigma 0.25 and 0.5 added (Cohen,
  Rosenfeld and Kolter 2019, section 4), on ``smoothing_train_subset`` for
  ``smoothing_epochs``;
* ``ibp`` -- interval bound propagation training (Gowal et al. 2018) at the dataset's L∞
  budget ``info.eps`` times ``train_eps_factor``, on ``ibp_train_subset`` for
  ``ibp_epochs``: ``ibp_warmup_epochs`` of clean training, then eps ramped up over
  ``ibp_rampup_epochs``.

All train the zoo's SmallCNN (width 16) with the course's one training loop.
"""

from __future__ import annotations

import math

from ..data import load_dataset, subset
from ..defences.certified import gaussian_noise_loss, ibp_loss
from ..models import classifier_for
from ..train import train
from ..zoo import register

SMOOTHING_USES = ("smoothing_train_subset", "smoothing_epochs", "batch_size", "lr")
IBP_USES = ("ibp_train_subset", "ibp_epochs", "ibp_warmup_epochs", "ibp_rampup_epochs",
            "batch_size", "lr")


def _build(info, *, width=16, **_):
    return classifier_for(info, width=width)


def _data(info, n, seed):
    x, y = load_dataset(info.name, "train")
    return subset(x, y, n, seed=seed)


def _fit_smoothing(model, info, profile, device, sigma, seed):
    x, y = _data(info, profile.smoothing_train_subset, seed)
    log = train(model, x, y, gaussian_noise_loss(sigma), epochs=profile.smoothing_epochs,
                batch_size=profile.batch_size, lr=profile.lr, seed=seed, device=device,
                desc=f"Gaussian noise sigma={sigma} {info.name}")
    return {**log.as_dict(), "sigma": sigma}


@register("gaussian_noise_025", build=_build, defaults={"width": 16}, uses=SMOOTHING_USES)
def fit_gaussian_noise_025(model, info, profile, device, *, seed=0, **_):
    """Base classifier of randomised smoothing: training with Gaussian noise, sigma = 0.25."""
    return _fit_smoothing(model, info, profile, device, 0.25, seed)


@register("gaussian_noise_050", build=_build, defaults={"width": 16}, uses=SMOOTHING_USES)
def fit_gaussian_noise_050(model, info, profile, device, *, seed=0, **_):
    """Base classifier of randomised smoothing: training with Gaussian noise, sigma = 0.5."""
    return _fit_smoothing(model, info, profile, device, 0.5, seed)


@register("ibp", build=_build, defaults={"width": 16, "train_eps_factor": 1.0, "kappa_end": 0.5},
          uses=IBP_USES)
def fit_ibp(model, info, profile, device, *, seed=0, train_eps_factor=1.0, kappa_end=0.5, **_):
    """Interval bound propagation training (Gowal et al. 2018) with an eps ramp-up."""
    x, y = _data(info, profile.ibp_train_subset, seed)
    steps_per_epoch = math.ceil(len(x) / profile.batch_size)
    loss = ibp_loss(info.eps * train_eps_factor, kappa_end=kappa_end,
                    warmup=round(profile.ibp_warmup_epochs * steps_per_epoch),
                    rampup=round(profile.ibp_rampup_epochs * steps_per_epoch))
    log = train(model, x, y, loss, epochs=profile.ibp_epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"IBP {info.name}")
    return {**log.as_dict(), "train_eps": info.eps * train_eps_factor}
