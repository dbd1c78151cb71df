"""Tests of coursepkg.plots: the shared figures draw what they are given and reject bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from coursepkg import plots  # noqa: E402
from coursepkg.evaluate import AccuracyCurve  # noqa: E402


class Brightness(nn.Module):
    """A toy classifier: class 1 when the mean pixel exceeds 0.5, else class 0."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([0.5 - m, m - 0.5], 1) * 20


def brighten(model, x, y, *, eps):
    """An 'attack' whose effect is known exactly: every pixel up by eps."""
    return (x + eps).clamp(0, 1)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_adversarial_grid_titles_each_prediction_and_colours_mistakes_red():
    x = torch.rand(5, 1, 8, 8) * 0.5
    x_adv = (x + 0.1).clamp(0, 1)
    y = torch.tensor([0, 1, 0, 1, 0])
    pred_clean = torch.tensor([0, 1, 0, 1, 0])
    pred_adv = torch.tensor([1, 1, 0, 0, 0])
    fig = plots.show_adversarial_grid(x, x_adv, y, pred_clean, pred_adv, ["dark", "bright"], n=4)
    axes = fig.axes
    assert len(axes) == 3 * 4
    adversarial_row = axes[4:8]
    assert [a.get_title() for a in adversarial_row] == ["bright", "bright", "dark", "dark"]
    colours = [matplotlib.colors.to_hex(a.title.get_color()) for a in adversarial_row]
    red, green = (matplotlib.colors.to_hex(c) for c in (plots.WRONG_COLOUR, plots.RIGHT_COLOUR))
    assert colours == [red, green, green, red]


def test_adversarial_grid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        plots.show_adversarial_grid(torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4), torch.zeros(2),
                                    torch.zeros(2), torch.zeros(2))


def test_accuracy_curves_accept_pairs_dicts_and_evaluate_results():
    curves = {"pair": ([0, 0.1], [0.9, 0.2]), "dict": {"eps": [0, 0.1], "accuracy": [0.9, 0.5]},
              "result": AccuracyCurve("pgd", [0.0, 0.1], [0.9, 0.1])}
    fig = plots.plot_accuracy_vs_eps(curves, chance=0.1, mark_eps=0.1)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["result"].get_ydata()) == [0.9, 0.1]
    assert list(lines["dict"].get_xdata()) == [0, 0.1]
    with pytest.raises(ValueError, match="one accuracy per eps"):
        plots.plot_accuracy_vs_eps({"bad": ([0, 0.1, 0.2], [1.0, 0.5])})


def test_perturbations_annotate_the_norms_of_the_change():
    x = torch.zeros(1, 1, 4, 4)
    x_adv = x.clone()
    x_adv[0, 0, 0, :2] = 0.3  # two pixels: L0 2, L2 0.3 * sqrt(2), Linf 0.3
    fig = plots.show_perturbations(x, {"toy": x_adv}, index=0, model=Brightness(), classes=["a", "b"],
                                   y=torch.tensor([0]))
    label = fig.axes[1].get_xlabel()
    assert "L0 2" in label and f"L2 {0.3 * 2 ** 0.5:.2f}" in label and "L∞ 0.300" in label
    assert fig.axes[1].get_title().endswith("a")  # still dark: the toy model keeps class 0


def test_eps_strip_attacks_once_per_eps_and_shows_the_flip():
    x1 = torch.full((1, 1, 4, 4), 0.45)
    fig = plots.eps_strip(Brightness(), x1, torch.tensor([0]), brighten, [0.0, 0.1], ["dark", "bright"])
    titles = [a.get_title() for a in fig.axes[:2]]
    assert titles[0].splitlines()[1].startswith("dark") and titles[1].splitlines()[1].startswith("bright")
    with pytest.raises(ValueError, match="exactly one example"):
        plots.eps_strip(Brightness(), torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), brighten, [0.1])


def test_eps_explorer_builds_and_redraws():
    pytest.importorskip("ipywidgets")
    box = plots.eps_explorer(Brightness(), torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0]), brighten,
                             ["dark", "bright"], eps_max=0.2)
    sliders = box.children[0].children
    sliders[1].value = 0.05  # moving the eps slider redraws without error
    assert sliders[1].max == pytest.approx(0.2)


def test_table_renders_html_and_text_and_checks_its_columns():
    table = plots.Table([{"attack": "pgd", "accuracy": 0.01234}, {"attack": "fgsm", "accuracy": 0.5}],
                        caption="t")
    assert "<td>0.012</td>" in table._repr_html_() and "<caption>t</caption>" in table._repr_html_()
    assert str(table).splitlines()[1].split()[0] == "attack"
    with pytest.raises(ValueError, match="columns"):
        plots.Table([{"a": 1}, {"b": 2}])
    with pytest.raises(ValueError, match="at least one row"):
        plots.Table([])


def test_attack_grid_has_a_row_per_attack_and_titles_predictions():
    x = torch.full((3, 1, 4, 4), 0.45)
    adversarials = {"brighten": brighten(None, x, None, eps=0.1), "short": x[:2]}
    y = torch.tensor([0, 0, 0])
    fig = plots.show_attack_grid(x, {"brighten": adversarials["brighten"]}, y, Brightness(),
                                 ["dark", "bright"], index=[0, 2])
    assert len(fig.axes) == 2 * 2
    assert [a.get_title() for a in fig.axes] == ["dark", "dark", "bright", "bright"]
    with pytest.raises(ValueError, match="out of range"):
        plots.show_attack_grid(x, adversarials, y, Brightness(), index=[2])
