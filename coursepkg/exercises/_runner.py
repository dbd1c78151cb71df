"""One canonical check in a fresh process: the worker of :mod:`coursepkg.exercises.grade`.

``python -m coursepkg.exercises._runner`` reads one JSON object from its standard input::

    {"nonce": "...", "definitions": "<the student's definitions>",
     "function": "check_fgsm", "args": ["my_fgsm"], "kwargs": {}}

and, in this order:

1. imports a fresh :mod:`coursepkg.exercises` and takes ``function`` and
   :class:`~coursepkg.exercises.CheckResult` from it *before* any student code runs;
2. records every function, class and module that :mod:`coursepkg` (and the few modules its
   checks compute with: ``torch``, ``torch.nn.functional``, ``builtins``, ...) exposes;
3. executes the student's definitions in a namespace of their own, evaluates the check's
   arguments there (the expressions of the book's check cell, e.g. ``my_fgsm``), and calls
   the check it took in step 1;
4. refuses the verdict if anything recorded in step 2 was replaced (a monkeypatched check,
   reference attack or helper), or if the check did not return a genuine ``CheckResult``.

The student's code writes to the standard error (its prints are not the verdict); the
verdict is one line ``<nonce><json>`` written to the original standard output, so a
student's own "✓ Correct" print is never read as one.
"""

from __future__ import annotations

import json
import os
import sys

#: Modules besides ``coursepkg.*`` whose callables a check relies on.
_WATCHED = ("builtins", "math", "torch", "torch.nn", "torch.nn.functional", "torch.autograd",
            "numpy", "scipy.stats")


def _fingerprint(obj) -> tuple:
    code = getattr(obj, "__code__", None)
    return (id(obj), id(code), id(getattr(obj, "__defaults__", None)),
            id(getattr(obj, "__kwdefaults__", None)))


def _snapshot() -> dict[tuple[str, str], tuple]:
    """``{(module or class, attribute): fingerprint}`` of every callable the checks may use."""
    import inspect

    watched = {}
    names = [n for n in list(sys.modules) if n == "coursepkg" or n.startswith("coursepkg.")]
    names += [n for n in _WATCHED if n in sys.modules]
    for name in names:
        module = sys.modules.get(name)
        if module is None:
            continue
        for attr, value in list(vars(module).items()):
            if callable(value) or inspect.ismodule(value):
                watched[(name, attr)] = _fingerprint(value)
                if inspect.isclass(value) and (value.__module__ or "").startswith("coursepkg"):
                    for member, inner in list(vars(value).items()):
                        if callable(inner) or isinstance(inner, (staticmethod, classmethod,
                                                                 property)):
                            watched[(f"{name}.{attr}", member)] = _fingerprint(inner)
    import torch

    for member, inner in list(vars(torch.Tensor).items()):
        if callable(inner):
            watched[("torch.Tensor", member)] = _fingerprint(inner)
    return watched


def _current(key: tuple[str, str]):
    owner, attr = key
    module = sys.modules.get(owner)
    if module is not None:
        return vars(module).get(attr, _MISSING)
    base, _, cls = owner.rpartition(".")
    holder = sys.modules.get(base)
    klass = getattr(holder, cls, None) if holder is not None else None
    if owner == "torch.Tensor":
        import torch
        klass = torch.Tensor
    return vars(klass).get(attr, _MISSING) if klass is not None else _MISSING


_MISSING = object()


def _tampered(before: dict[tuple[str, str], tuple]) -> list[str]:
    changed = []
    for key, fingerprint in before.items():
        now = _current(key)
        if now is _MISSING or _fingerprint(now) != fingerprint:
            changed.append(".".join(key))
    return changed


def run(request: dict) -> dict:
    """The verdict of one check: ``{"status": ..., "message": ...}`` (see the module's doc)."""
    import ast

    from coursepkg import exercises
    from coursepkg.exercises import _check

    check = getattr(exercises, request["function"], None)
    if check is None or request["function"] not in exercises.__all__:
        return {"status": "error", "message": f"coursepkg.exercises has no "
                                              f"{request['function']}: update coursepkg"}
    result_type = _check.CheckResult
    before = _snapshot()
    namespace: dict = {"__name__": "__student__"}
    try:
        exec(compile(request["definitions"], "<student's definitions>", "exec"), namespace)
    except BaseException as error:  # noqa: BLE001 -- the student's code failed: say how
        return {"status": "error", "message": f"the notebook's definitions raised "
                                              f"{type(error).__name__}: {error}"}
    try:
        args = [eval(compile(ast.Expression(ast.parse(a, mode="eval").body), "<check>", "eval"),
                     namespace) for a in request["args"]]
        kwargs = {k: eval(compile(v, "<check>", "eval"), namespace)
                  for k, v in request.get("kwargs", {}).items()}
    except NameError as error:
        return {"status": "error", "message": f"NameError: {error} (define it in the "
                                              "exercise's solution cell)"}
    except BaseException as error:  # noqa: BLE001
        return {"status": "error", "message": f"{type(error).__name__}: {error}"}
    try:
        result = check(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 -- a check never raises on its own
        return {"status": "error", "message": f"the check raised {type(error).__name__}: "
                                              f"{error}"}
    changed = _tampered(before)
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        return {"status": "error", "message": f"the submission replaced {shown}: a check's "
                                              "verdict counts only on the package as shipped"}
    if type(result) is not result_type:
        return {"status": "error", "message": f"the check returned {type(result).__name__}, "
                                              "not a CheckResult"}
    status = "pass" if result.passed is True else "not yet"
    return {"status": status, "message": str(result)}


def main() -> int:
    request = json.loads(sys.stdin.read())
    nonce = request.pop("nonce")
    verdict_fd = os.dup(1)       # the verdict's channel: the original standard output
    os.dup2(2, 1)                # everything else printed goes to the standard error
    sys.stdout = sys.stderr
    verdict = run(request)
    os.write(verdict_fd, (nonce + json.dumps(verdict, ensure_ascii=False) + "\n")
             .encode("utf-8"))
    os.close(verdict_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
