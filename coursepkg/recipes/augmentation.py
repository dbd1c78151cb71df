"""Recipes of the chapter "Data augmentation" (adversarial training, logit pairing, TRADES).

Every recipe trains the zoo's architecture (:func:`coursepkg.models.classifier_for`, width
16) with one loss of :mod:`coursepkg.defences.augmentation` at the dataset's standard
budget ``info.eps``, on the profile's ``adv_train_subset`` for ``adv_epochs`` epochs, with
``adv_train_steps`` attack steps where the attack iterates.  Nothing else sets a budget.

* ``fgsm_training`` -- FGSM training, half clean (Goodfellow et al. 2015);
* ``rfgsm_training`` -- R+FGSM training, half clean (Tramèr et al. 2018);
* ``fast_fgsm_training`` -- FGSM from a random start (Wong et al. 2020);
* ``pgd_training`` -- PGD training (Madry et al. 2018), the course's positive control;
* ``logit_pairing`` -- adversarial logit pairing, ALP (Kannan et al. 2018);
* ``trades`` -- TRADES (Zhang et al. 2019);
* ``fgsm_training_large_eps`` -- FGSM training at ``eps_scale`` times the dataset's budget, on
  its own small budget (``co_train_subset``, ``co_epochs``): the setting where single-step
  training overfits catastrophically (Wong et al. 2020; Andriushchenko and Flammarion 2020).

The losses are those of :mod:`coursepkg.defences.augmentation`.

Each stores its training log and time in ``model.zoo_facts`` (``seconds``: the training
loop alone, monitoring excluded; the zoo adds ``train_seconds``, everything included).  The single-step
recipes also record, after every epoch, the accuracy of the model under FGSM and under
PGD on a few test images (``monitor``), the trace that shows catastrophic overfitting
(Wong et al. 2020) when it happens; nothing is selected on it.
"""

from __future__ import annotations

import time

from ..data import load_dataset, subset
from ..defences import augmentation as losses
from ..models import classifier_for
from ..train import cross_entropy_loss, train
from ..zoo import register

#: test images on which the single-step recipes trace their robustness after every epoch
MONITOR_SIZE = 200
_MONITOR_SEED = 1  # another permutation than the evaluation subset's (seed 0)

#: the profile fields every recipe of this module reads (they key its checkpoints)
USES = ("adv_train_subset", "adv_epochs", "adv_train_steps", "batch_size", "lr", "pgd_steps")


def _build(info, *, width=16, **_):
    return classifier_for(info, width=width)


def adversarial_training_data(info, profile, seed: int = 0):
    """The profile's adversarial-training subset (the first ``adv_train_subset`` of the
    same fixed permutation that gives standard training its subset)."""
    x, y = load_dataset(info.name, "train")
    return subset(x, y, profile.adv_train_subset, seed=seed)


def robustness_monitor(info, profile, record: list, *, eps: float | None = None):
    """An ``on_epoch_end`` callback appending clean, FGSM and PGD accuracy on ``MONITOR_SIZE``
    test images, and the seconds it spent doing so, to ``record``.  Both attacks use the
    budget ``eps`` (default ``info.eps``)."""
    from ..attacks import fgsm, pgd
    from ..evaluate import accuracy

    eps = info.eps if eps is None else float(eps)
    x, y = subset(*load_dataset(info.name, "test"), MONITOR_SIZE, seed=_MONITOR_SEED)

    def monitor(epoch, model):
        start = time.perf_counter()

        def acc(images):
            return accuracy(model, images, y)

        dev = next(model.parameters()).device
        xd, yd = x.to(dev), y.to(dev)
        record.append({
            "epoch": epoch + 1,
            "clean": acc(x),
            "fgsm": acc(fgsm(model, xd, yd, eps=eps).cpu()),
            "pgd": acc(pgd(model, xd, yd, eps=eps, steps=profile.pgd_steps).cpu()),
            "seconds": time.perf_counter() - start,
        })

    return monitor


def training_loss(name: str, info, profile, **hp):
    """The batch loss that recipe ``name`` trains with, at ``info.eps`` and the profile's attack
    steps (``"standard"``: the plain cross-entropy).  ``hp`` overrides the recipe's defaults."""
    steps = profile.adv_train_steps
    makers = {
        "standard": lambda: cross_entropy_loss,
        "fgsm_training": lambda: losses.fgsm_training(info.eps, clean_weight=hp.get("clean_weight", 0.5)),
        "rfgsm_training": lambda: losses.rfgsm_training(info.eps, clean_weight=hp.get("clean_weight", 0.5)),
        "fast_fgsm_training": lambda: losses.fast_fgsm_training(info.eps),
        "pgd_training": lambda: losses.pgd_training(info.eps, steps=steps),
        "logit_pairing": lambda: losses.logit_pairing(info.eps, steps=steps,
                                                      pairing_weight=hp.get("pairing_weight", 0.5)),
        "trades": lambda: losses.trades(info.eps, steps=steps, beta=hp.get("beta", 6.0)),
    }
    if name not in makers:
        raise ValueError(f"unknown recipe {name!r}: choose one of {sorted(makers)}")
    return makers[name]()


def _fit(model, info, profile, device, loss, *, seed, desc, monitor=False):
    x, y = adversarial_training_data(info, profile, seed)
    record: list = []
    log = train(model, x, y, loss, epochs=profile.adv_epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"{desc} {info.name}",
                on_epoch_end=robustness_monitor(info, profile, record) if monitor else None)
    facts = log.as_dict()
    if monitor:  # the time spent monitoring is not training time
        facts["monitor"] = record
        facts["seconds"] -= sum(r["seconds"] for r in record)
    return facts


@register("fgsm_training", build=_build, defaults={"width": 16, "clean_weight": 0.5}, uses=USES)
def fit_fgsm_training(model, info, profile, device, *, seed=0, clean_weight=0.5, **_):
    """FGSM adversarial training (Goodfellow et al. 2015): half clean, half FGSM examples."""
    loss = training_loss("fgsm_training", info, profile, clean_weight=clean_weight)
    return _fit(model, info, profile, device, loss, seed=seed, desc="FGSM training", monitor=True)


@register("rfgsm_training", build=_build, defaults={"width": 16, "clean_weight": 0.5}, uses=USES)
def fit_rfgsm_training(model, info, profile, device, *, seed=0, clean_weight=0.5, **_):
    """R+FGSM adversarial training (Tramèr et al. 2018): a random step before FGSM."""
    loss = training_loss("rfgsm_training", info, profile, clean_weight=clean_weight)
    return _fit(model, info, profile, device, loss, seed=seed, desc="R+FGSM training", monitor=True)


@register("fast_fgsm_training", build=_build, defaults={"width": 16}, uses=USES)
def fit_fast_fgsm_training(model, info, profile, device, *, seed=0, **_):
    """"Fast" adversarial training (Wong et al. 2020): FGSM of 1.25 eps from a uniform random start."""
    loss = training_loss("fast_fgsm_training", info, profile)
    return _fit(model, info, profile, device, loss, seed=seed, desc="fast FGSM training", monitor=True)


@register("pgd_training", build=_build, defaults={"width": 16}, uses=USES)
def fit_pgd_training(model, info, profile, device, *, seed=0, **_):
    """PGD adversarial training (Madry et al. 2018): the positive control of the course."""
    loss = training_loss("pgd_training", info, profile)
    return _fit(model, info, profile, device, loss, seed=seed, desc="PGD training")


@register("logit_pairing", build=_build, defaults={"width": 16, "pairing_weight": 0.5}, uses=USES)
def fit_logit_pairing(model, info, profile, device, *, seed=0, pairing_weight=0.5, **_):
    """Adversarial logit pairing (Kannan et al. 2018): mixed PGD training plus a logit-pairing penalty."""
    loss = training_loss("logit_pairing", info, profile, pairing_weight=pairing_weight)
    return _fit(model, info, profile, device, loss, seed=seed, desc="logit pairing")


@register("trades", build=_build, defaults={"width": 16, "beta": 6.0}, uses=USES)
def fit_trades(model, info, profile, device, *, seed=0, beta=6.0, **_):
    """TRADES (Zhang et al. 2019): clean cross-entropy plus beta times the worst-case KL."""
    loss = training_loss("trades", info, profile, beta=beta)
    return _fit(model, info, profile, device, loss, seed=seed, desc="TRADES")


#: the profile fields of the catastrophic-overfitting recipe (they key its checkpoints)
CO_USES = ("co_train_subset", "co_epochs", "batch_size", "lr", "pgd_steps")


@register("fgsm_training_large_eps", build=_build,
          defaults={"width": 16, "clean_weight": 0.5, "eps_scale": 3.0}, uses=CO_USES)
def fit_fgsm_training_large_eps(model, info, profile, device, *, seed=0, clean_weight=0.5,
                                eps_scale=3.0, **_):
    """FGSM training from the data point (no random start) at ``eps_scale * info.eps``.

    Catastrophic overfitting (Wong et al. 2020, sec. 5; Andriushchenko and Flammarion 2020)
    appears with large single steps and large budgets: accuracy under FGSM stays high while
    accuracy under PGD collapses.  ``monitor`` records both, at the training budget, after
    every epoch; ``eps`` is that budget.
    """
    if not eps_scale > 0:
        raise ValueError(f"eps_scale must be positive, got {eps_scale}")
    eps = float(eps_scale) * info.eps
    loss = losses.fgsm_training(eps, clean_weight=clean_weight)
    x, y = subset(*load_dataset(info.name, "train"), profile.co_train_subset, seed=seed)
    record: list = []
    log = train(model, x, y, loss, epochs=profile.co_epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"FGSM training at eps {eps:g}",
                on_epoch_end=robustness_monitor(info, profile, record, eps=eps))
    facts = log.as_dict()
    facts["monitor"] = record
    facts["seconds"] -= sum(r["seconds"] for r in record)
    facts["eps"] = eps
    return facts


# --------------------------------------------------------------------------------------
# Chapter 2's evaluation: one definition for the chapter and for chapter 7's table
# --------------------------------------------------------------------------------------
def transfer_examples(baseline, x, y, *, eps: float, profile, seed: int = 0):
    """PGD examples crafted on the undefended ``baseline`` (the yardstick PGD's steps and
    restarts), drawn from generators seeded with ``seed``: the same bytes in every chapter
    that asks, so that evaluations against them are read back from the results store."""
    from ..attacks import pgd
    from ..config import seeded

    with seeded(seed):
        return pgd(baseline, x, y, eps=eps, steps=profile.pgd_steps, restarts=profile.pgd_restarts)


def chapter_attacks(baseline, x, y, *, eps: float, profile) -> dict:
    """The attacks chapter 2 builds, which join :func:`coursepkg.evaluate.strongest` for every
    model: FGSM, R+FGSM (the attacks single-step training saw) and PGD crafted on the
    undefended baseline, shown to the model (transfer; Tramèr et al. 2018).  ``x, y`` are
    the images the evaluation will attack (the transferred examples are crafted on them)."""
    from ..attacks import fgsm, rfgsm

    crafted = transfer_examples(baseline, x, y, eps=eps, profile=profile)
    return {"FGSM": fgsm, "R+FGSM": rfgsm, "transfer": losses.precomputed_attack(x, crafted)}

