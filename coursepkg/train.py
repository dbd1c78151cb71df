"""One training loop; defences plug in as per-batch losses.

Every recipe of the course -- standard training, adversarial training, logit pairing, a
contractive penalty, distillation, an input-gradient penalty -- is the same loop with a
different *loss*: a callable ``loss(model, x, y) -> scalar tensor`` evaluated on one
mini-batch.  The loop itself only samples batches, steps the optimiser, follows a cosine
learning-rate schedule and records what happened.

>>> from coursepkg.train import train, cross_entropy_loss          # doctest: +SKIP
>>> log = train(model, x, y, cross_entropy_loss, epochs=2)          # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .config import device as default_device
from .config import seed_everything


class BatchLoss(Protocol):
    """What the loop calls on every mini-batch; returns a scalar to minimise."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Standard training: the mean cross-entropy of the model's logits, L(x, y)."""
    return F.cross_entropy(model(x), y)


@dataclass
class TrainLog:
    """What a training run did: loss per epoch (mean over batches), time and sizes."""

    epoch_loss: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    examples: int = 0
    epochs: int = 0

    def as_dict(self) -> dict:
        return {"epoch_loss": list(self.epoch_loss), "seconds": float(self.seconds),
                "examples": int(self.examples), "epochs": int(self.epochs)}


def _check_training_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError("x must be a floating-point image tensor in [0, 1] (use coursepkg.data.load_dataset)")
    if x.dim() != 4:
        raise ValueError(f"x must have shape N x C x H x W, got {tuple(x.shape)}")
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples, got {len(x)} and {len(y)}")
    if len(x) == 0:
        raise ValueError("no training data: x is empty")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError("x must lie in [0, 1]; the models normalise inside, so pass raw pixels")


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: BatchLoss | Callable = cross_entropy_loss,
    *,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "training",
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
) -> TrainLog:
    """Train ``model`` in place on ``(x, y)`` by minimising ``loss`` with Adam.

    The learning rate follows a cosine from ``lr`` to zero over all steps (Loshchilov and
    Hutter 2017), which makes short runs -- the quick profile -- converge reliably.  Batches
    are drawn from a seeded permutation, so a run is repeatable on the same device.
    Returns a :class:`TrainLog`; the model is left in eval mode.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    _check_training_data(x, y)
    dev = torch.device(device) if device is not None else default_device()
    generator = seed_everything(seed)
    model.to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total_steps = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    log = TrainLog(epochs=epochs, examples=len(x))
    start = time.perf_counter()
    bar = _progress(total_steps, desc, progress)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        running, batches = 0.0, 0
        for first in range(0, len(x), batch_size):
            idx = order[first:first + batch_size]
            xb, yb = x[idx].to(dev, non_blocking=True), y[idx].to(dev, non_blocking=True)
            value = loss(model, xb, yb)
            if value.dim() != 0:
                raise ValueError("a batch loss must return a scalar tensor (take the mean over the batch)")
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1}: the loss is {value.item()}; lower lr"
                )
            optimiser.zero_grad(set_to_none=True)
            value.backward()
            optimiser.step()
            schedule.step()
            model.train()  # a loss that ran an attack may have switched modes
            running += value.item()
            batches += 1
            log.batch_loss.append(value.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / batches:.3f}", refresh=False)
        log.epoch_loss.append(running / batches)
        if on_epoch_end is not None:
            model.eval()
            on_epoch_end(epoch, model)
    if bar is not None:
        bar.close()
    log.seconds = time.perf_counter() - start
    model.eval()
    return log


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, mininterval=1.0)
