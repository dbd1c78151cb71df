"""Attacks as plain functions over batches: ``attack(model, x, y, *, eps, ...) -> x_adv``.

Every attack here

* works on a whole batch at once (no Python loop over examples) for any ``nn.Module``
  mapping images in [0, 1] to logits, on the CPU or CUDA;
* aims at the *true* labels ``y`` (never at the model's predictions);
* returns a detached tensor with x's dtype, device and shape, in [0, 1] and within its
  budget eps in its norm;
* leaves the model as it found it: its train/eval mode and every parameter's
  ``requires_grad`` are restored and no ``.grad`` is left on a parameter;
* rejects bad input with a one-line error naming the parameter.

========================  =================  ======================================
attack                    norm               paper
========================  =================  ======================================
:func:`fgsm`              L∞                 Goodfellow et al. 2015
:func:`rfgsm`             L∞                 Tramèr et al. 2018
:func:`pgd`, :func:`bim`  L∞ or L2           Madry et al. 2018; Kurakin et al. 2017
:func:`cw_l2`             L2 (minimal)       Carlini and Wagner 2017
:func:`jsma`              L0                 Papernot et al. 2016
:func:`deepfool`          L2 (minimal)       Moosavi-Dezfooli et al. 2016
:func:`spsa`              L∞, gradient-free  Uesato et al. 2018
:mod:`.blackbox`          substitute model   Papernot et al. 2017
========================  =================  ======================================
"""

from ._common import attack_loss, attack_mode, margin
from .gradient import bim, fgsm, pgd, rfgsm
from . import blackbox
from .blackbox import train_substitute, transfer_attack

__all__ = ["fgsm", "rfgsm", "pgd", "bim", "attack_loss", "attack_mode", "margin",
           "blackbox", "train_substitute", "transfer_attack"]

try:  # the slower attacks live in their own modules
    from .cw import cw_l2  # noqa: F401
    from .deepfool import deepfool  # noqa: F401
    from .jsma import jsma  # noqa: F401
    from .spsa import spsa  # noqa: F401

    __all__ += ["cw_l2", "deepfool", "jsma", "spsa"]
except ImportError:  # pragma: no cover - only while the package is being written
    pass
