"""Evaluation: accuracy, robust accuracy, the strongest attack, the checklist, intervals.

One package, one module a topic; everything is re-exported here, so a chapter writes
``from coursepkg.evaluate import strongest``.

* :mod:`.core` -- :func:`accuracy`, :func:`robust_accuracy` (the per-example worst case
  over attacks), :func:`accuracy_vs_eps`, :func:`perturbation_norms` and the
  gradient-masking checklist :func:`sanity_checks`;
* :mod:`.intervals` -- Wilson and Clopper-Pearson intervals for every accuracy;
* :mod:`.strongest` -- :func:`strongest`, the course's strongest evaluation (APGD-CE,
  targeted APGD-DLR, PGD with both losses, SPSA when gradients look masked);
* :mod:`.randomised` -- evaluating a model that is random at test time over k draws;
* :mod:`.detection` -- ROC curves, AUC and attack success against a detector;
* :mod:`.transfer` -- :func:`transfer_matrix`, the success of examples crafted on one
  model against another (transferability);
* :mod:`.paired` -- :func:`paired_test`, the exact McNemar test for two accuracies measured
  on the same images;
* :mod:`.store` -- the results store: every seeded evaluation's per-image results, kept in
  the cache and read back by an identical later call.
"""

from .core import (AccuracyCurve, RobustResult, SanityCheck, SanityReport, accuracy, adversarial_examples,
                   accuracy_vs_eps, attack_name, attack_success_rate, perturbation_norms,
                   predictions, robust_accuracy, sanity_checks)
from .intervals import Interval, clopper_pearson_interval, wilson_interval
from .strongest import gradient_masking_flags, strongest, strongest_attacks
from .detection import (ROC, EvasionResult, auc, detection_attacks, detection_rate,  # noqa: F401
                        detected_at_fpr, detector_scores, evades, evasion, roc_curve, static_evasion,
                        threshold_at_fpr)
from .randomised import (RandomisedAccuracy, RandomisedRobustResult, draws_correct,  # noqa: F401
                         randomised_accuracy, randomised_robust_accuracy)
from .transfer import TransferMatrix, transfer_matrix
from .paired import PairedComparison, paired_test

__all__ = ["AccuracyCurve", "RobustResult", "adversarial_examples", "SanityCheck", "SanityReport", "accuracy",
           "accuracy_vs_eps", "attack_name", "attack_success_rate", "perturbation_norms",
           "predictions", "robust_accuracy", "sanity_checks", "Interval",
           "clopper_pearson_interval", "wilson_interval", "gradient_masking_flags", "strongest",
           "strongest_attacks", "TransferMatrix", "transfer_matrix", "PairedComparison", "paired_test"]
