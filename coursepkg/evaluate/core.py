"""Accuracy, robust accuracy and the warning signs of gradient masking.

* :func:`~coursepkg.evaluate.accuracy` -- clean accuracy, in batches;
* :func:`~coursepkg.evaluate.robust_accuracy` -- accuracy under the *worst case over several attacks, per
  example* (Carlini et al. 2019, section 4: an example counts as robust only if every
  attack fails on it), as a :class:`RobustResult`;
* :func:`~coursepkg.evaluate.perturbation_norms`, :func:`~coursepkg.evaluate.attack_success_rate` -- how large and how effective
  a perturbation is;
* :func:`~coursepkg.evaluate.accuracy_vs_eps` -- the accuracy-against-budget curve (:class:`AccuracyCurve`);
* :func:`~coursepkg.evaluate.sanity_checks` -- the checklist of Athalye et al. (2018, section 3.1) and Carlini
  et al. (2019, section 5) that tells a real defence from masked gradients, as a
  :class:`SanityReport`.

Results are dataclasses with ``as_dict()``, so a chapter prints and asserts on them.
"""

from __future__ import annotations

import contextlib
import time
import functools
import html
import inspect
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ..attacks import _common
from ..config import seeded
from . import store
from .intervals import Interval


# --------------------------------------------------------------------------------------
# Clean accuracy
# --------------------------------------------------------------------------------------
def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return fallback


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """The model's predicted labels on ``x`` (in eval mode, restored after), on x's device."""
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    dev = _model_device(model, x.device)
    with _common.attack_mode(model):
        out = [model(x[i:i + batch_size].to(dev)).argmax(1).to(x.device) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=x.device)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500) -> float:
    """The fraction of ``x`` that ``model`` labels ``y`` (evaluated in eval mode, in batches)."""
    _common.check_inputs(x, y)
    if len(x) == 0:
        raise ValueError("x is empty: accuracy of no examples is undefined")
    return float((predictions(model, x, batch_size=batch_size) == y.to(x.device)).float().mean())


# --------------------------------------------------------------------------------------
# Robust accuracy: the per-example worst case over attacks
# --------------------------------------------------------------------------------------
@dataclass
class RobustResult:
    """Robust accuracy of a model under a set of attacks (worst case per example)."""

    clean_accuracy: float
    robust_accuracy: float
    per_attack: dict[str, float]  #: accuracy under each attack alone
    correct: torch.Tensor  #: per example: correctly classified under every attack (BoolTensor)
    x_adv: torch.Tensor  #: per example, the adversarial example of the first attack that fooled the model
    fooled_by: list[str | None] = field(default_factory=list)  #: per example, that attack's name (None: none did)
    clean_mask: torch.Tensor | None = field(default=None, repr=False)  #: per example: correct clean
    #: per attack, per example: correct under that attack (cumulative when run as a cascade)
    per_attack_mask: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    from_store: bool = field(default=False, repr=False)  #: read back from the results store

    @property
    def n(self) -> int:
        """The number of examples evaluated."""
        return len(self.correct)

    @property
    def clean_interval(self) -> Interval:
        """Clean accuracy with its 95% Wilson interval."""
        return Interval.of(round(self.clean_accuracy * self.n), self.n)

    @property
    def robust_interval(self) -> Interval:
        """Robust accuracy (worst case over the attacks) with its 95% Wilson interval."""
        return Interval.of(int(self.correct.sum()), self.n)

    @property
    def per_attack_interval(self) -> dict[str, Interval]:
        """Accuracy under each attack (see ``per_attack``) with its 95% Wilson interval."""
        return {k: Interval.of(round(v * self.n), self.n) for k, v in self.per_attack.items()}

    @property
    def success_rate(self) -> float:
        """The fraction of correctly classified clean examples that some attack fools."""
        if self.clean_accuracy == 0:
            return 0.0
        return 1.0 - self.robust_accuracy / self.clean_accuracy

    def as_dict(self) -> dict:
        return {"clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
                "success_rate": self.success_rate, "per_attack": dict(self.per_attack)}

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v:.3f}" for k, v in self.per_attack.items())
        return (f"RobustResult(n={self.n}, clean={self.clean_interval}, robust={self.robust_interval}, "
                f"per_attack: {parts})")


def attack_name(attack: Callable) -> str:
    """A readable name for an attack callable (a function, a ``functools.partial`` of one, ...)."""
    if isinstance(attack, functools.partial):
        inner = attack_name(attack.func)
        args = ", ".join(f"{k}={v}" for k, v in attack.keywords.items())
        return f"{inner}({args})" if args else inner
    return getattr(attack, "__name__", type(attack).__name__)


def _as_named_attacks(attacks) -> dict[str, Callable]:
    if callable(attacks):
        return {attack_name(attacks): attacks}
    if isinstance(attacks, Mapping):
        named = dict(attacks)
    elif isinstance(attacks, Sequence) and not isinstance(attacks, str):
        named = {}
        for attack in attacks:
            name, k = attack_name(attack), 2
            base = name
            while name in named:
                name, k = f"{base}#{k}", k + 1
            named[name] = attack
    else:
        raise TypeError("attacks must be an attack function, a list of them, or a dict name -> attack")
    if not named:
        raise ValueError("attacks is empty: give at least one attack")
    for name, attack in named.items():
        if not callable(attack):
            raise TypeError(f"attacks[{name!r}] is not callable")
    return named


def _accepted_kwargs(attack: Callable, kwargs: dict, name: str = "attack") -> dict:
    """The keyword arguments ``attack`` accepts (all of them when it takes ``**kwargs``).

    A budget the attack does not take is an error, not a keyword to drop: an attack that
    ignored ``eps`` would be counted against an ε-robust accuracy with examples of any size
    (C&W's unbounded L2 examples, say), and a misspelt ``step=`` would change nothing
    without a word.  Options an attack does not take (``loss=`` handed to every attack of a
    set) are still passed only to those that take them.
    """
    try:
        params = inspect.signature(attack).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    accepted = {k: v for k, v in kwargs.items() if k in params}
    refused = sorted(k for k in kwargs if k in BUDGETS and k not in params)
    if refused:
        raise TypeError(f"{name} takes no {', '.join(refused)}: its examples would not respect the "
                        f"budget; bound it (e.g. functools.partial) or evaluate it on its own")
    return accepted


#: the keyword arguments that bound an attack: an attack must take every one it is given
BUDGETS = frozenset({"eps", "norm"})


def _check_keywords(named: dict[str, Callable], kwargs: dict) -> None:
    """A keyword no attack takes is a mistake (``step=`` for ``steps=``): say so."""
    taken: set[str] = set()
    for attack in named.values():
        try:
            params = inspect.signature(attack).parameters
        except (TypeError, ValueError):
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        taken |= set(params)
    unknown = sorted(set(kwargs) - taken)
    if unknown:
        raise TypeError(f"no attack takes {', '.join(unknown)}; check the spelling "
                        f"(attacks: {', '.join(named)})")


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks, *,
                    batch_size: int = 500, progress: bool = False, cascade: bool = False,
                    seed: int | None = 0, **kwargs) -> RobustResult:
    """Accuracy of ``model`` when every example meets the attack that fools it, if any.

    ``attacks`` is an attack, a list of attacks or a dict ``name -> attack``;
    ``kwargs`` (``eps=0.1``, ...) go to every attack that takes them.  An example counts
    as robust only when it is classified correctly clean *and* under every attack: the
    per-example minimum over attacks of Carlini et al. (2019, section 4.3), which is never
    above the accuracy under any single attack.  Only clean-correct examples are attacked.

    ``cascade=True`` runs each attack only on the examples that every earlier attack left
    correct (as AutoAttack does): the robust accuracy is the same, the cost lower, and
    ``per_attack[name]`` becomes the accuracy after that attack *and all before it*.

    The attacks draw their randomness (random starts, SPSA's directions, a random model's
    draws) from torch's generators seeded with ``seed``, and the caller's generators are
    restored afterwards: the result is a function of the model, the attacks, the images and
    the seed alone.  It is therefore kept in the results store
    (:mod:`coursepkg.evaluate.store`) and read back by any later call that asks the same
    question -- the same chapter run again, or chapter 7's table (the attacks are keyed by
    what they are, in order, not by their names: the result comes back under the caller's
    names).  ``seed=None`` draws from the caller's generators instead, and nothing is stored.
    """
    _common.check_inputs(x, y, eps=kwargs.get("eps"))
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    named = _as_named_attacks(attacks)
    _check_keywords(named, kwargs)
    if len(x) == 0:
        raise ValueError("x is empty: robust accuracy of no examples is undefined")
    y = y.to(x.device)
    key, started = None, time.perf_counter()
    if seed is not None:
        _common.check_seed(seed)
        key = store.key_for("robust_accuracy", model, list(named.values()), x, y, sorted(kwargs.items()),
                            cascade, batch_size, seed, x.device.type,
                            _model_device(model, x.device).type)
        stored = _robust_from_payload(store.lookup(key), x, list(named))
        if stored is not None:
            store.record("robust_accuracy", named, len(x), time.perf_counter() - started, True)
            return stored
    with (seeded(seed) if seed is not None else contextlib.nullcontext()):
        result = _robust_accuracy(model, x, y, named, batch_size, progress, cascade, kwargs)
    store.record("robust_accuracy", named, len(x), time.perf_counter() - started, False)
    store.save(key, _robust_payload(result, x, list(named)))
    return result


def adversarial_examples(attack: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         seed: int | None = 0, **kwargs) -> torch.Tensor:
    """``attack(model, x, y, **kwargs)``: adversarial examples crafted once and kept.

    For the slow attacks a chapter runs on their own (C&W, JSMA, DeepFool): the examples
    are drawn from generators seeded with ``seed`` (the caller's are restored) and kept in
    the results store under the model, the attack, its keywords, the images and the seed,
    so a second run of the chapter reads them back.  ``seed=None``: the caller's
    generators, nothing stored.
    """
    _common.check_inputs(x, y, eps=kwargs.get("eps"))
    if not callable(attack):
        raise TypeError("attack must be callable, e.g. coursepkg.attacks.cw_l2")
    key, started = None, time.perf_counter()
    if seed is not None:
        _common.check_seed(seed)
        key = store.key_for("adversarial_examples", model, attack, x, y, sorted(kwargs.items()), seed,
                            x.device.type, _model_device(model, x.device).type)
        payload = store.lookup(key)
        if payload is not None and tuple(payload.get("x_adv", torch.empty(0)).shape) == tuple(x.shape):
            store.record("adversarial_examples", [attack_name(attack)], len(x),
                         time.perf_counter() - started, True)
            return payload["x_adv"].to(x)
    with (seeded(seed) if seed is not None else contextlib.nullcontext()):
        x_adv = attack(model, x, y, **kwargs)
    store.record("adversarial_examples", [attack_name(attack)], len(x), time.perf_counter() - started,
                 False)
    store.save(key, {"x_adv": x_adv.detach().cpu()})
    return x_adv


def _robust_payload(result: RobustResult, x: torch.Tensor, names: list[str]) -> dict:
    """What the store keeps of a :class:`RobustResult`: its masks, and the examples that fooled."""
    fooled = torch.tensor([names.index(f) if f is not None else -1 for f in result.fooled_by],
                          dtype=torch.long)
    rows = (fooled >= 0).nonzero().flatten()
    return {"n": len(x), "names": names, "clean": result.clean_mask.cpu(),
            "correct": result.correct.cpu(),
            "per_attack": torch.stack([result.per_attack_mask[k].cpu() for k in names]),
            "fooled_by": fooled, "adv_rows": result.x_adv[rows.to(x.device)].detach().cpu()}


def _robust_from_payload(payload: dict | None, x: torch.Tensor, names: list[str]) -> RobustResult | None:
    """A :class:`RobustResult` rebuilt from a stored payload (None if it does not fit ``x``)."""
    if payload is None:
        return None
    try:
        fooled = payload["fooled_by"]
        rows = (fooled >= 0).nonzero().flatten()
        if (payload["n"] != len(x) or len(payload["names"]) != len(names) or len(fooled) != len(x)
                or payload["adv_rows"].shape[1:] != x.shape[1:] or len(payload["adv_rows"]) != len(rows)):
            return None
        x_adv = x.detach().clone()
        x_adv[rows.to(x.device)] = payload["adv_rows"].to(x)
        clean, correct = payload["clean"].to(x.device), payload["correct"].to(x.device)
        masks = {k: m.to(x.device) for k, m in zip(names, payload["per_attack"])}
    except (KeyError, TypeError, AttributeError, IndexError, RuntimeError):
        return None
    return RobustResult(
        clean_accuracy=float(clean.float().mean()), robust_accuracy=float(correct.float().mean()),
        per_attack={k: float(m.float().mean()) for k, m in masks.items()}, correct=correct,
        x_adv=x_adv, fooled_by=[names[i] if i >= 0 else None for i in fooled.tolist()],
        clean_mask=clean, per_attack_mask=masks, from_store=True)


def _robust_accuracy(model, x, y, named, batch_size, progress, cascade, kwargs) -> RobustResult:
    """The engine of :func:`robust_accuracy` (arguments checked, generators already seeded)."""
    clean_correct = predictions(model, x, batch_size=batch_size) == y
    correct = clean_correct.clone()
    per_attack_correct = {}
    x_adv = x.detach().clone()
    fooled_by: list[str | None] = [None] * len(x)
    bar = _progress(len(named) * ((len(x) + batch_size - 1) // batch_size), "robust accuracy", progress)
    for name, attack in named.items():
        accepted = _accepted_kwargs(attack, kwargs, name)
        survives = clean_correct.clone()
        for first in range(0, len(x), batch_size):
            idx = torch.arange(first, min(first + batch_size, len(x)), device=x.device)
            idx = idx[(correct if cascade else clean_correct)[idx]]
            if len(idx):
                adv = attack(model, x[idx], y[idx], **accepted).to(x)
                still = predictions(model, adv, batch_size=batch_size) == y[idx]
                survives[idx] = still
                newly = correct[idx] & ~still
                x_adv[idx[newly]] = adv[newly]
                for i in idx[newly].tolist():
                    fooled_by[i] = name
                correct[idx] &= still
            if bar is not None:
                bar.update(1)
        per_attack_correct[name] = correct.clone() if cascade else survives
    if bar is not None:
        bar.close()
    return RobustResult(
        clean_accuracy=float(clean_correct.float().mean()),
        robust_accuracy=float(correct.float().mean()),
        per_attack={k: float(v.float().mean()) for k, v in per_attack_correct.items()},
        correct=correct, x_adv=x_adv, fooled_by=fooled_by,
        clean_mask=clean_correct, per_attack_mask=per_attack_correct,
    )


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, mininterval=1.0)


# --------------------------------------------------------------------------------------
# Sizes and success of perturbations
# --------------------------------------------------------------------------------------
def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor, *, tol: float = 1e-6) -> dict[str, torch.Tensor]:
    """Per example, the L0 (pixels changed by more than ``tol``), L2 and L∞ norms of ``x_adv - x``."""
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    delta = (x_adv.to(x) - x).flatten(1)
    return {"l0": (delta.abs() > tol).sum(1), "l2": delta.norm(dim=1), "linf": delta.abs().amax(1)}


def attack_success_rate(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, *,
                        target: torch.Tensor | None = None, batch_size: int = 500) -> float:
    """Among the examples ``model`` classifies correctly on ``x``, the fraction it gets wrong on
    ``x_adv`` (labelled ``target`` when a target is given)."""
    _common.check_inputs(x, y, target=target)
    _common.check_inputs(x_adv, y)
    y = y.to(x.device)
    clean = predictions(model, x, batch_size=batch_size) == y
    if not bool(clean.any()):
        return 0.0
    pred = predictions(model, x_adv, batch_size=batch_size).to(x.device)
    hit = pred != y if target is None else pred == target.to(x.device)
    return float(hit[clean].float().mean())


# --------------------------------------------------------------------------------------
# Accuracy against the budget
# --------------------------------------------------------------------------------------
@dataclass
class AccuracyCurve:
    """Accuracy under one attack at several budgets."""

    attack: str
    eps: list[float]
    accuracy: list[float]

    def as_dict(self) -> dict:
        return {"attack": self.attack, "eps": list(self.eps), "accuracy": list(self.accuracy)}

    def plot(self, ax=None, **style):
        """Draw the curve on ``ax`` (a new figure when None); returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(self.eps, self.accuracy, marker="o", label=self.attack, **style)
        ax.set_xlabel("ε")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        return ax


def accuracy_vs_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable,
                    eps_values: Sequence[float], *, batch_size: int = 500, progress: bool = False,
                    **kwargs) -> AccuracyCurve:
    """Accuracy under ``attack`` at every budget in ``eps_values`` (eps = 0 is the clean accuracy)."""
    eps_values = [_common.check_eps(e) for e in eps_values]
    if not eps_values:
        raise ValueError("eps_values is empty: give at least one budget")
    accs = []
    for eps in eps_values:
        if eps == 0:
            accs.append(accuracy(model, x, y, batch_size=batch_size))
        else:
            accs.append(robust_accuracy(model, x, y, attack, batch_size=batch_size, eps=eps,
                                        progress=progress, **kwargs).robust_accuracy)
    return AccuracyCurve(attack_name(attack), eps_values, accs)


# --------------------------------------------------------------------------------------
# The gradient-masking checklist
# --------------------------------------------------------------------------------------
@dataclass
class SanityCheck:
    """One warning sign of gradient masking: its name, whether the model passed, and the numbers."""

    name: str
    passed: bool
    detail: str


@dataclass
class SanityReport:
    """The gradient-masking checks of one model (Athalye et al. 2018; Carlini et al. 2019)."""

    checks: list[SanityCheck]
    accuracies: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[SanityCheck]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict:
        return {"passed": self.passed, "accuracies": dict(self.accuracies),
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks]}

    def as_table(self) -> str:
        """The checks as a Markdown table."""
        rows = ["| check | passed | detail |", "|---|---|---|"]
        rows += [f"| {c.name} | {'yes' if c.passed else '**NO**'} | {c.detail} |" for c in self.checks]
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.as_table()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td>"
            f"<td style='color:{'green' if c.passed else 'crimson'}'>{'✔' if c.passed else '✘'}</td>"
            f"<td>{html.escape(c.detail)}</td></tr>" for c in self.checks)
        return ("<table><thead><tr><th>check</th><th>passed</th><th>detail</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                  steps: int | None = None, restarts: int = 1, transfer_from: nn.Module | None = None,
                  more_effort: int = 5, targeted_all: bool = True, gradient_free: bool = False,
                  tol: float = 0.02, near_zero: float = 0.05, batch_size: int = 500) -> SanityReport:
    """Run the warning signs of gradient masking on ``model`` at budget ``eps`` (L∞).

    The one checklist of the course: the automatable checks of Athalye et al. (2018,
    section 3.1) and Carlini et al. (2019, section 5.2 and appendix).  Each compares two
    evaluations that must be ordered one way for a model whose gradients are informative;
    a check fails when the order is broken by more than ``tol``:

    1. iterative PGD is at least as strong as single-step FGSM;
    2. a larger budget (``2 eps`` and ``4 eps``) does not raise accuracy, and lowers it
       unless it is already near zero;
    3. an unbounded attack (PGD at eps = 1, where any image is reachable) drives accuracy
       below ``near_zero``;
    4. white-box PGD beats random ±eps noise *strictly*, by at least ``tol`` (unless noise
       alone already brings accuracy near zero);
    5. more effort changes little: PGD with ``more_effort`` times the steps and twice the
       restarts lowers accuracy by at most ``tol``, or two images when ``x`` is so small
       that ``tol`` is less (else the evaluation had not converged);
    6. targeted attacks towards *every* class (``targeted_all``; targeted APGD-DLR over all
       other classes) are not much stronger than the untargeted attack (by ``tol``, or two
       images on a small ``x``) -- if they are, the untargeted attack was stuck;
    7. white-box PGD beats a transfer attack from ``transfer_from`` (when given);
    8. white-box PGD beats the gradient-free SPSA (``gradient_free=True``; slower).

    Passing every check does not prove robustness: it only removes the common ways an
    evaluation fools itself.  Each accuracy is in ``report.accuracies``.
    """
    from ..attacks import apgd_targeted, fgsm, pgd, spsa, transfer_attack
    from ..config import profile as get_profile

    eps = _common.check_eps(eps)
    _common.check_inputs(x, y, eps=eps)
    more_effort = _common.check_positive_int(more_effort, "more_effort")
    base_steps = get_profile().pgd_steps if steps is None else _common.check_positive_int(steps, "steps")

    def pgd_at(budget, n_steps=base_steps, n_restarts=restarts):
        return functools.partial(pgd, eps=budget, steps=n_steps, restarts=n_restarts)

    def acc(attack) -> float:
        return robust_accuracy(model, x, y, attack, batch_size=batch_size).robust_accuracy

    def noise(model_, xb, yb):
        return (xb + eps * torch.randint_like(xb, 0, 2).mul_(2).sub_(1)).clamp_(0.0, 1.0)

    accs = {"clean": accuracy(model, x, y, batch_size=batch_size),
            "fgsm": acc(functools.partial(fgsm, eps=eps)),
            "pgd": acc(pgd_at(eps)),
            "pgd_2eps": acc(pgd_at(min(2 * eps, 1.0))),
            "pgd_4eps": acc(pgd_at(min(4 * eps, 1.0))),
            "pgd_unbounded": acc(pgd_at(1.0)),
            "noise": acc(noise)}
    if more_effort > 1:
        accs["pgd_more_effort"] = acc(pgd_at(eps, base_steps * more_effort, 2 * restarts))
    checks = [
        SanityCheck("iterative beats single-step", accs["pgd"] <= accs["fgsm"] + tol,
                    f"PGD {accs['pgd']:.3f} vs FGSM {accs['fgsm']:.3f}"),
        SanityCheck("larger eps lowers accuracy",
                    accs["pgd_4eps"] <= accs["pgd_2eps"] + tol and accs["pgd_2eps"] <= accs["pgd"] + tol
                    and (accs["pgd_4eps"] < accs["pgd"] or accs["pgd"] <= near_zero),
                    f"PGD at eps {accs['pgd']:.3f}, 2 eps {accs['pgd_2eps']:.3f}, 4 eps {accs['pgd_4eps']:.3f}"),
        SanityCheck("unbounded attack reaches near-zero accuracy", accs["pgd_unbounded"] <= near_zero,
                    f"PGD at eps = 1: {accs['pgd_unbounded']:.3f} (want <= {near_zero})"),
        SanityCheck("white-box beats random noise",
                    accs["pgd"] <= accs["noise"] - tol or accs["noise"] <= near_zero,
                    f"PGD {accs['pgd']:.3f} vs random ±eps noise {accs['noise']:.3f} "
                    f"(want PGD lower by >= {tol})"),
    ]
    if more_effort > 1:  # a comparison of two attacks on the same images: resolution 1/n
        effort_tol = max(tol, 2.0 / len(x))
        checks.append(SanityCheck(
            "more steps and restarts change little", accs["pgd_more_effort"] >= accs["pgd"] - effort_tol,
            f"PGD {accs['pgd']:.3f} vs {more_effort}x steps, 2x restarts {accs['pgd_more_effort']:.3f}"))
    if targeted_all:
        with torch.no_grad():
            classes = int(model(x[:1].to(_model_device(model, x.device))).shape[1])
        accs["targeted_all"] = acc(functools.partial(  # targeted DLR needs four classes
            apgd_targeted, eps=eps, top_k=classes - 1, steps=base_steps,
            loss="dlr" if classes >= 4 else "ce"))
        checks.append(SanityCheck(
            "targeted on every class no stronger than untargeted",
            accs["targeted_all"] >= min(accs["pgd"], accs.get("pgd_more_effort", 1.0))
            - max(tol, 2.0 / len(x)),
            f"PGD {accs['pgd']:.3f} vs targeted APGD over all classes {accs['targeted_all']:.3f}"))
    if transfer_from is not None:
        def transfer(target_model, xb, yb):  # crafted on transfer_from, evaluated on model
            return transfer_attack(transfer_from, xb, yb, attack=pgd_at(eps))

        accs["transfer"] = acc(transfer)
        checks.append(SanityCheck("white-box beats transfer", accs["pgd"] <= accs["transfer"] + tol,
                                  f"PGD {accs['pgd']:.3f} vs transfer {accs['transfer']:.3f}"))
    if gradient_free:
        accs["spsa"] = acc(functools.partial(spsa, eps=eps))
        checks.append(SanityCheck("white-box beats gradient-free", accs["pgd"] <= accs["spsa"] + tol,
                                  f"PGD {accs['pgd']:.3f} vs SPSA {accs['spsa']:.3f}"))
    return SanityReport(checks, accs)
