"""Recipes of the chapter "Purification": ``pixelcnn``, the generative model of PixelDefend.

The PixelCNN (:class:`coursepkg.defences.pixelcnn.PixelCNN`) is trained by maximum
likelihood -- the mean negative log-likelihood of the training images, a 256-way
cross-entropy per pixel (van den Oord et al. 2016) -- with the course's one training loop.
Its budget is ``profile().pixelcnn_train_subset`` images for ``profile().pixelcnn_epochs``
epochs.  Labels are not used: PixelDefend's generative model never sees a class.

The module also holds the chapter's evaluation of a purifier, built here once so that the
chapter and chapter 7's table ask the results store (:mod:`coursepkg.evaluate.store`) the
very same question, and the table reads the chapter's per-image results back:

* :func:`transferred_pgd` -- the papers' threat: PGD crafted on the bare classifier and
  handed to the defended model (the *claimed* figure);
* :func:`own_attacks` -- the chapter's adaptive attacks, each on every image: BPDA
  (Athalye et al. 2018, section 4.1) with two losses, the search over the reachable levels
  of a quantiser, PixelDefend's output space, and, for TV minimisation, EOT of its true
  gradient (section 4.2);
* :func:`strongest_via` -- the course's strongest attacks through the same view, and BPDA
  with EOT for TV minimisation (Athalye et al.'s own attack on it), on the survivors;
* :func:`worst_case` -- all of them, image by image.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch

from ..data import load_dataset, subset
from ..defences.pixelcnn import PixelCNN
from ..train import train
from ..zoo import register

if TYPE_CHECKING:
    from ..evaluate.core import RobustResult


def pixelcnn_loss(model, x, y, *, pixel_fraction: float = 1.0):
    """Maximum likelihood: the mean over the batch of ``-log p(x)`` per pixel, in nats (``y`` unused).

    With ``pixel_fraction < 1`` the likelihood is estimated, without bias, from that
    fraction of the pixel positions (:meth:`PixelCNN.sampled_nll`), which makes a CPU
    training step about twice as fast at a quarter of the positions.
    """
    nll = model.nll(x) if pixel_fraction >= 1.0 else model.sampled_nll(x, pixel_fraction)
    return nll.mean() / x[0].numel()


@register("pixelcnn", build=lambda info, channels, layers, first_kernel, **_:
          PixelCNN(info, channels=channels, layers=layers, first_kernel=first_kernel),
          defaults={"channels": 16, "layers": 4, "first_kernel": 5, "loss_pixel_fraction": 0.25},
          uses=("pixelcnn_train_subset", "pixelcnn_epochs", "batch_size", "lr"))
def fit_pixelcnn(model, info, profile, device, *, seed=0, loss_pixel_fraction=1.0, **hp):
    """A PixelCNN trained by maximum likelihood on the profile's PixelCNN training subset."""
    x, y = load_dataset(info.name, "train")
    x, y = subset(x, y, profile.pixelcnn_train_subset, seed=seed)

    def loss(model, xb, yb):
        return pixelcnn_loss(model, xb, yb, pixel_fraction=loss_pixel_fraction)

    log = train(model, x, y, loss, epochs=profile.pixelcnn_epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"PixelCNN {info.name}")
    facts = log.as_dict()
    facts["train_bits_per_dim_last_epoch"] = facts["epoch_loss"][-1] / math.log(2)
    return facts


# --------------------------------------------------------------------------------------------
# The chapter's evaluation of a purifier
# --------------------------------------------------------------------------------------------
def pgd_settings(purifier, profile) -> dict:
    """The PGD budget of the chapter's attacks on ``purifier``: ``pgd_restarts`` restarts of
    ``pgd_steps`` steps, or, through PixelDefend (a whole purification per step), one run
    of ``pixeldefend_attack_steps`` steps."""
    from ..defences.pixelcnn import PixelDefend

    if isinstance(purifier, PixelDefend):
        return {"steps": profile.pixeldefend_attack_steps, "restarts": 1}
    return {"steps": profile.pgd_steps, "restarts": profile.pgd_restarts}


def transferred_pgd(classifier, *, eps: float, profile) -> dict[str, Callable]:
    """PGD (``pgd_restarts`` restarts) crafted on the bare ``classifier`` and judged by the
    model under evaluation: the threat the purification papers evaluated."""
    from ..adaptive import attack_via
    from ..attacks import pgd

    return {"transferred PGD": attack_via(classifier, pgd, eps=eps,
                                          restarts=profile.pgd_restarts)}


def own_attacks(classifier, purifier, *, eps: float, profile) -> dict[str, Callable]:
    """The chapter's adaptive attacks on ``Purified(purifier, classifier)``, by name.

    * TV minimisation (differentiable, random): PGD through EOT of ``eot_samples`` draws of
      its true gradient;
    * every other purifier: PGD through its BPDA view (the identity in the backward pass)
      with the cross-entropy and (but for PixelDefend, where :func:`strongest_via` runs it
      on the survivors) with the margin (C&W) loss; for a quantiser, also PGD over
      its reachable levels (:func:`coursepkg.adaptive.attack_reachable_set`); for
      PixelDefend, also PGD in its output space
      (:func:`coursepkg.defences.pixelcnn.attack_pixeldefend_outputs`).
    """
    from ..adaptive import BPDA, EOT, attack_reachable_set, attack_via
    from ..attacks import pgd
    from ..defences.pixelcnn import PixelDefend, attack_pixeldefend_outputs
    from ..defences.purification import BitDepth, Purified, TVMinimisation

    budget = pgd_settings(purifier, profile)
    if isinstance(purifier, TVMinimisation):
        view = EOT(Purified(purifier, classifier), profile.eot_samples)
        return {"EOT (true gradient)": attack_via(view, pgd, eps=eps, **budget)}
    view = Purified(BPDA(purifier), classifier)
    found = {"BPDA": attack_via(view, pgd, eps=eps, **budget)}
    if not isinstance(purifier, PixelDefend):  # PixelDefend: in strongest_via's cascade
        found["BPDA, C&W loss"] = attack_via(view, pgd, eps=eps, **budget, loss="cw")
    if isinstance(purifier, BitDepth):
        found["reachable levels"] = attack_reachable_set(
            classifier, purifier, pgd, eps=eps, restarts=profile.pgd_restarts)
    if isinstance(purifier, PixelDefend):
        found["PixelDefend's outputs"] = attack_pixeldefend_outputs(
            classifier, purifier, pgd, eps=eps, restarts=profile.pgd_restarts)
    return found


def strongest_via(classifier, purifier, *, eps: float, profile) -> dict[str, Callable]:
    """The course's strongest attacks through the view :func:`own_attacks` uses (BPDA, or
    EOT for TV minimisation), less the two PGD runs it already made; for TV minimisation,
    also BPDA with EOT, the attack by which Athalye et al. (2018, section 5.3) circumvented
    it.  Through PixelDefend, whose every step costs a purification: PGD with the margin loss
    (one restart) and APGD with the cross-entropy and with the DLR loss (Croce and Hein 2020,
    untargeted), each of ``pixeldefend_attack_steps`` steps."""
    from ..adaptive import BPDA, EOT, attack_via
    from ..attacks import apgd, pgd
    from ..defences.pixelcnn import PixelDefend
    from ..defences.purification import Purified, TVMinimisation
    from ..evaluate import strongest_attacks

    if isinstance(purifier, PixelDefend):  # a whole purification per step
        view, steps = Purified(BPDA(purifier), classifier), profile.pixeldefend_attack_steps
        found = {"BPDA, C&W loss": attack_via(view, pgd, eps=eps, steps=steps, loss="cw")}
        for loss in ("ce", "dlr"):
            found[f"APGD-{loss.upper()} via BPDA"] = attack_via(view, apgd, eps=eps,
                                                                loss=loss, steps=steps)
        return found
    if isinstance(purifier, TVMinimisation):
        tag, view = "EOT", EOT(Purified(purifier, classifier), profile.eot_samples)
        done = ("PGD-CE",)  # = "EOT (true gradient)"
    else:
        tag, view = "BPDA", Purified(BPDA(purifier), classifier)
        done = ("PGD-CE", "PGD-margin")  # = "BPDA", "BPDA, C&W loss"
    found = {f"{name} via {tag}": attack_via(view, attack)
             for name, attack in strongest_attacks(eps=eps, profile=profile).items()
             if name not in done}
    if isinstance(purifier, TVMinimisation):
        bpda_eot = EOT(Purified(BPDA(purifier), classifier), profile.eot_samples)
        found["BPDA+EOT"] = attack_via(bpda_eot, pgd, eps=eps, **pgd_settings(purifier, profile))
    return found


def worst_case(classifier, purifier, x: torch.Tensor, y: torch.Tensor, *, eps: float,
               profile) -> tuple["RobustResult", torch.Tensor]:
    """The chapter's evaluation of ``Purified(purifier, classifier)`` on ``(x, y)``.

    The transferred PGD and :func:`own_attacks` run on every image (so each has its own
    accuracy); :func:`strongest_via` then runs as a cascade on the images all of them left
    correct.  Returns the first evaluation and, per image, whether it survived everything.
    Both calls go through the results store, and are read back when they were asked before.
    """
    from ..defences.purification import Purified
    from ..evaluate import robust_accuracy

    model = Purified(purifier, classifier).to(x.device)
    first = {**transferred_pgd(classifier, eps=eps, profile=profile),
             **own_attacks(classifier, purifier, eps=eps, profile=profile)}
    own = robust_accuracy(model, x, y, first, eps=eps)
    correct = own.correct.clone()
    alive = correct.nonzero().squeeze(1)
    if len(alive):
        more = robust_accuracy(model, x[alive], y[alive],
                               strongest_via(classifier, purifier, eps=eps, profile=profile),
                               eps=eps, cascade=True)
        correct[alive] = more.correct.to(correct.device)
    return own, correct
