"""Recipes of the chapter "Detection" (chapter 6); registered on import by :mod:`coursepkg.zoo`.

* ``detector-network`` -- the detector subnetwork of Metzen et al. (2017) on a layer of the
  frozen ``standard`` classifier, trained to tell clean training images from BIM
  adversarial examples made against the classifier (a *static* adversary) or, with
  ``dynamic=True``, with half of every batch's adversarial images made during training
  against classifier + detector together (their *dynamic* adversary, section 3.2);
* ``feinman-lr`` -- the logistic regression of Feinman et al. (2017) over kernel density
  and Bayesian uncertainty, on a ``standard`` classifier trained with dropout.

:func:`feinman_detectors` assembles the three detectors of Feinman et al. for a chapter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import zoo
from ..attacks import bim, pgd
from ..data import load_dataset
from ..defences.detection import (
    FEINMAN_BANDWIDTH,
    BayesianUncertainty,
    Combined,
    Detected,
    DetectorHead,
    DetectorNetwork,
    Evasion,
    KernelDensity,
    LogisticCombination,
    features_at,
)
from ..evaluate.detection import detector_scores
from ..models import classifier_for
from ..train import train
from ..zoo import register

#: The profile fields of the ``standard`` classifier these recipes build on (they key them too).
STANDARD_USES = ("train_subset", "epochs", "batch_size", "lr")
SPLIT_SEED = 6


def training_split(info, profile) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Two disjoint sets of training images: the kernel density's, and the detectors' own.

    From one seeded permutation of the training split: the first ``kde_train_subset`` images
    hold the density's features, the last ``detector_train_subset`` train (or fit) the
    detectors -- so no detector is fitted on images the density contains.
    """
    x, y = load_dataset(info.name, "train")
    n_kde = len(x) if profile.kde_train_subset is None else int(profile.kde_train_subset)
    n_det = len(x) if profile.detector_train_subset is None else int(profile.detector_train_subset)
    if n_kde + n_det > len(x):
        raise ValueError(f"kde_train_subset + detector_train_subset = {n_kde + n_det} exceeds the "
                         f"{len(x)} training images; lower one of them")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    kde, det = order[:n_kde], order[len(x) - n_det:]
    return (x[kde], y[kde]), (x[det], y[det])


def _batched_attack(attack, model, x, y, batch_size=500, **kwargs) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([attack(model, x[i:i + batch_size].to(device), y[i:i + batch_size].to(device), **kwargs).cpu()
                      for i in range(0, len(x), batch_size)])


def build_head(info, *, layer: str = "conv2", width: int = 32, dynamic: bool = False) -> DetectorHead:
    """An untrained :class:`DetectorHead` for the ``standard`` classifier's block ``layer``."""
    probe = classifier_for(info, width=zoo.recipe("standard").defaults["width"])
    with torch.no_grad():
        features = features_at(probe, torch.zeros(1, *info.shape), layer)
    if features.dim() != 4:
        raise ValueError(f"layer {layer!r} is not convolutional; choose conv1, conv2 or conv3")
    return DetectorHead(features.shape[1], width)


@register("detector-network", build=build_head,
          defaults={"layer": "conv2", "width": 32, "dynamic": False},
          uses=STANDARD_USES + ("detector_train_subset", "detector_epochs", "detector_attack_steps",
                                "kde_train_subset"))
def fit_detector_network(model, info, profile, device, *, seed=0, layer="conv2", width=32, dynamic=False):
    """Metzen et al. (2017): train a detector head on clean vs BIM images of the frozen classifier."""
    classifier = zoo.get("standard", info.name, profile=profile.profile, device=device)
    _, (x, y) = training_split(info, profile)
    steps = profile.detector_attack_steps
    x_adv = _batched_attack(bim, classifier, x, y, eps=info.eps, steps=steps)
    c = info.shape[0]

    def detector_loss(head, xb, yb):
        clean, adv = xb[:, :c], xb[:, c:]
        detector = DetectorNetwork(classifier, head, layer)
        if dynamic:  # half of the batch attacked against classifier + the current detector
            half = len(clean) // 2
            joined = Detected(classifier, detector, 0.0)
            fresh = pgd(Evasion(joined, clean[:half], yb[:half]), clean[:half], yb[:half],
                        eps=info.eps, steps=steps)
            adv = torch.cat([fresh, adv[half:]])
        scores = detector(torch.cat([clean, adv]))
        labels = torch.cat([torch.zeros(len(clean)), torch.ones(len(adv))]).to(scores)
        return F.binary_cross_entropy_with_logits(scores, labels)

    # clean and adversarial images travel together, as two channels of one training tensor
    log = train(model, torch.cat([x, x_adv], dim=1), y, detector_loss, epochs=profile.detector_epochs,
                batch_size=profile.batch_size, lr=profile.lr, seed=seed, device=device,
                desc=f"detector network ({'dynamic' if dynamic else 'static'})")
    return log.as_dict()


def feinman_parts(info, profile, device, dropout: float):
    """The dropout classifier, its kernel density and its uncertainty detector (untrained parts)."""
    classifier = zoo.get("standard", info.name, profile=profile, device=device, dropout=dropout)
    (x_kde, y_kde), _ = training_split(info, profile)
    density = KernelDensity(classifier, x_kde, y_kde, bandwidth=FEINMAN_BANDWIDTH[info.name])
    uncertainty = BayesianUncertainty(classifier, profile.mc_samples)
    return classifier, density, uncertainty


@register("feinman-lr", build=lambda info, **hp: LogisticCombination(2), defaults={"dropout": 0.5},
          uses=STANDARD_USES + ("detector_train_subset", "detector_attack_steps", "kde_train_subset",
                                "mc_samples"))
def fit_feinman_lr(model, info, profile, device, *, seed=0, dropout=0.5):
    """Feinman et al. (2017): logistic regression over density and uncertainty, on BIM images."""
    classifier, density, uncertainty = feinman_parts(info, profile, device, dropout)
    _, (x, y) = training_split(info, profile)
    x_adv = _batched_attack(bim, classifier, x, y, eps=info.eps, steps=profile.detector_attack_steps)
    with torch.no_grad():
        keep = ((classifier(x.to(device)).argmax(1) == y.to(device))
                & (classifier(x_adv.to(device)).argmax(1) != y.to(device))).cpu()
    torch.manual_seed(seed)
    clean_scores = torch.stack([detector_scores(d, x[keep]) for d in (density, uncertainty)], 1)
    adv_scores = torch.stack([detector_scores(d, x_adv[keep]) for d in (density, uncertainty)], 1)
    model.fit(clean_scores, adv_scores)
    return {"fitted_pairs": int(keep.sum()), "weight": model.weight.tolist(), "bias": float(model.bias)}


def feinman_detectors(dataset: str = "fashion-mnist", *, profile=None, device=None, dropout: float = 0.5) -> dict:
    """Feinman et al.'s detectors on the ``standard`` classifier with dropout, ready to use.

    Returns a dict: ``classifier``, ``density`` (:class:`KernelDensity`), ``uncertainty``
    (:class:`BayesianUncertainty`) and ``combined`` (their logistic regression, the zoo's
    ``feinman-lr``, as one score).
    """
    from ..config import device as default_device
    from ..config import profile as get_profile
    from ..data import dataset_info
    info = dataset_info(dataset)
    prof = get_profile(profile)
    dev = default_device() if device is None else torch.device(device)
    classifier, density, uncertainty = feinman_parts(info, prof, dev, dropout)
    combination = zoo.get("feinman-lr", info.name, profile=prof, device=dev, dropout=dropout)
    return {"classifier": classifier, "density": density, "uncertainty": uncertainty,
            "combined": Combined([density, uncertainty], combination).to(dev)}


def is_random(detector) -> bool:
    """A detector whose score is random at test time (the Monte-Carlo dropout detectors of
    Feinman et al. 2017: the uncertainty and the combination that uses it)."""
    from ..defences.detection import BayesianUncertainty, Combined

    return isinstance(detector, (BayesianUncertainty, Combined))


def chapter_attacks(joined, *, eps: float, profile) -> dict:
    """The attacks chapter 6 aims at "fooled and undetected" on a joined model
    (:class:`~coursepkg.defences.detection.Detected`): the course's strongest attacks
    (:func:`~coursepkg.evaluate.detection.detection_attacks`); for a random detector PGD
    through EOT of its dropout masks (Athalye et al. 2018, section 4.2); and for a detector
    that is or combines a kernel density, targeted PGD with the density of the target class
    (:func:`~coursepkg.defences.detection.target_class_density_attack`, Carlini and Wagner
    2017) on the ``apgd_targets`` likeliest wrong classes (the likeliest one, through EOT,
    for a random detector).  Built here
    once, so that chapter 7's table asks the results store the chapter's question."""
    from ..adaptive import EOT
    from ..attacks import pgd
    from ..defences.detection import evading, has_density, target_class_density_attack
    from ..evaluate.detection import detection_attacks

    found = detection_attacks(eps=eps, profile=profile)
    random = is_random(joined.detector)
    if random:
        found["PGD-EOT"] = evading(pgd, view=EOT(joined, profile.eot_samples),
                                   steps=profile.pgd_steps)
    if has_density(joined.detector):  # the target class's density, C&W's smooth loss
        found["PGD, target-class density"] = target_class_density_attack(
            pgd, targets=1 if random else profile.apgd_targets, steps=profile.pgd_steps,
            eot=profile.eot_samples if random else None)
    return found
