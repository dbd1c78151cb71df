"""Recipes of the chapter "Gradient regularisation" (chapter 4).

Every recipe trains the zoo's architecture (:func:`coursepkg.models.classifier_for`, width
16) with one loss of :mod:`coursepkg.defences.gradient_regularisation` at the profile's
batch size and learning rate: the two penalties on the profile's ``gradreg_train_subset``
for ``gradreg_epochs`` epochs, the teacher and the student on the baseline's own budget
(``train_subset``, ``epochs``), since distillation changes nothing in standard training
but the temperature.  Nothing else sets a budget.

* ``contractive`` -- a deep contractive network (Gu and Rigazio 2015): cross-entropy plus
  ``weight`` times the exact layer-wise contractive penalty;
* ``input_gradient`` -- double backpropagation (Drucker and LeCun 1992; Ross and
  Doshi-Velez 2018): cross-entropy plus ``weight`` times the ``norm`` of the input gradient
  of the loss; by default the l1 norm (the dual of the L-infinity threat) with weight
  ``info.eps``, the first-order adversarial loss;
* ``distillation_teacher`` -- a network trained with its softmax at ``temperature`` T
  (Papernot et al. 2016; T = 100, the paper's value);
* ``distillation_student`` -- a network trained on the teacher's soft labels at the same
  T, deployed at T = 1 (the bare network).  It gets its teacher from the zoo, so the
  teacher is trained once and cached.

Each stores its training log in ``model.zoo_facts`` (``seconds``: the training loop alone).
"""

from __future__ import annotations

from ..data import load_dataset, subset
from ..defences import gradient_regularisation as gr
from ..models import classifier_for
from ..train import train
from ..zoo import get, register
from .standard import training_data

#: the profile fields the penalty recipes read (they key their checkpoints)
USES = ("gradreg_train_subset", "gradreg_epochs", "batch_size", "lr")
#: distillation changes only the temperature of standard training: the teacher and the
#: student read the baseline's own budget, so the baseline and the distilled network differ
#: in nothing else
DISTILLATION_USES = ("train_subset", "epochs", "batch_size", "lr")

#: the contractive penalty's default weight: the penalty of the standard-trained network is
#: about 10^4 (mostly its first layer), so the term starts near the size of the cross-entropy
CONTRACTIVE_WEIGHT = 1e-4


def _build(info, *, width=16, **_):
    return classifier_for(info, width=width)


def gradreg_training_data(info, profile, seed: int = 0):
    """The first ``gradreg_train_subset`` images of the fixed permutation of the training set
    that gives standard training its subset."""
    x, y = load_dataset(info.name, "train")
    return subset(x, y, profile.gradreg_train_subset, seed=seed)


def training_loss(name: str, info, profile=None, **hp):
    """The batch loss of recipe ``name`` (teacher and student excepted: the student's loss
    needs its teacher, see :func:`fit_distillation_student`)."""
    if name == "contractive":
        return gr.contractive_loss(hp.get("weight", CONTRACTIVE_WEIGHT))
    if name == "input_gradient":
        weight = hp.get("weight")
        return gr.input_gradient_loss(info.eps if weight is None else weight, norm=hp.get("norm", "l1"))
    if name == "distillation_teacher":
        return gr.temperature_loss(hp.get("temperature", 100.0))
    raise ValueError(f"unknown recipe {name!r}: choose contractive, input_gradient or distillation_teacher")


def _fit(model, info, profile, device, loss, *, seed, desc):
    x, y = gradreg_training_data(info, profile, seed)
    log = train(model, x, y, loss, epochs=profile.gradreg_epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"{desc} {info.name}")
    return log.as_dict()


def _fit_at_baseline_budget(model, info, profile, device, loss, *, seed, desc):
    x, y = training_data(info, profile, seed)
    log = train(model, x, y, loss, epochs=profile.epochs, batch_size=profile.batch_size,
                lr=profile.lr, seed=seed, device=device, desc=f"{desc} {info.name}")
    return log.as_dict()


@register("contractive", build=_build, defaults={"width": 16, "weight": CONTRACTIVE_WEIGHT}, uses=USES)
def fit_contractive(model, info, profile, device, *, seed=0, weight=CONTRACTIVE_WEIGHT, **_):
    """A deep contractive network (Gu and Rigazio 2015): cross-entropy plus the layer-wise contractive penalty."""
    loss = training_loss("contractive", info, weight=weight)
    return _fit(model, info, profile, device, loss, seed=seed, desc="contractive")


@register("input_gradient", build=_build, defaults={"width": 16, "weight": None, "norm": "l1"}, uses=USES)
def fit_input_gradient(model, info, profile, device, *, seed=0, weight=None, norm="l1", **_):
    """Input-gradient regularisation by double backpropagation (Drucker and LeCun 1992; Ross and Doshi-Velez 2018)."""
    loss = training_loss("input_gradient", info, weight=weight, norm=norm)
    return _fit(model, info, profile, device, loss, seed=seed, desc="input-gradient")


@register("distillation_teacher", build=_build, defaults={"width": 16, "temperature": 100.0},
          uses=DISTILLATION_USES)
def fit_distillation_teacher(model, info, profile, device, *, seed=0, temperature=100.0, **_):
    """Defensive distillation's teacher (Papernot et al. 2016): softmax at temperature T."""
    loss = training_loss("distillation_teacher", info, temperature=temperature)
    return _fit_at_baseline_budget(model, info, profile, device, loss, seed=seed, desc=f"teacher T={temperature:g}")


@register("distillation_student", build=_build, defaults={"width": 16, "temperature": 100.0},
          uses=DISTILLATION_USES)
def fit_distillation_student(model, info, profile, device, *, seed=0, temperature=100.0, width=16, **_):
    """Defensive distillation's student (Papernot et al. 2016): the teacher's soft labels at T, deployed at T = 1."""
    teacher = get("distillation_teacher", info.name, profile=profile.profile, seed=seed, device=device,
                  width=width, temperature=temperature)
    loss = gr.distillation_loss(teacher, temperature)
    facts = _fit_at_baseline_budget(model, info, profile, device, loss, seed=seed, desc=f"student T={temperature:g}")
    facts["teacher_seconds"] = float(teacher.zoo_facts.get("seconds", 0.0))
    return facts


# --------------------------------------------------------------------------------------
# Chapter 4's evaluation: one definition for the chapter and for chapter 7's table
# --------------------------------------------------------------------------------------
def yardstick_pgd(profile, loss: str = "ce"):
    """The course's PGD with the profile's steps and restarts (the chapter's claimed column)."""
    import functools

    from ..attacks import pgd

    return functools.partial(pgd, steps=profile.pgd_steps, restarts=profile.pgd_restarts, loss=loss)


def substitute_for(model, *, dataset: str = "fashion-mnist", profile, device=None):
    """A substitute of ``model`` trained from its labels alone (Papernot et al. 2017), seeded
    with the test images that follow the evaluation images in the test set (never
    evaluated), with the profile's rounds and epochs; seeded, so every call trains the same
    network."""
    from ..attacks import train_substitute

    x_test, _ = load_dataset(dataset, "test")
    first = profile.eval_subset
    x_seed = x_test[first:first + profile.substitute_seed_size]
    return train_substitute(model, x_seed, rounds=profile.substitute_rounds,
                            epochs=profile.substitute_epochs, device=device)


def chapter_attacks(model, *, baseline, profile, num_classes: int, substitute=None) -> dict:
    """The attacks chapter 4 adds to :func:`coursepkg.evaluate.strongest` for ``model``.

    PGD crafted on the undefended ``baseline`` (transfer; none for the baseline itself),
    targeted APGD towards every other class; for a distilled network also PGD on the logits
    divided by its temperature (undoing the saturated softmax; Carlini and Wagner 2016) and
    transfer from ``substitute``, a network trained on its labels (Papernot et al. 2017).
    """
    import functools

    from ..adaptive import attack_via
    from ..attacks import apgd_targeted, pgd

    transfer = dict(steps=profile.pgd_steps, restarts=profile.pgd_restarts)
    found = {}
    if model is not baseline:
        found["transfer from baseline"] = attack_via(baseline, pgd, **transfer)
    temperature = getattr(model, "zoo_config", {}).get("hyperparameters", {}).get("temperature")
    if temperature is not None:
        found["PGD-CE on Z/T"] = attack_via(gr.Temperature(model, temperature), pgd, **transfer,
                                            loss="ce")
        if substitute is None:
            raise ValueError("a distilled network's attacks include transfer from a substitute: "
                             "pass substitute=substitute_for(model, profile=...)")
        found["transfer from substitute"] = attack_via(substitute, pgd, **transfer)
    found["APGD-T, every class"] = functools.partial(apgd_targeted, top_k=num_classes - 1,
                                                     steps=profile.pgd_steps)
    return found
