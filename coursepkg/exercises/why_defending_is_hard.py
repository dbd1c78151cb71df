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
#: The pass band is RATE_Z standard deviations of the run-to-run spread (below): a correct
#: function fails by chance about 3 times in 1,000.
RATE_Z = 3.0
#: Confidence of the upper bound on the expected number of images two runs disagree on.
DISAGREEMENT_LEVEL = 0.99
#: The seeds of the two reference runs.
REFERENCE_SEEDS = (0, 1)


def rate_tolerance(disagreements: int, judged: int) -> float:
    """The largest gap allowed between a student's transfer rate and the reference's.

    PGD starts from a random point of the ball, so a correct function gives a rate that
    depends on its random numbers -- another seed, or mini-batches (which draw the starts in
    another order), move a few images across the line.  Image ``i`` (of the ``judged``
    images the target gets right clean) is fooled with some probability ``p_i``; a student's
    rate ``s`` and the mean ``r`` of two reference runs then differ by::

        Var(s - r) = (1 + 1/2) sum_i p_i (1 - p_i) / judged^2

    and the number ``D`` of images the two reference runs disagree on has expectation
    ``E[D] = 2 sum_i p_i (1 - p_i)``, so ``Var(s - r) = 0.75 E[D] / judged^2``.  The check
    measures ``D``, bounds ``E[D]`` from above at ``DISAGREEMENT_LEVEL`` (the exact Poisson
    bound ``chi2.ppf(level, 2 (D + 1)) / 2``: about 4.6 when ``D = 0``), and allows
    ``RATE_Z`` standard deviations.  The binomial bound ``sqrt(r (1 - r) / judged)`` would
    be far wider: most images are fooled on every run or on none, and only those near the
    line vary: in the quick profile 163 of the 200 images are judged, two runs disagree on
    1 to 5 of them, and the band is 3.4 points for no disagreement, 4.6 for two, 5.8 for
    five; the rate itself moves by about 1 point (sd) from seed to seed, the old fixed
    tolerance of two images.
    """
    from scipy.stats import chi2

    expected = float(chi2.ppf(DISAGREEMENT_LEVEL, 2 * (disagreements + 1))) / 2
    return RATE_Z * math.sqrt(0.75 * expected) / max(judged, 1)


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
    200 test images at the course's eps, after ``torch.manual_seed(0)``, and compares it
    with the mean rate of two reference runs (``coursepkg.attacks.pgd`` at its defaults,
    seeds 0 and 1).  The tolerance is
    :func:`~coursepkg.exercises.why_defending_is_hard.rate_tolerance`: ``RATE_Z`` standard
    deviations of the spread PGD's random start causes, estimated from the images the two
    reference runs disagree on -- so a correct function passes with any seed, in
    mini-batches, or on another device, while a wrong denominator or a weaker attack fails.
    """
    from .. import zoo
    from ..attacks import pgd
    from ..config import device as default_device
    from ..evaluate import predictions

    name = "transfer success"
    dev = default_device()
    info, x, y = _images(dev)
    source, target = (zoo.get(r, info.name, device=dev) for r in TRANSFER_PAIR)
    with torch.random.fork_rng():  # leave the notebook's generators as they were
        torch.manual_seed(0)
        value, failure = call_student(name, transfer_success, source, target, x.clone(),
                                      y.clone(), info.eps)
        if failure is not None:
            return failure
        runs = []
        for seed in REFERENCE_SEEDS:
            torch.manual_seed(seed)
            runs.append(predictions(target, pgd(source, x, y, eps=info.eps)) != y)
    if isinstance(value, (str, bytes)):
        return hint(name, "return the rate as a number (a float in [0, 1]), not as text")
    try:
        value = float(value)
    except (TypeError, ValueError, RuntimeError):
        return hint(name, f"return one number (a float in [0, 1]), not {type(value).__name__}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return hint(name, f"a success rate lies in [0, 1]; got {value:.3f}")
    right = predictions(target, x) == y
    judged = int(right.sum())
    rates = [float((fooled & right).sum()) / max(judged, 1) for fooled in runs]
    reference = sum(rates) / len(rates)
    disagreements = int(((runs[0] != runs[1]) & right).sum())
    tol = rate_tolerance(disagreements, judged)
    clean = judged / len(x)
    gap = abs(value - reference)
    if gap <= tol:
        return passed(name, f"transfer success {value:.3f} from the baseline to the distilled "
                            f"network on the {judged} of {len(x)} images it gets right (the "
                            f"reference measures {reference:.3f}; allowed gap {tol:.3f})")
    if abs(value - reference * clean) <= tol:
        return hint(name, "your rate counts every image; count only those the target "
                          "classifies correctly before the attack (divide by their number)")
    if abs(value - (1.0 - reference)) <= tol:
        return hint(name, "you seem to return the share the target still gets right; "
                          "return the share of its clean-correct images it gets wrong")
    return hint(name, f"your rate {value:.3f} is more than {tol:.3f} away from the reference "
                      "(the spread of PGD's random start allows no more): craft the examples "
                      "on the source (not the target) with attacks.pgd at its defaults and "
                      "the eps you are given, then judge them with the target")
