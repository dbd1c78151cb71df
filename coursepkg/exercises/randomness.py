"""Checks for the coding exercises of chapter 5."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._check import CheckResult, call_student, hint, passed, zoo_setting

__all__: list[str] = ["check_eot_gradient"]

_EOT_IMAGES = 12  # seeded test images the gradient is compared on
_EOT_SAMPLES = 32  # the n the student's function is called with
_EOT_REFERENCE = 256  # draws of the reference estimate of the expected gradient
_EOT_COSINE_SLACK = 0.03  # how far below the package's n-draw agreement a pass may fall
_EOT_NORM_RANGE = (0.7, 1.4)  # the median norm ratio (student / reference) allowed


def _eot_gradient_reference(model, x, y, samples):
    """The gradient of the summed cross-entropy of ``EOT(model, samples)`` at ``x``."""
    from ..adaptive import EOT

    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(EOT(model, samples)(x), y, reduction="sum")
    return torch.autograd.grad(loss, x)[0]


def check_eot_gradient(eot_gradient) -> CheckResult:
    """Check ``eot_gradient(model, x, y, n)``: the EOT gradient of a randomised model.

    The function must return, for a batch ``x`` with labels ``y``, the gradient with
    respect to ``x`` of the cross-entropy (summed over the batch) of the model's logits
    averaged over ``n`` independent draws of its randomness -- the EOT estimate of
    Athalye et al. (2018, section 4.2), the chapter's equation
    ``grad_x l((1/n) sum_k f_{t_k}(x), y)``.

    The model is chapter 5's random resizing and padding
    (:class:`~coursepkg.defences.randomness.RandomResizePad`) around the zoo's ``standard``
    classifier, on 12 seeded Fashion-MNIST test images.  A single draw's gradient is a
    noisy estimate, so the student's answer (``n = 32``) cannot equal the package's bit for
    bit; it is compared, image by image, with a reference estimate of the *expected*
    gradient from 256 draws (:class:`~coursepkg.adaptive.EOT`):

    * the mean cosine similarity must come within 0.03 of the one the package's own
      ``EOT(model, 32)`` gradient reaches on the same images (about 0.99; one draw reaches
      about 0.7, the average of per-draw losses about 0.9).  Two runs of the package's
      32-draw estimate differ by about 0.001, so 0.03 leaves room for a different order of
      draws and float32 summation, and none for a wrong estimator;
    * the median ratio of the gradients' norms must lie in [0.7, 1.4]: the 32-draw
      estimate's norm is a few per cent to a tenth above the reference's (its noise adds
      to the norm), while a mean over the batch or a sum over the draws is off by a
      factor of 12 or 32.
    """
    from ..config import seed_everything
    from ..defences.randomness import RandomResizePad

    name = "EOT gradient"
    classifier, x, y = zoo_setting("standard", _EOT_IMAGES, seed=5, device="cpu")
    model = RandomResizePad(classifier)
    seed_everything(0)
    reference = _eot_gradient_reference(model, x, y, _EOT_REFERENCE).flatten(1)
    package = _eot_gradient_reference(model, x, y, _EOT_SAMPLES).flatten(1)
    target = F.cosine_similarity(package, reference).mean().item()

    seed_everything(1)
    given = x.clone()
    grad, failure = call_student(name, eot_gradient, model, given, y.clone(), _EOT_SAMPLES)
    if failure is not None:
        return failure
    if not torch.equal(given, x):
        return hint(name, "the function changed the images it was given: work on a copy "
                          "(x.detach().clone())")
    if not torch.is_tensor(grad):
        return hint(name, f"return a tensor (the gradient), not {type(grad).__name__}")
    if tuple(grad.shape) != tuple(x.shape):
        return hint(name, f"the gradient must have the images' shape {tuple(x.shape)}, got "
                          f"{tuple(grad.shape)}")
    grad = grad.detach().float().cpu().flatten(1)
    if not bool(torch.isfinite(grad).all()):
        return hint(name, "the gradient holds NaN or infinite values")
    if bool((grad.norm(dim=1) == 0).any()):
        return hint(name, "the gradient is zero on some images: is the loss computed from "
                          "the model's output on x, with x requiring a gradient?")
    cosine = F.cosine_similarity(grad, reference).mean().item()
    ratio = (grad.norm(dim=1) / reference.norm(dim=1)).median().item()
    if cosine < target - _EOT_COSINE_SLACK:
        return hint(name, f"your gradient's direction agrees with the expected gradient at "
                          f"cosine {cosine:.2f}; the package's {_EOT_SAMPLES}-draw EOT "
                          f"reaches {target:.2f}. Do you use all n draws, each one a fresh "
                          "forward pass (or one batch of n copies), and average the draws' "
                          "logits before the loss, as in the chapter's equation?")
    lo, hi = _EOT_NORM_RANGE
    if not lo <= ratio <= hi:
        return hint(name, f"the direction is right (cosine {cosine:.2f}) but the gradient "
                          f"is {ratio:.3g} times the reference's size: sum the "
                          "cross-entropy over the batch (reduction='sum') and average, "
                          "not sum, over the draws")
    return passed(name, f"on {_EOT_IMAGES} images, n = {_EOT_SAMPLES}: mean cosine "
                        f"{cosine:.3f} with the {_EOT_REFERENCE}-draw expected gradient "
                        f"(the package's EOT: {target:.3f}), norm ratio {ratio:.2f}")
