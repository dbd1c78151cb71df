"""Checks for the coding exercises of chapter 7."""

from __future__ import annotations

import math

import torch

from ._check import CheckResult, call_student, hint, passed

__all__: list[str] = ["check_transfer_success"]

#: Test images the check attacks (a seeded subset that is not the chapter's own images).
TRANSFER_IMAGES = 200
TRANSFER_SEED = 7
#: The (source, target) zoo recipes it measures: the baseline's examples against the
#: distilled network, whose own gradient is useless to PGD (chapter 4).
TRANSFER_PAIR = ("standard", "distillation_student")
#: Largest gap between the student's rate and the reference's.  Both run the course's PGD
#: (``attacks.pgd`` with its defaults) from the same seed, so a correct function agrees
#: to the image; the slack allows another attack of the same strength (two images in 200).
RATE_TOL = 0.01


def _images(device):
    from ..data import dataset_info, load_dataset, subset

    info = dataset_info("fashion-mnist")
    x, y = subset(*load_dataset(info.name, "test"), TRANSFER_IMAGES, seed=TRANSFER_SEED)
    return info, x.to(device), y.to(device)


def check_transfer_success(transfer_success) -> CheckResult:
    """Check ``transfer_success(source, target, x, y, eps) -> float``.

    The function must craft PGD examples on ``source`` and return the share of the images
    that ``target`` classifies correctly *clean* which it misclassifies after the attack
    (the transfer success rate of :func:`coursepkg.evaluate.transfer_matrix`).  The check
    calls it with the zoo's baseline as source and the distilled network as target, on
    200 test images at the course's eps, seeded, and compares with the package's reference
    (:func:`~coursepkg.evaluate.transfer_matrix` with ``coursepkg.attacks.pgd`` at its
    defaults, from the same seed).
    """
    from .. import zoo
    from ..attacks import pgd
    from ..config import device as default_device
    from ..evaluate import predictions, transfer_matrix

    name = "transfer success"
    dev = default_device()
    info, x, y = _images(dev)
    source, target = (zoo.get(r, info.name, device=dev) for r in TRANSFER_PAIR)
    torch.manual_seed(0)
    value, failure = call_student(name, transfer_success, source, target, x, y, info.eps)
    if failure is not None:
        return failure
    if isinstance(value, (str, bytes)):
        return hint(name, "return the rate as a number (a float in [0, 1]), not as text")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return hint(name, f"return one number (a float in [0, 1]), not {type(value).__name__}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return hint(name, f"a success rate lies in [0, 1]; got {value:.3f}")
    torch.manual_seed(0)
    ref = transfer_matrix({"s": source}, {"t": target}, x, y, eps=info.eps, attack=pgd)
    reference = ref.rate("s", "t").value
    clean = float((predictions(target, x) == y).float().mean())
    gap = abs(value - reference)
    if gap <= RATE_TOL:
        return passed(name, f"transfer success {value:.3f} from the baseline to the distilled "
                            f"network on {len(x)} images (the reference measures {reference:.3f})")
    if abs(value - reference * clean) <= RATE_TOL:
        return hint(name, "your rate counts every image; count only those the target "
                          "classifies correctly before the attack (divide by their number)")
    if abs(value - (1.0 - reference)) <= RATE_TOL:
        return hint(name, "you seem to return the share the target still gets right; "
                          "return the share of its clean-correct images it gets wrong")
    return hint(name, f"your rate {value:.3f} is more than {RATE_TOL} away from the reference: "
                      "craft the examples on the source (not the target) with attacks.pgd at "
                      "its defaults and the eps you are given, then judge them with the target")
