"""The transfer matrix of chapter 7 as a heatmap.

:func:`~coursepkg.plots.transfer.transfer_heatmap` draws a :class:`~coursepkg.evaluate.TransferMatrix`: one row per
source model (where the adversarial examples were crafted), one column per target (the
defended model that judged them), each cell the transfer success rate in percent.
"""

from __future__ import annotations

__all__ = ["transfer_heatmap"]


def transfer_heatmap(matrix, *, ax=None, title: str | None = None, annotate: bool = True,
                     marked=()):
    """A heatmap of ``matrix.rates`` (sources down, targets across); returns the Figure.

    ``matrix`` is a :class:`~coursepkg.evaluate.TransferMatrix`.  Cells are annotated with
    the success rate in percent unless ``annotate=False``.  ``marked``: (source, target)
    pairs drawn hatched with a "*" -- cells that are not transfer, e.g. a target that wraps
    the source's own network (:func:`~coursepkg.course_table.grey_box_cells`).
    """
    from matplotlib.patches import Rectangle

    import matplotlib.pyplot as plt

    from ..evaluate.transfer import TransferMatrix

    if not isinstance(matrix, TransferMatrix):
        raise TypeError("transfer_heatmap takes the TransferMatrix that "
                        "coursepkg.evaluate.transfer_matrix returns")
    rates = matrix.rates.float().numpy()
    n_s, n_t = rates.shape
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n_t, 1.2 + 0.4 * n_s))
    else:
        fig = ax.figure
    image = ax.imshow(rates, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_t), matrix.targets, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n_s), matrix.sources, fontsize=7)
    ax.set_xlabel("target (defended model judging the examples)", fontsize=8)
    ax.set_ylabel("source (model the examples were crafted on)", fontsize=8)
    if annotate:
        for i in range(n_s):
            for j in range(n_t):
                value = rates[i, j]
                ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=6,
                        color="black" if value > 0.55 else "white")
    for source, target in marked:
        i, j = matrix._index(source, target)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////",
                               edgecolor="cyan", linewidth=0.8))
        if annotate:
            ax.text(j + 0.42, i - 0.42, "*", ha="right", va="top", fontsize=7, color="cyan")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="transfer success rate")
    ax.set_title(title or f"transfer success on {matrix.n} test images", fontsize=9)
    fig.tight_layout()
    return fig
