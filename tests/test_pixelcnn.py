"""The PixelCNN and PixelDefend (coursepkg.defences.pixelcnn)."""

import math

import pytest
import torch
import torch.nn.functional as F

from coursepkg.defences.pixelcnn import (LEVELS, MaskedConv2d, NearestCandidate, PixelCNN, PixelDefend,
                                        attack_pixeldefend_outputs, pixeldefend, pixeldefend_candidates, to_levels)
from coursepkg.recipes.purification import pixelcnn_loss


def small_pixelcnn(seed: int = 0, **kw) -> PixelCNN:
    torch.manual_seed(seed)
    return PixelCNN("fashion-mnist", channels=kw.pop("channels", 8), layers=kw.pop("layers", 2), **kw).eval()


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed)).float() / 255


#: PixelDefend's output is an argmax over float32 logits (pixeldefend works in float32 whatever
#: the model's dtype).  The logits here are < 1 in size and two evaluation orders (logits_at on a
#: crop, the full forward pass, another batch size) differ by ~1e-7, a few float32 ulps.  A test
#: that compares argmaxes computed two ways is only meaningful where no choice is closer than
#: this -- 100 times that noise -- so those tests check their seeded case has such a margin.
ARGMAX_MARGIN = 1e-5


def argmax_margins(model: PixelCNN, x: torch.Tensor, purified: torch.Tensor, eps_defend: float) -> torch.Tensor:
    """N x H x W: at each pixel, the gap between the two largest logits PixelDefend chose among.

    The logits of (i, j) see only the pixels before it, which in ``purified`` are the context
    Algorithm 1 had when it chose (i, j), so one forward pass gives every pixel's choice.
    """
    steps = math.floor(eps_defend * 255 + 1e-6)
    with torch.no_grad():
        logits = model(purified)
    allowed = (torch.arange(LEVELS).view(1, -1, 1, 1) - to_levels(x)).abs() <= steps
    top = logits.masked_fill(~allowed, float("-inf")).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def test_masks_hide_the_future_and_mask_a_hides_the_centre():
    a, b = MaskedConv2d(1, 1, 5, "A").mask[0, 0], MaskedConv2d(1, 1, 5, "B").mask[0, 0]
    assert a[2, 2] == 0 and b[2, 2] == 1
    assert a[:2].all() and a[2, :2].all() and not a[2, 3:].any() and not a[3:].any()
    assert torch.equal(a + (torch.arange(25).view(5, 5) == 12).float(), b)
    with pytest.raises(ValueError, match="mask"):
        MaskedConv2d(1, 1, 3, "C")


@pytest.mark.parametrize("position", [(0, 0), (3, 7), (14, 27), (27, 27)])
def test_the_logits_of_a_pixel_depend_only_on_the_pixels_before_it(position):
    i, j = position
    model = small_pixelcnn()
    x = images(1).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[0, :, i, j].pow(2).sum(), x)
    raster = torch.arange(28 * 28).view(28, 28)
    future = raster >= i * 28 + j  # the pixel itself and everything after it
    assert grad[0, 0][future].abs().max() == 0
    if (i, j) != (0, 0):
        assert grad[0, 0][~future].abs().sum() > 0


def test_logits_at_equals_the_full_forward_pass_everywhere():
    # float64, so the default (tight) tolerance tells a wrong crop from rounding
    model = small_pixelcnn(layers=3).double()
    x = images(2).double()
    full = model(x)
    for i in range(0, 28, 3):
        for j in range(0, 28, 2):
            torch.testing.assert_close(model.logits_at(x, i, j), full[:, :, i, j])


def test_nll_is_the_sum_of_per_pixel_cross_entropies_and_the_sampled_estimate_matches_it():
    model, x = small_pixelcnn().double(), images(2).double()  # float64: sums of 784 terms, compared tightly
    log_p = F.log_softmax(model(x), dim=1)
    manual = -log_p.gather(1, to_levels(x)).flatten(1).sum(1)
    torch.testing.assert_close(model.nll(x), manual)
    torch.testing.assert_close(model.sampled_nll(x, 1.0), manual)
    g = torch.Generator().manual_seed(0)
    estimate = torch.stack([model.sampled_nll(x, 0.1, generator=g) for _ in range(300)]).mean(0)
    torch.testing.assert_close(estimate, manual, rtol=0.01, atol=0)  # unbiased: the mean converges


def test_a_uniform_pixelcnn_has_8_bits_per_dimension():
    model = small_pixelcnn().double()  # float64: a float32 mean of 3136 values is only good to ~1e-6
    last = model.head[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    assert model.bits_per_dim(images(4).double()) == pytest.approx(math.log2(LEVELS), rel=1e-12)


def test_training_steps_lower_the_likelihood_loss():
    model = small_pixelcnn().train()
    x = images(16, seed=1) * 0.2  # dark images: learnable structure
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = pixelcnn_loss(model, x, None).item()
    for _ in range(15):
        loss = pixelcnn_loss(model, x, None, pixel_fraction=0.5)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert pixelcnn_loss(model, x, None).item() < before - 0.5


def naive_pixeldefend(model: PixelCNN, x: torch.Tensor, eps_defend: float) -> torch.Tensor:
    """Algorithm 1 of Song et al. (2018) written plainly: a full forward pass per pixel, one image at a time."""
    out = []
    steps = math.floor(eps_defend * 255 + 1e-6)
    for image in x:
        original = to_levels(image[None])[0, 0]
        current = original.float()[None, None] / 255
        for i in range(28):
            for j in range(28):
                probs = F.softmax(model(current)[0, :, i, j], 0)
                low, high = max(int(original[i, j]) - steps, 0), min(int(original[i, j]) + steps, 255)
                current[0, 0, i, j] = (low + int(probs[low:high + 1].argmax())) / 255
        out.append(current[0])
    return torch.stack(out)


def test_pixeldefend_matches_a_plain_implementation_of_algorithm_1():
    model, x = small_pixelcnn(layers=1), images(2)
    with torch.no_grad():
        naive = naive_pixeldefend(model, x, 0.05)
        assert argmax_margins(model, x, naive, 0.05).min() > ARGMAX_MARGIN, "a near-tie: choose another seed"
        torch.testing.assert_close(pixeldefend(model, x, 0.05), naive)


def test_pixeldefend_stays_within_eps_defend_and_eps_zero_only_rounds():
    model, x = small_pixelcnn(), torch.rand(3, 1, 28, 28)
    out = pixeldefend(model, x, 0.1)
    assert (to_levels(out) - to_levels(x)).abs().max() <= math.floor(0.1 * 255)
    assert torch.equal(pixeldefend(model, x, 0.0), to_levels(x).float() / 255)
    with pytest.raises(ValueError, match="eps_defend"):
        pixeldefend(model, x, 1.5)


def test_pixeldefend_is_batched_the_batch_equals_image_by_image_and_has_zero_gradient():
    model, x = small_pixelcnn(), images(4, seed=5)
    defend = PixelDefend(model, 0.1, batch_size=3)
    batch = defend(x)
    assert argmax_margins(model, x, batch, 0.1).min() > ARGMAX_MARGIN, "a near-tie: choose another seed"
    torch.testing.assert_close(batch, torch.cat([pixeldefend(model, x[k:k + 1], 0.1) for k in range(4)]))
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(defend(x).sum(), x)
    assert grad.abs().max() == 0


def test_pixelcnn_refuses_colour_images():
    with pytest.raises(ValueError, match="grey"):
        PixelCNN("cifar10")


# ------------------------------------------------------------------------------------------
# What an attacker can make PixelDefend output
# ------------------------------------------------------------------------------------------
def test_pixeldefend_candidates_at_shift_zero_are_the_purified_image():
    model, x = small_pixelcnn(), images(2, seed=3)
    purified = pixeldefend(model, x, 0.1)
    assert argmax_margins(model, x, purified, 0.1).min() > ARGMAX_MARGIN, "a near-tie: choose another seed"
    outputs, shifts = pixeldefend_candidates(model, x, purified, 0.1, 0.05)
    assert outputs.shape == (*x.shape, len(shifts)) and shifts.tolist() == list(range(-12, 13))
    torch.testing.assert_close(outputs[..., shifts.tolist().index(0)], purified)


def test_pixeldefend_candidates_predict_the_output_of_a_shifted_pixel():
    # shifting pixel (i, j) leaves every pixel before it -- its context -- unchanged, so the
    # real PixelDefend's output at (i, j) must be the candidate listed for that shift
    model, x = small_pixelcnn(), images(1, seed=4)
    purified = pixeldefend(model, x, 0.1)
    outputs, shifts = pixeldefend_candidates(model, x, purified, 0.1, 0.05)
    cases = [(i, j, shift) for (i, j) in ((3, 5), (14, 27), (27, 0)) for shift in (-12, -5, 7, 12)]
    shifted = x.repeat(len(cases), 1, 1, 1)  # one copy per case, purified in one batch
    for k, (i, j, shift) in enumerate(cases):
        shifted[k, 0, i, j] = (to_levels(x[0, 0, i, j]) + shift).clamp(0, 255).float() / 255
    real = pixeldefend(model, shifted, 0.1)
    margins = argmax_margins(model, shifted, real, 0.1)
    for k, (i, j, shift) in enumerate(cases):
        assert margins[k, i, j] > ARGMAX_MARGIN, ("a near-tie: choose another seed", i, j, shift)
        assert real[k, 0, i, j] == outputs[0, 0, i, j, shifts.tolist().index(shift)], (i, j, shift)


def test_nearest_candidate_snaps_to_the_closest_listed_value():
    candidates = torch.tensor([0.0, 0.4, 0.5, 1.0]).view(1, 1, 1, 1, 4).expand(1, 1, 2, 2, 4)
    z = torch.tensor([[0.1, 0.46], [0.7, 0.9]]).view(1, 1, 2, 2)
    assert torch.equal(NearestCandidate(candidates)(z), torch.tensor([[0.0, 0.5], [0.5, 1.0]]).view(1, 1, 2, 2))


def test_attack_pixeldefend_outputs_maps_the_chosen_outputs_back_into_the_ball():
    model, x = small_pixelcnn(), images(2, seed=5)
    purifier = PixelDefend(model, 0.1)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 3))
    y = torch.tensor([0, 1])
    planned = {}

    def random_choice(view, u, y, **kwargs):  # an "attack" that picks a random reachable output
        assert kwargs["eps"] == 1.0
        u = torch.rand(u.shape, generator=torch.Generator().manual_seed(0))
        planned["outputs"] = view.quantiser(view.point(u))
        return u

    x_adv = attack_pixeldefend_outputs(classifier, purifier, random_choice)(None, x, y, eps=0.05)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    # up to the first moved pixel the context is the clean one, so the plan is exact there
    first = int((x_adv != x).flatten(1).float().argmax(1)[0])
    purified = purifier(x_adv)
    assert argmax_margins(model, x_adv, purified, 0.1)[0].flatten()[:first + 1].min() > ARGMAX_MARGIN
    real = purified.flatten(1)[0, :first + 1]
    torch.testing.assert_close(real, planned["outputs"].flatten(1)[0, :first + 1])

    def no_change(view, u, y, **kwargs):
        return u

    assert torch.equal(attack_pixeldefend_outputs(classifier, purifier, no_change)(None, x, y, eps=0.05), x)
