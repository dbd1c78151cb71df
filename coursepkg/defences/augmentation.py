"""Defences by data augmentation: adversarial training, logit pairing and TRADES.

Chapter 2 of the book.  Every defence here is a *loss* for the course's one training loop,
:func:`coursepkg.train.train`: a factory returns a closure ``loss(model, x, y) -> scalar``
that crafts adversarial examples ``x'`` of the mini-batch against the current model and
scores the model on them.

=====================================  ==================================================
factory                                paper
=====================================  ==================================================
:func:`adversarial_training`           Goodfellow et al. 2015, sec. 6: any attack
:func:`fgsm_training`                  Goodfellow et al. 2015: FGSM examples
:func:`rfgsm_training`                 Tramèr et al. 2018: R+FGSM examples
:func:`fast_fgsm_training`             Wong et al. 2020, Alg. 3: FGSM from a random start
:func:`pgd_training`                   Madry et al. 2018, eq. (2.1): PGD examples
:func:`logit_pairing`                  Kannan et al. 2018: ALP
:func:`trades`                         Zhang et al. 2019: TRADES
=====================================  ==================================================

The objectives themselves are plain functions of ``(model, x, x_adv, y)`` --
:func:`mixed_adversarial_loss`, :func:`logit_pairing_penalty`, :func:`trades_objective` --
so they can be checked against hand computations without running any attack.

**Eval mode while crafting ``x'``, train mode for the loss.**  The adversarial examples are
crafted with the model in *eval* mode and its parameters frozen
(:func:`coursepkg.attacks.attack_mode`, which every attack of the course uses and which
:func:`adversarial_training` applies around any attack it is given); the loss is then
computed in the mode the training loop set (train).  Two reasons: the adversary of the
threat model attacks the deployed, eval-mode network, so that is the network whose worst
case we should train against; and crafting runs several forward passes per batch on inputs
that are not the data, which in train mode would update batch-norm running statistics with
them and make dropout draw a new mask at every attack step (a noisier, weaker attack).
Freezing the parameters makes each attack step's backward pass cheaper and leaves no
``.grad`` on them, so the closure's backward pass sees only the training objective.  For
the zoo's SmallCNN -- no batch norm, dropout 0 -- the two modes compute the same function
and the choice changes nothing; it matters for :class:`coursepkg.models.SmallResNet`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "mixed_adversarial_loss", "logit_pairing_penalty", "trades_kl",
    "trades_objective", "trades_perturbation", "adversarial_training", "fgsm_training",
    "rfgsm_training", "fast_fgsm_training", "pgd_training", "logit_pairing", "trades",
    "loss_surface", "precomputed_attack",
]


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------
def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not eps >= 0.0:  # also catches NaN
        raise ValueError(f"eps must be a non-negative perturbation budget, got {eps}")
    return eps


def _check_weight(name: str, value: float, *, upper: float | None = None) -> float:
    value = float(value)
    if not value >= 0.0 or (upper is not None and value > upper):
        bound = f"in [0, {upper}]" if upper is not None else "non-negative"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _check_steps(steps: int) -> int:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    return int(steps)


# --------------------------------------------------------------------------------------
# The objectives, given the adversarial examples
# --------------------------------------------------------------------------------------
def mixed_adversarial_loss(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                           *, clean_weight: float = 0.5) -> torch.Tensor:
    """Goodfellow et al. (2015), section 6: ``a L(x, y) + (1 - a) L(x', y)`` with ``a = clean_weight``.

    ``L`` is the mean cross-entropy over the batch.  ``clean_weight=1`` is standard training,
    ``0`` trains on adversarial examples only (Madry et al. 2018); a term with weight zero
    is not computed.
    """
    a = _check_weight("clean_weight", clean_weight, upper=1.0)
    total = x.new_zeros(())
    if a > 0:
        total = total + a * F.cross_entropy(model(x), y)
    if a < 1:
        total = total + (1 - a) * F.cross_entropy(model(x_adv), y)
    return total


def logit_pairing_penalty(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """Kannan et al. (2018): the batch mean of ``||Z(x) - Z(x')||_2^2`` over the logits ``Z``.

    The squared Euclidean distance is summed over classes, then averaged over examples.
    """
    if logits_clean.shape != logits_adv.shape:
        raise ValueError(f"logits_clean and logits_adv must have one shape, got "
                         f"{tuple(logits_clean.shape)} and {tuple(logits_adv.shape)}")
    return (logits_clean - logits_adv).pow(2).sum(dim=1).mean()


def trades_kl(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """Zhang et al. (2019): the batch mean of ``KL(f(x) || f(x'))``, ``f`` the softmax."""
    log_p = F.log_softmax(logits_clean, dim=1)
    log_q = F.log_softmax(logits_adv, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def trades_objective(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                     *, beta: float = 6.0) -> torch.Tensor:
    """Zhang et al. (2019), the TRADES objective: ``L(f(x), y) + beta KL(f(x) || f(x'))``.

    The first term buys accuracy, the second smoothness around each training point; ``beta``
    trades one for the other (6 in the paper's MNIST and CIFAR-10 experiments).
    """
    beta = _check_weight("beta", beta)
    logits_clean = model(x)
    return F.cross_entropy(logits_clean, y) + beta * trades_kl(logits_clean, model(x_adv))


def trades_perturbation(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int,
                        step_size: float | None = None, start_std: float = 1e-3) -> torch.Tensor:
    """TRADES' inner maximisation: PGD on ``KL(f(x) || f(x'))`` inside the L-infinity ball.

    Unlike the course's attacks it needs no label: it pushes ``x'`` away from the model's own
    prediction on ``x``.  It starts from ``x`` plus Gaussian noise of standard deviation
    ``start_std`` (at ``x`` itself the KL gradient is zero) and takes ``steps`` signed
    gradient steps of ``step_size`` (default ``2.5 eps / steps``), projecting after each.
    Batched; crafted in eval mode with the parameters frozen, which are then restored as found.
    """
    from ..attacks import attack_mode

    eps, steps = _check_eps(eps), _check_steps(steps)
    step_size = 2.5 * eps / steps if step_size is None else float(step_size)
    x = x.detach()
    with attack_mode(model):  # eval mode, parameters frozen: see the module docstring
        with torch.no_grad():
            target = F.log_softmax(model(x), dim=1)
        x_adv = (x + start_std * torch.randn_like(x)).clamp(0.0, 1.0)
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            log_q = F.log_softmax(model(x_adv), dim=1)
            kl = (target.exp() * (target - log_q)).sum()
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv.detach()


# --------------------------------------------------------------------------------------
# The losses for the training loop
# --------------------------------------------------------------------------------------
def adversarial_training(attack: Attack, *, clean_weight: float = 0.5) -> BatchLoss:
    """Adversarial training with any attack (Goodfellow et al. 2015, section 6).

    Returns ``loss(model, x, y) = a L(x, y) + (1 - a) L(x', y)`` with ``x' = attack(model, x, y)``
    crafted against the current model on every batch, ``a = clean_weight``.
    ``attack`` is any ``(model, x, y) -> x_adv``, e.g. ``functools.partial(pgd, eps=0.1)``.
    """
    _check_weight("clean_weight", clean_weight, upper=1.0)
    if not callable(attack):
        raise TypeError("attack must be a function (model, x, y) -> x_adv, e.g. partial(pgd, eps=0.1)")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = _craft(attack, model, x, y) if clean_weight < 1 else x
        return mixed_adversarial_loss(model, x, x_adv, y, clean_weight=clean_weight)

    return loss


def _craft(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``attack(model, x, y)`` with the model in eval mode and its parameters frozen."""
    from ..attacks import attack_mode

    with attack_mode(model):
        return attack(model, x, y).detach()


def fgsm_training(eps: float, *, clean_weight: float = 0.5) -> BatchLoss:
    """FGSM adversarial training (Goodfellow et al. 2015, section 6, with ``x' = x + eps sign(grad)``).

    Half clean, half FGSM by default, as in the paper.  Cheap, and the classic source of
    gradient masking (Tramèr et al. 2018) and catastrophic overfitting (Wong et al. 2020).
    """
    from ..attacks import fgsm

    eps = _check_eps(eps)
    return adversarial_training(lambda m, x, y: fgsm(m, x, y, eps=eps), clean_weight=clean_weight)


def rfgsm_training(eps: float, *, step: float | None = None, clean_weight: float = 0.5) -> BatchLoss:
    """R+FGSM adversarial training (Tramèr et al. 2018).

    ``x' = x + (eps - step) sign(grad L(x + step sign(N(0, I))))``: a random signed step of size
    ``step`` (default ``eps / 2``, the paper's choice) escapes the data point's sharp
    curvature before the FGSM step.  Mixed with the clean loss by ``clean_weight``.
    """
    from ..attacks import rfgsm

    eps = _check_eps(eps)
    return adversarial_training(lambda m, x, y: rfgsm(m, x, y, eps=eps, alpha=step),
                                clean_weight=clean_weight)


def fast_fgsm_training(eps: float, *, step_size: float | None = None, clean_weight: float = 0.0) -> BatchLoss:
    """"Fast is better than free" (Wong et al. 2020, Alg. 3): FGSM from a uniform random start.

    ``x' = proj(x + d + step_size sign(grad L(x + d)))`` with ``d ~ U[-eps, eps]`` and
    ``step_size = 1.25 eps`` by default, i.e. one step of PGD with a random start; trained on
    ``x'`` alone, as in the paper.
    """
    from ..attacks import pgd

    eps = _check_eps(eps)
    size = 1.25 * eps if step_size is None else float(step_size)
    return adversarial_training(
        lambda m, x, y: pgd(m, x, y, eps=eps, steps=1, step_size=size, random_start=True, restarts=1),
        clean_weight=clean_weight)


def _pgd_attack(eps: float, steps: int, step_size: float | None) -> Attack:
    from ..attacks import pgd

    eps, steps = _check_eps(eps), _check_steps(steps)
    return lambda m, x, y: pgd(m, x, y, eps=eps, steps=steps, step_size=step_size,
                               random_start=True, restarts=1)


def pgd_training(eps: float, *, steps: int, step_size: float | None = None, clean_weight: float = 0.0) -> BatchLoss:
    """PGD adversarial training (Madry et al. 2018, eq. 2.1, the saddle-point problem).

    ``min_theta E max_{||d|| <= eps} L(x + d, y)``: the inner maximisation approximated by
    ``steps`` steps of L-infinity PGD from a random start (step size
    :func:`coursepkg.attacks.pgd`'s default ``2.5 eps / steps`` unless given); the outer
    minimisation is the training loop.  Trained on ``x'`` alone (``clean_weight=0``), as Madry
    et al. did.
    """
    return adversarial_training(_pgd_attack(eps, steps, step_size), clean_weight=clean_weight)


def logit_pairing(eps: float, *, steps: int, step_size: float | None = None, clean_weight: float = 0.5,
                  pairing_weight: float = 0.5) -> BatchLoss:
    """Adversarial logit pairing, ALP (Kannan et al. 2018).

    ``a L(x, y) + (1 - a) L(x', y) + lambda mean ||Z(x) - Z(x')||^2`` with ``x'`` from PGD with a
    random start (as :func:`pgd_training`), ``Z`` the logits, ``a = clean_weight`` and
    ``lambda = pairing_weight``.  The pairing term pulls the logits of each clean image and its
    adversarial twin together; gradients flow through both.
    """
    attack = _pgd_attack(eps, steps, step_size)
    a = _check_weight("clean_weight", clean_weight, upper=1.0)
    lam = _check_weight("pairing_weight", pairing_weight)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = _craft(attack, model, x, y)
        logits = model(torch.cat([x, x_adv]))
        logits_clean, logits_adv = logits[: len(x)], logits[len(x):]
        adversarial = a * F.cross_entropy(logits_clean, y) + (1 - a) * F.cross_entropy(logits_adv, y)
        return adversarial + lam * logit_pairing_penalty(logits_clean, logits_adv)

    return loss


def trades(eps: float, *, steps: int, step_size: float | None = None, beta: float = 6.0) -> BatchLoss:
    """TRADES (Zhang et al. 2019), the course's modern reference point.

    ``L(f(x), y) + beta max_{||x' - x|| <= eps} KL(f(x) || f(x'))``: the inner maximum found by
    :func:`trades_perturbation` (PGD on the KL term), the outer by the training loop.
    """
    eps, steps = _check_eps(eps), _check_steps(steps)
    _check_weight("beta", beta)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = trades_perturbation(model, x, eps=eps, steps=steps, step_size=step_size)
        return trades_objective(model, x, x_adv, y, beta=beta)

    return loss


# --------------------------------------------------------------------------------------
# Tools of the chapter's analysis
# --------------------------------------------------------------------------------------
def loss_surface(model: nn.Module, image: torch.Tensor, label: torch.Tensor, *, eps: float,
                 n: int = 21, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cross-entropy around one image, as Tramèr et al. (2018, fig. 2) plot it.

    With ``g = sign(grad_x L(x, y))`` and ``r`` a fixed vector of random signs (seeded), returns
    ``(e1, e2, loss)``, three ``n x n`` tensors on the CPU: the loss at
    ``clip(x + e1 g + e2 r)`` over the grid ``e1, e2 in [0, eps]``.  One batched forward pass.
    """
    from ..attacks import attack_mode

    eps = _check_eps(eps)
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2 (grid points per axis), got {n}")
    if image.dim() != 3 or label.dim() != 0:
        raise ValueError("give one image (C x H x W) and its label (a 0-d tensor), e.g. x[i], y[i]")
    image, label = image[None].detach(), label[None]
    with attack_mode(model):
        point = image.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(point), label), point)
        g = grad.sign()
        gen = torch.Generator().manual_seed(seed)
        r = (torch.randint(0, 2, image.shape, generator=gen) * 2 - 1).to(image)
        e = torch.linspace(0, eps, int(n), device=image.device)
        e1, e2 = torch.meshgrid(e, e, indexing="ij")
        grid = (image + e1.reshape(-1, 1, 1, 1) * g + e2.reshape(-1, 1, 1, 1) * r).clamp(0, 1)
        with torch.no_grad():
            losses = F.cross_entropy(model(grid), label.expand(len(grid)), reduction="none")
    return e1.cpu(), e2.cpu(), losses.reshape(int(n), int(n)).cpu()


def precomputed_attack(x: torch.Tensor, x_adv: torch.Tensor) -> Attack:
    """An "attack" that returns adversarial examples crafted once, e.g. on another model.

    ``attack(model, xb, yb, **_)`` finds every row of ``xb`` among the rows of ``x`` and
    returns the matching rows of ``x_adv``, whatever ``model`` it is handed: a transfer
    attack crafted once and shown to many models, inside :func:`coursepkg.evaluate.strongest`
    (``extra=``) or :func:`coursepkg.evaluate.robust_accuracy`, which hand an attack
    subsets of the images.  A row of ``xb`` that is not in ``x`` raises ``ValueError``.
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have one shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    flat = x.detach().flatten(1).double()
    weights = torch.linspace(1.0, 2.0, flat.shape[1], dtype=torch.float64, device=flat.device)
    keys = flat @ weights
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    stored = x_adv.detach()

    def attack(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, **_) -> torch.Tensor:
        fb = xb.detach().flatten(1).double().to(flat.device)
        pos = torch.searchsorted(sorted_keys, fb @ weights).clamp(max=len(keys) - 1)
        # the nearest key on either side, then an exact check of the whole row
        left = (pos - 1).clamp(min=0)
        key_b = fb @ weights
        pick = torch.where((sorted_keys[left] - key_b).abs() < (sorted_keys[pos] - key_b).abs(),
                           left, pos)
        idx = order[pick]
        if not torch.equal(flat[idx], fb):
            raise ValueError("precomputed_attack: some images were not among those it was built on")
        return stored[idx].to(xb)

    return attack
