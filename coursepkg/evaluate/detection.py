"""Evaluating a detector: ROC curves, thresholds, and attacks that must evade it.

A detector is judged twice (Carlini and Wagner 2017, "bypassing ten detection methods"):

* **as a test** -- on clean images against adversarial ones: the ROC curve and its area
  (:func:`roc_curve`, :func:`auc`), the threshold that flags a chosen share of clean images
  (:func:`threshold_at_fpr`, 5% by default) and the share of adversarial images it flags
  there (:func:`detection_rate`);
* **as a defence** -- the share of images on which an attack both fools the classifier and
  is *not* detected at that threshold (:func:`evasion`, :func:`evades`), and the
  distortion the attack needed (mean L2), next to the undefended classifier's figures.

Written in torch (no scikit-learn): the scores are tensors already, the area under the ROC
curve is the Mann-Whitney statistic, and the detectors' own logistic regression must stay
differentiable for the adaptive attack anyway (:mod:`coursepkg.defences.detection`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..attacks import _common
from ..config import seeded
from . import store
from .core import _accepted_kwargs, _as_named_attacks, _check_keywords, predictions
from .intervals import Interval


def _scores(values, name: str) -> torch.Tensor:
    if not torch.is_tensor(values):
        values = torch.as_tensor(values)
    values = values.detach().flatten().double().cpu()
    if len(values) == 0:
        raise ValueError(f"{name} is empty: give at least one score")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} holds NaN or infinite scores")
    return values


@dataclass
class ROC:
    """A ROC curve: false and true positive rates at every distinct threshold, and its area."""

    fpr: torch.Tensor
    tpr: torch.Tensor
    thresholds: torch.Tensor  #: a point flags the scores strictly above its threshold
    auc: float

    def plot(self, ax=None, label: str | None = None, **style):
        import matplotlib.pyplot as plt
        ax = ax or plt.gca()
        text = f"{label} (AUC {self.auc:.3f})" if label else f"AUC {self.auc:.3f}"
        ax.plot(self.fpr.numpy(), self.tpr.numpy(), label=text, **style)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel("false positive rate (clean images flagged)")
        ax.set_ylabel("true positive rate (adversarial images flagged)")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.01)
        return ax


def roc_curve(clean_scores, adversarial_scores) -> ROC:
    """The ROC curve of a detector whose higher scores mean "adversarial".

    At each distinct score ``s`` (descending) the detector flags the images with score
    ``>= s``; the curve starts at (0, 0) and ends at (1, 1).  Ties move both rates at once
    (a diagonal segment), so the trapezoidal area equals the Mann-Whitney statistic
    ``P(s_adv > s_clean) + P(s_adv = s_clean) / 2``.
    """
    clean = _scores(clean_scores, "clean_scores")
    adv = _scores(adversarial_scores, "adversarial_scores")
    scores = torch.cat([adv, clean])
    labels = torch.cat([torch.ones(len(adv)), torch.zeros(len(clean))]).double()
    order = torch.argsort(scores, descending=True)
    scores, labels = scores[order], labels[order]
    last_of_run = torch.ones(len(scores), dtype=torch.bool)
    last_of_run[:-1] = scores[1:] != scores[:-1]
    tp = labels.cumsum(0)[last_of_run]
    fp = (1 - labels).cumsum(0)[last_of_run]
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), tp / len(adv)])
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), fp / len(clean)])
    thresholds = torch.cat([torch.tensor([float("inf")], dtype=torch.float64), scores[last_of_run]])
    area = float(torch.trapezoid(tpr, fpr))
    # a point flags scores >= its score, i.e. scores strictly above the next lower score
    return ROC(fpr=fpr.float(), tpr=tpr.float(), thresholds=thresholds, auc=area)


def auc(clean_scores, adversarial_scores) -> float:
    """The area under the ROC curve: the chance that an adversarial image outscores a clean one."""
    return roc_curve(clean_scores, adversarial_scores).auc


def auc_interval(clean_scores, adversarial_scores, confidence: float = 0.95) -> Interval:
    """The AUC with an approximate confidence interval (Hanley and McNeil 1982, eq. 2).

    ``SE^2 = (A(1-A) + (n_a - 1)(Q1 - A^2) + (n_c - 1)(Q2 - A^2)) / (n_a n_c)`` with
    ``Q1 = A / (2 - A)``, ``Q2 = 2A^2 / (1 + A)``; the interval is ``A +- z SE`` clipped to
    [0, 1] -- a normal approximation, enough to tell "better than chance" from noise.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n_c = len(_scores(clean_scores, "clean_scores"))
    n_a = len(_scores(adversarial_scores, "adversarial_scores"))
    a = auc(clean_scores, adversarial_scores)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_a - 1) * (q1 - a * a) + (n_c - 1) * (q2 - a * a)) / (n_a * n_c)
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + confidence / 2)))
    half = z * max(var, 0.0) ** 0.5
    return Interval(a, max(0.0, a - half), min(1.0, a + half), n_a + n_c)


def threshold_at_fpr(clean_scores, fpr: float = 0.05) -> float:
    """The lowest threshold that flags at most a share ``fpr`` of the clean images.

    A detector flags a score strictly above the threshold.  With n clean scores sorted
    from the highest, the threshold is the (floor(fpr n) + 1)-th: the floor(fpr n) scores
    above it are the false positives (fewer where scores tie).
    """
    fpr = float(fpr)
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    clean = _scores(clean_scores, "clean_scores")
    ranked = torch.sort(clean, descending=True).values
    return float(ranked[int(fpr * len(clean))])


def detection_rate(scores, threshold: float) -> float:
    """The share of ``scores`` strictly above ``threshold`` (flagged as adversarial)."""
    return float((_scores(scores, "scores") > float(threshold)).double().mean())


def _device_of(module: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return fallback


@torch.no_grad()
def detector_scores(detector: nn.Module, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """``detector(x)`` in batches, without gradients, on the detector's device (a CPU tensor)."""
    _common.check_positive_int(batch_size, "batch_size")
    with _common.attack_mode(detector):  # eval mode, every module's flag restored afterwards
        device = _device_of(detector, x.device)
        out = [detector(x[i:i + batch_size].to(device)).detach().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


# --------------------------------------------------------------------------------------
# Attacks against a detected model
# --------------------------------------------------------------------------------------
def evades(detected: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Per image: does ``x_adv`` fool the classifier *and* evade the detector?

    ``detected`` is a :class:`coursepkg.defences.detection.Detected`: its last logit is the
    class "adversarial", so this is "predicted neither y nor adversarial".
    """
    pred = predictions(detected, x_adv, batch_size=batch_size)
    adversarial_class = predictions_width(detected, x_adv[:1]) - 1
    y = y.to(pred.device)
    return (pred != y) & (pred != adversarial_class)


@torch.no_grad()
def predictions_width(model: nn.Module, x1: torch.Tensor) -> int:
    """The number of logits ``model`` returns (C + 1 for a detected model)."""
    with _common.attack_mode(model):
        return int(model(x1.to(_device_of(model, x1.device))).shape[1])


def mean_l2(x: torch.Tensor, x_adv: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean L2 distortion ``||x_adv - x||_2`` over the images of ``mask`` (NaN if none)."""
    norms = (x_adv - x).flatten(1).norm(dim=1).cpu()
    if mask is not None:
        norms = norms[mask.cpu()]
    return float(norms.mean()) if len(norms) else float("nan")


@dataclass
class EvasionResult:
    """How often attacks fool a classifier *and* evade its detector (per-example worst case).

    Only the images the defended model handles at the start count: classified correctly and
    not flagged when clean (``attacked`` of ``n_total``).
    """

    success: Interval  #: share of the attacked images some attack fooled undetected, with its interval
    per_attack: dict[str, float]  #: cumulative: the share after this attack and every one before it
    evaded: torch.Tensor  #: per image (all n_total): fooled and undetected by some attack
    attacked: torch.Tensor  #: per image: correct and unflagged when clean
    x_adv: torch.Tensor  #: per image: the first successful attack's image (else x)
    distortion: float  #: mean L2 of the successful images
    clean_flagged: float  #: share of the clean images the detector flags (its false positive rate here)
    fooled_by: list = field(default_factory=list)
    from_store: bool = field(default=False, repr=False)  #: read back from the results store

    @property
    def n(self) -> int:
        return int(self.attacked.sum())

    def as_dict(self) -> dict:
        return {"success": self.success.value, "success_lo": self.success.lo, "success_hi": self.success.hi,
                "n": self.n, "per_attack": dict(self.per_attack), "distortion": self.distortion,
                "clean_flagged": self.clean_flagged}

    def __repr__(self) -> str:
        return (f"EvasionResult(success={self.success}, n={self.n}, distortion={self.distortion:.3f}, "
                f"per_attack={ {k: round(v, 3) for k, v in self.per_attack.items()} })")


def evasion(detected: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks, *, batch_size: int = 500,
            seed: int | None = 0, **kwargs) -> EvasionResult:
    """Attack success against a detector: fooled and undetected, worst case over ``attacks``.

    ``attacks`` (an attack, a list or a dict name -> attack, as for
    :func:`coursepkg.evaluate.robust_accuracy`) are handed ``detected`` -- the joined model
    -- and ``kwargs`` (``eps=...``); wrap them with
    :func:`coursepkg.defences.detection.evading` to aim them at "fooled and undetected".  An
    image counts as evaded when *any* attack's output fools the classifier and is not
    flagged (:func:`evades`); each attack runs on the images all earlier ones failed on.

    As for :func:`coursepkg.evaluate.robust_accuracy`, the randomness (random starts, a
    Monte-Carlo detector's dropout masks) comes from generators seeded with ``seed`` and
    the result is kept in the results store; ``seed=None`` uses the caller's generators.
    """
    _common.check_inputs(x, y, eps=kwargs.get("eps"))
    named = _as_named_attacks(attacks)
    _check_keywords(named, kwargs)
    if len(x) == 0:
        raise ValueError("x is empty: attack success on no images is undefined")
    y = y.to(x.device)
    key, started = None, time.perf_counter()
    if seed is not None:
        _common.check_seed(seed)
        key = store.key_for("evasion", detected, list(named.values()), x, y, sorted(kwargs.items()),
                            batch_size, seed, x.device.type, _device_of(detected, x.device).type)
        stored = _evasion_from_payload(store.lookup(key), x, list(named))
        if stored is not None:
            store.record("evasion", named, len(x), time.perf_counter() - started, True)
            return stored
    with (seeded(seed) if seed is not None else contextlib.nullcontext()):
        result = _evasion(detected, x, y, named, batch_size, kwargs)
    names = list(named)
    fooled = torch.tensor([names.index(f) if f is not None else -1 for f in result.fooled_by],
                          dtype=torch.long)
    rows = (fooled >= 0).nonzero().flatten()
    store.record("evasion", named, len(x), time.perf_counter() - started, False)
    store.save(key, {"n": len(x), "names": names, "attacked": result.attacked.cpu(),
                     "evaded": result.evaded.cpu(), "fooled_by": fooled,
                     "adv_rows": result.x_adv[rows.to(x.device)].detach().cpu(),
                     "per_attack": dict(result.per_attack), "clean_flagged": result.clean_flagged})
    return result


def _evasion_from_payload(payload, x: torch.Tensor, names: list[str]) -> EvasionResult | None:
    if payload is None:
        return None
    try:
        fooled = payload["fooled_by"]
        rows = (fooled >= 0).nonzero().flatten()
        if payload["n"] != len(x) or len(payload["names"]) != len(names) or len(payload["adv_rows"]) != len(rows):
            return None
        x_adv = x.detach().clone()
        x_adv[rows.to(x.device)] = payload["adv_rows"].to(x)
        attacked, evaded = payload["attacked"].to(x.device), payload["evaded"].to(x.device)
    except (KeyError, TypeError, AttributeError, IndexError, RuntimeError):
        return None
    return EvasionResult(success=Interval.of(int(evaded.sum()), int(attacked.sum())),
                         per_attack=dict(payload["per_attack"]), evaded=evaded, attacked=attacked,
                         x_adv=x_adv, distortion=mean_l2(x, x_adv, evaded),
                         clean_flagged=float(payload["clean_flagged"]),
                         fooled_by=[names[i] if i >= 0 else None for i in fooled.tolist()],
                         from_store=True)


def _evasion(detected, x, y, named, batch_size, kwargs) -> EvasionResult:
    """The engine of :func:`evasion` (arguments checked, generators seeded)."""
    clean_pred = predictions(detected, x, batch_size=batch_size).to(x.device)
    n_classes = predictions_width(detected, x[:1])
    flagged = clean_pred == n_classes - 1
    attacked = (clean_pred == y)
    evaded = torch.zeros_like(attacked)
    x_adv = x.detach().clone()
    fooled_by: list = [None] * len(x)
    per_attack = {}
    for name, attack in named.items():
        accepted = _accepted_kwargs(attack, kwargs, name)
        for first in range(0, len(x), batch_size):
            idx = torch.arange(first, min(first + batch_size, len(x)), device=x.device)
            idx = idx[attacked[idx] & ~evaded[idx]]
            if len(idx) == 0:
                continue
            adv = attack(detected, x[idx], y[idx], **accepted).to(x)
            hit = evades(detected, adv, y[idx], batch_size=batch_size).to(x.device)
            x_adv[idx[hit]] = adv[hit]
            for i in idx[hit].tolist():
                fooled_by[i] = name
            evaded[idx] |= hit
        per_attack[name] = float(evaded[attacked].float().mean()) if bool(attacked.any()) else 0.0
    n = int(attacked.sum())
    if n == 0:
        raise ValueError("no image is classified correctly and left unflagged when clean: nothing to attack")
    return EvasionResult(success=Interval.of(int(evaded.sum()), n), per_attack=per_attack, evaded=evaded,
                         attacked=attacked, x_adv=x_adv, distortion=mean_l2(x, x_adv, evaded),
                         clean_flagged=float(flagged.float().mean()), fooled_by=fooled_by)


def static_evasion(detected: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, *,
                   batch_size: int = 500) -> Interval:
    """Success against the detector of adversarial images made *without* it (a static attacker).

    Over the images classified correctly and unflagged when clean, the share whose
    ``x_adv`` fools the classifier and evades the detector.
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    y = y.to(x.device)
    attacked = (predictions(detected, x, batch_size=batch_size).to(x.device) == y)
    if not bool(attacked.any()):
        raise ValueError("no image is classified correctly and left unflagged when clean")
    hit = evades(detected, x_adv[attacked], y[attacked], batch_size=batch_size)
    return Interval.of(int(hit.sum()), int(attacked.sum()))


def detected_at_fpr(classifier: nn.Module, detector: nn.Module, x_clean: torch.Tensor, *, fpr: float = 0.05,
                    gain: float = 1.0, batch_size: int = 500, seed: int | None = 0):
    """``Detected(classifier, detector, threshold)`` with the threshold that flags ``fpr`` of ``x_clean``.

    The adversarial logit's scale is set to ``gain`` over the clean scores' standard
    deviation, so that one standard deviation of the score weighs ``gain`` logits for an
    attack (the decision -- score above the threshold -- does not depend on it).  A random
    detector (Monte-Carlo dropout) scores the clean images with generators seeded with
    ``seed`` (the caller's are restored): the same detector gets the same threshold in every
    chapter; ``seed=None`` draws from the caller's generators.
    """
    from ..defences.detection import Detected
    if seed is not None:
        _common.check_seed(seed)
    with (seeded(seed) if seed is not None else contextlib.nullcontext()):
        scores = detector_scores(detector, x_clean, batch_size=batch_size)
    spread = float(scores.double().std()) if len(scores) > 1 else 1.0
    return Detected(classifier, detector, threshold_at_fpr(scores, fpr), gain=gain / max(spread, 1e-12))


def detection_attacks(*, eps: float | None = None, view: nn.Module | None = None, profile=None,
                      norm: str = "linf") -> dict[str, Callable]:
    """The attacks of :func:`coursepkg.evaluate.strongest`, each aimed at "fooled and undetected".

    Every attack of :func:`~coursepkg.evaluate.strongest_attacks` runs, unchanged, on the
    :class:`~coursepkg.defences.detection.Evasion` view of the joined model it is handed (or
    of ``view``, e.g. an ``EOT`` of it for a random detector).
    """
    from ..defences.detection import evading
    from .strongest import strongest_attacks
    return {name: evading(attack, view=view)
            for name, attack in strongest_attacks(eps=eps, norm=norm, profile=profile).items()}


__all__ = [
    "ROC",
    "EvasionResult",
    "auc",
    "auc_interval",
    "detected_at_fpr",
    "detection_attacks",
    "detection_rate",
    "detector_scores",
    "evades",
    "evasion",
    "mean_l2",
    "roc_curve",
    "static_evasion",
    "threshold_at_fpr",
]
