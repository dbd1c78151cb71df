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
:func:`apgd`              L∞ or L2           Croce and Hein 2020 (CE or DLR loss)
:func:`apgd_targeted`     L∞ or L2           Croce and Hein 2020 (APGD-T, top-k targets)
:func:`cw_l2`             L2 (minimal)       Carlini and Wagner 2017
:func:`jsma`              L0                 Papernot et al. 2016
:func:`deepfool`          L2 (minimal)       Moosavi-Dezfooli et al. 2016
:func:`spsa`              L∞, gradient-free  Uesato et al. 2018
:mod:`.blackbox`          substitute model   Papernot et al. 2017
========================  =================  ======================================
"""

from ._common import attack_loss, attack_mode, margin
from .gradient import bim, fgsm, pgd, rfgsm
from .apgd import apgd, apgd_targeted, dlr_loss
from . import blackbox
from .blackbox import train_substitute, transfer_attack
from .cw import cw_l2
from .deepfool import deepfool
from .jsma import jsma
from .spsa import spsa

__all__ = ["fgsm", "rfgsm", "pgd", "bim", "apgd", "apgd_targeted", "dlr_loss", "cw_l2", "deepfool", "jsma", "spsa",
           "blackbox", "train_substitute", "transfer_attack", "attack_loss", "attack_mode", "margin"]
