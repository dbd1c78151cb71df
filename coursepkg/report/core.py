"""The evaluation behind ``python -m coursepkg.report``: :func:`~coursepkg.report.evaluate_model` and its result.

:func:`~coursepkg.report.evaluate_model` runs on a user's own model what the course runs on every defence,
and keeps the per-image answers, so the figures it prints can be checked afterwards:

1. the **clean accuracy** with its 95% Wilson interval (:class:`~coursepkg.evaluate.Interval`);
2. the **gradient-masking flags** of :func:`~coursepkg.evaluate.gradient_masking_flags`
   (Athalye et al. 2018, section 3: zero, non-finite or disagreeing input gradients);
3. the course's **strongest evaluation**, :func:`~coursepkg.evaluate.strongest` (APGD-CE,
   APGD-DLR-T, PGD on two losses; the per-example worst case of Carlini et al. 2019,
   section 4.3).  When a flag fires, SPSA (Uesato et al. 2018) and a **transfer attack**
   crafted on the course's undefended baseline (Papernot et al. 2016) join the worst case,
   because an attack that needs the model's gradient is blind when that gradient is masked;
   the defence's own adaptive attacks (``extra``: BPDA, an attack through a detector) join last;
4. **accuracy against ε**: APGD-CE at a few multiples of ε (a larger budget must never help);
5. the **checklist** :func:`~coursepkg.evaluate.sanity_checks` (Athalye et al. 2018,
   section 3.1; Carlini et al. 2019, section 5), every check with one sentence on what its
   failure means;
6. for a model that is random at test time (``random=True``): every answer judged over the
   profile's ``random_eval_draws`` draws under the **worst of k** (the headline) and the
   majority vote (:func:`~coursepkg.evaluate.randomised.randomised_robust_accuracy`), and every attack
   of the strongest evaluation run through :class:`~coursepkg.adaptive.EOT` with the
   profile's ``eot_samples`` draws (Athalye et al. 2018, section 4.2), as chapter 5 does;
7. a **paired comparison** with the course's undefended baseline (the zoo's ``standard``
   recipe) on the same images: the images the model keeps that the baseline loses, and the
   reverse, with the exact McNemar (sign) test on those discordant images
   (:func:`~coursepkg.evaluate.paired_test`).

The verdict uses the course's words: a figure that survived was *not lowered by the
attacks run* -- an upper bound a stronger attack can only lower -- and, against the
baseline, the model is *above undefended* only when the one-sided sign test says so at the
5% level, else *no better than undefended*.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import platform
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import nn

from .. import __version__
from ..adaptive import EOT, attack_via
from ..attacks import _common, apgd, pgd, spsa, transfer_attack
from ..config import Profile
from ..config import profile as get_profile
from ..config import seeded
from ..evaluate import (Interval, accuracy_vs_eps, gradient_masking_flags, paired_test,
                        randomised_robust_accuracy, sanity_checks, strongest, strongest_attacks)
from ..evaluate.core import _model_device

NORMS = ("linf", "l2")
#: what the baseline comparison and the verdict call the course's undefended model
BASELINE_NAME = "undefended baseline"
TRANSFER_NAME = "transfer from the undefended baseline"
#: the significance level of the paired sign test that may call a model "above undefended"
ALPHA = 0.05

#: one sentence per check of :func:`~coursepkg.evaluate.sanity_checks`: what a failure means
CHECK_MEANINGS = {
    "iterative beats single-step":
        "If one FGSM step does better than many PGD steps, the iterative attack is being misled, "
        "a sign of masked gradients.",
    "larger eps lowers accuracy":
        "A larger budget can never help the model, so accuracy that does not fall as eps grows "
        "means the attack is not finding what is there.",
    "unbounded attack reaches near-zero accuracy":
        "At eps = 1 every image is reachable, so an attack that still fails there is blind, "
        "not the model strong.",
    "white-box beats random noise":
        "An attack that follows the model's gradient must beat random noise of the same size; "
        "if it does not, the gradient carries no information.",
    "more steps and restarts change little":
        "If more steps and restarts lower accuracy further, the evaluation had not converged "
        "and its figure is too high.",
    "targeted on every class no stronger than untargeted":
        "If aiming at every wrong class in turn finds many more adversarial examples, the "
        "untargeted attack was stuck.",
    "white-box beats transfer":
        "Examples crafted on another model should not beat an attack on this model itself; if "
        "they do, this model's gradients hide its weakness.",
    "white-box beats gradient-free":
        "An attack that sees only the model's outputs should not beat one that sees its "
        "gradient; if it does, the gradients are masked.",
}

#: the Profile fields the report reads (printed in the report, so a run can be reproduced)
BUDGET_FIELDS = ("apgd_steps", "apgd_restarts", "apgd_targets", "pgd_steps", "pgd_restarts",
                 "spsa_iters", "spsa_samples", "expensive_eval_subset")
RANDOM_BUDGET_FIELDS = ("random_eval_draws", "eot_samples")


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------
@dataclass
class ModelReport:
    """Everything :func:`~coursepkg.report.evaluate_model` measured on one model; ``as_dict()`` for JSON.

    ``worst_case`` is the accuracy under the per-example worst case over every attack run
    (for a random model: the worst of k draws), an upper bound on the true figure.
    ``correct`` holds the per-image answer behind it, ``fooled_by`` how many images each
    attack broke first (the attacks run as a cascade, each on the survivors of the earlier ones).
    """

    name: str
    dataset: str | None
    eps: float
    norm: str
    n: int
    random: bool
    clean: Interval
    worst_case: Interval
    fooled_by: dict
    attacks: list
    curve: dict
    checks: list
    checklist_n: int
    flags: dict
    masked: bool
    baseline: dict | None
    randomised: dict | None
    verdict: str
    findings: list
    budgets: dict
    versions: dict
    notes: list = field(default_factory=list)
    correct: torch.Tensor | None = field(default=None, repr=False)  #: per image: kept under every attack

    @property
    def checklist_passed(self) -> bool:
        """Whether every check of the checklist passed (True when none was run)."""
        return all(c["passed"] for c in self.checks)

    @property
    def failed_checks(self) -> list:
        """The names of the checks that failed."""
        return [c["name"] for c in self.checks if not c["passed"]]

    def as_dict(self) -> dict:
        """The report as plain JSON-ready values (intervals as value, lo, hi, n)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "correct":
                continue
            out[f.name] = _plain(getattr(self, f.name))
        out["checklist_passed"] = self.checklist_passed
        out["correct"] = None if self.correct is None else [bool(v) for v in self.correct.tolist()]
        return out


def _plain(value):
    if isinstance(value, Interval):
        return {"value": value.value, "lo": value.lo, "hi": value.hi, "n": value.n}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if torch.is_tensor(value):
        return value.tolist()
    return value


# --------------------------------------------------------------------------------------
# Checking what the user hands in
# --------------------------------------------------------------------------------------
def check_eps(eps, norm: str) -> float:
    """``eps`` as a float, or a one-line error: it must be above 0, and at most 1 for L∞."""
    eps = _common.check_eps(eps)
    if eps == 0:
        raise ValueError("eps must be above 0: a report at eps = 0 is the clean accuracy; "
                         "give the budget of your threat model, e.g. --eps 0.1")
    if norm == "linf" and eps > 1:
        raise ValueError(f"eps must be at most 1 for L∞ (images lie in [0, 1]), got {eps}; "
                         "give eps in pixel units, e.g. 0.1, or 8/255 = 0.0314 for CIFAR-10")
    return eps


def check_model_and_data(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         shape: tuple | None = None, num_classes: int | None = None) -> int:
    """The number of logits ``model`` returns, after one-line checks of model, images and labels.

    ``x`` must be float images in [0, 1] of shape N x C x H x W (C x H x W = ``shape`` when
    given), ``y`` integer labels; the model must return one finite row of at least two
    logits per image, and every label must be one of its classes.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"the model must be a torch.nn.Module, got {type(model).__name__}; "
                        "a factory must return the module, not a function or a state_dict")
    _common.check_inputs(x, y)
    if x.dim() != 4:
        raise ValueError(f"images must have shape N x C x H x W, got {tuple(x.shape)}; "
                         "add the channel axis with x.unsqueeze(1) for grey images")
    if len(x) == 0:
        raise ValueError("no images to evaluate: give at least one image (and its label)")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"images of this dataset have shape C x H x W = {tuple(shape)}, got "
                         f"{tuple(x.shape[1:])}; resize them or choose the matching --dataset")
    probe = x[:2].to(_model_device(model, x.device))
    with torch.no_grad(), _common.attack_mode(model):
        try:
            out = model(probe)
        except Exception as err:  # the model's own error, on the first two images
            raise ValueError(f"the model failed on images of shape {tuple(probe.shape)} "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                             "it must map N x C x H x W images in [0, 1] to N x classes logits") from err
    if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != len(probe) or out.shape[1] < 2:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"the model must return one row of logits per image (shape {len(probe)} x classes "
                         f"for {len(probe)} images), got {got}; return the logits, not labels or a dict")
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the model returns NaN or infinite logits on clean images; fix the model "
                         "(normalise inside it, clamp its scale) before evaluating it")
    classes = int(out.shape[1])
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise ValueError(f"labels must lie in 0 .. {classes - 1} (the model returns {classes} logits), "
                         f"got labels in {int(y.min())} .. {int(y.max())}")
    if num_classes is not None and classes < num_classes:
        raise ValueError(f"the model returns {classes} logits but the dataset has {num_classes} classes; "
                         "give the model of this dataset")
    return classes


def _changes_between_passes(model: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad(), _common.attack_mode(model):
        xb = x[:64].to(_model_device(model, x.device))
        return not torch.equal(model(xb).argmax(1), model(xb).argmax(1))


# --------------------------------------------------------------------------------------
# The paired comparison with the baseline
# --------------------------------------------------------------------------------------
def _paired(mine: torch.Tensor, theirs: torch.Tensor) -> dict:
    """The exact McNemar (sign) test of the model's per-image mask against the baseline's.

    ``model_only`` counts the images kept by the model and lost by the baseline,
    ``baseline_only`` the reverse; only these discordant images carry information.  The
    p-values are those of :func:`~coursepkg.evaluate.paired_test` (A the baseline, B the
    model): one-sided, that the model keeps more (``"higher"``), and two-sided; with no
    discordant image both are 1.
    """
    theirs, mine = theirs.bool().cpu(), mine.bool().cpu()
    higher = paired_test(theirs, mine, alternative="higher")
    two_sided = paired_test(theirs, mine, alternative="two-sided")
    both = int((mine & theirs).sum())
    return {"model_only": higher.only_b, "baseline_only": higher.only_a, "both": both,
            "neither": len(mine) - higher.discordant - both,
            "p_greater": higher.p_value, "p_two_sided": two_sided.p_value}


def course_baseline(dataset: str | None, profile: Profile, *, train: bool = False,
                    device: torch.device | None = None) -> nn.Module | None:
    """The course's undefended model for ``dataset`` (zoo recipe ``standard``), or None.

    None when ``dataset`` is not one of the course's, or when its checkpoint is not in the
    cache and ``train`` is False (training it takes minutes on a CPU).
    """
    if dataset is None:
        return None
    from .. import zoo

    if not train and not zoo.cached("standard", dataset, profile):
        return None
    return zoo.get("standard", dataset, profile, device=device)


# --------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------
def _stage(desc: str, total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step")


def _curve_eps(eps: float, norm: str) -> list[float]:
    values = [0.0] + [m * eps for m in (0.25, 0.5, 1.0, 2.0)]
    if norm == "linf":
        values = [min(v, 1.0) for v in values]
    return sorted(set(values))


def _extra_attacks(base: nn.Module | None, masked: bool, norm: str, p: Profile) -> dict:
    """The transfer attack from the baseline, added to the worst case when a masking flag fires."""
    if not masked or base is None:
        return {}
    crafted = functools.partial(pgd, norm=norm, steps=p.pgd_steps, restarts=p.pgd_restarts)

    def transfer(target, xb, yb, eps):  # crafted on the baseline, judged by the target
        return transfer_attack(base, xb, yb, attack=crafted, eps=eps)

    return {TRANSFER_NAME: transfer}


def _worst_case(model, x, y, eps, norm, masked, extra, p, batch_size, progress) -> dict:
    """Step 3 for a deterministic model: :func:`~coursepkg.evaluate.strongest` (+ SPSA, transfer)."""
    result = strongest(model, x, y, eps=eps, norm=norm, extra=extra or None, spsa=masked and norm == "linf",
                       profile=p, batch_size=batch_size, progress=progress)
    return {"clean": result.clean_interval, "correct": result.correct.cpu(),
            "fooled": Counter(a for a in result.fooled_by if a is not None),
            "attacks": list(result.per_attack), "randomised": None}


def _randomised_worst_case(model, x, y, eps, norm, masked, extra, p, batch_size, progress) -> dict:
    """Step 3 for a random model, as chapter 5 runs it: the strongest attacks through
    ``EOT(model, eot_samples)`` and on one draw, SPSA when a flag fires, every answer judged
    over ``random_eval_draws`` draws (headline: the worst of k)."""
    k, view = p.random_eval_draws, EOT(model, p.eot_samples)
    attacks = {f"EOT {n}": attack_via(view, a) for n, a in strongest_attacks(norm=norm, profile=p).items()}
    attacks.update({f"one-draw {n}": a for n, a in strongest_attacks(norm=norm, profile=p).items()})
    if masked and norm == "linf":
        attacks["SPSA"] = functools.partial(spsa, iters=p.spsa_iters, samples=p.spsa_samples)
    attacks.update(extra)
    rr = randomised_robust_accuracy(model, x, y, attacks, k=k, eps=eps, batch_size=batch_size,
                                    progress=progress)
    fooled, still = Counter(), rr.clean.correct("worst").cpu()
    for name, judged in rr.per_attack.items():  # the cascade, read under the worst of k
        now = still & judged.correct("worst").cpu()
        if int((still & ~now).sum()):
            fooled[name] = int((still & ~now).sum())
        still = now
    randomised = {"k": k, "eot_samples": p.eot_samples,
                  "clean_worst": rr.clean.interval("worst"), "clean_majority": rr.clean.interval("majority"),
                  "attacked_worst": rr.interval("worst"), "attacked_majority": rr.interval("majority")}
    return {"clean": rr.clean.interval("worst"), "correct": rr.correct("worst").cpu(), "fooled": fooled,
            "attacks": list(rr.per_attack), "randomised": randomised}


def _curve(model, x, y, eps, norm, random, p, batch_size) -> dict:
    """Step 4: APGD-CE at 0, eps/4, eps/2, eps and 2 eps (through EOT, worst of k, for a random model)."""
    eps_values = _curve_eps(eps, norm)
    apgd_ce = functools.partial(apgd, loss="ce", norm=norm, steps=p.apgd_steps, restarts=p.apgd_restarts)
    if not random:
        curve = accuracy_vs_eps(model, x, y, apgd_ce, eps_values, batch_size=batch_size).as_dict()
        return {**curve, "attack": "APGD-CE"}
    k, view = p.random_eval_draws, EOT(model, p.eot_samples)
    accs = [randomised_robust_accuracy(model, x, y, attack_via(view, apgd_ce, eps=e), k=k,
                                       batch_size=batch_size).robust("worst") for e in eps_values]
    return {"attack": f"EOT APGD-CE, worst of {k}", "eps": eps_values, "accuracy": accs}


def _checklist(model, x, y, eps, random, masked, base, p, batch_size) -> list[dict]:
    """Step 5: :func:`~coursepkg.evaluate.sanity_checks` on ``x`` (the EOT view of a random model)."""
    target = EOT(model, p.eot_samples) if random else model
    report = sanity_checks(target, x, y, eps=eps, steps=p.pgd_steps, transfer_from=base,
                           gradient_free=masked, batch_size=batch_size)
    return [{"name": c.name, "passed": bool(c.passed), "detail": c.detail,
             "meaning": CHECK_MEANINGS.get(c.name, "")} for c in report.checks]


def _baseline_comparison(base, x, y, eps, norm, correct, p, batch_size) -> dict:
    """Step 6: the baseline under the strongest evaluation, and the paired test on the same images."""
    theirs = strongest(base, x, y, eps=eps, norm=norm, profile=p, batch_size=batch_size)
    paired = {"name": BASELINE_NAME, "clean": theirs.clean_interval, "worst_case": theirs.robust_interval,
              **_paired(correct, theirs.correct)}
    paired["above"] = paired["p_greater"] < ALPHA
    return paired


def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
                   random: bool = False, profile: str | Profile | None = None, progress: bool = True,
                   dataset: str | None = None, baseline: nn.Module | bool | None = None,
                   extra: Mapping[str, Callable] | None = None, checklist_n: int | None = None,
                   name: str = "model", batch_size: int = 500) -> ModelReport:
    """Evaluate ``model`` on images ``x`` in [0, 1], labels ``y``, at budget ``eps``: a :class:`~coursepkg.report.ModelReport`.

    Runs, in order, the steps of the module's docstring with the budgets of ``profile``.
    ``dataset`` (a course dataset name) checks the images' shape and enables the baseline:
    ``baseline=None`` uses the zoo's ``standard`` model of that dataset when it is cached,
    ``True`` trains it when it is not, ``False`` skips the comparison, and a module is used
    as the baseline itself.  ``random=True`` judges every answer over k draws and attacks
    through EOT.  ``extra`` (a dict ``name -> attack``, e.g. ``{"BPDA": attack_via(view, pgd)}``)
    adds the defence's own adaptive attacks to the worst case, after the course's, as
    ``strongest(..., extra=...)`` does.  The checklist runs on the first ``checklist_n``
    images (default: the profile's ``expensive_eval_subset``).  The course's evaluations draw their randomness from seed 0
    (:func:`~coursepkg.evaluate.robust_accuracy`), and the rest of the report runs inside
    ``coursepkg.config.seeded(0)``, so two runs on the same model and images give the same
    per-image answers and the caller's random stream is left as it was.
    Bad input (a model that does not return one logit row per image, images outside [0, 1]
    or not N x C x H x W, labels out of range, eps out of range) is a one-line ``ValueError``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    eps = check_eps(eps, norm)
    p = get_profile(profile)
    info = None
    if dataset is not None:
        from ..data import dataset_info

        info = dataset_info(dataset)
        dataset = info.name
    classes = check_model_and_data(model, x, y, shape=info.shape if info else None,
                                   num_classes=info.num_classes if info else None)
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    dev = _model_device(model, x.device)
    x, y = x.to(dev), y.to(dev)
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError("extra must be a dict name -> attack (or None)")
    reserved = set(extra or {}) & {TRANSFER_NAME, "SPSA"}
    if reserved:
        raise ValueError(f"extra attack name(s) {sorted(reserved)} are the report's own; rename them")
    m = p.expensive_eval_subset if checklist_n is None else _common.check_positive_int(checklist_n, "checklist_n")
    if isinstance(baseline, nn.Module):
        base = baseline
        check_model_and_data(base, x, y)
    else:
        base = None if baseline is False else course_baseline(dataset, p, train=baseline is True, device=dev)
    with seeded(0):
        return _evaluate(model, x, y, eps, norm, random, p, progress, dataset, base, dict(extra or {}),
                         min(len(x), m), name, batch_size, classes, dev)


def _evaluate(model, x, y, eps, norm, random, p, progress, dataset, base, own, m, name, batch_size,
              classes, dev) -> ModelReport:
    """The steps of :func:`~coursepkg.report.evaluate_model`, its arguments checked."""
    notes: list[str] = []
    if not random and _changes_between_passes(model, x):
        notes.append("The model's predictions change between two passes on the same images: it is random "
                     "at test time, so evaluate it with random=True (--random) to judge it over k draws.")
    bar = _stage("report", 5 + (base is not None), progress)

    def advance(what: str):
        if bar is not None:
            bar.set_postfix_str(what)
            bar.update(1)

    flags = gradient_masking_flags(model, x, y)  # 1-2: clean accuracy comes with step 3
    masked = bool(flags["masked"])
    advance("masking flags")
    extra = _extra_attacks(base, masked, norm, p)
    extra.update(own)
    step = _randomised_worst_case if random else _worst_case
    worst = step(model, x, y, eps, norm, masked, extra, p, batch_size, progress)
    worst_case = Interval.of(int(worst["correct"].sum()), len(x))
    advance("strongest evaluation")
    curve = _curve(model, x, y, eps, norm, random, p, batch_size)
    advance("accuracy against eps")
    checks = []
    if norm == "linf":
        checks = _checklist(model, x[:m], y[:m], eps, random, masked, base, p, batch_size)
        if random:
            notes.append(f"The checklist ran on EOT(model, {p.eot_samples}), the average of "
                         f"{p.eot_samples} draws that the adaptive attacks see.")
    else:
        notes.append("The checklist is written for L∞ and was not run for norm='l2'.")
    advance("checklist")
    paired = None
    if base is not None:
        paired = _baseline_comparison(base, x, y, eps, norm, worst["correct"], p, batch_size)
        advance("baseline")
    added = (["SPSA"] if masked and norm == "linf" else []) + ([TRANSFER_NAME] if TRANSFER_NAME in extra else [])
    verdict, findings = _verdict(worst_case, worst["clean"], eps, norm, len(x), masked, flags, added, checks,
                                 paired, worst["randomised"])
    advance("verdict")
    if bar is not None:
        bar.close()
    budgets = {"profile": p.name, **{f: getattr(p, f) for f in BUDGET_FIELDS}}
    if random:
        budgets.update({f: getattr(p, f) for f in RANDOM_BUDGET_FIELDS})
    versions = {"coursepkg": __version__, "torch": torch.__version__, "python": platform.python_version(),
                "device": str(dev), "seed": 0, "platform": sys.platform, "classes": classes}
    return ModelReport(name=name, dataset=dataset, eps=eps, norm=norm, n=len(x), random=random,
                       clean=worst["clean"], worst_case=worst_case, fooled_by=dict(worst["fooled"]),
                       attacks=worst["attacks"], curve=curve, checks=checks, checklist_n=m if checks else 0,
                       flags=dict(flags), masked=masked, baseline=paired, randomised=worst["randomised"],
                       verdict=verdict, findings=findings, budgets=budgets, versions=versions, notes=notes,
                       correct=worst["correct"])


def _images(k: int) -> str:
    return f"{k} image" if k == 1 else f"{k} images"


def _verdict(worst_case: Interval, clean: Interval, eps: float, norm: str, n: int, masked: bool, flags: dict,
             added: list, checks: list, paired: dict | None, randomised: dict | None) -> tuple[str, list]:
    """The one-sentence verdict and the findings behind it, in the course's words."""
    ball = f"{'L∞' if norm == 'linf' else 'L2'} ε = {eps:g}"
    rule = f" (every answer judged by the worst of {randomised['k']} draws)" if randomised else ""
    findings = [f"Accuracy under every attack run at {ball}: {worst_case} on {n} images{rule}, "
                f"against {clean} clean. This figure was not lowered by the attacks run; it is an "
                "upper bound that a stronger attack can only lower."]
    if masked:
        findings.append(
            f"Gradient-masking flags fired (zero gradients on {flags['zero_share']:.0%} of the images, "
            f"non-finite on {flags['nonfinite_share']:.0%}, mean cosine of two passes "
            f"{flags['mean_cosine']:.3f}): "
            + (" and ".join(added) + " joined the worst case." if added else
               "no gradient-free attack could join the worst case (SPSA is L∞ only and no baseline "
               "was available for a transfer attack), so read the figure with suspicion."))
    failed = [c["name"] for c in checks if not c["passed"]]
    if failed:
        findings.append("The checklist failed: " + "; ".join(failed) + ". Until each failure is explained, "
                        "the figure above says more about the attacks than about the model.")
    elif checks:
        findings.append("Every check of the checklist passed; that removes the common ways an evaluation "
                        "fools itself and proves nothing more.")
    if paired is not None:
        word = "above undefended" if paired["above"] else "no better than undefended"
        findings.append(
            f"Against the course's undefended baseline on the same images ({paired['worst_case']} under "
            f"the strongest evaluation): the model keeps {_images(paired['model_only'])} the baseline loses "
            f"and loses {_images(paired['baseline_only'])} it keeps; "
            f"sign test one-sided p = {paired['p_greater']:.3g} "
            f"(two-sided {paired['p_two_sided']:.3g}): {word}.")
    head = f"Accuracy {worst_case} under the attacks run at {ball}: not lowered by the attacks run"
    if paired is not None:
        head += ", " + ("above undefended" if paired["above"] else "no better than undefended")
    if failed:
        head += f"; the checklist failed ({len(failed)} of {len(checks)} checks)"
    elif masked:
        head += "; gradients look masked"
    return head + ".", findings
