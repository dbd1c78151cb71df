"""The model zoo: train each recipe once, cache it, load it everywhere.

``get(recipe, dataset=..., profile=...)`` returns a trained model in eval mode: loaded when
a checkpoint exists, else trained and saved.  A checkpoint is keyed by the recipe and its
*whole* configuration -- dataset, profile budgets, hyperparameters, seed and the package's
version -- so changing any of them trains a new model instead of returning a stale one.

Checkpoints are written atomically (a temporary file, then a rename) under the cache
directory, ``$COURSEPKG_CACHE`` or else the user's cache directory
(``~/.cache/coursepkg``).  They are read with ``torch.load(..., weights_only=True)``, which
unpickles tensors and plain containers only; a truncated or corrupt file is reported and
retrained, never a crash.  So every notebook runs alone, in any order.

A *recipe* (:class:`Recipe`) is two functions: ``build(info, **hp)`` makes the untrained
module and ``fit(model, info, profile, device, **hp)`` trains it in place (typically one
call to :func:`coursepkg.train.train` with the recipe's loss) and may return a dict of
JSON-like facts to store beside the weights.  Chapters register theirs with
:func:`register`; the modules listed in ``RECIPE_MODULES`` are imported on first use.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import __version__
from .config import CACHE_ENV, Profile, cache_dir, seed_everything, seeded  # noqa: F401 (cache_dir, CACHE_ENV: re-exported)
from .config import device as default_device
from .config import profile as get_profile
from .data import DatasetInfo, dataset_info


#: Modules that register recipes when imported (one per chapter that trains models).
RECIPE_MODULES = (
    "coursepkg.recipes.standard",
    "coursepkg.recipes.augmentation",
    "coursepkg.recipes.purification",
    "coursepkg.recipes.gradient_regularisation",
    "coursepkg.recipes.randomness",
    "coursepkg.recipes.detection",
    "coursepkg.recipes.why_defending_is_hard",
    "coursepkg.recipes.certified",
)


@dataclass(frozen=True)
class Recipe:
    """How to build and train one kind of model."""

    name: str
    build: Callable[..., nn.Module]
    fit: Callable[..., dict | None]
    defaults: dict = field(default_factory=dict)
    description: str = ""
    #: the :class:`~coursepkg.config.Profile` fields ``fit`` reads (None: every field).
    #: Only these key the checkpoint, so a budget added for another chapter does not
    #: retrain this recipe; ``fit`` sees a view that refuses any other field.
    uses: tuple[str, ...] | None = None


class ProfileView:
    """The fields ``uses`` of a :class:`~coursepkg.config.Profile`, and nothing else.

    A recipe's ``fit`` receives one, so reading a budget that does not key its checkpoint
    (and so could leave a stale model in the cache) is an error, not a silent bug.
    """

    def __init__(self, profile: Profile, uses: tuple[str, ...], recipe_name: str):
        self._profile, self._uses, self._recipe = profile, tuple(uses), recipe_name

    @property
    def profile(self) -> Profile:
        """The whole profile (for :func:`get` of a recipe this one depends on)."""
        return self._profile

    @property
    def name(self) -> str:
        return self._profile.name

    def __getattr__(self, field_name: str):
        if field_name.startswith("_"):
            raise AttributeError(field_name)
        if field_name not in self._uses:
            raise AttributeError(
                f"recipe {self._recipe!r} reads profile field {field_name!r} but does not declare "
                f"it; add it to uses= in its @register(...)")
        return getattr(self._profile, field_name)


_RECIPES: dict[str, Recipe] = {}
_loaded_modules = False


def register(name: str, *, build: Callable[..., nn.Module], defaults: dict | None = None,
             description: str = "", uses: tuple[str, ...] | None = None) -> Callable:
    """Decorator that registers ``fit`` as recipe ``name``.

    For example::

        @register("standard", build=lambda info, **hp: SmallCNN(info, **hp))
        def fit_standard(model, info, profile, device, **hp): ...
    """

    def decorator(fit: Callable) -> Callable:
        if uses is not None:
            unknown = set(uses) - set(Profile.__dataclass_fields__)
            if unknown:
                raise ValueError(f"recipe {name!r}: uses= names unknown profile fields {sorted(unknown)}")
        _RECIPES[name] = Recipe(name, build, fit, dict(defaults or {}),
                                description or (fit.__doc__ or "").strip().split("\n")[0],
                                None if uses is None else tuple(sorted(set(uses))))
        return fit

    return decorator


def _load_recipe_modules() -> None:
    global _loaded_modules
    if not _loaded_modules:
        for module in RECIPE_MODULES:
            importlib.import_module(module)
        _loaded_modules = True


def recipes() -> dict[str, Recipe]:
    """Every registered recipe, by name."""
    _load_recipe_modules()
    return dict(_RECIPES)


def recipe(name: str) -> Recipe:
    known = recipes()
    if name not in known:
        raise ValueError(f"unknown recipe {name!r}: choose one of {sorted(known)}")
    return known[name]


# --------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------
def configuration(name: str, dataset: str | DatasetInfo = "fashion-mnist",
                  profile: str | Profile | None = None, seed: int = 0, **hyperparameters) -> dict:
    """The full configuration that keys a checkpoint (JSON-serialisable)."""
    rec = recipe(name)
    info = dataset_info(dataset) if not isinstance(dataset, DatasetInfo) else dataset
    prof = get_profile(profile)
    unknown = set(hyperparameters) - set(rec.defaults)
    if unknown:
        raise ValueError(
            f"recipe {name!r} has no hyperparameter(s) {sorted(unknown)}; "
            f"it takes {sorted(rec.defaults)}"
        )
    hp = {**rec.defaults, **hyperparameters}
    budgets = prof.as_dict()
    if rec.uses is not None:
        budgets = {"name": prof.name, **{k: budgets[k] for k in rec.uses}}
    return {"recipe": name, "dataset": info.name, "profile": budgets,
            "hyperparameters": hp, "seed": int(seed), "version": __version__}


def checkpoint_path(config: dict) -> Path:
    """Where the checkpoint of ``config`` lives: ``<cache>/models/<recipe>-<dataset>-<profile>-<hash>.pt``."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = f"{config['recipe']}-{config['dataset']}-{config['profile']['name']}-{digest}.pt"
    return cache_dir() / "models" / name


def save_checkpoint(model: nn.Module, path: Path, config: dict, facts: dict | None = None) -> None:
    """Write ``model``'s weights, its configuration and facts atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": json.dumps(config, sort_keys=True, default=str),
        "facts": json.dumps(facts or {}, sort_keys=True, default=str),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CorruptCheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit its model."""


def load_checkpoint(model: nn.Module, path: Path, config: dict) -> dict:
    """Load weights into ``model``; return the stored facts.  Raises CorruptCheckpointError."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        stored = json.loads(payload["config"])
        facts = json.loads(payload["facts"])
        if stored != json.loads(json.dumps(config, sort_keys=True, default=str)):
            raise ValueError("the stored configuration differs from the requested one")
        model.load_state_dict(payload["state_dict"])
    except Exception as err:  # pickle errors, truncation, missing keys, shape mismatch ...
        raise CorruptCheckpointError(f"{path}: {type(err).__name__}: {err}") from err
    return facts


def get(name: str, dataset: str | DatasetInfo = "fashion-mnist", profile: str | Profile | None = None,
        *, seed: int = 0, device: torch.device | str | None = None, retrain: bool = False,
        **hyperparameters) -> nn.Module:
    """A trained model of recipe ``name`` in eval mode, on ``device`` (default: :func:`coursepkg.config.device`).

    Loaded from the cache when present, else trained with the profile's budgets and saved.
    ``model.zoo_facts`` holds what the recipe recorded while training (its training time,
    for instance) and ``model.zoo_config`` the configuration that keys it.
    """
    config = configuration(name, dataset, profile, seed, **hyperparameters)
    rec = recipe(name)
    info = dataset_info(config["dataset"])
    prof = get_profile(profile)
    dev = torch.device(device) if device is not None else default_device()
    path = checkpoint_path(config)
    hp = config["hyperparameters"]

    # The whole of loading or training runs on its own seeded generators: the caller's
    # random stream is the same after a cache hit as after training from scratch.
    with seeded(seed):
        model = rec.build(info, **hp)
        facts = None
        if path.exists() and not retrain:
            try:
                facts = load_checkpoint(model, path, config)
            except CorruptCheckpointError as err:
                warnings.warn(f"zoo: checkpoint unreadable, retraining ({err})", RuntimeWarning, stacklevel=2)
                seed_everything(seed)  # inside seeded(): a fresh model, initialised as a first build
                model = rec.build(info, **hp)
        if facts is None:
            start = time.perf_counter()
            model.to(dev)
            view = prof if rec.uses is None else ProfileView(prof, rec.uses, name)
            facts = dict(rec.fit(model, info, view, dev, seed=seed, **hp) or {})
            facts.setdefault("train_seconds", time.perf_counter() - start)
            facts.setdefault("device", str(dev))
            save_checkpoint(model, path, config, facts)
    model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.zoo_facts = facts
    model.zoo_config = config
    return model


def cached(name: str, dataset: str | DatasetInfo = "fashion-mnist", profile: str | Profile | None = None,
           *, seed: int = 0, **hyperparameters) -> bool:
    """Whether ``get`` would load rather than train."""
    return checkpoint_path(configuration(name, dataset, profile, seed, **hyperparameters)).exists()


# --------------------------------------------------------------------------------------
# Training the whole zoo at once: ``python -m coursepkg.zoo``
# --------------------------------------------------------------------------------------
def train_all(names: list[str] | None = None, dataset: str = "fashion-mnist",
              profile: str | Profile | None = None) -> list[dict]:
    """Train (or load) every recipe in ``names`` (default: all) with its default
    hyperparameters; one record per recipe: ``name``, ``cached`` (loaded, not trained),
    ``train_seconds`` (as recorded when it was trained), ``device``.

    Chapters that ask for a variant (other hyperparameters) still train it on first use.
    """
    records = []
    for name in names or sorted(recipes()):
        was_cached = cached(name, dataset, profile)
        model = get(name, dataset, profile)
        facts = model.zoo_facts or {}
        records.append({"name": name, "cached": was_cached,
                        "train_seconds": round(float(facts.get("train_seconds", 0.0)), 1),
                        "device": facts.get("device", "")})
    return records


def main(argv: list[str] | None = None) -> int:
    """Command line: train the zoo and print (or write as JSON) each recipe's training time."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m coursepkg.zoo",
                                     description="Train (or load) every recipe of the zoo.")
    parser.add_argument("names", nargs="*", help="recipes to train (default: all)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--json", type=Path, help="also write the records to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(recipes()))
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}: choose from {sorted(recipes())}")
    records = []
    for name in args.names or sorted(recipes()):
        record = train_all([name], args.dataset)[0]
        records.append(record)
        state = "cached" if record["cached"] else "trained"
        print(f"{name:28s} {state:8s} {record['train_seconds']:8.1f} s  {record['device']}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    # Run as a script, this file is ``__main__``, a second copy of the module: the recipes
    # register with ``coursepkg.zoo``, so delegate to that one.
    from coursepkg.zoo import main as _main

    raise SystemExit(_main())
