"""What ``python -m coursepkg.report`` reads: the model and the images, with one-line errors.

* :func:`~coursepkg.report.load_model` -- ``MODEL`` is either a Python entry point ``package.module:factory``
  (a callable, called with no arguments, returning an ``nn.Module`` from images in [0, 1]
  to logits; ``package.module:Class`` works too) or a TorchScript file saved with
  ``torch.jit.save`` (read with ``torch.jit.load``, no pickle);
* :func:`~coursepkg.report.load_data` -- a ``.pt`` file holding a dict with ``x`` (float images in [0, 1],
  N x C x H x W) and ``y`` (integer labels), or a tuple ``(x, y)``; read with
  ``torch.load(..., weights_only=True)``, which unpickles tensors and plain containers only;
* :func:`~coursepkg.report.course_images` -- the course's evaluation images of a dataset: the first ``n`` of
  ``subset(*load_dataset(name, "test"), profile.eval_subset)``, the images every chapter uses.

Every failure is a ``ValueError`` whose one line says what to do.
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ..config import Profile
from ..config import profile as get_profile

#: ``package.module:factory`` (the factory may be an attribute path, ``module:Class.build``)
ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def load_model(spec: str, *, device: torch.device | str | None = None) -> nn.Module:
    """The model named by ``spec`` (an existing TorchScript file, else ``package.module:factory``), in eval mode."""
    from ..config import device as default_device

    dev = torch.device(device) if device is not None else default_device()
    path = Path(spec)
    if path.is_file():
        model = _load_torchscript(path, dev)
    elif ENTRY_POINT.fullmatch(spec):
        model = _load_entry_point(spec)
    elif "/" in spec or path.suffix:
        raise ValueError(f"no model file {spec}: give the path of a TorchScript file "
                         "(torch.jit.save) or an entry point package.module:factory")
    else:
        raise ValueError(f"MODEL must be a TorchScript file or an entry point package.module:factory, "
                         f"got {spec!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} gave a {type(model).__name__}, not a torch.nn.Module; the factory "
                         "must return the model (built and with its weights loaded)")
    return model.to(dev).eval()


def _load_torchscript(path: Path, dev: torch.device) -> nn.Module:
    try:
        with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; it still loads
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location=dev)
    except Exception as err:  # a state_dict, a pickled module, any other file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a TorchScript file ({reason[:120]}); save the model with "
                         "torch.jit.save(torch.jit.script(model), path), or give an entry point "
                         "package.module:factory") from None


def _load_entry_point(spec: str) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"an entry point is package.module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ValueError(f"cannot import {module_name!r} ({type(err).__name__}: {err}); install the package "
                         "or put its folder on PYTHONPATH, and check MODEL is package.module:factory") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no {attr!r}; check the factory's name in "
                             f"MODEL {spec!r}")
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise ValueError(f"{spec} is a {type(target).__name__}, not a callable that returns a model")
    try:
        return target()
    except Exception as err:
        raise ValueError(f"the factory {spec} failed ({type(err).__name__}: {err}); it must build the "
                         "model with no arguments") from None


def load_data(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from a ``.pt`` file: a dict with ``x`` and ``y``, or a tuple ``(x, y)``.

    Labels are returned as int64.  The images' range and shape are checked by
    :func:`~coursepkg.report.core.check_model_and_data`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no data file {path}: save your images with torch.save({{'x': x, 'y': y}}, path)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} cannot be read as tensors ({reason[:120]}); save it with "
                         "torch.save({'x': x, 'y': y}, path)") from None
    if isinstance(data, dict):
        if "x" not in data or "y" not in data:
            raise ValueError(f"{path} holds a dict with keys {sorted(map(str, data))}; it needs 'x' (images) "
                             "and 'y' (labels)")
        x, y = data["x"], data["y"]
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise ValueError(f"{path} holds a {type(data).__name__}; save a dict {{'x': images, 'y': labels}} "
                         "or a tuple (images, labels)")
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise ValueError(f"{path}: x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{path}: y must hold integer labels, got dtype {y.dtype}; save y.long()")
    return x, y.long()


def course_images(dataset: str, n: int | None = None, *,
                  profile: str | Profile | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (default: all) of the course's evaluation images of ``dataset``."""
    from ..data import load_dataset, subset

    p = get_profile(profile)
    x, y = subset(*load_dataset(dataset, "test"), p.eval_subset)
    if n is not None:
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"n must be a positive number of images, got {n!r}")
        if int(n) > len(x):
            x, y = subset(*load_dataset(dataset, "test"), int(n))
        x, y = x[:int(n)], y[:int(n)]
    return x, y
