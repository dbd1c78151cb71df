"""Figures and tables the chapters share.

Every function here draws what a reader would rather look at than read: adversarial
examples beside their clean originals, accuracy as the budget grows, the perturbations
themselves, and an interactive explorer of the budget eps.  The book introduces each of
them in chapter 1 ("Adversarial examples and threat models").

* :func:`show_adversarial_grid` -- clean images, adversarial images and (optionally) their
  difference, each titled with the model's prediction (green: right, red: wrong);
* :func:`show_attack_grid` -- the same images as each of several attacks left them;
* :func:`plot_accuracy_vs_eps` -- one curve of accuracy against eps per attack;
* :func:`show_perturbations` -- the perturbation ``x_adv - x`` of several attacks on the
  same images, annotated with its L0, L2 and L-infinity norms;
* :func:`eps_strip` and :func:`eps_explorer` -- one image attacked at growing eps, as a
  static figure (for the HTML book) and as an ipywidgets slider (for a live notebook);
* :class:`Table` -- a small table that renders as HTML in a notebook and as text elsewhere.

Explanatory figures (:mod:`coursepkg.plots.diagrams`), each drawn where a chapter first
needs it, no argument required:

* :func:`~coursepkg.plots.diagrams.lp_balls` -- the L-infinity, L2, L1 and L0 balls in 2-D
  and the steepest step in each (chapter 1);
* :func:`~coursepkg.plots.diagrams.minmax_picture` -- adversarial training's inner max and
  outer min on a loss landscape (chapter 2);
* :func:`~coursepkg.plots.diagrams.bpda_diagram` -- BPDA's forward and backward passes
  (chapter 3);
* :func:`~coursepkg.plots.diagrams.pixelcnn_receptive_field` -- a PixelCNN's masks and the
  blind spot of its receptive field (chapter 3);
* :func:`~coursepkg.plots.diagrams.gradient_masking_picture` -- a zero gradient beside a
  high loss one step away (chapter 4);
* :func:`~coursepkg.plots.diagrams.eot_picture` -- expectation over transformation
  (chapter 5);
* :func:`~coursepkg.plots.diagrams.detector_as_extra_class` -- a detector joined to the
  classifier as class K+1 (chapter 6);
* :func:`~coursepkg.plots.diagrams.certified_radius_picture` -- randomised smoothing's
  certified radius (chapter 8).

Figures are made with ``matplotlib.pyplot`` and returned; in a notebook, assign the
result (``fig = show_adversarial_grid(...)``) and the inline backend shows it once.
Images are ``N x C x H x W`` tensors in [0, 1] on any device.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

RIGHT_COLOUR = "tab:green"
WRONG_COLOUR = "tab:red"


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def _as_image(x: torch.Tensor):
    """One ``C x H x W`` tensor as an array matplotlib can show (``H x W`` or ``H x W x 3``)."""
    x = x.detach().float().cpu()
    if x.dim() != 3:
        raise ValueError(f"an image must have shape C x H x W, got {tuple(x.shape)}")
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).clamp(0, 1).numpy()


def _show(ax, image: torch.Tensor, title: str | None = None, colour: str = "black") -> None:
    ax.imshow(_as_image(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8, color=colour)


def _show_delta(ax, delta: torch.Tensor, title: str | None = None, scale: float | None = None) -> None:
    """A perturbation in a diverging colour map centred on zero (grey channels: their mean)."""
    d = delta.detach().float().cpu().mean(0)  # colour images: the mean over channels
    scale = float(d.abs().max()) if scale is None else float(scale)
    scale = scale if scale > 0 else 1.0
    ax.imshow(d.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)


def _label(classes: Sequence[str] | None, k: int) -> str:
    return str(classes[k]) if classes is not None else str(int(k))


def _check_pairs(x: torch.Tensor, x_adv: torch.Tensor) -> None:
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")


# --------------------------------------------------------------------------------------
# Adversarial examples
# --------------------------------------------------------------------------------------
def show_adversarial_grid(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                          pred_clean: torch.Tensor, pred_adv: torch.Tensor,
                          classes: Sequence[str] | None = None, *, n: int = 8,
                          show_delta: bool = True, title: str | None = None):
    """Clean images (top row), adversarial images (middle) and their difference (bottom).

    Each image is titled with the model's prediction, green when it equals the true label
    ``y`` and red when it does not.  The difference row shares one colour scale, the
    largest absolute change among the images shown.  Returns the figure.
    """
    import matplotlib.pyplot as plt

    _check_pairs(x, x_adv)
    n = min(int(n), len(x))
    if n < 1:
        raise ValueError("n must be at least 1 and x must hold at least one image")
    rows = 3 if show_delta else 2
    fig, axes = plt.subplots(rows, n, figsize=(1.45 * n, 1.6 * rows + 0.3), squeeze=False,
                             layout="constrained")
    delta = (x_adv[:n] - x[:n]).detach().cpu()
    scale = float(delta.abs().max()) or 1.0
    for i in range(n):
        truth = int(y[i])
        pc, pa = int(pred_clean[i]), int(pred_adv[i])
        _show(axes[0, i], x[i], _label(classes, pc), RIGHT_COLOUR if pc == truth else WRONG_COLOUR)
        _show(axes[1, i], x_adv[i], _label(classes, pa), RIGHT_COLOUR if pa == truth else WRONG_COLOUR)
        if show_delta:
            _show_delta(axes[2, i], delta[i], scale=scale)
    axes[0, 0].set_ylabel("clean", fontsize=9)
    axes[1, 0].set_ylabel("adversarial", fontsize=9)
    if show_delta:
        axes[2, 0].set_ylabel(f"difference\n(±{scale:.2g})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_attack_grid(x: torch.Tensor, adversarials: Mapping[str, torch.Tensor], y: torch.Tensor,
                     model: torch.nn.Module, classes: Sequence[str] | None = None, *,
                     index: Sequence[int] = (0, 1, 2, 3, 4, 5)):
    """The same images as several attacks left them: one row per attack, one column per image.

    The first row is the clean images.  ``adversarials`` maps an attack's name to its
    adversarial examples of ``x`` (the first ``len(adv)`` images of ``x``; every index must
    be below that).  Each image is titled with ``model``'s prediction, green when it is the
    true label ``y`` and red when it is not.  Returns the figure.
    """
    import matplotlib.pyplot as plt

    from ..evaluate import predictions

    index = [int(i) for i in index]
    if not index:
        raise ValueError("index must name at least one image")
    rows = {"clean": x, **dict(adversarials)}
    for name, images in rows.items():
        if max(index) >= len(images):
            raise ValueError(f"index {max(index)} is out of range for {name!r}, which holds {len(images)} images")
    fig, axes = plt.subplots(len(rows), len(index), squeeze=False, layout="constrained",
                             figsize=(1.3 * len(index) + 0.6, 1.45 * len(rows)))
    picked = torch.as_tensor(index)
    truth = y[picked.to(y.device)].cpu()
    for r, (name, images) in enumerate(rows.items()):
        chosen = images[picked.to(images.device)]
        preds = predictions(model, chosen).cpu()
        for c in range(len(index)):
            right = int(preds[c]) == int(truth[c])
            _show(axes[r, c], chosen[c], _label(classes, int(preds[c])), RIGHT_COLOUR if right else WRONG_COLOUR)
        axes[r, 0].set_ylabel(name, fontsize=8)
    return fig


def _curve_xy(curve) -> tuple[list[float], list[float]]:
    """(eps values, accuracies) of a curve given as a pair, a dict or a dataclass."""
    if isinstance(curve, Mapping):
        curve = (curve.get("eps_values", curve.get("eps")), curve.get("accuracy", curve.get("accuracies")))
    elif not isinstance(curve, (tuple, list)):
        eps = next((getattr(curve, a) for a in ("eps_values", "eps", "epsilons") if hasattr(curve, a)), None)
        acc = next((getattr(curve, a) for a in ("accuracy", "accuracies", "robust_accuracy")
                    if hasattr(curve, a)), None)
        curve = (eps, acc)
    if len(curve) != 2 or curve[0] is None or curve[1] is None:
        raise ValueError("a curve must be (eps_values, accuracies), a dict with those keys, "
                         "or the result of coursepkg.evaluate.accuracy_vs_eps")
    eps, acc = ([float(v) for v in c] for c in curve)
    if len(eps) != len(acc):
        raise ValueError(f"a curve needs one accuracy per eps, got {len(eps)} eps and {len(acc)} accuracies")
    return eps, acc


def plot_accuracy_vs_eps(curves: Mapping[str, object], *, ax=None, xlabel: str = "ε (L∞)",
                         chance: float | None = None, mark_eps: float | None = None,
                         title: str | None = None):
    """Accuracy against the budget eps, one line per attack.

    ``curves`` maps a name to the result of :func:`coursepkg.evaluate.accuracy_vs_eps`
    (or a pair ``(eps_values, accuracies)``).  ``chance`` draws the accuracy of guessing;
    ``mark_eps`` a vertical line at the threat model's budget.  Returns the figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
    else:
        fig = ax.figure
    for (name, curve), marker in zip(curves.items(), "osD^v<>ph*"):
        eps, acc = _curve_xy(curve)
        ax.plot(eps, acc, marker=marker, markersize=4, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    if mark_eps is not None:
        ax.axvline(mark_eps, color="black", linestyle="--", linewidth=0.8, alpha=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def show_perturbations(x: torch.Tensor, adversarials: Mapping[str, torch.Tensor], *,
                       index: int | Sequence[int] = 0, model: torch.nn.Module | None = None,
                       classes: Sequence[str] | None = None, y: torch.Tensor | None = None):
    """The perturbation ``x_adv - x`` of each attack on the same image(s).

    One column per attack (the first column is the clean image), one row per index.  Each
    panel has its own colour scale and is annotated with the perturbation's L0 (pixels
    changed), L2 and L-infinity norms, from :func:`coursepkg.evaluate.perturbation_norms`.
    With ``model``, the title also gives the prediction on the adversarial image (green
    when it is still the true label ``y``).  Returns the figure.
    """
    import matplotlib.pyplot as plt

    from ..evaluate import perturbation_norms, predictions

    indices = [index] if isinstance(index, int) else list(index)
    names = list(adversarials)
    fig, axes = plt.subplots(len(indices), len(names) + 1, squeeze=False, layout="constrained",
                             figsize=(1.75 * (len(names) + 1), 2.5 * len(indices) + 0.2))
    for r, i in enumerate(indices):
        clean = x[i:i + 1]
        title = None if y is None else f"true: {_label(classes, int(y[i]))}"
        _show(axes[r, 0], clean[0], title)
        for c, name in enumerate(names, start=1):
            adv = adversarials[name][i:i + 1].to(clean.device)
            _check_pairs(clean, adv)
            norms = {k.lower(): float(v[0]) for k, v in perturbation_norms(clean, adv).items()}
            l0, l2, linf = _norm_triplet(norms)
            _show_delta(axes[r, c], (adv - clean)[0])
            head = name
            colour = "black"
            if model is not None:
                pred = int(predictions(model, adv)[0])
                head = f"{name}\n→ {_label(classes, pred)}"
                if y is not None:
                    colour = RIGHT_COLOUR if pred == int(y[i]) else WRONG_COLOUR
            axes[r, c].set_title(head, fontsize=8, color=colour)
            axes[r, c].set_xlabel(f"L0 {l0:.0f}  L2 {l2:.2f}\nL∞ {linf:.3f}", fontsize=7)
    return fig


def _norm_triplet(norms: Mapping[str, float]) -> tuple[float, float, float]:
    """(L0, L2, L-infinity) from a dict whose keys spell them in any of the usual ways."""
    def pick(*keys):
        for k in keys:
            if k in norms:
                return norms[k]
        raise KeyError(f"perturbation_norms gave keys {sorted(norms)}, none of {keys}")

    return pick("l0", "linf0"), pick("l2"), pick("linf", "l_inf", "l∞", "inf")


# --------------------------------------------------------------------------------------
# One image, growing eps: a static strip and a live explorer
# --------------------------------------------------------------------------------------
def _attack_one(model, attack: Callable, x1: torch.Tensor, y1: torch.Tensor, eps: float) -> torch.Tensor:
    if eps == 0:
        return x1.clone()
    return attack(model, x1, y1, eps=float(eps))


def _prediction(model, x1: torch.Tensor) -> tuple[int, float]:
    with torch.no_grad():
        probs = torch.softmax(model(x1), dim=1)[0]
    k = int(probs.argmax())
    return k, float(probs[k])


def eps_strip(model: torch.nn.Module, x1: torch.Tensor, y1: torch.Tensor, attack: Callable,
              eps_values: Sequence[float], classes: Sequence[str] | None = None):
    """One image attacked at each eps: the adversarial image (top) and its perturbation (bottom).

    The static twin of :func:`eps_explorer`, for pages where no Python runs.  ``x1`` is one
    image with its batch dimension (``1 x C x H x W``) and ``y1`` its label (shape ``1``).
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    if len(x1) != 1 or len(y1) != 1:
        raise ValueError("x1 and y1 must hold exactly one example (slice with x[i:i+1], y[i:i+1])")
    eps_values = [float(e) for e in eps_values]
    fig, axes = plt.subplots(2, len(eps_values), figsize=(1.5 * len(eps_values), 3.6), squeeze=False,
                             layout="constrained")
    largest = max(eps_values) or 1.0
    for c, eps in enumerate(eps_values):
        adv = _attack_one(model, attack, x1, y1, eps)
        k, p = _prediction(model, adv)
        colour = RIGHT_COLOUR if k == int(y1[0]) else WRONG_COLOUR
        _show(axes[0, c], adv[0], f"ε = {eps:.3g}\n{_label(classes, k)} ({p:.0%})", colour)
        _show_delta(axes[1, c], (adv - x1)[0], scale=largest)
    axes[1, 0].set_ylabel(f"perturbation\n(±{largest:.2g})", fontsize=8)
    return fig


def eps_explorer(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable,
                 classes: Sequence[str] | None = None, *, eps_max: float = 0.3,
                 eps_step: float = 0.01):
    """An ipywidgets explorer: choose an image and eps, see the attack, its perturbation and
    the model's probabilities.

    ``attack(model, x, y, *, eps)`` is any attack of :mod:`coursepkg.attacks` (use
    ``functools.partial`` to fix its other arguments).  Each move of a slider attacks
    one image, which takes a fraction of a second for FGSM or PGD.  Returns the widget;
    display it as the last expression of a cell.  Needs ``ipywidgets``; in a static page
    use :func:`eps_strip` instead.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if len(x) != len(y) or len(x) == 0:
        raise ValueError("x and y must hold the same, positive number of examples")
    eps_slider = widgets.FloatSlider(value=min(0.1, eps_max), min=0.0, max=float(eps_max),
                                     step=float(eps_step), description="ε", readout_format=".3f",
                                     continuous_update=False)
    image_slider = widgets.IntSlider(value=0, min=0, max=len(x) - 1, description="image",
                                     continuous_update=False)
    out = widgets.Output()

    def redraw(*_):
        i, eps = image_slider.value, eps_slider.value
        x1, y1 = x[i:i + 1], y[i:i + 1]
        adv = _attack_one(model, attack, x1, y1, eps)
        with torch.no_grad():
            probs = torch.softmax(model(adv), dim=1)[0].cpu()
        k = int(probs.argmax())
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 4, figsize=(10, 2.6), layout="constrained",
                                     gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
            _show(axes[0], x1[0], f"clean: {_label(classes, int(y1[0]))}")
            colour = RIGHT_COLOUR if k == int(y1[0]) else WRONG_COLOUR
            _show(axes[1], adv[0], f"adversarial: {_label(classes, k)}", colour)
            _show_delta(axes[2], (adv - x1)[0], f"perturbation (±{eps:.3g})", scale=max(eps, 1e-6))
            names = [_label(classes, j) for j in range(len(probs))]
            bars = axes[3].barh(range(len(probs)), probs.numpy(), color="lightgrey")
            bars[int(y1[0])].set_color(RIGHT_COLOUR)
            if k != int(y1[0]):
                bars[k].set_color(WRONG_COLOUR)
            axes[3].set_yticks(range(len(probs)), names, fontsize=7)
            axes[3].invert_yaxis()
            axes[3].set_xlim(0, 1)
            axes[3].set_title("probabilities", fontsize=8)
            plt.show()

    eps_slider.observe(redraw, names="value")
    image_slider.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([image_slider, eps_slider]), out])
    box.redraw = redraw  # lets a test or a reader force a redraw
    return box


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------
class Table:
    """Rows of results shown as an HTML table in a notebook and as aligned text elsewhere.

    ``Table(rows)`` takes a list of dicts with the same keys (the columns, in order).
    Floats and :class:`~coursepkg.evaluate.Interval` values (an accuracy with its 95% interval)
    are formatted with ``float_format``.
    """

    def __init__(self, rows: Sequence[Mapping[str, object]], *, float_format: str = "{:.3f}",
                 caption: str | None = None):
        rows = [dict(r) for r in rows]
        if not rows:
            raise ValueError("a Table needs at least one row")
        self.columns = list(rows[0])
        for r in rows:
            if list(r) != self.columns:
                raise ValueError(f"every row must have the columns {self.columns}, got {list(r)}")
        self.rows = rows
        self.float_format = float_format
        self.caption = caption

    def _cell(self, value) -> str:
        from ..evaluate.intervals import Interval

        if isinstance(value, (float, Interval)):  # an Interval prints "0.610 [0.567, 0.651]"
            return self.float_format.format(value)
        return str(value)

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._cell(r[c]))}</td>" for c in self.columns) + "</tr>"
            for r in self.rows
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        cells = [[str(c) for c in self.columns]] + [[self._cell(r[c]) for c in self.columns] for r in self.rows]
        widths = [max(len(row[j]) for row in cells) for j in range(len(self.columns))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(([self.caption] if self.caption else []) + lines)

    __repr__ = __str__


from .diagrams import *  # noqa: E402,F401,F403
from .transfer import *  # noqa: E402,F401,F403


def glue(name: str, value, *, display: bool = False):
    """Bind ``value`` to ``name`` for the chapter's prose, which shows it with
    ``{glue:text}`name``` (myst-nb's glue): the text then says what the run printed.

    Outside a myst-nb build (Colab, a plain Jupyter server) there is no prose to bind and
    the value is only returned; the cell's printed output says the same.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, value, display=display)
    return value


def glue_profile(profile, *fields: str) -> dict:
    """Glue each budget ``fields`` of ``profile`` as ``P_<field>`` for the chapter's prose
    (``{glue:text}`P_eot_samples```): the text then states the value the run used, in
    whichever profile it ran.  Returns ``{field: value}``."""
    values = {f: getattr(profile, f) for f in fields}  # an unknown field: AttributeError
    for field, value in values.items():
        glue(f"P_{field}", value)
    return values
