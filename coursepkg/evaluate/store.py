"""The results store: per-image evaluation results, kept in the cache beside the zoo's models.

An evaluation of the course is a pure function of what decides it: the model (its weights,
buffers and how it is wrapped), the attacks with every budget, the images and labels, the
seed its randomness is drawn from, and the code that runs it.  So, like a trained model, a
per-image result is computed once and read back afterwards -- by the build and then by
nbval, and by chapter 7's table when it asks the same question a chapter asked.

* :func:`digest` -- a SHA-256 of any such ingredient: tensors by their bytes, modules by
  their class, their plain attributes and their ``state_dict``, functions by their code,
  defaults, closures and the globals they read, ``functools.partial`` by its function and
  arguments.  Anything it cannot read exactly raises :class:`Uncacheable`, and the
  evaluation then simply runs (a store that cannot tell two questions apart must not
  answer either);
* ``source_digest()`` -- a digest of the package's own source: a result computed by other
  code is stale and never read back;
* :func:`lookup` / :func:`save` -- one ``.pt`` file per key under ``cache_dir()/results``,
  written atomically and read with ``weights_only=True``.  A file that cannot be read, or
  whose recorded key or shapes disagree, is treated as absent (and recomputed).

``COURSEPKG_RESULTS_STORE=off`` (or ``0``, ``false``, ``no``) turns the store off.
``COURSEPKG_TIMINGS=FILE`` appends one JSON line per evaluation to ``FILE`` (its kind, its
attacks, the number of images, the seconds it took and whether it was read back), which
``benchmarks/where_the_seconds_go.py`` sums per chapter.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
import tempfile
import types
import warnings
from pathlib import Path

import torch
from torch import nn

STORE_ENV = "COURSEPKG_RESULTS_STORE"
TIMINGS_ENV = "COURSEPKG_TIMINGS"
FORMAT = 1  #: the layout of a stored result; bump it when the payload changes
_OFF = ("0", "off", "false", "no")

#: attributes every ``nn.Module`` has: the module's own state is read from the others
_MODULE_INTERNALS = frozenset(nn.Module().__dict__) | {"zoo_facts"}
_PLAIN = (type(None), bool, int, float, complex, str, bytes)


class Uncacheable(TypeError):
    """An ingredient of an evaluation that :func:`digest` cannot read exactly."""


def enabled() -> bool:
    """Whether the store is on (``COURSEPKG_RESULTS_STORE`` unset or not ``off``)."""
    return os.environ.get(STORE_ENV, "").strip().lower() not in _OFF


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over every ``.py`` file of the installed ``coursepkg`` (path and content)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()


def digest(*parts) -> str:
    """The SHA-256 (hex) of ``parts``; raises :class:`Uncacheable` for what it cannot read."""
    h = hashlib.sha256()
    _feed(h, parts, set(), {})
    return h.hexdigest()


def _shared(h, obj, seen: set, memo: dict, feed) -> None:
    """Feed ``obj`` (a tensor, module or function) as the digest of its own encoding, computed
    once per :func:`digest` call however often it is reached (the same images held by several
    attacks, the same baseline wrapped twice)."""
    marker = id(obj)
    if marker not in memo:
        inner = hashlib.sha256()
        feed(inner, obj, seen | {marker}, memo)
        memo[marker] = inner.digest()
    h.update(memo[marker])


def _feed(h, obj, seen: set, memo: dict) -> None:  # noqa: C901 -- one case per kind of ingredient
    """Write a typed, unambiguous encoding of ``obj`` into the hash ``h``."""
    def tag(name: str) -> None:
        h.update(b"\x00" + name.encode() + b"\x01")

    if isinstance(obj, _PLAIN):
        tag(type(obj).__name__)
        h.update(repr(obj).encode())
        return
    if isinstance(obj, torch.Tensor):
        tag("tensor")
        _shared(h, obj, seen, memo, _feed_tensor)
        return
    if isinstance(obj, (torch.dtype, torch.device)):
        tag("torch")
        h.update(str(obj).encode())
        return
    marker = id(obj)
    if marker in seen:  # a cycle (a module holding itself, a recursive function)
        tag("seen")
        return
    seen = seen | {marker}
    if isinstance(obj, (list, tuple)):
        tag(type(obj).__name__)
        for item in obj:
            _feed(h, item, seen, memo)
        return
    if isinstance(obj, (dict, types.MappingProxyType)):
        tag("dict")
        for key in sorted(obj, key=repr):
            _feed(h, key, seen, memo)
            _feed(h, obj[key], seen, memo)
        return
    if isinstance(obj, (set, frozenset)):
        tag("set")
        for item in sorted(obj, key=repr):
            _feed(h, item, seen, memo)
        return
    if isinstance(obj, nn.Module):
        _shared(h, obj, seen, memo, _feed_module)
        return
    if isinstance(obj, functools.partial):
        tag("partial")
        _feed(h, (obj.func, obj.args, obj.keywords), seen, memo)
        return
    if isinstance(obj, types.FunctionType):
        _shared(h, obj, seen, memo, _feed_function)
        return
    if isinstance(obj, types.MethodType):
        tag("method")
        _feed(h, (obj.__func__, obj.__self__), seen, memo)
        return
    if isinstance(obj, (types.BuiltinFunctionType, type, types.ModuleType)):
        tag("named")
        h.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj.__name__)}".encode())
        return
    if isinstance(obj, torch.Generator):
        tag("generator")
        _feed(h, obj.get_state(), seen, memo)
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        tag("dataclass")
        h.update(type(obj).__qualname__.encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, seen, memo)
        return
    if hasattr(obj, "dtype") and hasattr(obj, "tobytes"):  # a NumPy array or scalar
        tag("numpy")
        h.update(f"{obj.dtype}{getattr(obj, 'shape', ())}".encode())
        h.update(obj.tobytes())
        return
    raise Uncacheable(f"cannot digest a {type(obj).__qualname__}")


def _feed_tensor(h, obj: torch.Tensor, seen: set, memo: dict) -> None:
    t = obj.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _feed_module(h, module: nn.Module, seen: set, memo: dict) -> None:
    """A module: every submodule's class, mode, hooks and plain attributes, then its state."""
    h.update(b"\x00module\x01")
    for name, sub in module.named_modules():
        if sub._forward_hooks or sub._forward_pre_hooks or sub._backward_hooks:
            raise Uncacheable(f"module {name or type(sub).__name__} has hooks")
        h.update(f"{name}:{type(sub).__module__}.{type(sub).__qualname__}:{sub.training}".encode())
        own = {k: v for k, v in vars(sub).items() if k not in _MODULE_INTERNALS}
        _feed(h, own, seen, memo)
    for name, value in module.state_dict(keep_vars=True).items():
        h.update(name.encode())
        _feed(h, value, seen, memo)


def _feed_function(h, fn: types.FunctionType, seen: set, memo: dict) -> None:
    """A function: its code, defaults and closure, and the values of the globals it reads.

    A function of the installed package is named only (its code is in
    ``source_digest()``); a function defined elsewhere (a notebook, a test) is read whole,
    so a notebook's ``lambda m, x, y: pgd(m, x, y, steps=STEPS)`` changes its digest when
    ``STEPS`` does.
    """
    h.update(b"\x00function\x01")
    h.update(f"{fn.__module__}.{fn.__qualname__}".encode())
    if (fn.__module__ or "").split(".")[0] == "coursepkg":
        closure = [c.cell_contents for c in (fn.__closure__ or ())]
        _feed(h, (fn.__defaults__, fn.__kwdefaults__, closure), seen, memo)
        return
    _feed_code(h, fn.__code__)
    closure = [c.cell_contents for c in (fn.__closure__ or ())]
    read = {name: fn.__globals__[name] for name in _global_names(fn.__code__) if name in fn.__globals__}
    _feed(h, (fn.__defaults__, fn.__kwdefaults__, closure, read), seen, memo)


def _feed_code(h, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            h.update(repr(const).encode())


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------
def store_dir() -> Path:
    """Where results are kept: ``results/`` in the course's cache directory."""
    from ..config import cache_dir

    return cache_dir() / "results"


def path_for(key: str) -> Path:
    return store_dir() / key[:2] / f"{key}.pt"


def key_for(kind: str, *parts) -> str | None:
    """The key of an evaluation of ``kind`` decided by ``parts``, or None (store off, or an
    ingredient :func:`digest` cannot read)."""
    if not enabled():
        return None
    try:
        return digest(kind, FORMAT, source_digest(), *parts)
    except Uncacheable:
        return None


def lookup(key: str | None) -> dict | None:
    """The payload stored under ``key``, or None when absent, unreadable or not this key's."""
    if key is None:
        return None
    path = path_for(key)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: recompute, and overwrite it
        warnings.warn(f"results store: {path.name} unreadable, recomputing ({type(err).__name__})",
                      RuntimeWarning, stacklevel=3)
        return None
    if not isinstance(payload, dict) or payload.get("key") != key or payload.get("format") != FORMAT:
        warnings.warn(f"results store: {path.name} holds another result, recomputing",
                      RuntimeWarning, stacklevel=3)
        return None
    return payload


def save(key: str | None, payload: dict) -> None:
    """Store ``payload`` under ``key`` (atomically: a reader never sees half a file)."""
    if key is None:
        return
    path = path_for(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
        os.close(fd)
        torch.save({**payload, "key": key, "format": FORMAT}, tmp)
        os.replace(tmp, path)
    except OSError as err:  # a full or read-only disk costs speed, never a result
        warnings.warn(f"results store: could not write {path} ({err.strerror})", RuntimeWarning,
                      stacklevel=3)



def record(kind: str, names, n: int, seconds: float, hit: bool) -> None:
    """Append one evaluation's cost to ``$COURSEPKG_TIMINGS`` (nothing when it is unset)."""
    target = os.environ.get(TIMINGS_ENV, "").strip()
    if not target:
        return
    line = {"pid": os.getpid(), "time": time.time(), "kind": kind, "attacks": list(names), "n": int(n),
            "seconds": round(float(seconds), 4), "hit": bool(hit)}
    try:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    except OSError:
        pass  # a measurement aid: never a reason to fail an evaluation
