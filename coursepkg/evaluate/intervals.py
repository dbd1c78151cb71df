"""Confidence intervals for accuracies measured on a few hundred images.

An accuracy of 0.61 on 500 images is a binomial proportion: its 95% interval is about
±4 points, so two models 2 points apart on 100 images cannot be told apart.  Every
accuracy the course reports carries an interval from here.

* :func:`~coursepkg.evaluate.wilson_interval` -- the Wilson score interval (Wilson 1927), which keeps its
  coverage near the nominal level even at proportions near 0 or 1, where the textbook
  normal interval ``p ± 1.96 sqrt(p(1-p)/n)`` collapses to a point;
* :func:`~coursepkg.evaluate.clopper_pearson_interval` -- the exact (conservative) interval of Clopper and
  Pearson (1934), from quantiles of the beta distribution;
* :class:`~coursepkg.evaluate.Interval` -- a value with its interval, printed ``0.610 [0.567, 0.651]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


def _check(successes, n, confidence) -> tuple[int, int, float]:
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise ValueError(f"n must be a positive integer (the number of examples), got {n!r}")
    if isinstance(successes, bool) or int(successes) != successes or not 0 <= int(successes) <= int(n):
        raise ValueError(f"successes must be an integer in [0, n={n}], got {successes!r}")
    if not 0 < float(confidence) < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return int(successes), int(n), float(confidence)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion ``successes / n``.

    With ``z`` the two-sided normal quantile and ``p = successes / n``, the interval is
    ``(p + z^2/2n ± z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` (Wilson 1927; Brown, Cai
    and DasGupta 2001 recommend it for every n).
    """
    k, n, confidence = _check(successes, n, confidence)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends, free of rounding
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def clopper_pearson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact Clopper-Pearson interval: beta quantiles ``B(a/2; k, n-k+1)`` and ``B(1-a/2; k+1, n-k)``."""
    from scipy.stats import beta

    k, n, confidence = _check(successes, n, confidence)
    alpha = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


@dataclass(frozen=True)
class Interval:
    """A proportion measured on ``n`` examples and its 95% Wilson interval ``[lo, hi]``."""

    value: float
    lo: float
    hi: float
    n: int = 0

    @classmethod
    def of(cls, successes: int, n: int, confidence: float = 0.95) -> "Interval":
        """``successes / n`` with its Wilson interval."""
        lo, hi = wilson_interval(successes, n, confidence)
        return cls(successes / n, lo, hi, int(n))

    @classmethod
    def of_mask(cls, mask, confidence: float = 0.95) -> "Interval":
        """The share of True in a boolean tensor (or list), with its interval."""
        values = [bool(v) for v in (mask.tolist() if hasattr(mask, "tolist") else mask)]
        return cls.of(sum(values), len(values), confidence)

    @property
    def half_width(self) -> float:
        return max(self.value - self.lo, self.hi - self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"

    def __str__(self) -> str:
        return format(self)
