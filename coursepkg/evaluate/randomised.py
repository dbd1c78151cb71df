"""Evaluating a model that is random at test time: accuracy and robust accuracy over k draws.

A randomised model (SAP, random resizing, dropout kept on, noise at the input) answers
differently on every call, so one forward pass is one sample of its behaviour, not an
evaluation of it.  Here every example is classified ``k`` times, with ``k`` independent
draws of the randomness, and its *share of correct draws* ``c_i`` in [0, 1] is kept.
An example then counts as correct under a stated **rule**:

* ``"majority"`` -- correct in more than half of the draws (``c_i > 1/2``): the answer of
  the model's majority vote, the most favourable reading for the defence;
* ``"worst"`` -- correct in *every* one of the k draws (``c_i = 1``): the worst of k, the
  reading for an attacker who may submit the same input again and wins on any wrong draw;
* ``"single"`` -- correct on the first draw alone: what a plain, one-pass evaluation
  reports, kept to show how far it can be from the other two.

``expected`` (the mean of ``c_i``) estimates the accuracy of a single draw.  For a robust
accuracy the rule is applied to the clean input *and* to the adversarial example of every
attack; the example counts as robust only if all of them pass (the per-example worst case
of :func:`coursepkg.evaluate.robust_accuracy`).  One draw (what a plain evaluation does)
lies between the two rules in expectation only: an attack whose success is random fools a
single draw sometimes and the worst of k almost always, which is why the course never
reports a randomised model from one draw (Athalye et al. 2018; Carlini et al. 2019,
section 5.9).  ``k`` defaults to the profile's ``random_eval_draws``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..attacks import _common
from ..config import profile as get_profile
from ..config import seeded
from . import store
from .core import _accepted_kwargs, _as_named_attacks, _check_keywords, _model_device, _progress
from .intervals import Interval

RULES = ("majority", "worst", "single")


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES} (majority vote, worst of k or one draw), got {rule!r}")
    return rule


def _check_k(k) -> int:
    k = get_profile().random_eval_draws if k is None else k
    return _common.check_positive_int(k, "k")


@torch.no_grad()
def draws_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int | None = None,
                  batch_size: int = 500) -> torch.Tensor:
    """A ``(k, n)`` boolean tensor: whether draw ``j`` of ``model`` classifies example ``i`` as ``y_i``.

    The k draws of a chunk of examples run as one batch (the chunk repeated k times, at
    most about ``batch_size`` rows a pass), in eval mode, restored after.
    """
    _common.check_inputs(x, y)
    k = _check_k(k)
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    dev = _model_device(model, x.device)
    chunk = max(1, batch_size // k)
    out = []
    with _common.attack_mode(model):
        for first in range(0, len(x), chunk):
            xb, yb = x[first:first + chunk].to(dev), y[first:first + chunk].to(dev)
            rows = xb.repeat(k, *([1] * (xb.dim() - 1)))  # draw j: rows j*len(xb) .. (j+1)*len(xb) - 1
            pred = model(rows).argmax(1).view(k, len(xb))
            out.append((pred == yb).to(x.device))
    if not out:
        return torch.zeros(k, 0, dtype=torch.bool, device=x.device)
    return torch.cat(out, dim=1)


@dataclass
class RandomisedAccuracy:
    """Accuracy of a randomised model over ``k`` draws, per example and under each rule."""

    k: int
    share: torch.Tensor  #: per example, the share of the k draws that classify it correctly
    first: torch.Tensor | None = None  #: per example, whether the first draw classifies it correctly

    @property
    def n(self) -> int:
        return len(self.share)

    @property
    def expected(self) -> float:
        """The mean share of correct draws: an estimate of the accuracy of a single draw."""
        return float(self.share.float().mean()) if self.n else float("nan")

    def correct(self, rule: str = "worst") -> torch.Tensor:
        """Per example, whether it counts as correct under ``rule`` (see the module's docstring)."""
        rule = _check_rule(rule)
        if rule == "single":
            if self.first is None:
                raise ValueError("this result keeps no first draw; use rule='majority' or 'worst'")
            return self.first.clone()
        return self.share > 0.5 if rule == "majority" else self.share >= 1.0

    def value(self, rule: str = "worst") -> float:
        return float(self.correct(rule).float().mean())

    @property
    def majority(self) -> float:
        return self.value("majority")

    @property
    def worst(self) -> float:
        return self.value("worst")

    def interval(self, rule: str = "worst", confidence: float = 0.95):
        """``value`` with its Wilson interval (an :class:`coursepkg.evaluate.Interval`)."""
        return _interval(self.correct(rule), confidence)

    def as_dict(self) -> dict:
        out = {"k": self.k, "n": self.n, "expected": self.expected, "majority": self.majority,
               "worst": self.worst}
        if self.first is not None:
            out["single"] = self.value("single")
        return out

    def __repr__(self) -> str:
        return (f"RandomisedAccuracy(k={self.k}, n={self.n}, expected={self.expected:.3f}, "
                f"majority={self.majority:.3f}, worst={self.worst:.3f})")


def _interval(correct: torch.Tensor, confidence: float) -> Interval:
    return Interval.of(int(correct.sum()), len(correct), confidence)


def randomised_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int | None = None,
                        batch_size: int = 500, seed: int | None = 0) -> RandomisedAccuracy:
    """Clean accuracy of a randomised ``model`` over ``k`` draws (see the module's rules).

    The draws come from generators seeded with ``seed`` (the caller's are restored), so two
    calls on the same model and images agree -- a chapter and chapter 7's table choose the
    same setting from them; ``seed=None`` draws from the caller's generators."""
    if len(x) == 0:
        raise ValueError("x is empty: accuracy of no examples is undefined")
    if seed is not None:
        _common.check_seed(seed)
    with (seeded(seed) if seed is not None else contextlib.nullcontext()):
        correct = draws_correct(model, x, y, k=k, batch_size=batch_size)
    return RandomisedAccuracy(len(correct), correct.float().mean(0), correct[0].clone())


@dataclass
class RandomisedRobustResult:
    """Robust accuracy of a randomised model: clean and every attack, each judged over ``k`` draws."""

    k: int
    clean: RandomisedAccuracy
    per_attack: dict[str, RandomisedAccuracy]  #: each attack's adversarial examples over k draws
    x_adv: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)  #: each attack's examples
    from_store: bool = field(default=False, repr=False)  #: read back from the results store

    @property
    def n(self) -> int:
        return self.clean.n

    def correct(self, rule: str = "worst") -> torch.Tensor:
        """Per example: correct under ``rule`` on the clean input and on every attack's example."""
        ok = self.clean.correct(rule).clone()
        for result in self.per_attack.values():
            ok &= result.correct(rule)
        return ok

    def robust(self, rule: str = "worst") -> float:
        """The robust accuracy under ``rule``: the per-example worst case over the attacks."""
        return float(self.correct(rule).float().mean())

    def interval(self, rule: str = "worst", confidence: float = 0.95):
        return _interval(self.correct(rule), confidence)

    def attack_accuracy(self, rule: str = "worst") -> dict[str, float]:
        """Per attack: the share clean-correct under ``rule`` and correct on that attack's example
        (a running worst case when the evaluation ran as a cascade)."""
        clean = self.clean.correct(rule)
        return {name: float((clean & r.correct(rule)).float().mean()) for name, r in self.per_attack.items()}

    def as_dict(self) -> dict:
        return {"k": self.k, "n": self.n, "clean": self.clean.as_dict(),
                "robust": {rule: self.robust(rule) for rule in RULES},
                "per_attack": {rule: self.attack_accuracy(rule) for rule in RULES}}

    def __repr__(self) -> str:
        return (f"RandomisedRobustResult(k={self.k}, n={self.n}, clean majority={self.clean.majority:.3f} "
                f"worst={self.clean.worst:.3f}, robust majority={self.robust('majority'):.3f} "
                f"worst={self.robust('worst'):.3f})")


def randomised_robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks, *,
                               k: int | None = None, cascade: bool = True, batch_size: int = 500,
                               progress: bool = False, seed: int | None = 0,
                               **kwargs) -> RandomisedRobustResult:
    """Robust accuracy of a randomised ``model`` under ``attacks``, every answer judged over ``k`` draws.

    ``attacks`` is an attack, a list or a dict ``name -> attack`` as for
    :func:`coursepkg.evaluate.robust_accuracy`; ``kwargs`` (``eps=...``) go to every
    attack that takes them.  Each attack runs once on ``model`` (for an adaptive attack,
    pass ``coursepkg.adaptive.attack_via(EOT(model, n), attack)``).  Only the examples
    that a majority of clean draws classify correctly are attacked -- the others fail both
    rules anyway -- and each adversarial example is then classified by k fresh draws.
    With ``cascade=True`` (default) each attack runs only on the examples that every
    earlier one left correct under the majority rule (a superset of those left correct
    under the worst of k), so the robust accuracy is the same and the later, costlier
    attacks run on the survivors only; ``per_attack`` then reads as a running worst case,
    and an example an attack did not run on holds a share of 0.  ``cascade=False`` runs
    every attack on every clean-correct example (per-attack accuracies alone).
    Read the result with ``.robust("worst")`` or ``.robust("majority")``.

    Every draw and every attack's randomness come from generators seeded with ``seed``
    (the caller's are restored), so the result is kept in the results store and read back
    by a later identical call, as for :func:`coursepkg.evaluate.robust_accuracy`;
    ``seed=None`` draws from the caller's generators and stores nothing.
    """
    _common.check_inputs(x, y, eps=kwargs.get("eps"))
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    named = _as_named_attacks(attacks)
    _check_keywords(named, kwargs)
    if len(x) == 0:
        raise ValueError("x is empty: robust accuracy of no examples is undefined")
    k = _check_k(k)
    y = y.to(x.device)
    key, started = None, time.perf_counter()
    if seed is not None:
        _common.check_seed(seed)
        key = store.key_for("randomised_robust_accuracy", model, list(named.values()), x, y,
                            sorted(kwargs.items()), k, cascade, batch_size, seed, x.device.type,
                            _model_device(model, x.device).type)
        stored = _randomised_from_payload(store.lookup(key), x, list(named), k)
        if stored is not None:
            store.record("randomised_robust_accuracy", named, len(x), time.perf_counter() - started, True)
            return stored
    with (seeded(seed) if seed is not None else contextlib.nullcontext()):
        result = _randomised_robust_accuracy(model, x, y, named, k, cascade, batch_size, progress, kwargs)
    store.record("randomised_robust_accuracy", named, len(x), time.perf_counter() - started, False)
    store.save(key, _randomised_payload(result, x, list(named)))
    return result


def _randomised_payload(result: RandomisedRobustResult, x: torch.Tensor, names: list[str]) -> dict:
    """The per-image shares of every draw set, and each attack's changed examples."""
    payload = {"n": len(x), "k": result.k, "names": names, "clean_share": result.clean.share.cpu(),
               "clean_first": result.clean.first.cpu(), "share": [], "first": [], "rows": [], "adv": []}
    for name in names:
        r, adv = result.per_attack[name], result.x_adv[name]
        rows = (adv != x).flatten(1).any(1).nonzero().flatten()
        payload["share"].append(r.share.cpu())
        payload["first"].append(r.first.cpu())
        payload["rows"].append(rows.cpu())
        payload["adv"].append(adv[rows].detach().cpu())
    return payload


def _randomised_from_payload(payload, x: torch.Tensor, names: list[str], k: int):
    if payload is None:
        return None
    try:
        if payload["n"] != len(x) or len(payload["names"]) != len(names) or payload["k"] != k:
            return None
        dev = x.device
        clean = RandomisedAccuracy(k, payload["clean_share"].to(dev), payload["clean_first"].to(dev))
        per_attack, x_adv = {}, {}
        for i, name in enumerate(names):
            per_attack[name] = RandomisedAccuracy(k, payload["share"][i].to(dev), payload["first"][i].to(dev))
            adv = x.detach().clone()
            adv[payload["rows"][i].to(dev)] = payload["adv"][i].to(x)
            x_adv[name] = adv
    except (KeyError, TypeError, AttributeError, IndexError, RuntimeError):
        return None
    return RandomisedRobustResult(k, clean, per_attack, x_adv, from_store=True)


def _randomised_robust_accuracy(model, x, y, named, k, cascade, batch_size, progress, kwargs):
    """The engine of :func:`randomised_robust_accuracy` (arguments checked, generators seeded)."""
    clean = randomised_accuracy(model, x, y, k=k, batch_size=batch_size, seed=None)  # seeded above
    attacked = clean.correct("majority")
    per_attack, x_adv = {}, {}
    bar = _progress(len(named) * ((len(x) + batch_size - 1) // batch_size), "randomised robust accuracy",
                    progress)
    for name, attack in named.items():
        accepted = _accepted_kwargs(attack, kwargs, name)
        share = torch.zeros(len(x), device=x.device)
        first_draw = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        adv_all = x.detach().clone()
        for first in range(0, len(x), batch_size):
            idx = torch.arange(first, min(first + batch_size, len(x)), device=x.device)
            idx = idx[attacked[idx]]
            if len(idx):
                adv = attack(model, x[idx], y[idx], **accepted).to(x)
                adv_all[idx] = adv
                judged = draws_correct(model, adv, y[idx], k=k, batch_size=batch_size)
                share[idx], first_draw[idx] = judged.float().mean(0), judged[0]
            if bar is not None:
                bar.update(1)
        per_attack[name] = RandomisedAccuracy(k, share, first_draw)
        x_adv[name] = adv_all
        if cascade:
            attacked = attacked & per_attack[name].correct("majority")
    if bar is not None:
        bar.close()
    return RandomisedRobustResult(k, clean, per_attack, x_adv)
