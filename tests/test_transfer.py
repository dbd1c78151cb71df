"""coursepkg.evaluate.transfer and coursepkg.plots.transfer: the transfer matrix and its heatmap."""

from __future__ import annotations

import functools

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from coursepkg import attacks, evaluate, plots
from coursepkg.data import dataset_info
from coursepkg.evaluate import TransferMatrix, transfer_matrix
from coursepkg.models import classifier_for

INFO = dataset_info("fashion-mnist")


def seeded_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = classifier_for(INFO, width=4).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *INFO.shape, generator=g)
    y = torch.randint(0, INFO.num_classes, (n,), generator=g)
    return x, y


class Constant(nn.Module):
    """Always answers class ``k``: nothing can move it."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        out = torch.zeros(len(x), INFO.num_classes)
        out[:, self.k] = 1.0
        return out


class FlagsEveryChange(nn.Module):
    """A base model joined to a "detector" that flags any input not among ``clean``."""

    def __init__(self, base: nn.Module, clean: torch.Tensor):
        super().__init__()
        self.base, self.clean = base, clean

    def forward(self, x):
        logits = self.base(x)
        distance = torch.cdist(x.flatten(1), self.clean.flatten(1)).min(1).values
        extra = logits.max(1).values - 1.0 + 1000.0 * distance
        return torch.cat([logits, extra[:, None]], 1)


FGSM = attacks.fgsm  # deterministic: the matrix can be recomputed by hand


def test_a_model_against_itself_is_the_white_box_success_rate():
    model = seeded_model(1)
    x, y = images()
    y = evaluate.predictions(model, x)  # every image correct clean: a non-trivial rate
    m = transfer_matrix({"a": model}, {"a": model}, x, y, eps=0.1, attack=FGSM)
    direct = evaluate.attack_success_rate(model, x, FGSM(model, x, y, eps=0.1), y)
    assert m.rate("a", "a").value == pytest.approx(direct)
    assert int(m.trials[0]) == len(x)


def test_cells_are_counted_over_the_targets_clean_correct_images():
    a, b = seeded_model(1), seeded_model(2)
    x, y = images(40)
    y = evaluate.predictions(a, x)
    m = transfer_matrix({"a": a}, {"b": b}, x, y, eps=0.2, attack=FGSM)
    x_adv = FGSM(a, x, y, eps=0.2)
    right = evaluate.predictions(b, x) == y
    fooled = evaluate.predictions(b, x_adv) != y
    assert int(m.trials[0]) == int(right.sum())
    assert int(m.successes[0, 0]) == int((right & fooled).sum())


def test_an_unmovable_target_is_never_fooled():
    x, y = images()
    y[:] = 3
    m = transfer_matrix({"a": seeded_model(1), "b": seeded_model(2)}, {"constant": Constant(3)},
                        x, y, eps=0.3, attack=FGSM)
    assert m.successes.sum() == 0 and int(m.trials[0]) == len(x)
    assert m.rates.shape == (2, 1)


def test_being_flagged_is_not_a_success():
    base = seeded_model(1)
    x, y = images()
    y = evaluate.predictions(base, x)
    flagged = FlagsEveryChange(base, x)
    plain = transfer_matrix({"a": base}, {"plain": base}, x, y, eps=0.3, attack=FGSM)
    joined = transfer_matrix({"a": base}, {"joined": flagged}, x, y, eps=0.3, attack=FGSM)
    assert plain.successes.sum() > 0  # the base model is fooled ...
    assert joined.successes.sum() == 0  # ... but every changed image is flagged
    assert int(joined.trials[0]) == len(x)


def test_default_attack_is_the_profiles_pgd_and_results_are_seeded():
    a = seeded_model(1)
    x, y = images(16)
    torch.manual_seed(0)
    m1 = transfer_matrix({"a": a}, {"a": a}, x, y, eps=0.1)
    torch.manual_seed(0)
    m2 = transfer_matrix({"a": a}, {"a": a}, x, y, eps=0.1)
    assert torch.equal(m1.successes, m2.successes)


def test_best_source_and_rows():
    a, b = seeded_model(1), seeded_model(2)
    x, y = images(32)
    y = evaluate.predictions(a, x)
    m = transfer_matrix({"a": a, "b": b}, {"a": a}, x, y, eps=0.2, attack=FGSM)
    best, interval = m.best_source("a")
    assert best in ("a", "b") and interval.value == pytest.approx(float(m.rates.max()))
    assert m.best_source("a", exclude=("a",))[0] == "b"
    rows = m.as_rows()
    assert [r["source"] for r in rows] == ["a", "b"] and set(rows[0]) == {"source", "a"}
    with pytest.raises(KeyError, match="unknown target"):
        m.rate("a", "nope")
    with pytest.raises(ValueError, match="every source is excluded"):
        m.best_source("a", exclude=("a", "b"))


def test_bad_inputs_say_what_to_do():
    x, y = images(4)
    with pytest.raises(ValueError, match="at least one source"):
        transfer_matrix({}, {"a": seeded_model(1)}, x, y, eps=0.1)
    with pytest.raises(TypeError, match="nn.Module"):
        transfer_matrix({"a": lambda t: t}, {"b": seeded_model(1)}, x, y, eps=0.1)
    with pytest.raises(ValueError):
        transfer_matrix({"a": seeded_model(1)}, {"b": seeded_model(1)}, x, y, eps=-1.0)


def test_heatmap_draws_one_cell_per_pair():
    a, b = seeded_model(1), seeded_model(2)
    x, y = images(8)
    m = transfer_matrix({"a": a, "b": b}, {"a": a, "b": b, "c": Constant(0)}, x, y, eps=0.1,
                        attack=functools.partial(FGSM))
    fig = plots.transfer_heatmap(m)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert len(ax.texts) == 6
    assert isinstance(m, TransferMatrix)
    marked = plots.transfer_heatmap(m, marked={("a", "a"), ("b", "c")}).axes[0]
    assert len(marked.patches) == 2 and len(marked.texts) == 8  # hatched, starred
    with pytest.raises(KeyError, match="unknown source"):
        plots.transfer_heatmap(m, marked={("z", "a")})
    with pytest.raises(TypeError, match="TransferMatrix"):
        plots.transfer_heatmap(m.rates)


class Flicker(nn.Module):
    """A random target: answers class 0, or with probability ``q`` (fresh each call) class 1."""

    def __init__(self, q: float):
        super().__init__()
        self.q = q

    def forward(self, x):
        wrong = (torch.rand(len(x)) < self.q).long()
        return nn.functional.one_hot(wrong, INFO.num_classes).float()


def test_a_random_target_is_judged_over_k_draws():
    """Majority of k draws clean, worst of k on the examples: a target wrong on a fifth of its
    draws is fooled on about 1 - 0.8^9 = 87% of images over nine draws, not 20%."""
    x, _ = images(60)
    y = torch.zeros(len(x), dtype=torch.long)
    sources, targets = {"s": seeded_model(0)}, {"flicker": Flicker(0.2)}
    torch.manual_seed(0)
    one = transfer_matrix(sources, targets, x, y, eps=0.1, attack=FGSM)
    torch.manual_seed(0)
    nine = transfer_matrix(sources, targets, x, y, eps=0.1, attack=FGSM, draws={"flicker": 9})
    assert int(nine.trials[0]) >= 55  # the majority of nine draws is right on almost every image
    assert float(one.rates[0, 0]) < 0.4 < 0.7 < float(nine.rates[0, 0])
    with pytest.raises(ValueError, match="not given"):
        transfer_matrix(sources, targets, x, y, eps=0.1, attack=FGSM, draws={"other": 3})
