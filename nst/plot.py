"""One named helper per kind of figure in the lessons. Each draws a new figure and returns it.

In IPython (JupyterLab, Colab) every figure a helper makes is shown exactly once, when the cell
ends: whether or not the call is the cell's last line, and whether or not the cell ends with the
returned figure (``fig = show_images(...); fig.savefig(...); fig``). Outside IPython nothing is
shown; the figure is returned for saving.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import torch
from matplotlib import ticker
from matplotlib.figure import Figure

if TYPE_CHECKING:  # IPython is there wherever a notebook is; plain scripts need not import it
    from IPython.display import Code

from nst.errors import NSTError
from nst.images import tensor_to_pil

COLORS = plt.get_cmap("tab10").colors  # one colour per run, in the order the runs are given
LINESTYLES = ("-", "--", ":", "-.")  # one line style per quantity (e.g. content, style)
_pending: list[Figure] = []  # figures made in the running IPython cell, shown when it ends


def _show_at_cell_end(result: Any) -> None:
    """IPython's post_run_cell hook: show each pending figure the cell's value did not show."""
    from IPython.display import display

    figures = list(_pending)
    _pending.clear()
    for fig in figures:
        if fig is not getattr(result, "result", None):  # the cell's value is shown already
            display(fig)


def _shown(fig: Figure) -> Figure:
    """Have ``fig`` shown once when the running IPython cell ends (outside IPython: nothing)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return fig
    shell = get_ipython()
    if shell is not None:
        if _show_at_cell_end not in shell.events.callbacks["post_run_cell"]:
            shell.events.register("post_run_cell", _show_at_cell_end)
        _pending.append(fig)
    return fig


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
    plt.close(fig)  # not pyplot's to show: _shown shows it once
    return fig, axes[:n]


def show_images(
    images: Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    size: float = 3.0,
) -> Figure:
    """A row (or grid) of (1,3,H,W) images in [0, 1], ``size`` inches wide each, with titles."""
    h, w = images[0].shape[-2:]
    fig, axes = _grid(len(images), ncols, size, aspect=h / w)
    for i, (ax, img) in enumerate(zip(axes, images)):
        ax.imshow(tensor_to_pil(img))
        ax.set_title(titles[i] if titles else "", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return _shown(fig)


def show_crops(
    images: Sequence[torch.Tensor],
    titles: Sequence[str],
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    zoom: int = 2,
) -> Figure:
    """The same region of each (1,3,H,W) image, each image pixel drawn as zoom x zoom pixels.

    ``box`` = (top, left, height, width) as fractions of each image (default: all of it), so
    images of one aspect show the same part. Unlike ``show_images``, nothing is smoothed or
    rescaled: single pixels, grain and noise stay visible.
    """
    top, left, height, width = box
    crops = []
    for img in images:
        h, w = img.shape[-2:]
        y, x = round(top * h), round(left * w)
        crops.append(img[..., y : y + round(height * h), x : x + round(width * w)])  # (1,3,h',w')
    ch, cw = crops[0].shape[-2:]
    dpi, gap_px = 100, 12  # the axes are placed in pixels: each image pixel is zoom x zoom
    title_px = 8 + 13 * max(title.count("\n") + 1 for title in titles)
    width, height = len(crops) * (cw * zoom + gap_px) - gap_px, ch * zoom + title_px
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    plt.close(fig)
    for i, (crop, title) in enumerate(zip(crops, titles)):
        left_px = i * (cw * zoom + gap_px)
        ax = fig.add_axes((left_px / width, 0, cw * zoom / width, ch * zoom / height))
        ax.imshow(tensor_to_pil(crop), interpolation="nearest")  # square pixels, no smoothing
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return _shown(fig)


def show_feature_maps(feats: torch.Tensor, n: int = 16, ncols: int = 4, title: str = "") -> Figure:
    """The first ``n`` channels of a (1,C,H,W) feature map, each scaled to its own range."""
    maps = feats[0, :n].detach().float().cpu().numpy()  # (n,H,W)
    fig, axes = _grid(len(maps), ncols, 3.0, aspect=maps.shape[1] / maps.shape[2])
    for c, (ax, fmap) in enumerate(zip(axes, maps)):
        ax.imshow(fmap, cmap="viridis")
        ax.set_title(f"ch {c} (max {fmap.max():.3g})", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        (title or f"{feats.shape[1]} channels, {feats.shape[2]}x{feats.shape[3]}")
        + "\neach map on its own colour scale: dark = 0 (or its minimum), yellow = its maximum",
        fontsize=10,
    )
    fig.tight_layout()
    return _shown(fig)


def show_grams(
    grams: Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    size: float = 3.5,
    log: bool = True,
) -> Figure:
    """Heatmaps of (1,C,C) or (C,C) Gram matrices on one shared colour scale (log by default)."""
    from matplotlib.colors import LogNorm, Normalize

    mats = [g.detach().float().cpu().reshape(g.shape[-2:]).numpy() for g in grams]  # (C,C) each
    top = max(float(m.max()) for m in mats)
    floor = max(top * 1e-4, min(float(m[m > 0].min()) for m in mats if (m > 0).any()))
    norm = LogNorm(vmin=floor, vmax=top, clip=True) if log else Normalize(vmin=0, vmax=top)
    fig, axes = _grid(len(mats), None, size)
    for i, (ax, mat) in enumerate(zip(axes, mats)):
        im = ax.imshow(mat, cmap="magma", norm=norm)
        ax.set_title(titles[i] if titles else "", fontsize=9)
        ax.set_xlabel("channel")
        ax.set_ylabel("channel")
    fig.tight_layout()
    fig.colorbar(im, ax=axes, fraction=0.046 / len(mats), pad=0.04, label="entry (one scale)")
    return _shown(fig)


class _PlainLogFormatter(ticker.LogFormatter):
    """LogFormatter's choice of which ticks to label, written plainly (0.6, not 6e-01)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        """The tick's label: ``x`` as a plain number, or "" where LogFormatter leaves it bare."""
        return f"{x:g}" if super().__call__(x, pos) else ""


def _plain_log_ticks(axis: Any) -> None:
    """Label a log axis with plain numbers (60, 0.6), not 6×10¹, minor ticks within few decades."""
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))


def plot_losses(
    histories: Mapping[str, Sequence[Mapping[str, float]]] | Sequence[Mapping[str, float]],
    keys: Sequence[str] = ("total",),
    x: str | Sequence[str] = "step",
    log: bool = True,
    ylabel: str = "loss",
    log_x: bool = False,
) -> Figure:
    """Curves of ``optimize`` histories (one, or {label: history}) vs step and/or seconds.

    One colour per history (per key for a single history), one line style per key (solid,
    dashed, ...). Any rows with the keys work, e.g. distances from ``nst.metrics`` with
    ``ylabel="distance"``. ``log_x``: a log x axis, for runs whose lengths differ many times.
    """
    if not isinstance(histories, Mapping):
        histories = {"": histories}
    xs = [x] if isinstance(x, str) else list(x)
    fig, axes = _grid(len(xs), None, 4.5, aspect=0.75)
    for ax, x_key in zip(axes, xs):
        for i, (label, history) in enumerate(histories.items()):
            for j, (style, key) in enumerate(zip(LINESTYLES * 3, keys)):
                color = COLORS[(j if len(histories) == 1 else i) % len(COLORS)]
                name = " ".join(part for part in (label, key if len(keys) > 1 else "") if part)
                # A log axis cannot show 0 (e.g. the content loss of the photo itself): skip those.
                points = [(row[x_key], row[key]) for row in history if row[key] > 0 or not log]
                ax.plot(*zip(*points), color=color, linestyle=style, label=name)
        ax.set_xlabel("steps (loss-and-gradient evaluations)" if x_key == "step" else x_key)
        ax.set_ylabel(ylabel if len(keys) > 1 else f"{keys[0]} {ylabel}")
        if log:
            ax.set_yscale("log")
            top = max(max(line.get_ydata(), default=1.0) for line in ax.get_lines())
            ax.set_ylim(bottom=max(ax.get_ylim()[0], top * 1e-4))  # 4 decades at most
            _plain_log_ticks(ax.yaxis)
        if log_x:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        if any(ax.get_legend_handles_labels()[1]):
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _shown(fig)


def show_source(obj: object) -> Code:
    """Highlighted source of an ``nst`` function: the code a lesson explains is the code it runs."""
    from IPython.display import Code

    source = inspect.getsource(obj)
    name = getattr(obj, "__name__", "")
    # The file is read now but located by the line numbers of the code imported: after an edit,
    # restart the kernel, or this shows whatever now sits at the old lines.
    if not re.match(rf"\s*(@.*\n\s*)*(async\s+)?(def|class)\s+{re.escape(name)}\b", source):
        raise NSTError(
            f"nst's source changed since it was imported: restart the kernel to show {name}."
        )
    return Code(source, language="python")


def show_grid(
    images: Sequence[Sequence[torch.Tensor]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    size: float = 2.2,
) -> Figure:
    """A grid of (1,3,H,W) images, ``images[row][col]``, with a label for each row and column."""
    nrows, ncols = len(images), len(images[0])
    h, w = images[0][0].shape[-2:]
    fig, axes = _grid(nrows * ncols, ncols, size, aspect=h / w)
    for r, row in enumerate(images):
        for c, img in enumerate(row):
            ax = axes[r * ncols + c]  # row by row
            ax.imshow(tensor_to_pil(img))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9)
    fig.tight_layout()
    return _shown(fig)


def show_bars(values: Mapping[str, float], title: str = "", log: bool = False) -> Figure:
    """A bar chart of named numbers, each bar labelled with its value (e.g. a loss per layer)."""
    fig, (ax,) = _grid(1, None, 4.5, aspect=0.6)
    bars = ax.bar(list(values), list(values.values()), color=COLORS[0])
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.margins(y=0.15)  # room for the labels
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _shown(fig)


def show_tradeoff(points: Mapping[str, tuple[float, float]]) -> Figure:
    """Labelled (content distance, style distance) points joined in order: a trade-off curve."""
    fig, (ax,) = _grid(1, None, 4.5, aspect=0.8)
    xs, ys = zip(*points.values())
    ax.plot(xs, ys, "o-", color=COLORS[0])
    for i, (label, (x, y)) in enumerate(points.items()):
        offset = (6, 4) if i % 2 == 0 else (-6, -12)  # alternate sides: neighbours never overlap
        side = "left" if i % 2 == 0 else "right"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=offset, fontsize=8, ha=side)
    ax.set_xlabel("content distance (lower: more photo)")
    ax.set_ylabel("style distance (lower: more painting)")
    ax.margins(0.15)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _shown(fig)
