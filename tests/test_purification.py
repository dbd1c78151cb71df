"""The purifiers of chapter 3 (coursepkg.defences.purification)."""

import pytest
import torch
from torch import nn

from coursepkg.defences.purification import (JPEG, BitDepth, Purified, SoftBitDepth, TVMinimisation, _divergence,
                                             _gradient, total_variation, tv_minimise, tv_objective)


def images(n: int = 6, size: int = 28, seed: int = 0, channels: int = 1) -> torch.Tensor:
    """Smooth random images (a blurred random field), like real images more than white noise is."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


ALL = [JPEG(75), BitDepth(3), TVMinimisation(iterations=20)]


@pytest.mark.parametrize("purifier", ALL, ids=lambda p: type(p).__name__)
def test_purifiers_map_images_in_0_1_to_images_in_0_1_of_the_same_shape(purifier):
    x = images()
    out = purifier(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1


def test_purified_is_the_classifier_of_the_purified_image():
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = images()
    torch.testing.assert_close(Purified(BitDepth(2), clf)(x), clf(BitDepth(2)(x)))
    with pytest.raises(TypeError, match="purifier"):
        Purified(lambda x: x, clf)


# --- bit depth -------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_bit_depth_takes_2_to_the_bits_values_and_is_idempotent(bits):
    x = torch.rand(20, 1, 28, 28)
    out = BitDepth(bits)(x)
    assert len(out.unique()) <= 2 ** bits
    assert torch.equal(BitDepth(bits)(out), out)
    assert (out - x).abs().max() <= 0.5 / (2 ** bits - 1) + 1e-6  # the nearest level


def test_bit_depth_8_leaves_8_bit_images_unchanged_and_has_zero_gradient():
    x = torch.randint(0, 256, (4, 1, 28, 28)).float() / 255
    assert torch.equal(BitDepth(8)(x), x)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(BitDepth(3)(x).sum(), x)
    assert grad.abs().max() == 0


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_bit_depth_first_threshold_moves_every_threshold_and_keeps_the_levels(bits):
    top = 2 ** bits - 1
    default = BitDepth(bits)
    assert BitDepth(bits, first_threshold=0.5 / top).shift == 0.0
    x = torch.rand(20, 1, 28, 28)
    torch.testing.assert_close(BitDepth(bits, first_threshold=0.5 / top)(x), default(x), rtol=0, atol=0)
    moved = BitDepth(bits, first_threshold=0.05)
    thresholds = 0.05 + torch.arange(top) / top  # where the output steps up by one level
    below, above = moved(thresholds - 1e-3), moved(thresholds + 1e-3)
    torch.testing.assert_close(above - below, torch.full_like(below, 1.0 / top))
    torch.testing.assert_close(below, torch.arange(top) / top)
    out = moved(x)
    levels = torch.arange(top + 1) / top
    assert bool(torch.isclose(out.unsqueeze(-1), levels).any(-1).all())  # only the 2^b levels
    assert torch.equal(moved(out), out)  # idempotent
    # the direct computation: the default quantiser on the brightened image
    torch.testing.assert_close(out, default((x - moved.shift).clamp(0, 1)), rtol=0, atol=0)


def test_bit_depth_first_threshold_within_eps_lets_the_background_move():
    from coursepkg.adaptive import reachable_levels
    x = torch.zeros(2, 1, 4, 4)
    for bits in (1, 2):
        low, high = reachable_levels(BitDepth(bits), x, 0.1)
        assert torch.equal(low, high)  # the default first threshold (>= 1/6) is out of reach
        low, high = reachable_levels(BitDepth(bits, first_threshold=0.05), x, 0.1)
        assert bool((high > low).all())


@pytest.mark.parametrize("value", [0.0, -0.1, 0.5, 1.0])
def test_bit_depth_rejects_a_first_threshold_that_hides_a_level(value):
    with pytest.raises(ValueError, match="first_threshold"):
        BitDepth(2, first_threshold=value)  # 2 bits: it must lie in (0, 1/3)


@pytest.mark.parametrize("bits", [0, 9, 2.5, True])
def test_bit_depth_rejects_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        BitDepth(bits)
    with pytest.raises(ValueError, match="bits"):
        SoftBitDepth(bits)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_soft_bit_depth_tends_to_the_staircase_and_has_its_gradient_near_the_thresholds(bits):
    x = torch.rand(10, 1, 28, 28)
    top = 2 ** bits - 1
    away = ((x * top - 0.5) - (x * top - 0.5).round()).abs() > 0.1  # not within 0.1 step of a threshold
    sharp = SoftBitDepth(bits, sharpness=200.0)(x)
    torch.testing.assert_close(sharp[away], BitDepth(bits)(x)[away], atol=1e-4, rtol=0)
    probe = torch.tensor([0.5 / top, 0.0, 1.0]).view(1, 1, 1, 3).requires_grad_(True)  # on a threshold, at the ends
    (grad,) = torch.autograd.grad(SoftBitDepth(bits, 10.0)(probe).sum(), probe)
    assert grad[0, 0, 0, 0] > 10 * grad[0, 0, 0, 1:].max()


# --- JPEG ------------------------------------------------------------------------------
def test_jpeg_outputs_8_bit_images_and_is_deterministic():
    x = images()
    out = JPEG(50)(x)
    torch.testing.assert_close(out * 255, (out * 255).round(), atol=1e-4, rtol=0)
    assert torch.equal(JPEG(50)(x), out)


def test_jpeg_loses_more_at_lower_quality():
    x = images(10)
    errors = [(JPEG(q)(x) - x).pow(2).mean().item() for q in (95, 50, 10)]
    assert errors[0] < errors[1] < errors[2]
    assert errors[0] < 1e-3  # quality 95 is nearly lossless on smooth images


def test_jpeg_handles_colour_and_has_zero_gradient():
    x = images(3, size=32, channels=3)
    out = JPEG(75)(x)
    assert out.shape == x.shape and (out - x).abs().mean() < 0.05
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(JPEG(75)(x).sum(), x)
    assert grad.abs().max() == 0


@pytest.mark.parametrize("quality", [0, 96, 50.5])
def test_jpeg_rejects_bad_quality(quality):
    with pytest.raises(ValueError, match="quality"):
        JPEG(quality)


# --- total-variation minimisation -------------------------------------------------------
def test_divergence_is_minus_the_adjoint_of_the_gradient():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 2, 7, 5, generator=g, dtype=torch.float64)
    p = torch.randn(3, 2, 2, 7, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close((_gradient(z) * p).sum(), -(z * _divergence(p)).sum())


def test_total_variation_of_a_step_image_is_its_edge_length():
    z = torch.zeros(1, 1, 10, 10)
    z[..., :, 5:] = 1.0  # a vertical edge of height 10 and jump 1
    torch.testing.assert_close(total_variation(z), torch.tensor([10.0]))


def test_tv_minimise_keeps_everything_when_the_weight_is_zero_and_all_pixels_are_kept():
    x = images()
    torch.testing.assert_close(tv_minimise(x, torch.ones_like(x), 0.0, iterations=50), x, atol=1e-5, rtol=0)


def test_tv_minimise_reaches_a_minimum_of_its_objective():
    x = images(4, seed=2)
    mask = torch.bernoulli(torch.full_like(x, 0.5), generator=torch.Generator().manual_seed(1))
    weight = 0.1
    z = tv_minimise(x, mask, weight, iterations=300)
    best = tv_objective(z, x, mask, weight)
    assert (best < tv_objective(x, x, mask, weight)).all()
    g = torch.Generator().manual_seed(5)
    for _ in range(10):  # no nearby image does better (a first-order optimality check)
        nearby = (z + 0.01 * torch.randn(z.shape, generator=g)).clamp(0, 1)
        assert (tv_objective(nearby, x, mask, weight) >= best - 1e-3).all()


def test_tv_minimise_is_batched_the_batch_equals_image_by_image():
    x = images(5, seed=3)
    mask = torch.bernoulli(torch.full_like(x, 0.5), generator=torch.Generator().manual_seed(2))
    batch = tv_minimise(x, mask, 0.1, iterations=40)
    one_by_one = torch.cat([tv_minimise(x[k:k + 1], mask[k:k + 1], 0.1, iterations=40) for k in range(len(x))])
    torch.testing.assert_close(batch, one_by_one)


def test_tv_minimise_has_a_finite_nonzero_gradient():
    x = images(3).requires_grad_(True)  # smooth images: many zero differences, where sqrt is not differentiable
    mask = torch.bernoulli(torch.full_like(x, 0.5), generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(tv_minimise(x, mask, 0.05, iterations=30).pow(2).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_tv_weight_smooths_more():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(x)
    tvs = [total_variation(tv_minimise(x, mask, w, iterations=100)).mean() for w in (0.01, 0.1, 0.5)]
    assert tvs[0] > tvs[1] > tvs[2]


def test_tv_purifier_is_random_and_reproducible_under_a_seed():
    x, tv = images(), TVMinimisation(keep=0.5, weight=0.05, iterations=20)
    torch.manual_seed(0)
    first = tv(x)
    torch.manual_seed(0)
    assert torch.equal(tv(x), first)
    assert not torch.equal(tv(x), first)
    tv.eval()  # the randomness is part of the defence: it stays on in eval mode
    assert not torch.equal(tv(x), tv(x))


def test_tv_mask_keeps_about_keep_of_the_pixels():
    torch.manual_seed(0)  # 39200 draws: 0.02 is ~9 standard deviations, and the seed fixes the draw
    mask = TVMinimisation(keep=0.3).sample_mask(torch.zeros(50, 1, 28, 28))
    assert abs(mask.mean().item() - 0.3) < 0.02


@pytest.mark.parametrize("kwargs, name", [({"keep": 0.0}, "keep"), ({"keep": 1.5}, "keep"),
                                          ({"weight": -1.0}, "weight"), ({"iterations": 0}, "iterations")])
def test_tv_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TVMinimisation(**kwargs)
