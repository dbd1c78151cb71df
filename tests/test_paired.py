"""The exact McNemar (sign) test of coursepkg.evaluate.paired against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from coursepkg.evaluate import paired_test


def masks(both: int, only_a: int, only_b: int, neither: int):
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return torch.tensor(a), torch.tensor(b)


def test_seven_broken_none_back_is_two_to_the_minus_seven():
    r = paired_test(*masks(7, 7, 0, 16))  # kernel density's row: 0.467 -> 0.233 on 30 images
    assert (r.only_a, r.only_b, r.n) == (7, 0, 30)
    assert r.p_value == pytest.approx(2 ** -7, rel=1e-12)
    assert r.a == pytest.approx(14 / 30) and r.b == pytest.approx(7 / 30)
    assert r.significant()


def test_five_against_one_by_hand():
    r = paired_test(*masks(10, 5, 1, 4))
    # P(X >= 5 | X ~ Bin(6, 1/2)) = (C(6,5) + C(6,6)) / 64
    assert r.p_value == pytest.approx((math.comb(6, 5) + math.comb(6, 6)) / 64, rel=1e-12)
    assert not r.significant()
    two = paired_test(*masks(10, 5, 1, 4), alternative="two-sided")
    assert two.p_value == pytest.approx(2 * 7 / 64, rel=1e-12)


def test_higher_counts_the_other_side():
    r = paired_test(*masks(3, 1, 9, 2), alternative="higher")
    # P(X >= 9 | X ~ Bin(10, 1/2)) = (10 + 1) / 1024
    assert r.p_value == pytest.approx(11 / 1024, rel=1e-12)
    assert paired_test(*masks(3, 1, 9, 2), alternative="lower").p_value == pytest.approx(1023 / 1024)


def test_no_discordant_image_gives_p_one():
    r = paired_test(*masks(20, 0, 0, 10))
    assert r.p_value == 1.0 and r.discordant == 0 and not r.significant()


def test_identical_masks_are_never_significant_even_on_many_images():
    a = torch.rand(5000, generator=torch.Generator().manual_seed(0)) < 0.5
    assert paired_test(a, a.clone()).p_value == 1.0


@pytest.mark.parametrize("a, b, message", [
    (torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool), "same images"),
    (torch.ones(3), torch.ones(3, dtype=torch.bool), "boolean mask"),
    (torch.ones(0, dtype=torch.bool), torch.ones(0, dtype=torch.bool), "empty"),
])
def test_bad_masks_get_one_line_errors(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_test(a, b)


def test_unknown_alternative_is_refused():
    with pytest.raises(ValueError, match="alternative must be one of"):
        paired_test(*masks(1, 1, 1, 1), alternative="greater")
