"""Defences of the course: training losses and defended models.

Each chapter adds its own module here; import the one you need, for instance
``from coursepkg.defences.augmentation import pgd_training``.

* :mod:`coursepkg.defences.augmentation` -- adversarial training (FGSM, R+FGSM, fast FGSM,
  PGD), adversarial logit pairing and TRADES, as losses for :func:`coursepkg.train.train`.
"""
