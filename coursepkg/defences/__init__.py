"""Defences of the course: training losses and defended models.

Each chapter adds its own module here; import the one you need, for instance
``from coursepkg.defences.augmentation import pgd_training``.

* :mod:`coursepkg.defences.augmentation` -- adversarial training (FGSM, R+FGSM, fast FGSM,
  PGD), adversarial logit pairing and TRADES, as losses for :func:`coursepkg.train.train`.
* :mod:`coursepkg.defences.gradient_regularisation` -- the contractive penalty, double
  backpropagation and defensive distillation, as losses (chapter 4).
* :mod:`coursepkg.defences.detection` -- detector network, kernel density, MC-dropout
  uncertainty, their logistic regression, and ``Detected``: classifier + detector as one
  model (chapter 6).
* :mod:`coursepkg.defences.certified` -- randomised smoothing (Gaussian-noise training,
  PREDICT and CERTIFY) and interval bound propagation (bounds, certified accuracy, the IBP
  training loss): defences with a proof (chapter 8).
"""
