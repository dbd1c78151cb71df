"""Checks for the coding exercises of chapter 8."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._check import CheckResult, call_student, hint, passed

__all__: list[str] = ["check_certified_radius"]

_RADIUS_RTOL = 1e-5  # the package's radius is float32, rounded down: a few ulps of 1e-7
_RADIUS_ATOL = 1e-6


def _smoothed_with_counts(n_a: torch.Tensor, n: int, sigma: float):
    """A :class:`~coursepkg.defences.certified.Smoothed` whose base classifier "voted" ``n_a``.

    Its ``counts`` returns, instead of sampling noise, a count vector per image: all
    selection votes (``n0``) for class 0, and ``n_a`` of the ``n`` estimation votes for
    class 0 with the rest for class 1 -- so ``certify`` runs the package's CERTIFY on
    given counts.
    """
    from ..defences.certified import Smoothed

    class FixedCounts(Smoothed):
        def counts(self, x, num):
            if num != n:  # the selection step: class 0 is the top class
                return torch.tensor([[num, 0]] * len(x))
            return torch.stack([n_a, n - n_a], dim=1)

    return FixedCounts(nn.Identity(), sigma)


def _cases() -> list[tuple[int, int, float, float]]:
    """``(n_a, n, sigma, alpha)``: seeded counts, both edges and the abstention boundary."""
    from ..defences.certified import clopper_pearson_lower

    generator = torch.Generator().manual_seed(8)
    cases = []
    for n, sigma, alpha in ((100, 0.25, 0.001), (1000, 0.5, 0.001), (10000, 1.0, 0.01),
                            (500, 0.12, 0.05)):
        share = torch.rand(4, generator=generator) * 0.5 + 0.5  # p_A in [0.5, 1)
        counts = [int(c) for c in torch.binomial(torch.full((4,), float(n)), share,
                                                 generator=generator)]
        # the smallest count that certifies, and the largest that abstains
        lower = clopper_pearson_lower(torch.arange(n + 1), n, alpha)
        first = int((lower > 0.5).nonzero()[0])
        counts += [n, 0, n // 2, first, first - 1]
        cases += [(c, n, sigma, alpha) for c in counts]
    return cases


def check_certified_radius(certified_radius) -> CheckResult:
    """Check ``certified_radius(n_a, n, sigma, alpha)``: randomised smoothing's radius from counts.

    ``n_a`` of ``n`` noisy copies of an image were classified as the top class ``c_A``; the
    function must return the L2 radius that CERTIFY (Cohen et al. 2019, section 3.2.2)
    certifies at level ``1 - alpha``: ``sigma * Phi^-1(p_A_lower)``, with ``p_A_lower``
    the one-sided Clopper-Pearson lower bound on ``p_A``, or ``0.0`` (abstain) when
    ``p_A_lower <= 1/2``.

    The reference is the package's
    :meth:`~coursepkg.defences.certified.Smoothed.certify` itself, run on the same counts
    (its sampling replaced by the given counts).  The cases: four seeded binomial counts
    for each of four ``(n, sigma, alpha)`` settings, plus ``n_a = n``, ``n_a = 0``,
    ``n_a = n/2`` and the two counts either side of the abstention boundary.  Agreement is
    closed-form, so the tolerance is float32's: the package rounds the radius down to
    float32, ``|r - r_ref| <= 1e-5 r_ref + 1e-6``; on an abstention the answer must be 0.
    """
    name = "certified radius"
    cases = _cases()
    radii = []
    for n_a, n, sigma, alpha in cases:
        value, failure = call_student(name, certified_radius, n_a, n, sigma, alpha)
        if failure is not None:
            return failure
        try:
            if isinstance(value, (str, bytes, bool)):
                raise TypeError("not a number")
            value = float(value)
        except (TypeError, ValueError, RuntimeError):
            return hint(name, f"return one number, the radius; got {type(value).__name__} "
                              f"for n_a = {n_a}, n = {n}")
        if math.isnan(value):
            return hint(name, f"the radius is NaN for n_a = {n_a}, n = {n}: what should "
                              "happen when the lower bound is 0 or 1/2?")
        radii.append(value)

    by_setting: dict[tuple, list[int]] = {}
    for i, (n_a, n, sigma, alpha) in enumerate(cases):
        by_setting.setdefault((n, sigma, alpha), []).append(i)
    reference = [0.0] * len(cases)
    for (n, sigma, alpha), indices in by_setting.items():
        n_a = torch.tensor([cases[i][0] for i in indices])
        model = _smoothed_with_counts(n_a, n, sigma)
        label, radius = model.certify(torch.zeros(len(indices), 1, 1, 1), 1, n, alpha)
        for i, lab, r in zip(indices, label.tolist(), radius.tolist()):
            reference[i] = r if lab >= 0 else 0.0
    negative, too_large, too_small = [], [], []
    for i, (mine, ref) in enumerate(zip(radii, reference)):
        if mine < 0:
            negative.append(i)
        elif abs(mine - ref) > _RADIUS_RTOL * ref + _RADIUS_ATOL:
            (too_large if mine > ref else too_small).append(i)

    def example(i):
        n_a, n, sigma, alpha = cases[i]
        return (f"n_a = {n_a}, n = {n}, sigma = {sigma}, alpha = {alpha}: yours "
                f"{radii[i]:.4g}, CERTIFY's {reference[i]:.4g}")

    if negative:
        return hint(name, f"{len(negative)} of {len(cases)} radii are negative, e.g. "
                          f"{example(negative[0])}. A radius is never negative: when "
                          "can CERTIFY not certify anything, and what does it return?")
    if too_large:
        abstain = sum(reference[i] == 0.0 for i in too_large)
        return hint(name, f"{len(too_large)} of {len(cases)} radii are larger than "
                          f"CERTIFY's ({abstain} where it abstains), e.g. "
                          f"{example(too_large[0])}. A certificate must hold with "
                          "probability 1 - alpha: which estimate of p_A may it use?")
    if too_small:
        return hint(name, f"{len(too_small)} of {len(cases)} radii are smaller than "
                          f"CERTIFY's, e.g. {example(too_small[0])}. Check the bound's "
                          "level and sidedness, and that you never abstain too early")
    certified = sum(r > 0 for r in reference)
    return passed(name, f"{len(cases)} count vectors ({certified} certified, "
                        f"{len(cases) - certified} abstentions) agree with the package's "
                        f"CERTIFY to float32 precision (largest radius "
                        f"{max(reference):.3f})")
