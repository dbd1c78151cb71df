"""Where the course runs and how much work it does there.

Two things are decided here and nowhere else:

* :func:`device` -- CUDA when present, else Apple's MPS, else the CPU;
* :func:`profile` -- the *budget profile*.  ``quick`` (default on a CPU) is sized so that
  the whole book runs on a two-core laptop in minutes and still shows every effect a
  chapter claims; ``full`` (default on CUDA) uses the whole dataset and the budgets the
  papers use.  The environment variable ``COURSEPKG_PROFILE`` overrides the default.

Every budget -- training subset, epochs, attack steps, evaluation subset -- is a field of
:class:`Profile`.  A chapter never writes a number of epochs or steps in its own code: it
reads ``profile().<field>``, so the same notebook is a fast lab on a laptop and a faithful
replication on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

PROFILE_ENV = "COURSEPKG_PROFILE"
CACHE_ENV = "COURSEPKG_CACHE"
DEVICE_ENV = "COURSEPKG_DEVICE"


@dataclass(frozen=True)
class Profile:
    """The budgets of one profile.  All fields are plain numbers so they key the zoo's cache."""

    name: str
    # --- standard training -------------------------------------------------------------
    train_subset: int | None  #: training examples used (``None``: the whole training set)
    epochs: int  #: epochs of standard training
    batch_size: int  #: mini-batch size for every training loop
    lr: float  #: Adam learning rate of standard training
    # --- adversarial training (chapter 2) ----------------------------------------------
    adv_train_subset: int | None  #: training examples of every adversarial-training recipe (``None``: all)
    adv_epochs: int  #: epochs of every adversarial-training recipe
    adv_train_steps: int  #: PGD steps used to *train* (Madry et al. use 40 on MNIST)
    co_train_subset: int | None  #: training images of the catastrophic-overfitting recipe (``None``: all)
    co_epochs: int  #: epochs of that recipe (its monitor records one point per epoch)
    # --- evaluation -----------------------------------------------------------------------
    eval_subset: int  #: test examples every attack is evaluated on
    expensive_eval_subset: int  #: test examples for the slow attacks (C&W, JSMA, DeepFool)
    spsa_eval_subset: int  #: test examples for SPSA (forward passes only, but many of them)
    pgd_steps: int  #: steps of the yardstick PGD attack (PGD-20 in the course's tables)
    pgd_restarts: int  #: random restarts of the yardstick PGD attack
    strong_pgd_steps: int  #: steps of the strongest PGD the course runs (adaptive evaluations)
    strong_pgd_restarts: int  #: restarts of that strongest PGD
    cw_steps: int  #: optimisation steps per constant of Carlini-Wagner L2
    cw_search_steps: int  #: binary-search steps over Carlini-Wagner's constant c
    spsa_iters: int  #: iterations of SPSA
    spsa_samples: int  #: perturbation samples per SPSA iteration (batched)
    eot_samples: int  #: samples of the randomness averaged by EOT
    # --- black-box substitute attack -------------------------------------------------------
    substitute_seed_size: int  #: initial examples the attacker owns
    substitute_rounds: int  #: rounds of Jacobian-based dataset augmentation
    substitute_epochs: int  #: epochs of substitute training per round
    # --- purification (chapter 3) ---------------------------------------------------------------
    pixelcnn_train_subset: int | None  #: training images of the PixelCNN
    pixelcnn_epochs: int  #: epochs of PixelCNN training
    pixeldefend_eval_subset: int  #: test examples PixelDefend is evaluated on (one PixelCNN pass per pixel)
    pixeldefend_attack_steps: int  #: PGD steps of the attacks through PixelDefend (a purification per step)
    purification_probe_subset: int  #: test images of chapter 3's side experiments on the slow purifiers (locked pixels, eps_defend = eps / 2, 2 eps, quilting, the checklist)
    # --- the strongest evaluation (evaluate.strongest) -------------------------------------
    apgd_steps: int  #: iterations of every APGD run (Croce & Hein 2020 use 100)
    apgd_restarts: int  #: random restarts of APGD-CE
    apgd_targets: int  #: target classes of targeted APGD-DLR (the top-k other classes; AutoAttack: 9)
    # --- chapter 4: gradient regularisation -------------------------------------------------
    gradreg_train_subset: int | None  #: training images of every chapter-4 recipe (``None``: all)
    gradreg_epochs: int  #: epochs of every chapter-4 recipe (contractive, input gradient, teacher, student)
    gradreg_eval_subset: int  #: test images of chapter 4's strongest (adaptive) evaluation
    gradreg_cw_subset: int  #: test images of chapter 4's C&W L2 minimal-perturbation measurement
    gradreg_jsma_subset: int  #: test images of chapter 4's JSMA success rates (baseline and distilled)
    # --- chapter 5: randomness --------------------------------------------------------------
    random_eval_draws: int  #: draws k of the randomness that judge every answer of a randomised model
    random_eval_subset: int  #: test examples of the adaptive (EOT) evaluation of the randomised defences
    eot_max_samples: int  #: the largest number of EOT samples (the sweep 1, 2, 4, .. and EOT-PGD's)
    eot_sweep_subset: int  #: test examples of the sweep of robust accuracy against EOT samples
    random_spsa_subset: int  #: at most this many survivors of the gradient attacks meet SPSA (gradient-free check)
    # --- chapter 6: detection ---------------------------------------------------------------
    detector_train_subset: int | None  #: training images (and as many adversarial ones) of the detector network
    detector_epochs: int  #: epochs of detector-network training (Metzen et al. 2017)
    detector_attack_steps: int  #: BIM steps that make the detector's adversarial training images
    kde_train_subset: int | None  #: training images whose features the kernel density holds (Feinman et al.: all; disjoint from the detector's)
    mc_samples: int  #: stochastic passes T of the Monte-Carlo dropout uncertainty (Feinman et al.: 50)
    detection_eval_subset: int  #: test images of chapter 6's ROC curves and adaptive attacks
    detection_threshold_subset: int  #: held-out clean test images, after the evaluation images, that set every detector's threshold
    mc_attack_subset: int  #: test images of the adaptive attacks on the MC-dropout detectors (T passes a step)
    detection_cw_subset: int  #: test images of C&W's distortion through each joined detector (C&W 2017's second measure)
    # --- chapter 8: certified robustness ------------------------------------------------------
    smoothing_train_subset: int | None  #: training examples of the Gaussian-noise (smoothing) recipes
    smoothing_epochs: int  #: epochs of Gaussian-noise training (Cohen et al. 2019)
    certify_subset: int  #: test examples certified (and attacked) by chapter 8
    smoothing_n0: int  #: noise samples that select the top class in CERTIFY (Cohen et al.: 100)
    smoothing_n: int  #: noise samples that estimate its probability (Cohen et al.: 100,000)
    smoothing_votes: int  #: noise samples of the Monte-Carlo smoothed prediction under attack
    ibp_train_subset: int | None  #: training examples of the IBP recipe
    ibp_epochs: int  #: epochs of IBP training (Gowal et al. 2018)
    ibp_warmup_epochs: float  #: epochs of clean training before the ramp-up
    ibp_rampup_epochs: float  #: epochs over which eps grows from 0 to its value
    # --- chapter 7: why defending is hard ----------------------------------------------------
    table_eval_subset: int  #: test images of chapter 7's transfer matrix (each row of its table uses its chapter's images)
    table_sanity_subset: int  #: the first of them that the gradient-masking checklist runs on
    tradeoff_train_subset: int | None  #: training images of each model of the robustness-accuracy sweep
    tradeoff_epochs: int  #: epochs of each model of that sweep (PGD training at several training eps)

    def replace(self, **changes) -> "Profile":
        """A copy with some budgets changed (handy in exercises: ``profile().replace(epochs=1)``)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


QUICK = Profile(
    name="quick",
    train_subset=20_000,
    epochs=4,
    batch_size=128,
    lr=2e-3,
    adv_train_subset=10_000,
    adv_epochs=3,
    adv_train_steps=3,
    co_train_subset=2_000,
    co_epochs=8,
    eval_subset=500,
    expensive_eval_subset=100,
    spsa_eval_subset=25,
    pgd_steps=20,
    pgd_restarts=2,
    strong_pgd_steps=100,
    strong_pgd_restarts=5,
    cw_steps=100,
    cw_search_steps=6,
    spsa_iters=40,
    spsa_samples=64,
    eot_samples=10,
    substitute_seed_size=150,
    substitute_rounds=4,
    substitute_epochs=10,
    pixelcnn_train_subset=8_000,
    pixelcnn_epochs=2,
    pixeldefend_eval_subset=100,
    pixeldefend_attack_steps=10,
    purification_probe_subset=40,
    apgd_steps=50,
    apgd_restarts=1,
    apgd_targets=3,
    # chapter 4
    gradreg_train_subset=10_000,
    gradreg_epochs=3,
    gradreg_eval_subset=150,
    gradreg_cw_subset=25,
    gradreg_jsma_subset=50,
    # chapter 5
    random_eval_draws=16,
    random_eval_subset=100,
    eot_max_samples=16,
    eot_sweep_subset=30,
    random_spsa_subset=5,
    # chapter 6
    detector_train_subset=2_000,
    detector_epochs=3,
    detector_attack_steps=5,
    kde_train_subset=2_000,
    mc_samples=6,
    detection_eval_subset=100,
    detection_threshold_subset=1_000,
    mc_attack_subset=100,
    detection_cw_subset=10,
    # chapter 8
    smoothing_train_subset=10_000,
    smoothing_epochs=3,
    certify_subset=100,
    smoothing_n0=100,
    smoothing_n=500,
    smoothing_votes=100,
    ibp_train_subset=10_000,
    ibp_epochs=4,
    ibp_warmup_epochs=0.15,
    ibp_rampup_epochs=1,
    # chapter 7
    table_eval_subset=30,
    table_sanity_subset=10,
    tradeoff_train_subset=4_000,
    tradeoff_epochs=2,
)

FULL = Profile(
    name="full",
    train_subset=None,
    epochs=20,
    batch_size=128,
    lr=1e-3,
    adv_train_subset=None,
    adv_epochs=40,
    adv_train_steps=40,
    co_train_subset=None,
    co_epochs=15,
    eval_subset=10_000,
    expensive_eval_subset=1_000,
    spsa_eval_subset=1_000,
    pgd_steps=20,
    pgd_restarts=10,
    strong_pgd_steps=500,
    strong_pgd_restarts=20,
    cw_steps=1000,
    cw_search_steps=9,
    spsa_iters=100,
    spsa_samples=256,
    eot_samples=40,
    substitute_seed_size=150,
    substitute_rounds=6,
    substitute_epochs=10,
    pixelcnn_train_subset=None,
    pixelcnn_epochs=20,
    pixeldefend_eval_subset=500,
    pixeldefend_attack_steps=100,
    purification_probe_subset=200,
    apgd_steps=100,
    apgd_restarts=5,
    apgd_targets=9,
    # chapter 4
    gradreg_train_subset=None,
    gradreg_epochs=20,
    gradreg_eval_subset=1_000,
    gradreg_cw_subset=1_000,
    gradreg_jsma_subset=1_000,
    # chapter 5
    random_eval_draws=100,
    random_eval_subset=1000,
    eot_max_samples=128,
    eot_sweep_subset=500,
    random_spsa_subset=200,
    # chapter 6
    detector_train_subset=10_000,
    detector_epochs=10,
    detector_attack_steps=10,
    kde_train_subset=50_000,
    mc_samples=50,
    detection_eval_subset=1_000,
    detection_threshold_subset=5_000,
    mc_attack_subset=500,
    detection_cw_subset=200,
    # chapter 8
    smoothing_train_subset=None,
    smoothing_epochs=20,
    certify_subset=500,
    smoothing_n0=100,
    smoothing_n=100_000,
    smoothing_votes=1_000,
    ibp_train_subset=None,
    ibp_epochs=100,
    ibp_warmup_epochs=3,
    ibp_rampup_epochs=17,
    # chapter 7
    table_eval_subset=1_000,
    table_sanity_subset=200,
    tradeoff_train_subset=None,
    tradeoff_epochs=20,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (QUICK, FULL)}
#: Budgets changed on top of the chosen profile, e.g. ``epochs=1,eval_subset=64``.
OVERRIDES_ENV = "COURSEPKG_PROFILE_OVERRIDES"


def device() -> torch.device:
    """The device the course computes on: CUDA, else Apple MPS, else CPU.

    ``COURSEPKG_DEVICE=cpu`` (or ``cuda``, ``cuda:1``, ``mps``) forces a choice.
    """
    forced = os.environ.get(DEVICE_ENV, "").strip().lower()
    if forced:
        try:
            chosen = torch.device(forced)
        except RuntimeError as err:
            raise ValueError(
                f"{DEVICE_ENV}={forced!r} is not a device torch knows; use cpu, cuda or mps"
            ) from err
        _check_available(chosen)
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_available(chosen: torch.device) -> None:
    """Raise a one-line error when a forced device is not usable on this machine."""
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{DEVICE_ENV}={chosen} asks for CUDA, but CUDA is not available on this machine; "
                f"unset {DEVICE_ENV} or set it to cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"{DEVICE_ENV}={chosen} asks for CUDA device {chosen.index}, but this machine has "
                f"{torch.cuda.device_count()}; choose cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if chosen.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError(
                f"{DEVICE_ENV}={chosen} asks for Apple MPS, but MPS is not available on this machine; "
                f"unset {DEVICE_ENV} or set it to cpu")


def default_profile_name() -> str:
    """``full`` on CUDA, ``quick`` everywhere else, unless ``COURSEPKG_PROFILE`` says otherwise."""
    name = os.environ.get(PROFILE_ENV, "").strip().lower()
    if name:
        return name
    return "full" if device().type == "cuda" else "quick"


def profile(name: str | Profile | None = None) -> Profile:
    """The budget profile called ``name`` (default: :func:`default_profile_name`)."""
    if isinstance(name, Profile):
        return name
    if isinstance(getattr(name, "profile", None), Profile):  # a zoo.ProfileView
        return name.profile
    name = default_profile_name() if name is None else str(name).strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}: choose one of {sorted(PROFILES)} "
            f"(or unset {PROFILE_ENV})"
        )
    return apply_overrides(PROFILES[name], os.environ.get(OVERRIDES_ENV, ""))


def _parse_budget(key: str, value: str, kind: type):
    """``value`` (text) as the type ``kind`` of the budget ``key``; ``"1e3"`` is a valid int."""
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        return kind(value)
    except ValueError:
        raise ValueError(f"{OVERRIDES_ENV}: {key} needs a {kind.__name__}, got {value!r}") from None


def apply_overrides(base: Profile, spec: str) -> Profile:
    """``base`` with the budgets named in ``spec`` changed: ``"epochs=1,eval_subset=64"``.

    This is how ``COURSEPKG_PROFILE_OVERRIDES`` shrinks a profile, e.g. to rehearse the full
    profile's script on a CPU in minutes (``benchmarks/full_profile.sh``).  Each value is
    converted to the type of the field it replaces; an unknown field or a value of the wrong
    type is an error that names the variable.
    """
    changes = {}
    fields = {f.name: f for f in dataclasses.fields(Profile)}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in fields or key == "name":
            raise ValueError(
                f"{OVERRIDES_ENV}: {item!r} is not 'field=value' for a budget of Profile; "
                f"fields: {', '.join(sorted(k for k in fields if k != 'name'))}")
        annotation = str(fields[key].type)  # e.g. "int | None": the whole set when None
        if value.lower() == "none" and "None" in annotation:
            changes[key] = None
            continue
        kind = next((k for k in (bool, float, int, str) if k.__name__ in annotation),
                    type(getattr(base, key)))
        changes[key] = _parse_budget(key, value, kind)
    return base.replace(**changes) if changes else base


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed torch's global generators (CPU and CUDA) and return a fresh CPU generator."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block with torch's generators (CPU and every CUDA device) seeded with ``seed``,
    and restore the caller's generators afterwards.

    A library function that needs randomness runs inside ``with seeded(seed):`` so that its
    result depends only on its arguments, and the caller's random stream is the same
    whether the work was done or read back from a cache.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        seed_everything(seed)
        yield


def cache_dir() -> Path:
    """The course's cache directory (created if needed, checked writable)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
        path = Path(base) / "coursepkg"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as err:
        raise PermissionError(
            f"the course's cache directory {path} is not writable ({err.strerror}); "
            f"set {CACHE_ENV} to a directory you can write to"
        ) from err
    return path
