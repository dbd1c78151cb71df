"""What every exercise check returns: a pass, or a hint that does not give the answer away."""

from __future__ import annotations

from dataclasses import dataclass

PASS_MARK = "✓ Correct"
FAIL_MARK = "✗ Not yet"


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a ``check_*`` function of :mod:`coursepkg.exercises`.

    ``passed`` is the verdict; ``message`` says what was measured (on a pass) or gives a hint
    (on a failure) -- never the solution.  In a notebook the result shows as one line.
    """

    exercise: str
    passed: bool
    message: str

    def __str__(self) -> str:
        mark = PASS_MARK if self.passed else FAIL_MARK
        return f"{mark} ({self.exercise}): {self.message}"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return self.passed


def passed(exercise: str, message: str) -> CheckResult:
    """A passing verdict for ``exercise``, with what was measured."""
    return CheckResult(exercise, True, message)


def hint(exercise: str, message: str) -> CheckResult:
    """A failing verdict for ``exercise``, with a hint."""
    return CheckResult(exercise, False, message)


def call_student(exercise: str, function, *args, **kwargs):
    """Call the student's ``function``; return ``(value, None)`` or ``(None, CheckResult)``.

    A student function that is missing, not callable, unfinished (``NotImplementedError``)
    or raising gets a failing verdict naming the problem, instead of a traceback.
    """
    if function is None or not callable(function):
        return None, hint(exercise, f"expected a function, got {type(function).__name__}: "
                                    "define it in the cell above and run that cell first")
    try:
        return function(*args, **kwargs), None
    except NotImplementedError:
        return None, hint(exercise, "the function is not written yet (it raises "
                                    "NotImplementedError): replace the stub's body")
    except Exception as error:  # noqa: BLE001 -- the student's code failed: say how
        return None, hint(exercise, f"the function raised {type(error).__name__}: {error}")


def zoo_setting(recipe: str = "standard", n_images: int = 64, *, seed: int = 0,
                device=None):
    """``(model, x, y)``: the zoo's ``recipe`` and the first ``n_images`` test images of
    Fashion-MNIST in the fixed order ``seed`` of :func:`coursepkg.data.subset` (seed 0: the
    chapters' own first images), on ``device`` (default :func:`coursepkg.config.device`).

    The model is loaded inside ``torch.random.fork_rng``: the zoo reseeds torch, and a check
    must leave the notebook's random generators as it found them.
    """
    import torch

    from ..config import device as default_device
    from ..data import dataset_info, load_dataset, subset
    from ..zoo import get

    info = dataset_info("fashion-mnist")
    dev = torch.device(device) if device is not None else default_device()
    with torch.random.fork_rng():
        model = get(recipe, dataset=info, device=dev)
    x, y = subset(*load_dataset(info.name, "test"), n_images, seed=seed)
    return model, x.to(dev), y.to(dev)
