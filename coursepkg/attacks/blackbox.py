"""Black-box attacks through a substitute model (Papernot et al. 2017).

The attacker sees only the labels the target (the *oracle*) returns.  It trains a
substitute on a few seed images labelled by the oracle, grows that set where the
substitute's decision boundaries are (Jacobian-based dataset augmentation), then crafts
white-box adversarial examples on the substitute and sends them to the oracle, relying
on transferability (Papernot et al. 2016, "Transferability in machine learning").
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import profile as get_profile
from ..data import DatasetInfo, DATASETS
from ..models import classifier_for
from ..train import cross_entropy_loss, train
from ._common import attack_mode, check_eps, check_inputs, check_positive_int
from .gradient import pgd


def _labels_from(oracle: nn.Module | Callable, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The oracle's labels of ``x`` -- its argmax when it is a model: the attacker sees nothing else."""
    if isinstance(oracle, nn.Module):
        from ..evaluate import predictions

        return predictions(oracle, x, batch_size=batch_size).cpu()
    labels = torch.cat([torch.as_tensor(oracle(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])
    if labels.is_floating_point() and labels.dim() == 2:
        labels = labels.argmax(1)
    if labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(x):
        raise ValueError("oracle must return one integer label per image (or be an nn.Module returning logits)")
    return labels.long().cpu()


def _info_for(x: torch.Tensor) -> DatasetInfo:
    shape = tuple(x.shape[1:])
    for info in DATASETS.values():  # Fashion-MNIST first: the course's default for 1x28x28
        if info.shape == shape:
            return info
    raise ValueError(f"no default substitute for images of shape {shape}; pass build=lambda: YourModel()")


def jacobian_augmentation(substitute: nn.Module, x: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
    """New points ``x + lam * sign(J_F(x)[O(x)])`` (Papernot et al. 2017, eq. 4), clipped to [0, 1].

    ``J_F(x)[O(x)]`` is the gradient of the substitute's logit of the oracle's label; the
    step moves each point towards (``lam > 0``) or away from the substitute's boundary.
    """
    dev = next(substitute.parameters()).device
    out = []
    with attack_mode(substitute):
        for i in range(0, len(x), 500):
            xb = x[i:i + 500].to(dev).requires_grad_(True)
            logit = substitute(xb).gather(1, labels[i:i + 500].to(dev)[:, None]).sum()
            (grad,) = torch.autograd.grad(logit, xb)
            out.append((xb.detach() + lam * grad.sign()).clamp_(0.0, 1.0).cpu())
    return torch.cat(out)


def train_substitute(oracle: nn.Module | Callable, x_seed: torch.Tensor, *, rounds: int | None = None,
                     epochs: int | None = None, lam: float = 0.1, tau: int | None = None,
                     build: Callable[[], nn.Module] | None = None, lr: float | None = None,
                     batch_size: int | None = None, seed: int = 0, device=None,
                     progress: bool = False) -> nn.Module:
    """Train a substitute of ``oracle`` from the seed images ``x_seed`` (Papernot et al. 2017, Algorithm 1).

    Each of ``rounds`` rounds asks the oracle for the labels of the points added since the
    last round (the first round: the seed images; the attacker keeps the labels it already
    has, so ``n * 2**(rounds - 1)`` queries in all), trains the substitute on the whole
    labelled set for ``epochs`` epochs, then doubles the set with :func:`~coursepkg.attacks.blackbox.jacobian_augmentation`
    (step ``lam``, its sign flipped every ``tau`` rounds when ``tau`` is given, their
    periodic step size).  ``rounds`` and ``epochs`` default to the profile's
    ``substitute_rounds`` and ``substitute_epochs``.  ``build()`` makes the untrained
    substitute (default: the course's small CNN for x's shape).  Returns the substitute in
    eval mode; ``substitute.substitute_facts`` records the oracle queries and set sizes.
    """
    if not torch.is_tensor(x_seed) or not x_seed.is_floating_point():
        raise TypeError("x_seed must be a floating-point image tensor in [0, 1]")
    check_inputs(x_seed, torch.zeros(len(x_seed), dtype=torch.long))
    prof = get_profile()
    rounds = check_positive_int(prof.substitute_rounds if rounds is None else rounds, "rounds")
    epochs = check_positive_int(prof.substitute_epochs if epochs is None else epochs, "epochs")
    lam = check_eps(lam, "lam")
    if tau is not None:
        tau = check_positive_int(tau, "tau")
    torch.manual_seed(seed)  # the substitute's initial weights are part of what seed fixes
    substitute = build() if build is not None else classifier_for(_info_for(x_seed), width=16)
    x_set = x_seed.detach().cpu()
    labels = torch.empty(0, dtype=torch.long)
    queries, sizes = 0, []
    for rho in range(rounds):
        new_points = x_set[len(labels):]  # the attacker remembers the labels it already has
        labels = torch.cat([labels, _labels_from(oracle, new_points)])
        queries += len(new_points)
        sizes.append(len(x_set))
        train(substitute, x_set, labels, cross_entropy_loss, epochs=epochs,
              batch_size=batch_size or prof.batch_size, lr=lr or prof.lr, seed=seed + rho,
              device=device, progress=progress, desc=f"substitute round {rho + 1}/{rounds}")
        if rho < rounds - 1:
            step = lam * (-1) ** (rho // tau) if tau else lam
            x_set = torch.cat([x_set, jacobian_augmentation(substitute, x_set, labels, step)])
    substitute.eval()
    substitute.substitute_facts = {"oracle_queries": queries, "set_sizes": sizes, "rounds": rounds}
    return substitute


def transfer_attack(source_model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable = pgd,
                    **kwargs) -> torch.Tensor:
    """Craft ``attack`` on ``source_model`` (a substitute, or another model) and return x_adv.

    The examples are then given to the target: a transfer attack (Papernot et al. 2016,
    "Transferability"; Papernot et al. 2017, section 5) needs no gradient of the target.
    ``kwargs`` go to ``attack`` (``eps=...``).
    """
    return attack(source_model, x, y, **kwargs)
