"""Paired comparisons: two accuracies measured on the *same* images.

When a claimed and an adaptive accuracy, or a defence and the undefended model, are measured
on the same n images, their two Wilson intervals overlap far more often than the two
figures are indistinguishable: most images count the same way in both, and only the images
on which the two evaluations *disagree* carry information.  The exact test for that case is
McNemar's (1947) in its exact, conditional form, i.e. a sign test on the discordant images:

* ``only_a`` -- images correct under evaluation A and wrong under B;
* ``only_b`` -- images correct under B and wrong under A.

If A and B had the same accuracy, each of the ``d = only_a + only_b`` discordant images
would fall on either side with probability 1/2, so ``only_a ~ Binomial(d, 1/2)``.  The
one-sided p-value that B is *lower* than A is ``P(X >= only_a)`` for ``X ~ Binomial(d, 1/2)``,
``sum_{j >= only_a} C(d, j) / 2^d``.  Seven images broken by an adaptive attack and none the
other way give ``p = 2^-7 ≈ 0.008``, however wide the two intervals are.

* :func:`~coursepkg.evaluate.paired_test` -- the test, as a :class:`PairedComparison`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALTERNATIVES = ("lower", "higher", "two-sided")


@dataclass(frozen=True)
class PairedComparison:
    """Two evaluations of the same images, compared image by image (exact McNemar test)."""

    n: int  #: the images both evaluations judged
    a: float  #: accuracy under evaluation A
    b: float  #: accuracy under evaluation B
    only_a: int  #: images A counts correct and B wrong
    only_b: int  #: images B counts correct and A wrong
    p_value: float  #: exact p-value of the stated alternative
    alternative: str  #: "lower": B below A; "higher": B above A; "two-sided": B differs from A

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the alternative is supported at level ``alpha``."""
        return self.p_value < alpha

    def __str__(self) -> str:
        return (f"{self.only_a} of {self.n} images only A, {self.only_b} only B, "
                f"p = {self.p_value:.2g} ({self.alternative})")


def _mask(values, name: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    if t.dim() != 1 or t.dtype != torch.bool:
        raise ValueError(f"{name} must be a 1-D boolean mask (per image: correct), got "
                         f"dtype {t.dtype} and shape {tuple(t.shape)}")
    return t.cpu()


def sign_test_p(successes: int, trials: int, alternative: str = "greater") -> float:
    """Exact binomial p-value of ``successes`` in ``trials`` at probability 1/2 (1.0 when
    ``trials`` is 0); ``alternative`` is scipy's "greater", "less" or "two-sided"."""
    if trials == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(successes), int(trials), 0.5, alternative=alternative).pvalue)


def paired_test(correct_a, correct_b, *, alternative: str = "lower") -> PairedComparison:
    """Compare two per-image masks of the same images with the exact McNemar (sign) test.

    ``alternative="lower"`` asks whether B's accuracy is below A's (e.g. A the claimed
    evaluation, B the adaptive one); ``"higher"`` whether it is above (A the undefended
    model, B the defence); ``"two-sided"`` whether they differ.
    """
    a, b = _mask(correct_a, "correct_a"), _mask(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"the two masks must judge the same images: got {len(a)} and {len(b)}")
    if len(a) == 0:
        raise ValueError("the masks are empty: a comparison of no images is undefined")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    d = only_a + only_b
    if alternative == "lower":
        p = sign_test_p(only_a, d, "greater")
    elif alternative == "higher":
        p = sign_test_p(only_b, d, "greater")
    else:
        p = sign_test_p(only_a, d, "two-sided")
    return PairedComparison(len(a), float(a.float().mean()), float(b.float().mean()), only_a, only_b,
                            p, alternative)
