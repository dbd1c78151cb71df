"""Checks for the coding exercises of chapter 6."""

from __future__ import annotations

import torch

from ._check import CheckResult, call_student, hint, passed, zoo_setting

__all__: list[str] = ["check_detected"]

_DETECTED_IMAGES = 32  # seeded clean test images; as many FGSM images are added
_LOGIT_ATOL = 1e-4  # float32 logits of order 10: the classifier's columns must match
_TIE_MARGIN = 1e-4  # images this close to the threshold are not judged (float32 rounding)


def check_detected(detected) -> CheckResult:
    """Check ``detected(classifier, detector, threshold, x)``: classifier and detector as one model.

    The function must return the ``N x (C + 1)`` logits of Carlini and Wagner's joined
    model (2017, "bypassing ten detection methods", section 3): the classifier's ``C``
    logits, then an "adversarial" logit that is the largest exactly when the detector's
    score exceeds ``threshold``, differentiable in ``x`` through the detector.  The
    chapter's :class:`~coursepkg.defences.detection.Detected` is one such model; any
    other extra logit with the same decision and a gradient passes too.

    The check joins the zoo's ``standard`` classifier and its static detector network
    (chapter 6) on 32 seeded Fashion-MNIST test images and their FGSM examples at
    ε = 0.1, with the threshold at the median of their scores so that half of the images
    are flagged.  It verifies, against the package's ``Detected``:

    * the first ``C`` columns equal the classifier's logits (to 1e-4: float32 logits of
      order ten, computed in another order);
    * the joined model predicts "adversarial" (column ``C``) on exactly the images whose
      score exceeds the threshold, and the classifier's class on the others (images
      within 1e-4 of the threshold, where float32 rounding could decide, are skipped);
    * the adversarial logit's lead over the largest class logit has a non-zero gradient
      with respect to the images: an attack must be able to follow the detector.
    """
    from .. import attacks, zoo
    from ..defences import detection as det

    name = "classifier and detector as one model"
    classifier, x, y = zoo_setting("standard", _DETECTED_IMAGES, seed=6, device="cpu")
    detector = det.DetectorNetwork(classifier, zoo.get("detector-network", device="cpu"),
                                   "conv2")
    x = torch.cat([x, attacks.fgsm(classifier, x, y, eps=0.1)])
    with torch.no_grad():
        scores = detector(x)
        threshold = float(scores.median())
        reference = det.Detected(classifier, detector, threshold)(x)
        logits = classifier(x)
    classes = logits.shape[1]

    given = x.clone().requires_grad_(True)
    out, failure = call_student(name, detected, classifier, detector, threshold, given)
    if failure is not None:
        return failure
    if not torch.is_tensor(out):
        return hint(name, f"return a tensor of logits, not {type(out).__name__}")
    if tuple(out.shape) != (len(x), classes + 1):
        return hint(name, f"expected logits of shape {(len(x), classes + 1)} (the {classes} "
                          f"classes and one 'adversarial' column), got {tuple(out.shape)}")
    if not bool(torch.isfinite(out).all()):
        return hint(name, "the logits hold NaN or infinite values")
    gap = (out[:, :classes].detach().float() - logits).abs().max().item()
    if gap > _LOGIT_ATOL:
        return hint(name, f"the first {classes} columns differ from the classifier's logits "
                          f"by up to {gap:.3g}: keep the classifier's logits unchanged")
    fires = scores > threshold
    judged = (scores - threshold).abs() > _TIE_MARGIN
    predicted = out.detach().argmax(1)
    expected = torch.where(fires, torch.full_like(predicted, classes), logits.argmax(1))
    wrong = (predicted != expected) & judged
    if bool(wrong.any()):
        missed = int((wrong & fires).sum())
        false = int((wrong & ~fires).sum())
        return hint(name, f"the joined model's prediction is wrong on {int(wrong.sum())} of "
                          f"{int(judged.sum())} images ({missed} where the detector fires, "
                          f"{false} where it does not): the extra logit must overtake the "
                          "largest class logit exactly when score - threshold > 0")
    if out.grad_fn is None:
        return hint(name, "the logits carry no gradient: do not detach them or compute them "
                          "under torch.no_grad()")
    lead = out[:, classes] - out[:, :classes].max(1).values
    grad = torch.autograd.grad(lead.sum(), given, allow_unused=True)[0]
    moved = 0 if grad is None else int((grad.flatten(1).abs().sum(1) > 0).sum())
    if moved < len(x) // 2:
        return hint(name, f"the 'adversarial' logit's lead has a gradient on only {moved} "
                          f"of {len(x)} images: make it a smooth function of the "
                          "detector's score (no comparison or step), so that an attack "
                          "can follow it")
    difference = (out.detach() - reference).abs().max().item()
    return passed(name, f"{len(x)} images ({int(fires.sum())} flagged): the classifier's "
                        f"logits kept (to {gap:.1g}), 'adversarial' predicted exactly where "
                        f"the detector fires, a gradient through the detector on {moved} "
                        f"images; largest difference from the package's Detected "
                        f"{difference:.2g}")
