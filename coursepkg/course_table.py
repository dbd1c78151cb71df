"""The course's table (chapter 7): every defence of chapters 2-6, evaluated one way.

``DEFENCES`` is the registry: for each defence, the chapter that builds it, how the
defended model is made from the zoo's models (exactly as that chapter makes it), the
evaluation of its paper (the *claimed* figure), and the chapter's own adaptive attacks
(BPDA, EOT, attacks in a purifier's output space, attacks through a detector, transfer
from a substitute, ...).  :func:`~coursepkg.course_table.evaluate_defence` measures, on the same images,

* **clean** accuracy;
* **claimed** -- accuracy under the attack of the defence's paper;
* **chapter** -- the chapter's adaptive figure: the per-example worst case over the
  chapter's attacks (for chapters 2 and 4, whose figure is
  :func:`~coursepkg.evaluate.strongest` with the chapter's attacks as ``extra``, it is
  that; for chapter 3's purifiers, the chapter's own attacks with the strongest attacks
  through the BPDA or EOT view);
* **strongest** -- :func:`~coursepkg.evaluate.strongest` on the defended model itself
  (for a random model the same attacks judged over k draws; for a detector the same
  attacks aimed at "fooled and undetected", :func:`~coursepkg.evaluate.detection.detection_attacks`);
* **adaptive** -- the per-example worst case over both: an image counts only if no attack
  of either set fooled it (Carlini et al. 2019, section 4.3);
* the **checklist** of :func:`~coursepkg.evaluate.sanity_checks` where its checks mean
  something (deterministic classifiers), and :func:`~coursepkg.evaluate.gradient_masking_flags`.

Every accuracy is an :class:`~coursepkg.evaluate.Interval` (95%, Wilson) and an upper bound
on the true robust accuracy: a stronger attack can only lower it.  Accuracy of a detector
joined to its classifier (:class:`~coursepkg.defences.detection.Detected`) counts an image
as correct when it is classified correctly and not flagged, clean and after every attack; a
random model's clean accuracy is the majority of k draws and its robust accuracy the worst
of k (:mod:`coursepkg.evaluate.randomised`).

Rows that read their chapter's results: every question a row asks that its chapter also
asks -- chapter 2's and 4's ``strongest(extra=...)``, chapter 5's two evaluations
(``coursepkg.recipes.randomness``), chapter 6's attacks through each detector
(``coursepkg.recipes.detection.chapter_attacks``) -- is built by the same package code on
the same images (``Defence.images``), so the results store returns the chapter's per-image
results instead of measuring again.

Chapter 3's purifiers are read back the same way (``coursepkg.recipes.purification``):
their "strongest" column is the strongest attacks through the view the chapter attacks them
by (BPDA, or EOT), run in the chapter's cascade on the images its own attacks left --
:func:`~coursepkg.evaluate.strongest` on the purified model itself would follow a zero or
random gradient, and its SPSA would cost thousands of purifications per image.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from . import attacks, evaluate, zoo
from .adaptive import attack_via
from .config import Profile
from .config import device as default_device
from .config import profile as get_profile
from .data import DatasetInfo, dataset_info, load_dataset, subset
from .evaluate import Interval

KINDS = ("model", "purifier", "randomised", "detector")

#: checks of :func:`~coursepkg.evaluate.sanity_checks` whose failure is a symptom of masked
#: gradients (the other two compare the effort of attacks: a failure there means the
#: evaluation had not converged, which the "adaptive" column already answers)
#: level of the paired tests behind the verdicts (exact McNemar tests, one-sided)
ALPHA = 0.05

MASKING_CHECKS = ("iterative beats single-step", "larger eps lowers accuracy",
                  "unbounded attack reaches near-zero accuracy", "white-box beats random noise",
                  "white-box beats transfer")


# --------------------------------------------------------------------------------------
# The setting: data, budgets and the zoo's models, loaded once
# --------------------------------------------------------------------------------------
class Setting:
    """The data, budget and zoo models every defence of the table is built from."""

    def __init__(self, dataset: str | DatasetInfo = "fashion-mnist", *,
                 profile: str | Profile | None = None, device: torch.device | str | None = None):
        self.info = dataset if isinstance(dataset, DatasetInfo) else dataset_info(dataset)
        self.profile = get_profile(profile)
        self.device = torch.device(device) if device is not None else default_device()
        self.eps = self.info.eps
        self._models: dict = {}
        self._memo: dict = {}

    def zoo(self, recipe: str, **hyperparameters) -> nn.Module:
        """``zoo.get(recipe, ...)`` in this setting, loaded once."""
        key = (recipe, tuple(sorted(hyperparameters.items())))
        if key not in self._models:
            self._models[key] = zoo.get(recipe, self.info.name, profile=self.profile,
                                        device=self.device, **hyperparameters)
        return self._models[key]

    @property
    def classifier(self) -> nn.Module:
        """Chapter 1's undefended baseline (the ``standard`` recipe)."""
        return self.zoo("standard")

    def images(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` of the course's evaluation images (every chapter's), on the device."""
        x, y = subset(*load_dataset(self.info.name, "test"), self.profile.eval_subset)
        n = len(x) if n is None else int(n)
        return x[:n].to(self.device), y[:n].to(self.device)

    def held_out(self) -> torch.Tensor:
        """Chapter 6's held-out clean images, which set every detector's threshold."""
        n = self.profile.detection_eval_subset
        x, _ = subset(*load_dataset(self.info.name, "test"), n + self.profile.detection_threshold_subset)
        return x[n:].to(self.device)

    def memo(self, key, make: Callable):
        """``make()`` computed once per ``key`` (substitutes, thresholds, choices)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def transferred(self, **pgd_kwargs) -> Callable:
        """PGD crafted on the baseline (``pgd_kwargs`` go to :func:`~coursepkg.attacks.pgd`),
        as an attack on whatever model it is handed: the transfer attack of chapters 2-4.

        Each image's example is crafted once per setting and budget and then reused, so the
        defences of the table that all face "PGD transferred from the baseline" face the same
        examples, and pay for them once."""
        cache = self.memo(("transferred", tuple(sorted(pgd_kwargs.items()))), dict)

        def attack(model, x, y, *, eps, **kwargs):
            if kwargs:
                raise TypeError(f"the transferred attack takes only eps, got {sorted(kwargs)}")
            keys = [(float(eps), int(t), xi.detach().cpu().numpy().tobytes())
                    for xi, t in zip(x, y)]
            todo = [i for i, k in enumerate(keys) if k not in cache]
            if todo:
                pick = torch.tensor(todo, device=x.device)
                made = attacks.pgd(self.classifier, x[pick], y[pick], eps=eps, **pgd_kwargs)
                for i, example in zip(todo, made.detach()):
                    cache[keys[i]] = example
            return torch.stack([cache[k] for k in keys]).to(x)
        return attack

    def pgd(self, **changes) -> Callable:
        """The course's PGD with the profile's steps and restarts (``changes`` override)."""
        kw = {"steps": self.profile.pgd_steps, "restarts": self.profile.pgd_restarts, **changes}
        return functools.partial(attacks.pgd, **kw)


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Defence:
    """One defence of the book: how to build it and how its chapter attacks it.

    ``build(setting)`` returns the defended model.  ``claim(setting, model)`` returns the
    attacks of its paper (name -> attack) and ``attacks(setting, model)`` the chapter's own
    adaptive attacks.  ``with_strongest``: the chapter's figure is
    :func:`~coursepkg.evaluate.strongest` (or ``strongest_via``) with those attacks as
    ``extra`` (chapters 2 and 4; chapter 3's slow purifiers, through their view).
    ``strongest_via(setting, model)``, when given, returns the attacks that replace
    ``strongest`` on the model itself (the slow purifiers and the random models).
    """

    name: str
    chapter: int
    kind: str
    claim_name: str
    build: Callable
    claim: Callable
    attacks: Callable
    with_strongest: bool = False
    slow: bool = False
    checklist: bool = False
    strongest_via: Callable | None = None
    note: str = ""
    #: the label in ``TRANSFER_SOURCES`` of the defended network itself, if it is one
    #: (its own examples are a white-box attack on it, not a transfer)
    network: str = ""
    #: the label in ``TRANSFER_SOURCES`` of the zoo network the defended model is or wraps
    #: (a purifier, a random model or a detector wraps a classifier of the zoo): examples
    #: crafted on that source know the target's classifier, a grey-box attack, not transfer
    classifier: str = ""
    #: the profile field that sizes the images its chapter evaluates it on, when the row
    #: reads the chapter's own results (``eval_subset`` for chapter 2, ...); empty: the
    #: profile's ``table_eval_subset``
    images: str = ""
    #: its answers are random at test time (a random model, TV minimisation's random mask,
    #: a Monte-Carlo dropout detector): judged over k draws wherever it is judged
    random: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.network and self.classifier and self.network != self.classifier:
            raise ValueError(f"{self.name}: a network's classifier is the network itself")
        if self.network and not self.classifier:
            object.__setattr__(self, "classifier", self.network)


# --- chapter 2: adversarial training ---------------------------------------------------
def _zoo_model(recipe: str, **hp) -> Callable:
    return lambda s: s.zoo(recipe, **hp)


def _claim_pgd(s: Setting, model) -> dict:
    return {"PGD": s.pgd()}


def _claim_fgsm(s: Setting, model) -> dict:
    return {"FGSM": attacks.fgsm}


def _chapter2_attacks(s: Setting, model, x, y) -> dict:
    """Chapter 2's attacks beside ``strongest`` (:func:`coursepkg.recipes.augmentation.chapter_attacks`):
    FGSM, R+FGSM, PGD crafted on the baseline -- the very attacks the chapter builds, so the
    row reads the chapter's stored results back."""
    from .recipes import augmentation as chapter2

    return chapter2.chapter_attacks(s.classifier, x, y, eps=s.eps, profile=s.profile)


# --- chapter 4: gradient regularisation ------------------------------------------------
def _claim_pgd_ce(s: Setting, model) -> dict:
    from .recipes import gradient_regularisation as chapter4

    return {"PGD-CE": chapter4.yardstick_pgd(s.profile)}


def _chapter4_attacks(s: Setting, model, x=None, y=None) -> dict:
    """Chapter 4's attacks beside ``strongest``
    (:func:`coursepkg.recipes.gradient_regularisation.chapter_attacks`): transfer from the
    baseline, targeted APGD on every class; for the distilled network also PGD at
    temperature T and transfer from the chapter's substitute trained on its labels."""
    from .recipes import gradient_regularisation as chapter4

    substitute = None
    if "temperature" in model.zoo_config["hyperparameters"]:
        substitute = s.memo(("chapter 4 substitute", model.zoo_config["recipe"]), lambda: chapter4.substitute_for(
            model, dataset=s.info.name, profile=s.profile, device=s.device))
    return chapter4.chapter_attacks(model, baseline=s.classifier, profile=s.profile,
                                    num_classes=s.info.num_classes, substitute=substitute)


def substitute_of(s: Setting, recipe: str) -> nn.Module:
    """A substitute of the zoo model ``recipe`` trained from its labels alone (Papernot et al.
    2017), seeded with test images that are not evaluation images (their labels unused)."""
    def make():
        x_test, _ = load_dataset(s.info.name, "test")
        order = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(0))
        first = s.profile.eval_subset  # the evaluation images are the first of this order
        seed = x_test[order[first:first + s.profile.substitute_seed_size]]
        return attacks.train_substitute(s.zoo(recipe), seed, rounds=s.profile.substitute_rounds,
                                        epochs=s.profile.substitute_epochs, device=s.device)
    return s.memo(("substitute", recipe), make)


# --- chapter 3: purification -----------------------------------------------------------
def _purifier(make: Callable) -> Callable:
    from .defences.purification import Purified

    def build(s: Setting):
        return Purified(make(s), s.classifier).to(s.device)
    return build


def _claim_transfer(s: Setting, model) -> dict:
    """The papers' threat: PGD crafted on the bare classifier (chapter 3's claimed column)."""
    from .recipes import purification as chapter3
    return chapter3.transferred_pgd(s.classifier, eps=s.eps, profile=s.profile)


def _chapter3_attacks(s: Setting, model, x=None, y=None) -> dict:
    """Chapter 3's attacks on a purifier: its own, then the strongest through its view."""
    from .recipes import purification as chapter3
    kw = dict(eps=s.eps, profile=s.profile)
    return {**chapter3.own_attacks(s.classifier, model.purifier, **kw),
            **chapter3.strongest_via(s.classifier, model.purifier, **kw)}


def _jpeg(s):
    from .defences.purification import JPEG
    return JPEG(quality=75)


def _bits(bits):
    def make(s):
        from .defences.purification import BitDepth
        return BitDepth(bits=bits)
    return make


def _tv(s):
    from .defences.purification import TVMinimisation
    return TVMinimisation(keep=0.5, weight=0.05, iterations=30)


def _pixeldefend(s):
    from .defences.pixelcnn import PixelDefend
    return PixelDefend(s.zoo("pixelcnn"), s.eps)


# --- chapter 5: randomness -------------------------------------------------------------
def sap_fraction(s: Setting) -> float:
    """Chapter 5's choice (``coursepkg.recipes.randomness.choose_sap_fraction``), on
    chapter 5's images: the smallest fraction of SAP whose mean clean accuracy over k draws
    is within 3 points of the undefended classifier's."""
    from .recipes import randomness as chapter5

    def make():
        x, y = s.images(s.profile.random_eval_subset)
        return chapter5.choose_sap_fraction(s.classifier, x, y,
                                            k=s.profile.random_eval_draws)["fraction"]
    return s.memo("sap_fraction", make)


def _sap(s: Setting):
    from .defences.randomness import StochasticActivationPruning
    return StochasticActivationPruning(s.classifier, sap_fraction(s))


def _resize_pad(s: Setting):
    from .defences.randomness import RandomResizePad
    return RandomResizePad(s.classifier)


def _claim_one_draw(s: Setting, model) -> dict:
    """Chapter 5's claimed column: PGD on one draw of the randomness, judged by one draw."""
    from .recipes import randomness as chapter5

    return {"PGD": chapter5.one_draw_attacks(eps=s.eps, profile=s.profile)["PGD"]}


def _chapter5_attacks(s: Setting, model, x=None, y=None) -> dict:
    """Chapter 5's adaptive attacks (:func:`coursepkg.recipes.randomness.chapter_attacks`):
    EOT-PGD, the strongest attacks through EOT, one-draw FGSM and PGD, SPSA on the first
    survivors."""
    from .recipes import randomness as chapter5

    return chapter5.chapter_attacks(model, eps=s.eps, profile=s.profile)


# --- chapter 6: detection --------------------------------------------------------------
MC_DETECTORS = ("Bayesian uncertainty", "density + uncertainty (LR)")


def _detectors(s: Setting) -> dict:
    from .defences.detection import DetectorNetwork
    from .recipes.detection import feinman_detectors

    def make():
        feinman = feinman_detectors(s.info.name, profile=s.profile, device=s.device)
        c, d = s.classifier, feinman["classifier"]
        return {
            "detector network": (c, DetectorNetwork(c, s.zoo("detector-network"), "conv2")),
            "detector network (dynamic)": (c, DetectorNetwork(
                c, s.zoo("detector-network", dynamic=True), "conv2")),
            "kernel density": (d, feinman["density"]),
            "Bayesian uncertainty": (d, feinman["uncertainty"]),
            "density + uncertainty (LR)": (d, feinman["combined"]),
        }
    return s.memo("detectors", make)


def _joined(name: str) -> Callable:
    def build(s: Setting):
        from .evaluate.detection import detected_at_fpr

        classifier, detector = _detectors(s)[name]
        return s.memo(("joined", name), lambda: detected_at_fpr(classifier, detector,
                                                                s.held_out(), fpr=0.05))
    return build


def _claim_static(s: Setting, model) -> dict:
    """Chapter 6's claimed column: PGD on the classifier alone (a static attacker)."""
    return {"static PGD": attack_via(model.classifier, functools.partial(
        attacks.pgd, restarts=s.profile.pgd_restarts))}


def _chapter6_attacks(s: Setting, model, x=None, y=None) -> dict:
    """The table's attack beyond chapter 6's set (which the "strongest" column already runs):
    a long APGD through a steeper joined model (gain 10), on the survivors."""
    from .defences.detection import evading
    from .evaluate.detection import detected_at_fpr

    p = s.profile
    heavy = detected_at_fpr(model.classifier, model.detector, s.held_out(), gain=10.0)
    return {"APGD, gain 10": evading(attacks.apgd, view=heavy, loss="ce",
                                     restarts=p.pgd_restarts, steps=p.strong_pgd_steps)}


def _no_attacks(s, model, x=None, y=None) -> dict:
    return {}


def _registry() -> tuple[Defence, ...]:
    ch2 = dict(chapter=2, kind="model", attacks=_chapter2_attacks, with_strongest=True,
               checklist=True, images="eval_subset")
    ch4 = dict(chapter=4, kind="model", attacks=_chapter4_attacks, with_strongest=True,
               checklist=True, claim_name="PGD-CE", claim=_claim_pgd_ce,
               images="gradreg_eval_subset")
    ch3 = dict(chapter=3, kind="purifier", claim_name="PGD transferred from the baseline",
               claim=_claim_transfer, attacks=_chapter3_attacks, classifier="standard",
               note="via view, in the chapter's cascade", images="expensive_eval_subset")
    ch5 = dict(chapter=5, kind="randomised", claim_name="one-draw PGD", claim=_claim_one_draw,
               attacks=_chapter5_attacks, slow=True, random=True, note="strongest via EOT",
               classifier="standard", images="random_eval_subset")
    ch3_slow = {**ch3, "slow": True, "images": "pixeldefend_eval_subset"}
    ch6 = dict(chapter=6, kind="detector", claim_name="static PGD", claim=_claim_static,
               attacks=_chapter6_attacks)
    return (
        Defence("FGSM training", build=_zoo_model("fgsm_training"), claim_name="FGSM",
                claim=_claim_fgsm, network="FGSM training", **ch2),
        Defence("fast FGSM training", build=_zoo_model("fast_fgsm_training"), claim_name="PGD",
                claim=_claim_pgd, network="fast FGSM training", **ch2),
        Defence("PGD training", build=_zoo_model("pgd_training"), claim_name="PGD",
                claim=_claim_pgd, network="PGD training", **ch2),
        Defence("ALP", build=_zoo_model("logit_pairing"), claim_name="PGD", claim=_claim_pgd,
                network="ALP", **ch2),
        Defence("TRADES", build=_zoo_model("trades"), claim_name="PGD", claim=_claim_pgd,
                network="TRADES", **ch2),
        Defence("JPEG", build=_purifier(_jpeg), slow=True, **ch3),  # on chapter 3's x_few
        Defence("bit depth (2 bits)", build=_purifier(_bits(2)), checklist=True, **ch3),
        Defence("bit depth (1 bit)", build=_purifier(_bits(1)), checklist=True, **ch3),
        Defence("TV minimisation", build=_purifier(_tv), random=True, **ch3_slow),
        Defence("PixelDefend", build=_purifier(_pixeldefend), **ch3_slow),
        Defence("contractive penalty", build=_zoo_model("contractive"), network="contractive",
                **ch4),
        Defence("input-gradient penalty", build=_zoo_model("input_gradient"),
                network="input gradient", **ch4),
        Defence("distillation (T = 100)", build=_zoo_model("distillation_student"),
                network="distilled", **ch4),
        Defence("SAP", build=_sap, **ch5),
        Defence("random resize and pad", build=_resize_pad, **ch5),
        Defence("detector network", build=_joined("detector network"), classifier="standard",
                images="detection_eval_subset", **ch6),
        Defence("detector network (dynamic)", build=_joined("detector network (dynamic)"),
                classifier="standard", images="detection_eval_subset", **ch6),
        Defence("kernel density", build=_joined("kernel density"),
                classifier="standard, dropout", images="detection_eval_subset", **ch6),
        Defence("Bayesian uncertainty", build=_joined("Bayesian uncertainty"), slow=True,
                random=True, classifier="standard, dropout", images="mc_attack_subset", **ch6),
        Defence("density + uncertainty (LR)", build=_joined("density + uncertainty (LR)"),
                slow=True, random=True, classifier="standard, dropout",
                images="mc_attack_subset", **ch6),
    )


#: every defence of chapters 2-6, in the book's order
DEFENCES: tuple[Defence, ...] = _registry()

#: the table's first row: chapter 1's undefended classifier under the same evaluation, the
#: yardstick each defence's adaptive accuracy is compared with, image by image
BASELINE = Defence("undefended (baseline)", chapter=1, kind="model", claim_name="PGD",
                   claim=_claim_pgd, build=_zoo_model("standard"), attacks=_chapter2_attacks,
                   with_strongest=True, network="standard", images="eval_subset")


def defence(name: str) -> Defence:
    """The registered defence called ``name`` (or the baseline)."""
    for d in (BASELINE, *DEFENCES):
        if d.name == name:
            return d
    raise ValueError(f"unknown defence {name!r}: choose one of {[d.name for d in DEFENCES]}")


#: the zoo recipes a source of the transfer matrix may come from: every differentiable
#: classifier the book trains (recipe, hyperparameters, label)
TRANSFER_SOURCES = (
    ("standard", {}, "standard"),
    ("standard", {"dropout": 0.5}, "standard, dropout"),
    ("fgsm_training", {}, "FGSM training"),
    ("fast_fgsm_training", {}, "fast FGSM training"),
    ("pgd_training", {}, "PGD training"),
    ("logit_pairing", {}, "ALP"),
    ("trades", {}, "TRADES"),
    ("fgsm_training_large_eps", {}, "FGSM training, 3 eps"),
    ("contractive", {}, "contractive"),
    ("input_gradient", {}, "input gradient"),
    ("distillation_teacher", {}, "distillation teacher"),
    ("distillation_student", {}, "distilled"),
    ("gaussian_noise_025", {}, "Gaussian noise 0.25"),
    ("gaussian_noise_050", {}, "Gaussian noise 0.5"),
    ("ibp", {}, "IBP"),
)


def grey_box_cells(sources, targets=None) -> set[tuple[str, str]]:
    """The (source, target) pairs of a transfer matrix where the target is, or wraps, the
    source's network (``Defence.classifier``): a white-box or grey-box attack, not transfer.

    ``sources`` and ``targets`` are labels (or a :class:`~coursepkg.evaluate.TransferMatrix`
    as ``sources``, whose own labels are then used); targets not in ``DEFENCES`` share
    nothing."""
    if targets is None:
        sources, targets = sources.sources, sources.targets
    known = {d.name: d.classifier for d in DEFENCES}
    return {(s, t) for t in targets for s in sources if known.get(t) and known[t] == s}


def transfer_sources(s: Setting) -> dict[str, nn.Module]:
    """Every differentiable classifier of the zoo, by label (``TRANSFER_SOURCES``)."""
    return {label: s.zoo(recipe, **hp) for recipe, hp, label in TRANSFER_SOURCES}


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------
@dataclass
class Row:
    """One defence's line of the course's table (every accuracy an upper bound)."""

    name: str
    chapter: int
    kind: str
    n: int
    clean: Interval
    claimed: Interval
    claim_name: str
    chapter_figure: Interval
    strongest: Interval
    adaptive: Interval
    failed_checks: list[str] | None  #: names of failed checklist items (None: not run)
    masked: bool | None  #: gradient_masking_flags' verdict (None: not run)
    seconds: float
    note: str = ""
    correct: dict = field(default_factory=dict, repr=False)  #: per-image masks, by column
    #: a detector's share of the row's clean test images it flags (its false positive rate
    #: measured here; the threshold was set for 5% on held-out images); None otherwise
    flagged: Interval | None = None

    @property
    def defect(self) -> bool:
        """The chapter's figure lies more than 2 points above the worst case: the chapter's
        attacks missed what the course's strongest evaluation finds."""
        return self.chapter_figure.value - self.adaptive.value > 0.02 + 1e-9

    @property
    def claim_test(self) -> evaluate.PairedComparison:
        """Claimed against adaptive on the same images: the images the adaptive attacks broke
        that the claimed attack left, and the exact one-sided test that adaptive is lower."""
        return evaluate.paired_test(self.correct["claimed"], self.correct["adaptive"],
                                    alternative="lower")

    @property
    def baseline_test(self) -> evaluate.PairedComparison | None:
        """The undefended baseline's adaptive accuracy against this row's, on the same images:
        the exact one-sided test that the defence keeps more images (None: no baseline)."""
        base = self.correct.get("baseline")
        if base is None:
            return None
        return evaluate.paired_test(base, self.correct["adaptive"], alternative="higher")

    @property
    def broken(self) -> bool:
        """The adaptive attacks lowered the claim, by the paired test at level ``ALPHA``."""
        return self.claim_test.significant(ALPHA)

    @property
    def above_baseline(self) -> bool | None:
        """The adaptive accuracy lies above the undefended model's, by the paired test."""
        test = self.baseline_test
        return None if test is None else test.significant(ALPHA)

    @property
    def verdict(self) -> str:
        """What was measured, in words: the paired tests, the checklist's symptoms, defects."""
        claim = self.claim_test
        if claim.significant(ALPHA):
            parts = [f"claim lowered ({claim.only_a} of {claim.n} images, p = {claim.p_value:.2g})"]
        elif claim.only_a:
            parts = [f"claim lowered on {claim.only_a} of {claim.n} images, within chance "
                     f"(p = {claim.p_value:.2g})"]
        else:
            parts = ["claim not lowered by the attacks run"]
        base = self.baseline_test
        if base is not None:
            word = "above undefended" if base.significant(ALPHA) else "no better than undefended"
            parts.append(f"{word} (+{base.only_b}/-{base.only_a} images, p = {base.p_value:.2g})")
        masking = [c for c in (self.failed_checks or []) if c in MASKING_CHECKS]
        if masking:
            parts.append(f"masking signs: {len(masking)}")
        elif self.masked:
            parts.append("gradient looks masked")
        if self.failed_checks is None and self.masked is None:
            parts.append("checklist not applicable")
        if self.defect:
            parts.append("DEFECT: chapter figure above worst case")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        """The row for :class:`coursepkg.plots.Table`."""
        return {"defence": self.name, "ch.": self.chapter, "images": self.n, "clean": self.clean,
                "claimed": self.claimed, "by": self.claim_name, "chapter": self.chapter_figure,
                "strongest": self.strongest,
                "strongest is": self.note or "evaluate.strongest",
                "adaptive": self.adaptive,
                "clean flagged": "—" if self.flagged is None else self.flagged,
                "verdict": self.verdict}


def _model_masks(d: Defence, s: Setting, model, x, y) -> dict:
    eps = s.eps
    clean = evaluate.predictions(model, x) == y
    claim = evaluate.robust_accuracy(model, x, y, d.claim(s, model), eps=eps).correct
    own = d.attacks(s, model, x, y)
    masked = None
    if d.strongest_via is not None:
        strong = evaluate.robust_accuracy(model, x, y, d.strongest_via(s, model), eps=eps,
                                          cascade=True).correct
    else:  # the masking flags decide SPSA, as strongest's "auto" would (computed once)
        masked = evaluate.gradient_masking_flags(model, x, y)["masked"]
    if d.with_strongest and d.strongest_via is None:
        # the chapter's own call, strongest(extra=own): read back from the results store
        # when the chapter ran; its built-in attacks run first, so the mask after the last
        # of them is strongest on its own
        result = evaluate.strongest(model, x, y, eps=eps, profile=s.profile, spsa=masked,
                                    extra=own)
        last_builtin = list(evaluate.strongest_attacks(profile=s.profile, spsa_attack=masked))[-1]
        chapter, strong = result.correct, result.per_attack_mask[last_builtin]
    elif d.with_strongest:  # strongest through the view, then the chapter's attacks on its survivors
        chapter = strong.clone()
        alive = chapter.nonzero().squeeze(1)
        if len(alive) and own:
            chapter[alive] = evaluate.robust_accuracy(model, x[alive], y[alive], own, eps=eps,
                                                      cascade=True).correct
    else:
        if d.strongest_via is None:
            strong = evaluate.strongest(model, x, y, eps=eps, profile=s.profile,
                                        spsa=masked).correct
        chapter = evaluate.robust_accuracy(model, x, y, own, eps=eps, cascade=True).correct
    masks = {"clean": clean, "claimed": claim & clean, "chapter": chapter, "strongest": strong}
    if masked is not None:
        masks["_masked"] = masked  # the flags' verdict, for the row
    return masks


def _purifier_masks(d: Defence, s: Setting, model, x, y) -> dict:
    """Chapter 3's evaluation, asked exactly as the chapter asks it
    (:func:`coursepkg.recipes.purification.worst_case`, read back from the results store
    when it ran): the transferred PGD of the claimed column and the chapter's own attacks
    on every image, then the strongest attacks through the purifier's view on the
    survivors.  Its "strongest" column is that cascade: the course's strongest attacks run
    on the purifier through its BPDA (or EOT) view -- on the model itself they would follow
    a zero or random gradient, and SPSA would cost thousands of purifications an image."""
    from .recipes import purification as chapter3

    own, correct = chapter3.worst_case(s.classifier, model.purifier, x, y, eps=s.eps,
                                       profile=s.profile)
    clean = own.clean_mask
    return {"clean": clean, "claimed": own.per_attack_mask["transferred PGD"] & clean,
            "chapter": correct, "strongest": correct.clone()}


def _randomised_masks(d: Defence, s: Setting, model, x, y) -> dict:
    """Chapter 5's two evaluations, asked exactly as the chapter asks them (so read back
    from the results store when it ran): the one-draw attacks (claimed: PGD, one draw) and
    the adaptive set, every answer judged over k draws.  Its "strongest" column is the
    worst case over EOT-PGD and the strongest attacks through the same EOT view."""
    from .recipes import randomness as chapter5

    p, k, eps = s.profile, s.profile.random_eval_draws, s.eps
    naive = evaluate.randomised_robust_accuracy(
        model, x, y, chapter5.one_draw_attacks(eps=eps, profile=p), k=k, cascade=False)
    full = evaluate.randomised_robust_accuracy(model, x, y, d.attacks(s, model, x, y), k=k,
                                               eps=eps)
    strong = full.clean.correct("worst").clone()
    for name in chapter5.eot_attack_names(p):
        strong &= full.per_attack[name].correct("worst")
    claimed = naive.clean.correct("single") & naive.per_attack["PGD"].correct("single")
    return {"clean": full.clean.correct("majority"), "claimed": claimed,
            "chapter": full.correct("worst"), "strongest": strong}


def _detector_masks(d: Defence, s: Setting, model, x, y) -> dict:
    from .evaluate import detection as evd
    from .recipes import detection as chapter6

    eps = s.eps
    answer = evaluate.predictions(model, x)
    clean = answer == y  # correct and not flagged
    flagged = answer == evd.predictions_width(model, x[:1]) - 1  # the detector's false positives
    x_static = d.claim(s, model)
    (static,) = x_static.values()
    claim = clean & ~evd.evades(model, static(model, x, y, eps=eps), y)
    # chapter 6's own call (read back when it ran): the strongest attacks aimed through the
    # detector, then, for a random detector, PGD through EOT of its dropout masks
    asked = chapter6.chapter_attacks(model, eps=eps, profile=s.profile)
    full = evd.evasion(model, x, y, asked, eps=eps)
    builtin = set(evd.detection_attacks(profile=s.profile))
    by_builtin = torch.tensor([f in builtin for f in full.fooled_by], dtype=torch.bool,
                              device=x.device) if full.fooled_by else torch.zeros_like(clean)
    strong_ok = clean & ~(full.evaded & by_builtin)
    own_ok = clean & ~full.evaded
    chapter = own_ok.clone()
    alive = chapter.nonzero().squeeze(1)
    if len(alive):
        more = evd.evasion(model, x[alive], y[alive], d.attacks(s, model, x[alive], y[alive]), eps=eps)
        chapter[alive] = ~more.evaded
    return {"clean": clean, "claimed": claim, "chapter": chapter, "strongest": strong_ok,
            "_flagged": flagged}


def images_of(d: Defence, p: Profile) -> int:
    """How many of the course's images the row of ``d`` is measured on."""
    if d.images:
        return int(getattr(p, d.images))
    return p.table_eval_subset


def evaluate_defence(d: Defence, s: Setting, *, n: int | None = None,
                     checklist_n: int | None = None, baseline: Row | None = None) -> Row:
    """Measure one defence on the first ``n`` images (default: its chapter's, see
    :func:`images_of`); run the checklist on ``checklist_n`` of them.

    ``baseline`` (the ``BASELINE`` row, measured on at least as many of the same
    images) gives the row its paired comparison with the undefended model."""
    p = s.profile
    n = n or images_of(d, p)
    x, y = s.images(n)
    start = time.perf_counter()
    torch.manual_seed(0)
    model = d.build(s)
    masks = {"model": _model_masks, "purifier": _purifier_masks,
             "randomised": _randomised_masks, "detector": _detector_masks}[d.kind](d, s, model, x, y)
    flagged = masks.pop("_masked", None)
    false_positives = masks.pop("_flagged", None)
    masks["adaptive"] = masks["chapter"] & masks["strongest"]
    if baseline is not None:
        if baseline.n < n:
            raise ValueError(f"the baseline row holds {baseline.n} images, the row needs {n}")
        masks["baseline"] = baseline.correct["adaptive"][:n]
    failed, masked = None, None
    if d.checklist:
        m = min(checklist_n or p.table_sanity_subset, n)
        report = evaluate.sanity_checks(model, x[:m], y[:m], eps=s.eps,
                                        transfer_from=s.classifier)
        failed = [c.name for c in report.failures]
    if d.kind in ("model", "purifier") and not d.slow:
        masked = (flagged if flagged is not None
                  else evaluate.gradient_masking_flags(model, x, y)["masked"])
    iv = {k: Interval.of_mask(v) for k, v in masks.items() if k != "baseline"}
    return Row(d.name, d.chapter, d.kind, n, iv["clean"], iv["claimed"], d.claim_name,
               iv["chapter"], iv["strongest"], iv["adaptive"], failed, masked,
               time.perf_counter() - start, d.note, masks,
               None if false_positives is None else Interval.of_mask(false_positives))


def course_table(setting: Setting | None = None, *, defences=None, progress: bool = False) -> list[Row]:
    """The undefended baseline, then every defence of ``DEFENCES`` (or ``defences``, names or
    :class:`~coursepkg.course_table.Defence`), each measured and compared with the baseline
    on the same images."""
    s = setting or Setting()
    chosen = [defence(d) if isinstance(d, str) else d for d in (defences or DEFENCES)]
    base = evaluate_defence(BASELINE, s)
    rows = [base]
    for d in chosen:
        rows.append(evaluate_defence(d, s, baseline=base))
        if progress:
            r = rows[-1]
            print(f"{r.name:28s} {r.seconds:5.1f} s  adaptive {r.adaptive}")
    return rows
