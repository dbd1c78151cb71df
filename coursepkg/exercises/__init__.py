"""Checks for the book's coding exercises: each says *pass* or gives a hint, never the answer.

A checked exercise ends, in the book and in the student copy (``book/student/``), with a cell
that calls one ``check_*`` function of this package on what the student wrote -- usually a
function, which the check runs on its own test images and models -- and shows a
:class:`~coursepkg.exercises.CheckResult`: ``✓ Correct`` with what it measured, or
``✗ Not yet`` with a hint.  The book's own solution passes the same check and the student
copy's starting code fails it (``tests/test_exercises.py`` runs both), so a check cannot drift
from the reference.

One module per chapter; every check is re-exported here.
"""

from . import (augmentation, certified, detection, gradient_regularisation, purification,
               randomness, threat_models, why_defending_is_hard)
from ._check import CheckResult
from .augmentation import *
from .certified import *
from .detection import *
from .gradient_regularisation import *
from .purification import *
from .randomness import *
from .threat_models import *
from .why_defending_is_hard import *

__all__ = ["CheckResult"] + [
    name
    for module in (threat_models, augmentation, purification, gradient_regularisation,
                   randomness, detection, why_defending_is_hard, certified)
    for name in module.__all__
]
