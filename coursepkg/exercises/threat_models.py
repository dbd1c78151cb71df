"""Checks for the coding exercises of chapter 1."""

from __future__ import annotations

import torch

from ._check import CheckResult, call_student, hint, passed, zoo_setting

__all__: list[str] = ["check_fgsm"]

#: How many test images ``check_fgsm`` attacks (the chapter's first, seed 0).
FGSM_IMAGES = 100
#: The budgets it tries: the course's ε for Fashion-MNIST and a smaller one, so that a
#: budget written into the function instead of read from ``eps`` fails.
FGSM_BUDGETS = (0.1, 0.03)
#: Slack on the ball and the box: float32 rounding of ``x + eps`` (about 1e-7 at 1.0).
BOX_TOL = 1e-6
#: Two images are "the same adversarial example" when no pixel differs by more than this.
PIXEL_TOL = 1e-5
#: Share of the images that must equal the reference's adversarial example.
MIN_SAME_IMAGES = 0.95
#: Largest gap between the accuracy under the student's attack and under the reference.
ACCURACY_TOL = 0.02


def _state(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def check_fgsm(my_fgsm) -> CheckResult:
    """Check ``my_fgsm(model, x, y, eps) -> x_adv`` against :func:`coursepkg.attacks.fgsm`.

    FGSM is Goodfellow et al. (2015), eq. 3: ``x' = clip_[0,1](x + eps sign(grad_x L(x, y)))``
    with ``L`` the cross-entropy of the true labels.  The check runs the student's function
    on the zoo's undefended baseline (``zoo.get("standard")``) and the first
    ``FGSM_IMAGES`` test images of the chapter (``subset(..., seed=0)``), at each budget
    of ``FGSM_BUDGETS``, and verifies, in this order:

    * it returns a tensor of the images' shape, and leaves the images and the model as found;
    * every pixel lies in the box [0, 1] and within ``eps`` of the clean one (slack
      ``BOX_TOL``: float32 rounds ``x + eps`` by about 1e-7);
    * at least ``MIN_SAME_IMAGES`` of the images equal the reference's adversarial
      example pixel by pixel (to ``PIXEL_TOL``), and the accuracy under the two attacks
      differs by at most ``ACCURACY_TOL`` (two images in a hundred).

    Why not all images: FGSM moves a pixel by ``eps sign(g)``, and a gradient entry within
    float32 rounding of zero can take either sign, depending on the order in which the
    backward pass sums (a batched and an image-by-image computation differ on a few pixels
    of one image in a hundred here).  Such ties barely move the loss, so they cost at most a
    label or two; a wrong step (its direction, its size, the labels it aims at) changes
    every image or a good tenth of them and fails.
    """
    name = "FGSM from scratch"
    from ..attacks import fgsm

    model, x, y = zoo_setting("standard", FGSM_IMAGES)
    with torch.random.fork_rng():  # leave the notebook's generators alone
        before = _state(model)
        lines = []
        for eps in FGSM_BUDGETS:
            x_given = x.clone()
            x_adv, failure = call_student(name, my_fgsm, model, x_given, y, eps)
            if failure is not None:
                return failure
            if not isinstance(x_adv, torch.Tensor):
                return hint(name, f"return a tensor of adversarial images, got "
                                  f"{type(x_adv).__name__}")
            if tuple(x_adv.shape) != tuple(x.shape):
                return hint(name, f"return one adversarial image per input: shape "
                                  f"{tuple(x.shape)} expected, got {tuple(x_adv.shape)}")
            if not torch.equal(x_given, x):
                return hint(name, "your function changed the images it was given: "
                                  "work on a copy, not in place")
            if any(not torch.equal(a, b) for a, b in zip(before, _state(model))):
                return hint(name, "your function changed the model's weights: an "
                                  "attack only reads the model")
            x_adv = x_adv.detach().to(x)
            if not bool(torch.isfinite(x_adv).all()):
                return hint(name, "some returned pixels are NaN or infinite")
            low, high = float(x_adv.min()), float(x_adv.max())
            if low < -BOX_TOL or high > 1 + BOX_TOL:
                return hint(name, f"pixels range over [{low:.3f}, {high:.3f}]: an image "
                                  "must stay in the box [0, 1]")
            moved = float((x_adv - x).abs().max())
            if moved > eps + BOX_TOL:
                return hint(name, f"a pixel moved by {moved:.4f} > eps = {eps}: the "
                                  "perturbation must stay in the L∞ ball")
            if moved == 0.0:
                return hint(name, f"at eps = {eps} no pixel moved: every pixel should "
                                  "move by eps, where the box allows")
            x_ref = fgsm(model, x, y, eps=eps)
            with torch.no_grad():
                acc = float((model(x_adv).argmax(1) == y).float().mean())
                acc_ref = float((model(x_ref).argmax(1) == y).float().mean())
            same = float(((x_adv - x_ref).abs().flatten(1).amax(1) <= PIXEL_TOL)
                         .float().mean())
            if acc > acc_ref + ACCURACY_TOL:
                return hint(name, f"at eps = {eps} the model still labels {acc:.2f} of "
                                  f"your images correctly, against {acc_ref:.2f} for the "
                                  "reference FGSM: does your step make the loss of the "
                                  "true label go up, and by the whole budget?")
            if same < MIN_SAME_IMAGES or abs(acc - acc_ref) > ACCURACY_TOL:
                return hint(name, f"at eps = {eps} only {same:.0%} of your images equal "
                                  "the reference's adversarial example (accuracy "
                                  f"{acc:.2f} against {acc_ref:.2f}): FGSM takes one "
                                  "step of exactly eps per pixel, along the sign of the "
                                  "gradient of the cross-entropy of the true labels "
                                  "with respect to the input")
            lines.append(f"eps = {eps}: {same:.0%} of the images equal to the "
                         f"reference, accuracy {acc:.2f} (reference {acc_ref:.2f})")
    return passed(name, f"on {len(x)} test images, inside the box and the ball; "
                        + "; ".join(lines))
