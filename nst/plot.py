"""One named helper per kind of figure in the lessons. Each draws a new figure and returns it.

In a notebook the figure appears once when the cell ends (the helpers close it from pyplot's list
and Jupyter shows the returned figure), so end the line without ``;`` and do not call plt.show().
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

if TYPE_CHECKING:  # IPython is there wherever a notebook is; plain scripts need not import it
    from IPython.display import Code

from nst.images import tensor_to_pil


def _grid(n: int, ncols: int | None, size: float, aspect: float = 1.0) -> tuple[Figure, list]:
    """A figure with ``n`` axes laid out ``ncols`` wide (all of them if ncols is None)."""
    ncols = min(n, ncols or n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows * aspect), squeeze=False
    )
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.axis("off")
    plt.close(fig)  # shown once, by Jupyter's display of the returned figure
    return fig, axes[:n]


def show_images(
    images: Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    size: float = 3.0,
) -> Figure:
    """A row (or grid) of (1,3,H,W) images in [0, 1] with optional titles."""
    h, w = images[0].shape[-2:]
    fig, axes = _grid(len(images), ncols, size, aspect=h / w)
    for i, (ax, img) in enumerate(zip(axes, images)):
        ax.imshow(tensor_to_pil(img))
        ax.set_title(titles[i] if titles else "", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_feature_maps(feats: torch.Tensor, n: int = 16, ncols: int = 8, title: str = "") -> Figure:
    """The first ``n`` channels of a (1,C,H,W) feature map, each scaled to its own range."""
    maps = feats[0, :n].detach().float().cpu().numpy()  # (n,H,W)
    fig, axes = _grid(len(maps), ncols, 1.4, aspect=maps.shape[1] / maps.shape[2])
    for c, (ax, fmap) in enumerate(zip(axes, maps)):
        ax.imshow(fmap, cmap="viridis")
        ax.set_title(f"ch {c}", fontsize=7)
        ax.axis("off")
    fig.suptitle(
        title or f"{feats.shape[1]} channels, {feats.shape[2]}x{feats.shape[3]}", fontsize=10
    )
    fig.tight_layout()
    return fig


def show_grams(
    grams: Sequence[torch.Tensor], titles: Sequence[str] | None = None, size: float = 3.5
) -> Figure:
    """Heatmaps of (1,C,C) or (C,C) Gram matrices side by side, each with its colour bar."""
    fig, axes = _grid(len(grams), None, size)
    for i, (ax, gram) in enumerate(zip(axes, grams)):
        mat = gram.detach().float().cpu().reshape(gram.shape[-2:]).numpy()  # (C,C)
        im = ax.imshow(mat, cmap="magma")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(titles[i] if titles else "", fontsize=9)
        ax.set_xlabel("channel")
        ax.set_ylabel("channel")
    fig.tight_layout()
    return fig


def plot_losses(
    histories: Mapping[str, Sequence[Mapping[str, float]]] | Sequence[Mapping[str, float]],
    keys: Sequence[str] = ("total",),
    x: str | Sequence[str] = "step",
    log: bool = True,
    ylabel: str = "loss",
) -> Figure:
    """Curves of ``optimize`` histories (one, or {label: history}) vs step and/or seconds.

    Any rows with the keys work, e.g. distances from ``nst.metrics`` with ``ylabel="distance"``.
    """
    if not isinstance(histories, Mapping):
        histories = {"": histories}
    xs = [x] if isinstance(x, str) else list(x)
    fig, axes = _grid(len(xs), None, 4.5, aspect=0.75)
    for ax, x_key in zip(axes, xs):
        for label, history in histories.items():
            for key in keys:
                name = " ".join(part for part in (label, key if len(keys) > 1 else "") if part)
                # A log axis cannot show 0 (e.g. the content loss of the photo itself): skip those.
                points = [(row[x_key], row[key]) for row in history if row[key] > 0 or not log]
                ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
        ax.set_xlabel("steps (loss-and-gradient evaluations)" if x_key == "step" else x_key)
        ax.set_ylabel(ylabel if len(keys) > 1 else f"{keys[0]} {ylabel}")
        if log:
            ax.set_yscale("log")
            top = max(max(line.get_ydata(), default=1.0) for line in ax.get_lines())
            ax.set_ylim(
                bottom=max(ax.get_ylim()[0], top * 1e-4)
            )  # 4 decades: a start near 0 hides the rest
        if any(ax.get_legend_handles_labels()[1]):
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def show_source(obj: object) -> Code:
    """Highlighted source of an ``nst`` function: the code a lesson explains is the code it runs."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def show_grid(
    images: Sequence[Sequence[torch.Tensor]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    size: float = 2.2,
) -> Figure:
    """A grid of (1,3,H,W) images, ``images[row][col]``, with a label for each row and column."""
    nrows, ncols = len(images), len(images[0])
    h, w = images[0][0].shape[-2:]
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows * h / w), squeeze=False
    )
    plt.close(fig)
    for r, row in enumerate(images):
        for c, img in enumerate(row):
            ax = axes[r][c]
            ax.imshow(tensor_to_pil(img))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9)
    fig.tight_layout()
    return fig


def show_bars(values: Mapping[str, float], title: str = "", log: bool = False) -> Figure:
    """A bar chart of named numbers, e.g. the style loss of each layer."""
    fig, (ax,) = _grid(1, None, 4.5, aspect=0.6)
    ax.bar(list(values), list(values.values()), color="tab:blue")
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def show_tradeoff(points: Mapping[str, tuple[float, float]]) -> Figure:
    """Labelled (content distance, style distance) points joined in order: a trade-off curve."""
    fig, (ax,) = _grid(1, None, 4.5, aspect=0.8)
    xs, ys = zip(*points.values())
    ax.plot(xs, ys, "o-", color="tab:blue")
    for label, (x, y) in points.items():
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("content distance (lower: more photo)")
    ax.set_ylabel("style distance (lower: more painting)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
