"""Checks for the coding exercises of chapter 3."""

from __future__ import annotations

import torch

from ._check import CheckResult, call_student, hint, passed, zoo_setting

__all__: list[str] = ["check_bpda_pgd"]

BPDA_EXERCISE = "BPDA on bit-depth reduction"
BPDA_BITS = 3  # the first threshold, 1/14 ~ 0.071, lies within eps of a background at 0
BPDA_IMAGES = 64
BUDGET_SLACK = 1e-6  # float32 rounding of x + delta near 1


def _bpda_setting():
    """The chapter's classifier, a 3-bit purifier, the chapter's first test images and eps."""
    from ..data import dataset_info

    classifier, x, y = zoo_setting("standard", BPDA_IMAGES)  # the chapter's first images
    return classifier, x, y, dataset_info("fashion-mnist").eps


def check_bpda_pgd(attack) -> CheckResult:
    """Check an L∞ PGD attack through BPDA (Athalye et al. 2018, section 4.1) on bit depth.

    ``attack(classifier, purifier, x, y, eps) -> x_adv`` is run on the zoo's undefended
    classifier, ``purifier = BitDepth(bits=3)`` and the chapter's first 64 test images at
    the data set's eps (0.1), with ``torch.manual_seed(0)`` first.  It passes when

    * ``x_adv`` has x's shape, is finite, lies in the box [0, 1] and within eps of x in L∞
      (up to 1e-6, float32 rounding);
    * the defended model ``classifier(purifier(x_adv))`` is at most as accurate as the
      upper end of the 95% Wilson interval of its accuracy under the package's reference,
      ``attacks.pgd`` (the profile's steps and restarts) on
      ``Purified(BPDA(purifier), classifier)``, on the same images.  The tolerance is that
      interval (about 9 points at 64 images) because two correct attacks with different
      random starts or step sizes differ by a few images; a one-step attack through BPDA
      or white-box PGD on the purifier's zero gradient stays well above it.

    3 bits, unlike the chapter's 1 and 2, puts the first rounding threshold (1/14) within
    eps of the background, so an attack that gets a gradient takes nearly all the accuracy
    (the chapter's thresholding section explains why 1 and 2 bits would not).  The check
    measures an attack's strength, not how it was built: PGD on the bare classifier,
    transferred, is about as strong here, since BPDA's gradient is the classifier's at the
    purified image, which differs from the input by less than one level.
    """
    from ..adaptive import BPDA
    from ..attacks import pgd
    from ..defences.purification import BitDepth, Purified
    from ..evaluate import Interval, predictions

    classifier, x, y, eps = _bpda_setting()
    purifier = BitDepth(bits=BPDA_BITS)
    defended = Purified(purifier, classifier)

    torch.manual_seed(0)
    x_adv, failure = call_student(BPDA_EXERCISE, attack, classifier, purifier, x.clone(), y.clone(), eps)
    if failure is not None:
        return failure
    if not isinstance(x_adv, torch.Tensor):
        return hint(BPDA_EXERCISE, f"the attack must return a tensor of adversarial images, "
                                   f"got {type(x_adv).__name__}")
    if x_adv.shape != x.shape:
        return hint(BPDA_EXERCISE, f"the attack returned shape {tuple(x_adv.shape)}; it must "
                                   f"return one image per input, shape {tuple(x.shape)}")
    x_adv = x_adv.detach().to(device=x.device, dtype=x.dtype)
    if not torch.isfinite(x_adv).all():
        return hint(BPDA_EXERCISE, "the adversarial images contain NaN or inf values")
    if x_adv.min() < 0 or x_adv.max() > 1:
        return hint(BPDA_EXERCISE, f"pixels outside [0, 1] (from {x_adv.min():.3f} to "
                                   f"{x_adv.max():.3f}): clip every step to the image box")
    size = float((x_adv - x).abs().amax())
    if size > eps + BUDGET_SLACK:
        return hint(BPDA_EXERCISE, f"a pixel moved by {size:.4f} > eps = {eps}: project every "
                                   "step back onto the L∞ ball around the clean image")

    torch.manual_seed(0)
    reference = pgd(Purified(BPDA(purifier), classifier), x, y, eps=eps)
    ref = Interval.of_mask(predictions(defended, reference) == y)
    mine = Interval.of_mask(predictions(defended, x_adv) == y)
    clean = Interval.of_mask(predictions(defended, x) == y)
    if mine.value > ref.hi:
        if mine.value >= clean.value - 0.1:
            advice = ("your attack barely changes the accuracy: does its gradient reach the "
                      "input? Rounding's derivative is zero almost everywhere -- what should "
                      "the backward pass use instead?")
        else:
            advice = ("your attack works but is too weak: several steps, each projected back "
                      "into the ball, and a random start help")
        return hint(BPDA_EXERCISE, f"the purified classifier keeps {mine.value:.3f} accuracy "
                                   f"under your attack on {mine.n} images; the check needs at "
                                   f"most {ref.hi:.3f}. {advice}")
    return passed(BPDA_EXERCISE, f"the purified classifier's accuracy on {mine.n} images: clean "
                                 f"{clean.value:.3f}, under your attack {mine.value:.3f} (the "
                                 f"reference BPDA attack: {ref}); largest change {size:.3f} "
                                 f"<= eps = {eps}")
