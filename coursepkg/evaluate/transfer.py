"""Transferability: adversarial examples crafted on one model, judged by another.

Szegedy et al. (2014) found that adversarial examples made for one network often fool
another trained on the same task, and Papernot et al. (2016, "Transferability") measured
it across model families.  A defence that only hides or flattens its gradient stops the
attacks that need that gradient, not the examples: an attacker crafts them on a *source*
model it can differentiate and sends them to the defended *target* (Tramèr et al. 2018,
section 4.2; Athalye et al. 2018, section 5).

:func:`~coursepkg.evaluate.transfer_matrix` crafts one attack per source, once, and judges
every target on every source's examples in one batched pass per target.  The success rate
of a cell is the share of the images the target classifies correctly *clean* whose
adversarial example (crafted on the source) it then misclassifies -- the success rate of
Papernot et al. (2016).  A target that answers an extra "adversarial" class (a detector
joined to its classifier, :class:`~coursepkg.defences.detection.Detected`) is fooled only
by a wrong *class*: being flagged is not a success.  A random target named in ``draws`` is
judged over k draws of its randomness, as chapter 5 judges random models: it counts an image
as correct clean by the majority of the k draws, and as fooled when *any* of k draws of it
answers a wrong class on the example (the worst of k: an attacker may submit the same input
again).  A random target left out of ``draws`` is judged by one draw.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from ..attacks import _common, pgd
from ..config import Profile, seeded
from ..config import profile as get_profile
from . import store
from .core import _model_device, predictions
from .intervals import Interval


@dataclass
class TransferMatrix:
    """Transfer success of each source's adversarial examples on each target.

    ``successes[i, j]`` counts the images target ``j`` classifies correctly clean and gets
    wrong on source ``i``'s example; ``trials[j]`` counts the images target ``j`` classifies
    correctly clean (the denominator of every cell of column ``j``).
    """

    sources: list[str]
    targets: list[str]
    successes: torch.Tensor  #: S x T counts
    trials: torch.Tensor  #: T counts
    n: int  #: the images the sources attacked

    @property
    def rates(self) -> torch.Tensor:
        """S x T success rates (0 where a target classifies no image correctly)."""
        return self.successes.double() / self.trials.clamp(min=1).double()[None, :]

    def rate(self, source: str, target: str) -> Interval:
        """The success rate of one cell with its 95% Wilson interval."""
        i, j = self._index(source, target)
        return Interval.of(int(self.successes[i, j]), max(int(self.trials[j]), 1))

    def best_source(self, target: str, exclude: tuple[str, ...] = ()) -> tuple[str, Interval]:
        """The source whose examples fool ``target`` most often (ignoring ``exclude``)."""
        j = self._index(self.sources[0], target)[1]
        order = sorted(((float(self.rates[i, j]), s) for i, s in enumerate(self.sources)
                        if s not in exclude), reverse=True)
        if not order:
            raise ValueError("every source is excluded: keep at least one")
        return order[0][1], self.rate(order[0][1], target)

    def as_rows(self) -> list[dict]:
        """One dict per source: its success rate on every target (for a table)."""
        return [{"source": s, **{t: float(self.rates[i, j]) for j, t in enumerate(self.targets)}}
                for i, s in enumerate(self.sources)]

    def _index(self, source: str, target: str) -> tuple[int, int]:
        if source not in self.sources:
            raise KeyError(f"unknown source {source!r}: choose one of {self.sources}")
        if target not in self.targets:
            raise KeyError(f"unknown target {target!r}: choose one of {self.targets}")
        return self.sources.index(source), self.targets.index(target)


def _craft(attack: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
           batch_size: int) -> torch.Tensor:
    dev = _model_device(model, x.device)
    return torch.cat([attack(model, x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev),
                             eps=eps).to(x) for i in range(0, len(x), batch_size)])


def transfer_matrix(sources: Mapping[str, nn.Module], targets: Mapping[str, nn.Module],
                    x: torch.Tensor, y: torch.Tensor, *, eps: float, attack: Callable | None = None,
                    num_classes: int | None = None, profile: str | Profile | None = None,
                    batch_size: int = 500, draws: Mapping[str, int] | None = None,
                    seed: int | None = 0) -> TransferMatrix:
    """Success rate of examples crafted on every source against every target.

    ``attack(model, x, y, eps=...)`` crafts the examples on each source (default: the
    course's PGD with the profile's ``pgd_steps`` and ``pgd_restarts``).  Each target then
    classifies all sources' examples in one batched pass.  ``num_classes`` is the number of
    real classes (default: the width of the first source's output); a target's prediction
    at or beyond it (a detector's "adversarial" class) does not count as fooled.
    ``draws`` maps the name of a random target to the number k of draws that judge it
    (majority of k clean, worst of k on the examples).

    The attack's random starts and the targets' draws come from generators seeded with
    ``seed`` (the caller's are restored), so the matrix is a function of its models, images
    and attack, and is kept in the results store (:mod:`coursepkg.evaluate.store`): a second
    run reads it back.  ``seed=None``: the caller's generators, nothing stored.
    """
    eps = _common.check_eps(eps)
    _common.check_inputs(x, y, eps=eps)
    if not sources or not targets:
        raise ValueError("give at least one source and one target model (dicts name -> model)")
    for kind, models in (("source", sources), ("target", targets)):
        bad = [k for k, m in models.items() if not isinstance(m, nn.Module)]
        if bad:
            raise TypeError(f"{kind}s must be torch.nn.Module instances; not: {bad}")
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    if attack is None:
        p = get_profile(profile)
        attack = functools.partial(pgd, steps=p.pgd_steps, restarts=p.pgd_restarts)
    y = y.to(x.device)
    names = list(sources)
    if num_classes is None:
        first = sources[names[0]]
        with torch.no_grad():
            num_classes = int(first(x[:1].to(_model_device(first, x.device))).shape[1])
    draws = dict(draws or {})
    unknown = sorted(set(draws) - set(targets))
    if unknown:
        raise ValueError(f"draws names targets that are not given: {unknown}")
    ks = [_common.check_positive_int(draws.get(t, 1), f"draws[{t!r}]") for t in targets]
    key, started = None, time.perf_counter()
    if seed is not None:
        _common.check_seed(seed)
        key = store.key_for("transfer_matrix", list(sources.values()), list(targets.values()), x, y,
                            eps, attack, num_classes, batch_size, ks, seed, x.device.type)
        payload = store.lookup(key)
        if payload is not None and payload.get("successes") is not None \
                and tuple(payload["successes"].shape) == (len(names), len(targets)):
            store.record("transfer_matrix", names, len(x), time.perf_counter() - started, True)
            return TransferMatrix(names, list(targets), payload["successes"], payload["trials"], len(x))
    with (seeded(seed) if seed is not None else contextlib.nullcontext()):
        successes, trials = _judge(sources, targets, x, y, eps, attack, num_classes, batch_size, ks)
    store.record("transfer_matrix", names, len(x), time.perf_counter() - started, False)
    store.save(key, {"successes": successes, "trials": trials})
    return TransferMatrix(names, list(targets), successes, trials, len(x))


def _judge(sources, targets, x, y, eps, attack, num_classes, batch_size, ks):
    """The matrix's counts: each source's examples crafted once, each target judging them all
    in one batched pass per draw (majority of k clean, fooled by any of k draws)."""
    names = list(sources)
    crafted = torch.cat([_craft(attack, sources[s], x, y, eps, batch_size) for s in names])
    successes = torch.zeros(len(names), len(targets), dtype=torch.long)
    trials = torch.zeros(len(targets), dtype=torch.long)
    labels = y.repeat(len(names)).view(len(names), len(x)).cpu()
    for j, (target, k) in enumerate(zip(targets.values(), ks)):
        clean = torch.stack([predictions(target, x, batch_size=batch_size).cpu() for _ in range(k)])
        ok = (clean == y.cpu()[None, :]).sum(0) * 2 > k  # the majority of k draws (k = 1: the draw)
        fooled = torch.zeros(len(names), len(x), dtype=torch.bool)
        for _ in range(k):  # fooled by any draw: the worst of k
            pred = predictions(target, crafted, batch_size=batch_size).cpu().view(len(names), len(x))
            fooled |= (pred != labels) & (pred < num_classes)
        successes[:, j] = (fooled & ok[None, :]).sum(1)
        trials[j] = int(ok.sum())
    return successes, trials
