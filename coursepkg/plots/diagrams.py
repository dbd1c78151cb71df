"""Explanatory figures: the course's central ideas as pictures drawn by code.

Each function takes no required argument, draws one idea on a small made-up example whose
content is *computed* (the maximisers of a linear function over a ball, projected gradient
ascent on a drawn landscape, the receptive field of stacked masked convolutions, a
certified radius, ...) and returns the matplotlib ``Figure`` (it closes nothing).  The
computations live in small private functions that ``tests/test_diagrams.py`` checks, so a
picture cannot say something the maths does not.

* :func:`~coursepkg.plots.diagrams.lp_balls` -- chapter 1: the L-infinity, L2, L1 and L0
  balls in two dimensions and the step each attack takes inside them;
* :func:`~coursepkg.plots.diagrams.minmax_picture` -- chapter 2: adversarial training as a
  min-max problem;
* :func:`~coursepkg.plots.diagrams.bpda_diagram` -- chapter 3: BPDA's forward and backward
  passes;
* :func:`~coursepkg.plots.diagrams.pixelcnn_receptive_field` -- chapter 3: a PixelCNN's
  masks and the blind spot of its receptive field;
* :func:`~coursepkg.plots.diagrams.gradient_masking_picture` -- chapter 4: why a zero
  gradient proves nothing;
* :func:`~coursepkg.plots.diagrams.eot_picture` -- chapter 5: expectation over
  transformation;
* :func:`~coursepkg.plots.diagrams.detector_as_extra_class` -- chapter 6: a detector joined
  to the classifier as an extra class;
* :func:`~coursepkg.plots.diagrams.certified_radius_picture` -- chapter 8: randomised
  smoothing's certified radius.

Colours are the Okabe-Ito palette, safe for colour-blind readers, and lines also differ
in style, so every figure reads in grey too.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

__all__ = [  # in the order of the chapters: lp_balls is chapter 1's  # noqa: RUF022
    "lp_balls",
    "minmax_picture",
    "bpda_diagram",
    "pixelcnn_receptive_field",
    "gradient_masking_picture",
    "eot_picture",
    "detector_as_extra_class",
    "certified_radius_picture",
]

#: The Okabe-Ito palette (Okabe and Ito 2008), distinguishable with any colour vision.
ORANGE, SKY, GREEN, YELLOW = "#E69F00", "#56B4E9", "#009E73", "#F0E442"
BLUE, VERMILLION, PURPLE, BLACK = "#0072B2", "#D55E00", "#CC79A7", "#000000"

_FONT = 9  # the smallest text: readable with a figure ~7.5 in wide shown at 700 px


def _positive(value, name: str) -> float:
    value = float(value)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _count(value, name: str, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _plt():
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------------------
# Chapter 1: the Lp balls
# --------------------------------------------------------------------------------------
_DUAL = {"linf": 1.0, "l2": 2.0, "l1": math.inf}  # the dual exponent q of each ball


def _dual_maximiser(g: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``argmax g . delta`` over ``||delta||_p <= eps``: the steepest-ascent step of each ball.

    L-infinity: ``eps sign(g)`` (FGSM, Goodfellow et al. 2015); L2: ``eps g / ||g||_2``
    (the normalised gradient step); L1: all the budget on the coordinate with the largest
    ``|g_i|``.  The maximum is ``eps ||g||_q`` with ``q`` the dual exponent (``1/p + 1/q = 1``).
    """
    if norm == "linf":
        return eps * torch.sign(g)
    if norm == "l2":
        return eps * g / g.norm()
    if norm == "l1":
        i = int(g.abs().argmax())
        out = torch.zeros_like(g)
        out[i] = eps * torch.sign(g[i])
        return out
    raise ValueError(f"norm must be 'linf', 'l2' or 'l1', got {norm!r}")


def _l0_best_step(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The best one-coordinate change of ``x`` inside the box [0, 1]: ``argmax g . delta``
    over ``||delta||_0 <= 1`` and ``0 <= x + delta <= 1`` (one pixel pushed to 0 or 1)."""
    target = (g > 0).to(x.dtype)  # each coordinate's best value: 1 if g_i > 0 else 0
    gains = g * (target - x)
    i = int(gains.argmax())
    out = torch.zeros_like(x)
    out[i] = target[i] - x[i]
    return out


def lp_balls(eps: float = 1.0, *, gradient=(1.0, 0.45), x=(0.3, 0.55)):
    """The L-infinity, L2 and L1 balls of radius ``eps`` in 2-D, and the L0 "ball" of size 1.

    Left: the three balls around a point ``x``, a gradient ``g`` of the loss at ``x``, and
    for each ball the step ``delta`` that increases the linearised loss ``g . delta`` most,
    computed by ``_dual_maximiser``: FGSM's signed step lands on a corner of the
    L-infinity ball (Goodfellow et al. 2015, ``goodfellow2015explaining``), the L2 step goes
    along ``g``, and the L1 step spends everything on one coordinate.  Each reaches
    ``eps ||g||_q`` with the dual norm ``q`` (Madry et al. 2018, ``madry2018towards``).
    Right: the L0 "ball" of size 1 -- the points that differ from ``x`` in at most one
    coordinate, the two lines through ``x`` clipped to the image box [0, 1]^2 -- and its best
    step, one pixel pushed to 0 or 1 (as in JSMA, Papernot et al. 2016,
    ``papernot2016limitations``).  See :func:`~coursepkg.attacks.fgsm` and
    :func:`~coursepkg.attacks.pgd`.
    """
    import matplotlib.patches as mpatches

    eps = _positive(eps, "eps")
    g = torch.tensor(gradient, dtype=torch.float64)
    if g.shape != (2,) or not bool(g.abs().sum() > 0):
        raise ValueError(f"gradient must be two numbers, not both 0, got {gradient!r}")
    x0 = torch.tensor(x, dtype=torch.float64)
    if x0.shape != (2,) or not bool(((x0 >= 0) & (x0 <= 1)).all()):
        raise ValueError(f"x must be two numbers in [0, 1], got {x!r}")

    plt = _plt()
    fig, (ax, ax0) = plt.subplots(1, 2, figsize=(8.4, 5.0), layout="constrained",
                                  gridspec_kw={"width_ratios": [1.45, 1]})
    styles = {"linf": (BLUE, "-", r"$L_\infty$ ball: $|\delta_1|, |\delta_2| \leq \varepsilon$"),
              "l2": (VERMILLION, "--", r"$L_2$ ball: $\|\delta\|_2 \leq \varepsilon$"),
              "l1": (GREEN, ":", r"$L_1$ ball: $|\delta_1| + |\delta_2| \leq \varepsilon$")}
    ax.add_patch(mpatches.Rectangle((-eps, -eps), 2 * eps, 2 * eps, fill=False, lw=2,
                                    ec=styles["linf"][0], ls="-", label=styles["linf"][2]))
    ax.add_patch(mpatches.Circle((0, 0), eps, fill=False, lw=2, ec=styles["l2"][0], ls="--",
                                 label=styles["l2"][2]))
    ax.add_patch(mpatches.Polygon([(eps, 0), (0, eps), (-eps, 0), (0, -eps)], closed=True,
                                  fill=False, lw=2.4, ec=styles["l1"][0], ls=":",
                                  label=styles["l1"][2]))
    names = {"linf": "FGSM: " + r"$\varepsilon\,\mathrm{sign}(g)$" + "\n"
             + r"$g\cdot\delta = \varepsilon\|g\|_1$ = {:.2f}",
             "l2": "L2 step: " + r"$\varepsilon\, g/\|g\|_2$" + "\n"
             + r"$g\cdot\delta = \varepsilon\|g\|_2$ = {:.2f}",
             "l1": "L1 step: one pixel\n" + r"$g\cdot\delta = \varepsilon\|g\|_\infty$ = {:.2f}"}
    offsets = {"linf": (0.06, 0.04, "bottom"), "l2": (0.09, 0.0, "center"),
               "l1": (0.06, -0.08, "top")}
    for norm, (colour, _, _) in styles.items():
        d = _dual_maximiser(g, eps, norm)
        ax.annotate("", xy=tuple(d.tolist()), xytext=(0, 0),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 2})
        ax.plot(*d.tolist(), "o", color=colour, ms=6)
        dx, dy, va = offsets[norm]
        ax.text(float(d[0]) + dx * eps, float(d[1]) + dy * eps,
                names[norm].replace("{:.2f}", f"{float(g @ d):.2f}"), color=colour,
                fontsize=_FONT, va=va)
    ax.plot([], [], color="0.4", lw=2, marker="o",
            label="steepest step in each ball\n(maximiser of $g\\cdot\\delta$)")
    gn = g / g.norm() * 0.55 * eps
    ax.annotate("", xy=(float(gn[0]) + 1.3 * eps, float(gn[1]) - 0.75 * eps),
                xytext=(1.3 * eps, -0.75 * eps),
                arrowprops={"arrowstyle": "-|>", "color": BLACK, "lw": 1.5})
    ax.text(1.3 * eps, -0.82 * eps, f"loss gradient $g$\n= ({float(g[0]):g}, {float(g[1]):g})",
            fontsize=_FONT, ha="left", va="top")
    ax.plot(0, 0, "ko", ms=6)
    ax.text(-0.08 * eps, -0.1 * eps, r"$x$", fontsize=_FONT + 2, ha="right", va="top")
    ax.set_xlim(-1.2 * eps, 2.35 * eps)
    ax.set_ylim(-1.2 * eps, 1.45 * eps)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.axvline(0, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel(r"change of pixel 1, $\delta_1$", fontsize=_FONT)
    ax.set_ylabel(r"change of pixel 2, $\delta_2$", fontsize=_FONT)
    ax.tick_params(labelsize=_FONT - 1)
    ax.set_title(f"Balls of radius ε = {eps:g} around x\nand the steepest step in each",
                 fontsize=_FONT + 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=_FONT - 1,
              frameon=False, ncol=2)

    # the L0 "ball": one coordinate changes, anywhere in the box
    ax0.add_patch(mpatches.Rectangle((0, 0), 1, 1, fill=False, lw=1, ec="0.5"))
    ax0.plot([0, 1], [x0[1], x0[1]], color=PURPLE, lw=2.5,
             label="L0 ball: one pixel changed")
    ax0.plot([x0[0], x0[0]], [0, 1], color=PURPLE, lw=2.5)
    d0 = _l0_best_step(x0, g)
    end = x0 + d0
    ax0.annotate("", xy=tuple(end.tolist()), xytext=tuple(x0.tolist()),
                 arrowprops={"arrowstyle": "-|>", "color": ORANGE, "lw": 2.2})
    ax0.plot(*end.tolist(), "o", color=ORANGE, ms=7, label="best L0 step: to 0 or 1")
    ax0.plot(*x0.tolist(), "ko", ms=6)
    gs = g / g.norm() * 0.25
    ax0.annotate("", xy=tuple((x0 + gs).tolist()), xytext=tuple(x0.tolist()),
                 arrowprops={"arrowstyle": "-|>", "color": BLACK, "lw": 1.2})
    ax0.plot([], [], color=BLACK, lw=1.2, label="loss gradient $g$")
    ax0.text(float(x0[0]) - 0.03, float(x0[1]) - 0.04, r"$x$", fontsize=_FONT + 2, ha="right",
             va="top")
    ax0.set_xlim(-0.05, 1.05)
    ax0.set_ylim(-0.05, 1.05)
    ax0.set_aspect("equal")
    ax0.set_xlabel("pixel 1 value", fontsize=_FONT)
    ax0.set_ylabel("pixel 2 value", fontsize=_FONT)
    ax0.tick_params(labelsize=_FONT - 1)
    ax0.set_title("L0 budget of 1: how many\npixels change, not by how much",
                  fontsize=_FONT + 1)
    ax0.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=_FONT - 1, ncol=1,
               frameon=False)
    return fig


# --------------------------------------------------------------------------------------
# Chapter 2: the min-max problem
# --------------------------------------------------------------------------------------
_THETA0 = (1.0, 0.6, 0.9, 0.9)  # the toy model's parameters before the training step


def _toy_loss(theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The loss of a toy model with input ``z`` (... x 2) and parameters ``theta`` (4,):
    the logistic loss ``softplus(-f)`` of the margin ``f = w . z + b + a sin(2 z_1) cos(z_2)``."""
    w, b, a = theta[:2], theta[2], theta[3]
    margin = (z * w).sum(-1) + b + a * torch.sin(2 * z[..., 0]) * torch.cos(z[..., 1])
    return F.softplus(-margin)


def _pgd_path(theta: torch.Tensor, x: torch.Tensor, eps: float, steps: int, norm: str
              ) -> torch.Tensor:
    """Projected gradient ascent on ``_toy_loss(theta, .)`` from ``x`` (Madry et al. 2018):
    ``steps + 1`` points, each inside the ``eps``-ball around ``x``; step ``2.5 eps / steps``."""
    alpha = 2.5 * eps / steps
    z = x.clone()
    path = [z.clone()]
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_toy_loss(theta, z), z)
        with torch.no_grad():
            if norm == "linf":
                z = x + (z + alpha * grad.sign() - x).clamp(-eps, eps)
            elif norm == "l2":
                z = z + alpha * grad / grad.norm().clamp_min(1e-12)
                d = z - x
                z = x + d * min(1.0, eps / float(d.norm()))
            else:
                raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
        path.append(z.detach().clone())
    return torch.stack(path)


def _outer_step(theta: torch.Tensor, x_adv: torch.Tensor, lr: float) -> torch.Tensor:
    """One gradient-descent step on the parameters at the adversarial point."""
    theta = theta.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_toy_loss(theta, x_adv), theta)
    return (theta - lr * grad).detach()


def minmax_picture(*, eps: float = 0.5, steps: int = 6, norm: str = "linf", lr: float = 1.0):
    """Adversarial training as ``min_theta E max_{||delta|| <= eps} L(theta, x + delta)``.

    A toy model's loss over a 2-D input around a training point ``x``.  Left, the inner
    max: the attacker runs projected gradient ascent (:func:`~coursepkg.attacks.pgd`,
    computed on the drawn function by ``_pgd_path``) and finds the worst point
    ``x_adv`` in the ``eps``-ball.  Right, the outer min: one gradient step on the model's
    parameters at ``x_adv`` lowers the loss there and, the attack run again, the worst case
    in the whole ball (Madry et al. 2018, ``madry2018towards``, eq. 2.1).  The two panels
    share the colour scale.
    """
    import matplotlib.patches as mpatches

    eps = _positive(eps, "eps")
    steps = _count(steps, "steps")
    lr = _positive(lr, "lr")
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    theta0 = torch.tensor(_THETA0, dtype=torch.float64)
    x = torch.zeros(2, dtype=torch.float64)
    path0 = _pgd_path(theta0, x, eps, steps, norm)
    theta1 = _outer_step(theta0, path0[-1], lr)
    path1 = _pgd_path(theta1, x, eps, steps, norm)

    r = 2.2 * eps
    grid = torch.linspace(-r, r, 161, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1)
    surfaces = [_toy_loss(t, zz) for t in (theta0, theta1)]
    top = float(max(s.max() for s in surfaces))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), layout="constrained", sharey=True)
    levels = torch.arange(0, math.ceil(top * 8) / 8 + 0.01, 0.125).tolist()
    titles = ("Inner max: the attacker's PGD steps\nclimb to the worst point in the ball",
              "Outer min: one training step at $x_{adv}$\nlowers the loss in the ball")
    for k, (ax, surface, path, theta) in enumerate(zip(axes, surfaces, (path0, path1),
                                                       (theta0, theta1))):
        cs = ax.contourf(grid, grid, surface, levels=levels, cmap="cividis")
        if norm == "linf":
            ball = mpatches.Rectangle((-eps, -eps), 2 * eps, 2 * eps, fill=False, ec=PURPLE,
                                      lw=2.2, ls="--", label=r"$\varepsilon$-ball ($L_\infty$)")
        else:
            ball = mpatches.Circle((0, 0), eps, fill=False, ec=PURPLE, lw=2.2, ls="--",
                                   label=r"$\varepsilon$-ball ($L_2$)")
        ax.add_patch(ball)
        colour = ORANGE if k == 0 else SKY
        for a, b in itertools.pairwise(path):
            if float((b - a).norm()) > 1e-9:
                ax.annotate("", xy=tuple(b.tolist()), xytext=tuple(a.tolist()),
                            arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.8})
        ax.plot([], [], color=colour, lw=1.8, label=f"PGD steps ({steps}, projected)")
        ax.plot(*path[-1].tolist(), "o", color=colour, mec="black", ms=8,
                label=f"worst point found, loss {float(_toy_loss(theta, path[-1])):.2f}")
        ax.plot(0, 0, "o", color="white", mec="black", ms=8,
                label=f"training point x, loss {float(_toy_loss(theta, x)):.2f}")
        if k == 1:
            old = path0[-1]
            ax.plot(*old.tolist(), "X", color=ORANGE, mec="black", ms=9,
                    label=f"old $x_{{adv}}$, loss {float(_toy_loss(theta, old)):.2f} "
                          f"(was {float(_toy_loss(theta0, old)):.2f})")
        ax.set_title(titles[k], fontsize=_FONT + 1)
        ax.set_xlabel(r"input coordinate $z_1$", fontsize=_FONT)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=_FONT - 1)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=_FONT - 1,
                  frameon=False)
    axes[0].set_ylabel(r"input coordinate $z_2$", fontsize=_FONT)
    bar = fig.colorbar(cs, ax=axes, shrink=0.8)
    bar.set_label("loss of the model", fontsize=_FONT)
    bar.ax.tick_params(labelsize=_FONT - 1)
    return fig


# --------------------------------------------------------------------------------------
# Chapter 3: BPDA and the PixelCNN's receptive field
# --------------------------------------------------------------------------------------
def bpda_diagram():
    """BPDA (Athalye et al. 2018, ``athalye2018obfuscated``, section 4.1) as a block diagram.

    Forward (top row): ``x`` goes through a purifier ``g`` that is not differentiable (it
    rounds, searches or samples: PixelDefend, bit-depth reduction, ...), then the
    classifier ``f`` and the loss.  Backward (bottom row): the gradient flows back through
    ``f`` as usual, and through ``g`` it is replaced by the identity, ``dg/dx ~ I``, since
    ``g(x) ~ x``.  See :class:`~coursepkg.adaptive.BPDA`.
    """
    import matplotlib.patches as mpatches

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.2, 3.6), layout="constrained")
    ax.set_xlim(0, 10.4)
    ax.set_ylim(0.4, 4.7)
    ax.axis("off")
    y_f, y_b = 3.3, 1.1
    boxes = {"g": (3.0, "purifier $g$\n(not differentiable)", VERMILLION),
             "f": (5.9, "classifier $f$", BLUE),
             "L": (8.6, r"loss $\mathcal{L}$", GREEN)}
    for x, text, colour in boxes.values():
        ax.add_patch(mpatches.FancyBboxPatch((x - 0.85, y_f - 0.45), 1.7, 0.9,
                                             boxstyle="round,pad=0.05", fc="white", ec=colour,
                                             lw=2, hatch="//" if colour == VERMILLION else None))
        ax.text(x, y_f, text, ha="center", va="center", fontsize=_FONT,
                bbox={"fc": "white", "ec": "none", "pad": 1})

    def arrow(x0, y0, x1, y1, colour=BLACK, style="-", text=None, dy=0.18, lw=1.6):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "lw": lw, "ls": style,
                                "shrinkA": 0, "shrinkB": 0})
        if text:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + dy, text, ha="center", va="bottom",
                    fontsize=_FONT, color=colour)

    ax.text(0.55, y_f, "$x$", ha="center", va="center", fontsize=_FONT + 3)
    arrow(0.8, y_f, 2.15, y_f)
    arrow(3.85, y_f, 5.05, y_f, text="$g(x)$")
    arrow(6.75, y_f, 7.75, y_f, text="$f(g(x))$")
    ax.text(0.1, 4.45, "Forward pass: the real defence", fontsize=_FONT + 1, weight="bold")
    ax.text(0.1, 2.15, "Backward pass: BPDA's approximation", fontsize=_FONT + 1,
            weight="bold")
    # backward: the same columns, right to left
    ax.text(8.6, y_b, r"$\partial\mathcal{L}/\partial\mathcal{L} = 1$", ha="center",
            va="center", fontsize=_FONT)
    arrow(8.6, y_f - 0.5, 8.6, y_b + 0.25, colour="0.5", lw=1)
    arrow(7.9, y_b, 6.75, y_b, colour=BLUE, text="exact: chain\nrule through $f$")
    ax.text(5.9, y_b, r"$\nabla_{g(x)}\mathcal{L}$", ha="center", va="center",
            fontsize=_FONT + 1)
    ax.add_patch(mpatches.FancyBboxPatch((3.0 - 0.85, y_b - 0.4), 1.7, 0.8,
                                         boxstyle="round,pad=0.05", fc="white",
                                         ec=VERMILLION, lw=2, ls="--"))
    ax.text(3.0, y_b, "identity $I$\nin place of $g$", ha="center", va="center",
            fontsize=_FONT)
    arrow(5.05, y_b, 3.9, y_b, colour=VERMILLION, style="--", lw=2)
    arrow(2.1, y_b, 1.0, y_b, colour=VERMILLION, style="--", lw=2)
    ax.text(3.0, y_b + 0.5, r"$\partial g/\partial x \approx I$ since $g(x) \approx x$",
            ha="center", va="bottom", fontsize=_FONT, color=VERMILLION)
    ax.text(0.5, y_b, r"$\nabla_x\mathcal{L}$" + "\n" + r"$\approx \nabla_{g(x)}\mathcal{L}$",
            ha="center", va="center", fontsize=_FONT)
    ax.text(3.0, y_f + 0.55, "non-differentiable step: its true\n"
            r"$\partial g/\partial x$ is 0 or undefined",
            ha="center", va="bottom", fontsize=_FONT - 1, color=VERMILLION, style="italic")
    return fig


def _pixelcnn_masks(first_kernel: int, kernel: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The masks of the course's PixelCNN, read from
    :class:`~coursepkg.defences.pixelcnn.MaskedConv2d` itself (1 = the weight is used)."""
    from ..defences.pixelcnn import MaskedConv2d

    mask_a = MaskedConv2d(1, 1, first_kernel, "A").mask[0, 0].clone()
    mask_b = MaskedConv2d(1, 1, kernel, "B").mask[0, 0].clone()
    return mask_a, mask_b


def _dilate(field: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inputs a set of outputs reads through one masked convolution: output ``(i, j)``
    reads input ``(i + u - c, j + v - c)`` wherever ``mask[u, v] = 1`` (a cross-correlation)."""
    k = mask.shape[0]
    c = k // 2
    h, w = field.shape
    out = torch.zeros_like(field, dtype=torch.bool)
    for u, v in mask.nonzero().tolist():
        du, dv = u - c, v - c
        src = field[max(0, -du):h - max(0, du), max(0, -dv):w - max(0, dv)]
        out[max(0, du):h - max(0, -du), max(0, dv):w - max(0, -dv)] |= src
    return out


def _receptive_field(rows: int, cols: int, pixel: tuple[int, int], masks: list[torch.Tensor]
                     ) -> torch.Tensor:
    """The input pixels that the output at ``pixel`` depends on, after the masked layers
    ``masks`` (first layer first): the masks propagated backwards from the output."""
    field = torch.zeros(rows, cols, dtype=torch.bool)
    field[pixel] = True
    for mask in reversed(masks):
        field = _dilate(field, mask)
    return field


def _raster_before(rows: int, cols: int, pixel: tuple[int, int]) -> torch.Tensor:
    """The pixels strictly before ``pixel`` in raster order (row by row, left to right)."""
    index = torch.arange(rows * cols).view(rows, cols)
    return index < pixel[0] * cols + pixel[1]


def pixelcnn_receptive_field(size: int = 7, *, first_kernel: int = 5, layers: int = 4):
    """A PixelCNN's masked convolutions (van den Oord et al. 2016, ``oord2016pixelcnn``).

    Left: mask A of the first ``first_kernel`` x ``first_kernel`` layer (it hides the centre:
    a pixel must not see itself) and mask B of the 3x3 layers after it (the centre is kept),
    read from :class:`~coursepkg.defences.pixelcnn.MaskedConv2d`.  Right: the receptive
    field of one pixel after the first layer and ``layers`` mask-B layers (the course's
    :class:`~coursepkg.defences.pixelcnn.PixelCNN` by default), computed by propagating the
    masks.  It contains no pixel at or after the predicted one in raster order, but misses a
    wedge above and to the right, the *blind spot* that no number of stacked layers fills
    (van den Oord et al. 2016, fig. 1).  The grid shows the pixel's row
    and ``size - 1`` rows above it, ``2 size - 1`` columns wide.
    """
    import matplotlib.colors as mcolors
    import matplotlib.patches as mpatches

    size = _count(size, "size", 2)
    layers = _count(layers, "layers", 0)
    if first_kernel % 2 != 1 or first_kernel < 3:
        raise ValueError(f"first_kernel must be an odd integer >= 3, got {first_kernel!r}")
    mask_a, mask_b = _pixelcnn_masks(first_kernel)
    rows, cols = size, 2 * size - 1
    pixel = (size - 1, size - 1)
    field = _receptive_field(rows, cols, pixel, [mask_a] + [mask_b] * layers)
    deep = _receptive_field(rows, cols, pixel, [mask_a] + [mask_b] * (rows + cols))
    before = _raster_before(rows, cols, pixel)
    # 0 after the pixel, 1 the pixel, 2 seen, 3 more layers would see it, 4 blind spot
    code = torch.zeros(rows, cols, dtype=torch.long)
    code[before & ~deep] = 4
    code[before & deep & ~field] = 3
    code[field] = 2
    code[pixel] = 1
    colours = ["white", ORANGE, SKY, "#DDDDDD", VERMILLION]
    cmap = mcolors.ListedColormap(colours)

    plt = _plt()
    fig = plt.figure(figsize=(8.2, 4.0), layout="constrained")
    spec = fig.add_gridspec(2, 2, width_ratios=[1, 3.6], height_ratios=[first_kernel, 3])
    axes = [fig.add_subplot(spec[0, 0]), fig.add_subplot(spec[1, 0]),
            fig.add_subplot(spec[:, 1])]

    def grid(ax, image, title):
        h, w = image.shape
        ax.imshow(image, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5)
        ax.set_xticks([x - 0.5 for x in range(w + 1)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(h + 1)], minor=True)
        ax.grid(which="minor", color="0.4", lw=0.8)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.set_title(title, fontsize=_FONT + 1)

    titles = (f"Mask A: first layer\n({first_kernel}x{first_kernel}, hides the centre)",
              "Mask B: later layers\n(3x3, keeps the centre)")
    for ax, mask, name in zip(axes[:2], (mask_a, mask_b), titles):
        k = mask.shape[0]
        image = torch.where(mask.bool(), 2, 0)
        grid(ax, image, name)
        ax.add_patch(mpatches.Rectangle((k // 2 - 0.5, k // 2 - 0.5), 1, 1, fill=False,
                                        ec=ORANGE, lw=3))
    grid(axes[2], code, f"What one pixel's prediction sees after\n1 + {layers} masked layers")
    for i, j in (code == 0).nonzero().tolist():
        axes[2].add_patch(mpatches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                             ec="0.7", lw=0))
    labels = ["after it in raster order:\nmust never be seen", "the pixel predicted",
              "seen (the weights used)", "not yet seen: more\nlayers would reach it",
              "blind spot: before it,\nnever seen at any depth"]
    handles = [mpatches.Patch(fc=c, ec="0.4", hatch="///" if n == 0 else None, label=lab)
               for n, (c, lab) in enumerate(zip(colours, labels)) if n == 1 or (code == n).any()
               or n in (0, 2)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=_FONT - 1,
               frameon=False)
    return fig


# --------------------------------------------------------------------------------------
# Chapter 4: gradient masking
# --------------------------------------------------------------------------------------
_TEMPERATURE = 100.0  # distillation's training temperature, the logits then scaled by it
_LEVELS = 4  # the quantised model reads its input rounded to steps of 1/_LEVELS


def _masking_losses(t: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss along a direction ``x + t d`` (float32, as a network computes it) of three
    models with the same decision: smooth, saturated softmax, quantised input."""
    def margin(s):  # the true class's logit minus the other's
        return 2.0 - 5.0 * s

    return {"smooth": F.softplus(-margin(t)),
            "saturated": F.softplus(-_TEMPERATURE * margin(t)),
            "quantised": F.softplus(-margin(torch.round(t * _LEVELS) / _LEVELS))}


def _masking_gradients() -> dict[str, float]:
    """d loss / d t at the data point ``t = 0``, by autograd in float32."""
    t = torch.zeros((), requires_grad=True)
    out = {}
    for name, loss in _masking_losses(t).items():
        (g,) = torch.autograd.grad(loss, t)
        out[name] = float(g)
    return out


def gradient_masking_picture(*, eps: float = 0.6):
    """Why a zero gradient at ``x`` proves nothing (Athalye et al. 2018,
    ``athalye2018obfuscated``; Papernot et al. 2017, ``papernot2017practical``).

    The loss along one direction from a data point for three models with the same
    decisions: a smooth one, one whose softmax saturates (defensive distillation's logits
    scaled by its temperature, Papernot et al. 2016, ``papernot2016distillation``: the loss
    and its float32 gradient are exactly 0 near ``x``) and one that quantises its input
    (a shattered gradient, zero almost everywhere).  The dashed tangent is what the gradient
    at ``x`` predicts; the marker at ``x + eps`` what a step actually gives.  See
    :func:`~coursepkg.attacks.pgd` and :mod:`coursepkg.adaptive`.
    """
    eps = _positive(eps, "eps")
    t = torch.linspace(-0.6, 1.0, 801)
    losses = _masking_losses(t)
    grads = _masking_gradients()
    at_eps = _masking_losses(torch.tensor(eps))
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(8.6, 3.4), layout="constrained")
    titles = {"smooth": "Smooth model:\nthe gradient points uphill",
              "saturated": f"Saturated softmax (T = {_TEMPERATURE:g}):\nflat zero loss near x",
              "quantised": f"Quantised input ({_LEVELS} levels per unit):\nzero gradient, steps"}
    colours = {"smooth": BLUE, "saturated": VERMILLION, "quantised": GREEN}
    for ax, name in zip(axes, titles):
        y0 = float(losses[name][t.abs().argmin()])
        ax.plot(t, losses[name], color=colours[name], lw=2, label="loss along the direction")
        ax.plot(t, y0 + grads[name] * t, "k--", lw=1.2,
                label=f"tangent at x (gradient {grads[name]:.2g})")
        ax.plot(0, y0, "ko", ms=6)
        ax.plot(eps, float(at_eps[name]), "o", color=ORANGE, mec="black", ms=8,
                label=f"loss at x + ε: {float(at_eps[name]):.3g}")
        ax.axvline(0, color="0.8", lw=0.8, zorder=0)
        ax.axvline(eps, color="0.8", lw=0.8, zorder=0)
        top = float(losses[name].max())
        ax.set_ylim(-0.08 * top, 1.08 * top)
        ax.set_xticks([0, eps], ["x", "x + ε"])
        ax.tick_params(labelsize=_FONT - 1)
        ax.set_xlabel("position along the direction", fontsize=_FONT)
        ax.set_title(titles[name], fontsize=_FONT + 1)
        ax.legend(loc="upper left", fontsize=_FONT - 1.5, framealpha=0.9)
    axes[0].set_ylabel("loss for the true class", fontsize=_FONT)
    return fig


# --------------------------------------------------------------------------------------
# Chapter 5: expectation over transformation
# --------------------------------------------------------------------------------------
_EOT_W = (1.0, 0.5)  # the direction the expected loss rises in


def _input_plane(ax, r: float) -> None:
    """Square axes over [-r, r]^2, labelled as two coordinates of an input around x."""
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=_FONT - 1)
    ax.set_xlabel("input coordinate 1", fontsize=_FONT)
    ax.set_ylabel("input coordinate 2", fontsize=_FONT)


def _eot_loss(z: torch.Tensor) -> torch.Tensor:
    """A loss with a gentle trend along ``_EOT_W`` and strong ripples (float64)."""
    w = torch.tensor(_EOT_W, dtype=z.dtype)
    return (z * w).sum(-1) + 0.9 * torch.sin(4 * z[..., 0] + 1.0) * torch.cos(3 * z[..., 1])


def _eot_gradients(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``grad_x L(t_i(x))`` for the random translations ``t_i(x) = x + shift_i`` (one a row)."""
    z = (x + shifts).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(_eot_loss(z).sum(), z)
    return g


def _eot_shifts(samples: int, scale: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(samples, 2, generator=gen, dtype=torch.float64)


def eot_picture(*, samples: int = 8, scale: float = 0.5, seed: int = 0):
    """Expectation over transformation (Athalye et al. 2018, ``athalye2018synthesizing``
    and ``athalye2018obfuscated``, section 4.3).

    Left: a loss with ripples, a point ``x`` and ``samples`` random transformations
    ``t_i(x)`` (here random translations, seeded by ``seed``).  Each single gradient
    ``grad L(t_i(x))`` (thin arrows, drawn from ``x``) points somewhere different; their
    average (thick) points along the gradient of the expected loss ``E_t L(t(x))``
    (dashed, from 20000 samples), which is what EOT climbs.  Right: how well the average of
    ``n`` gradients agrees with that direction as ``n`` grows.  See
    :class:`~coursepkg.adaptive.EOT`.
    """
    samples = _count(samples, "samples", 2)
    scale = _positive(scale, "scale")
    x = torch.zeros(2, dtype=torch.float64)
    shifts = _eot_shifts(samples, scale, seed)
    grads = _eot_gradients(x, shifts)
    mean = grads.mean(0)
    truth = _eot_gradients(x, _eot_shifts(20000, scale, seed + 1)).mean(0)

    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.4, 3.9), layout="constrained",
                                  gridspec_kw={"width_ratios": [1.2, 1]})
    r = 1.6
    grid = torch.linspace(-r, r, 161, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1)
    cs = ax.contourf(grid, grid, _eot_loss(zz), levels=14, cmap="cividis", alpha=0.45)
    bar = fig.colorbar(cs, ax=ax, shrink=0.8)
    bar.set_label("loss", fontsize=_FONT)
    bar.ax.tick_params(labelsize=_FONT - 1)
    unit = 1.3 / float(grads.norm(dim=1).max())  # the single gradients on one scale
    long = 1.3  # the average and the expectation: direction only, this long
    pts = (x + shifts).numpy()
    ax.plot(pts[:, 0], pts[:, 1], "o", color=YELLOW, mec="black", ms=5,
            label=r"transformed inputs $t_i(x)$")
    for k, g in enumerate(grads):
        ax.annotate("", xy=tuple((g * unit).tolist()), xytext=(0, 0),
                    arrowprops={"arrowstyle": "-|>", "color": BLACK, "lw": 0.9})
    ax.plot([], [], color=BLACK, lw=0.9, label=r"single gradients $\nabla L(t_i(x))$")
    ax.annotate("", xy=tuple((mean / mean.norm() * long).tolist()), xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "color": ORANGE, "lw": 4})
    ax.plot([], [], color=ORANGE, lw=4, label=f"their average ({samples} samples)")
    ax.annotate("", xy=tuple((truth / truth.norm() * long).tolist()), xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "color": VERMILLION, "lw": 1.8, "ls": "--"})
    ax.plot([], [], color=VERMILLION, lw=1.8, ls="--",
            label=r"$\nabla\, \mathbb{E}_t L(t(x))$ (20000 samples)")
    ax.plot(0, 0, "o", color="white", mec="black", ms=7)
    ax.text(-0.08, -0.1, "$x$", fontsize=_FONT + 2, va="top", ha="right")
    _input_plane(ax, r)
    ax.set_title("Random transformations: single gradients\ndisagree, their average does not",
                 fontsize=_FONT + 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=_FONT - 1,
              frameon=False, ncol=2)

    many = _eot_gradients(x, _eot_shifts(4096, scale, seed + 2))
    ns = [1, 2, 4, 8, 16, 32, 64, 128]
    cosines = []
    for n in ns:
        means = many[: (len(many) // n) * n].view(-1, n, 2).mean(1)
        cosines.append(float(F.cosine_similarity(means, truth[None], dim=1).mean()))
    ax2.plot(ns, cosines, "o-", color=BLUE, lw=2)
    ax2.set_xscale("log", base=2)
    ax2.set_ylim(min(0.0, min(cosines)) - 0.05, 1.05)
    ax2.axhline(1.0, color="0.6", ls=":", lw=1)
    ax2.set_xlabel("number of samples n averaged", fontsize=_FONT)
    ax2.set_ylabel("mean cosine with the expected\nloss's gradient (1 = same direction)",
                   fontsize=_FONT)
    ax2.tick_params(labelsize=_FONT - 1)
    ax2.set_title("More samples, a steadier direction", fontsize=_FONT + 1)
    return fig


# --------------------------------------------------------------------------------------
# Chapter 6: the detector as an extra class
# --------------------------------------------------------------------------------------
_DETECTOR_CASES = (  # (title, the K class logits, the detector's logit); true class 0
    ("Clean input", (4.0, 1.5, 0.8, 0.2), 0.5),
    ("Attack on the classifier only", (2.0, 3.6, 0.9, 0.3), 4.4),
    ("Attack on the joined K+1 classes", (2.0, 3.2, 0.9, 0.3), 2.6),
)


def _joined_decision(logits, detector_logit) -> int:
    """The prediction of the classifier joined to its detector: the argmax of the ``K``
    class logits and the detector's logit as class ``K`` ("adversarial")."""
    joined = torch.tensor([*logits, detector_logit], dtype=torch.float64)
    return int(joined.argmax())


def detector_as_extra_class(*, true_class: int = 0):
    """A detector joined to the classifier as a ``(K+1)``-th class, "adversarial"
    (Carlini and Wagner 2017, ``carlini2017bypassing``; Grosse et al. 2017).

    Three inputs: a clean one (the true class wins); an attack on the classifier alone
    (the label flips, but the detector's logit is now the largest: the input is flagged);
    and an attack on the joined model, which must make a wrong class beat *both* the true
    class and the detector's logit -- a single classifier to attack with the usual tools
    (:func:`~coursepkg.attacks.pgd` on the ``K+1`` logits).  The outcomes are computed by
    ``_joined_decision``.  See :mod:`coursepkg.defences.detection`.
    """
    k = len(_DETECTOR_CASES[0][1])
    if int(true_class) != true_class or not 0 <= true_class < k:
        raise ValueError(f"true_class must be an integer in 0..{k - 1}, got {true_class!r}")
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(8.6, 3.5), layout="constrained", sharey=True)
    names = [f"class {c}" for c in range(k)] + ["adver-\nsarial"]
    for ax, (title, logits, det) in zip(axes, _DETECTOR_CASES):
        logits = list(logits)
        logits[0], logits[true_class] = logits[true_class], logits[0]
        decision = _joined_decision(logits, det)
        values = logits + [det]
        colours = [BLUE if c == true_class else SKY for c in range(k)] + [VERMILLION]
        bars = ax.bar(range(k + 1), values, color=colours, ec="black", lw=0.8)
        bars[-1].set_hatch("//")
        bars[decision].set_linewidth(2.8)
        ax.text(decision, values[decision] + 0.15, "wins", ha="center", va="bottom",
                fontsize=_FONT, weight="bold")
        if decision == true_class:
            outcome = "the true class: correct"
        elif decision == k:
            outcome = "flagged: attack fails"
        else:
            outcome = f"class {decision}: attack succeeds"
        ax.set_title(f"{title}\n→ {outcome}", fontsize=_FONT)
        ax.set_xticks(range(k + 1), names, fontsize=_FONT - 1)
        ax.tick_params(axis="y", labelsize=_FONT - 1)
        if decision not in (true_class, k):
            bar_to_beat = max(values[true_class], det)
            ax.axhline(bar_to_beat, color=BLACK, ls=":", lw=1.2)
            ax.text(k + 0.45, bar_to_beat + 0.08, "must beat the true class\nand the detector",
                    ha="right", va="bottom", fontsize=_FONT - 1)
        ax.set_ylim(0, 5.4)
    axes[0].set_ylabel("logit", fontsize=_FONT)
    import matplotlib.patches as mpatches

    fig.legend(handles=[mpatches.Patch(fc=BLUE, ec="black", label="true class"),
                        mpatches.Patch(fc=SKY, ec="black", label="other classes"),
                        mpatches.Patch(fc=VERMILLION, ec="black", hatch="//",
                                       label="detector's logit as class K+1")],
               loc="outside lower center", ncol=3, fontsize=_FONT - 1, frameon=False)
    return fig


# --------------------------------------------------------------------------------------
# Chapter 8: randomised smoothing
# --------------------------------------------------------------------------------------
def _certified_radius(p_a: float, sigma: float) -> float:
    """``sigma Phi^-1(p_A)``: the L2 radius of Cohen et al. (2019, Theorem 1) with
    ``p_B = 1 - p_A``; Phi^-1 in float64 by :func:`torch.special.ndtri`."""
    return float(sigma * torch.special.ndtri(torch.tensor(p_a, dtype=torch.float64)))


def _smoothing_setup(p_a: float, sigma: float):
    """A linear base classifier whose true ``P(f(x + noise) = A)`` is ``p_a``: class A on
    the side of the line ``u . z = d`` holding ``x = 0``, with ``d = sigma Phi^-1(p_a)``.
    Returns ``(u, d)``; for a linear classifier the certified radius equals ``d`` (tight)."""
    u = torch.tensor([0.8, 0.6], dtype=torch.float64)  # a unit normal
    return u, _certified_radius(p_a, sigma)


def certified_radius_picture(p_a: float = 0.9, sigma: float = 0.5, *, samples: int = 300,
                             seed: int = 0):
    """Randomised smoothing's certificate in 2-D (Cohen et al. 2019, ``cohen2019certified``).

    Left: Gaussian noise samples ``x + N(0, sigma^2 I)`` coloured by the base classifier's
    vote (a linear boundary placed so that class A gets probability ``p_a``), and the
    certified L2 radius ``R = sigma Phi^-1(p_A)`` as a circle: no point inside it can change
    the smoothed classifier's answer.  For a linear base classifier the circle touches the
    boundary -- the radius is tight.  Right: ``R`` against ``p_A`` for a few ``sigma``.
    See :class:`~coursepkg.defences.certified.Smoothed`.
    """
    import matplotlib.patches as mpatches

    p_a = float(p_a)
    if not 0.5 < p_a < 1.0:
        raise ValueError(f"p_a must lie strictly between 0.5 and 1 for a certificate, got {p_a}")
    sigma = _positive(sigma, "sigma")
    samples = _count(samples, "samples")
    u, d = _smoothing_setup(p_a, sigma)
    radius = _certified_radius(p_a, sigma)
    gen = torch.Generator().manual_seed(seed)
    noise = sigma * torch.randn(samples, 2, generator=gen, dtype=torch.float64)
    vote_a = noise @ u < d
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.4, 4.0), layout="constrained",
                                  gridspec_kw={"width_ratios": [1.15, 1]})
    r = max(3 * sigma, 1.3 * radius)
    a, b = noise[vote_a].numpy(), noise[~vote_a].numpy()
    ax.plot(a[:, 0], a[:, 1], "o", color=BLUE, ms=3, alpha=0.4,
            label=f"noise votes class A ({len(a)} of {samples})")
    ax.plot(b[:, 0], b[:, 1], "^", color=ORANGE, ms=4, alpha=0.8,
            label=f"noise votes class B ({len(b)} of {samples})")
    tangent = u * d
    along = torch.tensor([-float(u[1]), float(u[0])], dtype=torch.float64)
    line = torch.stack([tangent - 3 * r * along, tangent + 3 * r * along])
    ax.plot(line[:, 0], line[:, 1], color=BLACK, lw=1.6, label="base classifier's boundary")
    ax.add_patch(mpatches.Circle(
        (0, 0), radius, fill=False, ec=VERMILLION, lw=2.6, ls="--", zorder=5,
        label=rf"certified radius $R = \sigma\Phi^{{-1}}(p_A)$ = {radius:.2f}"))
    ax.annotate("", xy=tuple(tangent.tolist()), xytext=(0, 0),
                arrowprops={"arrowstyle": "<|-|>", "color": VERMILLION, "lw": 1.8},
                zorder=6)
    ax.text(*(tangent * 0.5 + along * 0.1 * r).tolist(), "$R$", color=VERMILLION,
            fontsize=_FONT + 3, ha="center", weight="bold",
            bbox={"fc": "white", "ec": "none", "pad": 0.5, "alpha": 0.8}, zorder=7)
    ax.plot(0, 0, "o", color="white", mec="black", ms=8, zorder=7)
    ax.text(-0.06 * r, 0.04 * r, "$x$", fontsize=_FONT + 3, ha="right", va="bottom",
            bbox={"fc": "white", "ec": "none", "pad": 0.5, "alpha": 0.8}, zorder=7)
    _input_plane(ax, r)
    ax.set_title(f"Noise around x (σ = {sigma:g}), $p_A$ = {p_a:g}", fontsize=_FONT + 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=_FONT - 1,
              frameon=False, ncol=2)

    ps = torch.linspace(0.5, 0.999, 400, dtype=torch.float64)
    for s, style in zip(sorted({0.25, 0.5, 1.0, sigma}), ("-", "--", ":", "-.")):
        ax2.plot(ps, s * torch.special.ndtri(ps), ls=style, lw=2 if s == sigma else 1.3,
                 color=VERMILLION if s == sigma else "0.35", label=f"σ = {s:g}")
    ax2.plot(p_a, radius, "o", color=VERMILLION, mec="black", ms=8)
    ax2.set_xlabel("$p_A$: the top class's probability\nunder noise", fontsize=_FONT)
    ax2.set_ylabel("certified L2 radius $R$", fontsize=_FONT)
    ax2.tick_params(labelsize=_FONT - 1)
    ax2.set_title("More noise or more confidence:\na larger radius", fontsize=_FONT + 1)
    ax2.legend(fontsize=_FONT - 1, loc="upper left")
    return fig
