"""The playground without a browser: uploads, settings, runs and stops in a thread, saving.

The browser itself is tested in test_browser.py; here the widgets are driven from Python, as the
lesson's check cells do, with tiny images so every run takes a second or two.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import inspect
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

import nst
from nst import playground
from nst.controls import SLIDERS, STAT_LABELS, Controls, instant_refusal, slider_class
from nst.errors import ImageError, NSTError
from nst.playground import Playground, load_upload, one_sentence


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    """A PIL image as the bytes of a file in ``fmt``."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _is_one_sentence(text: str) -> bool:
    """One line, ending in a full stop, no traceback."""
    return len(text.splitlines()) == 1 and text.endswith(".") and "Traceback" not in text


def _enabled(pg: Playground) -> tuple[bool, bool, bool]:
    """Whether Run, Stop and Save can be clicked now."""
    ui = pg.controls
    return tuple(not button.disabled for button in (ui.run_button, ui.stop_button, ui.save_button))


@pytest.fixture
def pg(model: nst.vgg.VGG19Features, tmp_path) -> Playground:
    """A playground for 64 px runs of 6 steps on the CPU, a preview every step, saving to tmp."""
    return Playground(64, 6, model=model, device="cpu", preview_every=0.0, save_dir=tmp_path)


# --- uploads --------------------------------------------------------------------------------


def test_load_upload_shrinks_large_images() -> None:
    big = Image.new("RGB", (1500, 600), (10, 20, 30))
    img = load_upload("big.png", _encode(big, "PNG"))
    assert max(img.shape[-2:]) == playground.KEEP_LONG_SIDE


def test_load_upload_bad_bytes_one_sentence() -> None:
    with pytest.raises(ImageError) as info:
        load_upload("my file.jpg", b"%PDF-1.4 not an image at all")
    message = str(info.value)
    assert _is_one_sentence(message), message
    assert "'my file.jpg'" in message and "not an image" in message


def test_load_upload_refuses_huge_files_and_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(playground, "MAX_UPLOAD_MB", 1)
    with pytest.raises(ImageError, match="above the limit of 1 MB"):
        load_upload("huge.png", b"\x89PNG" + b"\x00" * 1_100_000)
    many = _encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="megapixels") as info:
        load_upload("many.png", many, max_pixels=5_000)
    assert _is_one_sentence(str(info.value))


def test_one_sentence() -> None:
    assert one_sentence(NSTError("Pick a painting.")) == "Pick a painting."
    text = one_sentence(RuntimeError("boom\n  at line 2\n  at line 3"))
    assert _is_one_sentence(text) and "RuntimeError: boom" in text and "line 2" not in text
    assert "smaller size" in one_sentence(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert _is_one_sentence(one_sentence(KeyError()))


def test_bad_upload_shows_one_sentence_and_changes_nothing(pg: Playground) -> None:
    menu = pg.controls.style_menu
    before = menu.options
    assert not pg.add_upload(menu, "notes.txt", b"just text")
    assert pg.kind == "error" and _is_one_sentence(pg.message), pg.message
    assert "notes.txt" in pg.message and "notes.txt" in pg.controls.status_line.value
    assert menu.options == before and menu.value == "starry_night"


def test_upload_button_adds_and_selects_the_image(pg: Playground) -> None:
    ui = pg.controls
    picture = _encode(Image.new("RGB", (50, 40), (0, 128, 255)), "PNG")
    ui.content_upload.value = (
        {
            "name": "holiday.png",
            "type": "image/png",
            "size": len(picture),
            "content": memoryview(picture),
            "last_modified": datetime.datetime.now(datetime.timezone.utc),
        },
    )
    assert ui.content_menu.value == "upload:holiday.png", pg.message
    assert pg.kind == "info" and "holiday.png (50×40)" in pg.message
    assert ui.content_upload.value == ()  # cleared, so the same file can be chosen again
    assert pg.image(ui.content_menu.value, 32).shape == (1, 3, 26, 32)
    Image.open(io.BytesIO(ui.content_thumb.value)).verify()  # the thumbnail shows it


def test_html_in_names_is_escaped(pg: Playground) -> None:
    pg.add_upload(pg.controls.style_menu, "<b>x</b>.txt", b"no")
    shown = pg.controls.status_line.value
    assert "<b>" not in shown and "&lt;b&gt;" in shown


# --- settings ---------------------------------------------------------------------------------


def _stylize_arguments() -> set[str]:
    """The names nst.stylize takes as keywords: its parameters and the fields of its Options."""
    names = set(inspect.signature(nst.stylize).parameters)
    return names | {field.name for field in dataclasses.fields(nst.recipe.Options)}


def test_sliders_are_stylize_arguments_with_their_css_class(pg: Playground) -> None:
    arguments = _stylize_arguments()
    for name, slider in pg.controls.sliders.items():
        assert name in arguments, f"the slider {name!r} is not an argument of nst.stylize"
        assert slider_class(name) in slider._dom_classes
    assert slider_class("tv_weight") == "nst-tv-weight"
    assert set(pg.controls.settings()) <= set(arguments)


def test_controls_alone_start_from_the_slider_table() -> None:
    ui = Controls(steps=30)
    starts = {name: start for name, _, _, start, *_ in SLIDERS}
    settings = ui.settings()
    assert settings["steps"] == 30 and ui.progress_bar.max == 30
    assert settings["size"] == starts["size"] and settings["tv_weight"] == starts["tv_weight"]
    assert ui.chosen_pictures() == ["chelsea", "starry_night"]
    ui.blend_check.value = True
    assert ui.chosen_pictures() == ["chelsea", "starry_night", "great_wave"]


def test_every_widget_has_its_css_class(pg: Playground) -> None:
    ui = pg.controls
    named = {
        "nst-run": ui.run_button,
        "nst-stop": ui.stop_button,
        "nst-save": ui.save_button,
        "nst-progress": ui.progress_bar,
        "nst-status": ui.status_line,
        "nst-preview": ui.preview_pane,
        "nst-download": ui.download_link,
        "nst-content": ui.content_menu,
        "nst-style2-upload": ui.style2_upload,
        "nst-style-thumb": ui.style_thumb,
        "nst-style-stat": ui.stat_menu,
        "nst-blend": ui.blend_check,
        "nst-blend-weight": ui.blend_share,
        "nst-keep-colors": ui.keep_colors_check,
        "nst-color-method": ui.color_menu,
        "nst-layer-relu3_1": ui.layer_checks["relu3_1"],
        "nst-playground": pg.widget,
    }
    for css, widget in named.items():
        assert css in widget._dom_classes, (css, widget._dom_classes)


def test_settings_follow_the_widgets(pg: Playground) -> None:
    ui = pg.controls
    ui.blend_check.value, ui.blend_share.value = True, 0.25
    ui.keep_colors_check.value, ui.color_menu.value = True, "linear"
    ui.layer_checks["relu5_1"].value = False
    ui.sliders["style_weight"].value = 100.0
    settings = ui.settings()
    assert settings["style_blend"] == [0.75, 0.25]
    assert settings["preserve_color"] == "linear"
    assert settings["style_layers"] == ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    assert settings["style_weight"] == pytest.approx(100.0)
    assert (settings["size"], settings["steps"]) == (64, 6)
    assert not ui.style2_menu.disabled and not ui.color_menu.disabled
    ui.blend_check.value = ui.keep_colors_check.value = False
    assert ui.settings()["style_blend"] is None and ui.settings()["preserve_color"] is None
    assert ui.style2_menu.disabled and ui.color_menu.disabled


@pytest.mark.parametrize(
    "label, value",
    [
        ("Gram matrix", "gram"),
        ("mean and std (AdaIN)", "mean_std"),
        ("sliced Wasserstein", "sliced_wasserstein"),
    ],
)
def test_style_statistic_menu_sets_style_stat(label: str, value: str) -> None:
    ui = Controls()
    assert ui.settings()["style_stat"] == "gram" and ui.stat_menu.label == "Gram matrix"
    ui.stat_menu.label = label  # what choosing it in the browser does
    assert ui.settings()["style_stat"] == value
    assert set(STAT_LABELS) == set(nst.style_stats.STYLE_STATS)


@pytest.mark.parametrize("value", ["mean_std", "sliced_wasserstein"])
def test_runs_with_another_style_statistic(pg: Playground, value: str) -> None:
    pg.controls.stat_menu.value = value
    assert pg.run(wait=True)
    assert pg.kind == "done" and pg.message.startswith("Done: 6 steps"), pg.message
    assert len(pg.history) == 6 and 0 <= pg.result.min() and pg.result.max() <= 1


def test_sliced_wasserstein_with_a_blend_is_one_sentence(pg: Playground) -> None:
    ui = pg.controls
    ui.stat_menu.value, ui.blend_check.value = "sliced_wasserstein", True
    assert pg.run(wait=True)  # the real stylize refuses it before its first step
    assert pg.kind == "error" and _is_one_sentence(pg.message), pg.message
    assert pg.message.startswith("sliced_wasserstein matches one painting's whole feature")
    assert "sliced_wasserstein matches" in ui.status_line.value
    assert pg.result is None and pg.controls.progress_bar.bar_style == "danger"
    assert _enabled(pg) == (True, False, False)


def test_no_style_layer_is_one_sentence(pg: Playground) -> None:
    for box in pg.controls.layer_checks.values():
        box.value = False
    assert not pg.run()
    assert pg.kind == "error" and "style layer" in pg.message and not pg.running


# --- runs ---------------------------------------------------------------------------------


def test_run_in_a_thread_updates_preview_and_gives_a_result(pg: Playground) -> None:
    previews: list[bytes] = []
    pg.controls.preview_pane.observe(lambda change: previews.append(change["new"]), names="value")
    assert pg.run()  # returns at once
    assert pg.running and _enabled(pg) == (False, True, False)
    assert not pg.run(), "a second Run while running must be refused"
    assert pg.wait(timeout=120), "the run did not end"
    assert pg.message.startswith("Done: 6 steps"), pg.message
    bar = pg.controls.progress_bar
    assert pg.kind == "done" and bar.value == bar.max == 6
    assert len(pg.history) == 6 and pg.history[-1]["size"] == 64
    result = pg.result
    assert result.shape[:2] == (1, 3) and max(result.shape[-2:]) == 64
    assert 0 <= result.min() and result.max() <= 1
    assert len(set(previews)) >= 3, "the preview should change during the run"
    Image.open(io.BytesIO(previews[-1])).verify()  # a real JPEG
    assert _enabled(pg) == (True, False, True)
    # The download link holds the result as a PNG.
    link = pg.controls.download_link.value
    href = link.split('href="', 1)[1].split('"', 1)[0]
    assert href.startswith("data:image/png;base64,") and 'download="nst_chelsea_starry' in link
    png = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))
    expected = (result[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(png.convert("RGB")), expected)


def test_stop_ends_the_run_before_its_budget(pg: Playground) -> None:
    pg.controls.sliders["steps"].value = 500
    assert pg.run()
    deadline = time.monotonic() + 60
    while pg.running and pg.controls.progress_bar.value < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    pg.stop(wait=True)
    assert not pg.running
    assert pg.message.startswith("Stopped after"), pg.message
    assert 2 <= len(pg.history) < 500
    assert pg.result is not None and pg.controls.progress_bar.bar_style == "warning"
    assert _enabled(pg)[:2] == (True, False)
    pg.stop()  # stopping when nothing runs is harmless
    assert pg.message.startswith("Stopped after")


def test_blend_passes_two_paintings(pg: Playground, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_stylize(content_img, style, **kwargs):
        seen.update(style=style, **kwargs)
        return content_img, [{"step": 1, "total": 1.0, "size": 64}]

    monkeypatch.setattr(playground, "stylize", fake_stylize)
    pg.controls.blend_check.value, pg.controls.blend_share.value = True, 0.5
    pg.run(wait=True)
    assert isinstance(seen["style"], list) and len(seen["style"]) == 2
    assert seen["style_blend"] == [0.5, 0.5] and seen["model"] is pg.model
    assert seen["progress"] is False and callable(seen["callback"])
    assert seen["style_stat"] == "gram"


@pytest.mark.parametrize(
    "error, expected",
    [
        (NSTError("steps=1 is too few for 2 sizes; give at least 2."), "steps=1 is too few"),
        (RuntimeError("boom\nwith a second line"), "The run failed (RuntimeError: boom)"),
    ],
)
def test_errors_in_the_thread_become_one_sentence(
    pg: Playground, monkeypatch: pytest.MonkeyPatch, error: Exception, expected: str
) -> None:
    def failing_stylize(*args, **kwargs):
        raise error

    monkeypatch.setattr(playground, "stylize", failing_stylize)
    assert pg.run(wait=True)
    assert pg.kind == "error" and pg.message.startswith(expected), pg.message
    assert _is_one_sentence(pg.message)
    assert pg.controls.progress_bar.bar_style == "danger"
    assert _enabled(pg) == (True, False, False)


# --- saving -------------------------------------------------------------------------------


def test_save(pg: Playground, tmp_path) -> None:
    assert pg.save() is None and pg.kind == "error"  # nothing yet: one sentence, no file
    pg.result = torch.rand(1, 3, 20, 30)
    saved = pg.save()
    assert saved == tmp_path / "nst_chelsea_starry_night.png" and saved.is_file()
    assert pg.last_saved == saved and pg.message == f"Saved as {saved}."
    assert Image.open(saved).size == (30, 20)
    jpg = pg.save(tmp_path / "sub" / "mine.jpg")
    assert jpg.is_file()
    assert pg.save(tmp_path / "mine.xyz") is None
    assert pg.kind == "error" and _is_one_sentence(pg.message), pg.message


# --- instant mode (lesson 09) ---------------------------------------------------------------


def test_instant_is_refused_with_one_sentence_where_no_network_paints() -> None:
    ui = Controls()
    ui.style_menu.value = "composition_viii"
    assert ui.instant_check.disabled and not ui.instant_check.value
    assert "No fast network for composition_viii yet: make train" in ui.instant_note.value
    ui.style_menu.value = "starry_night"
    assert not ui.instant_check.disabled and "No fast" not in ui.instant_note.value
    ui.blend_check.value = True
    assert ui.instant_check.disabled and "untick the blend" in ui.instant_note.value
    assert "uploads have none" in instant_refusal(f"{playground.UPLOAD_PREFIX}my.png", False)


def test_instant_paints_at_once_and_refine_starts_from_it(pg, monkeypatch) -> None:
    ui = pg.controls
    ui.instant_check.value = True  # ticking it paints at once
    assert pg.kind == "done" and pg.message.startswith("Painted by the fast network in"), pg.message
    first = pg.result
    assert max(first.shape[-2:]) == 64 and pg.history == []
    assert _enabled(pg) == (True, False, True) and not ui.refine_button.disabled
    seen = {}
    real = playground.stylize

    def spy(content_img, style, **kwargs):
        seen.update(kwargs)
        return real(content_img, style, **kwargs)

    monkeypatch.setattr(playground, "stylize", spy)
    assert pg.refine(wait=True)
    assert seen["sizes"] == [64] and torch.equal(seen["init"], first)
    assert pg.message.startswith("Done: 6 steps"), pg.message
    assert not torch.equal(pg.result, first) and ui.refine_button.disabled


def test_instant_repaints_when_the_photo_or_size_changes(pg) -> None:
    ui = pg.controls
    ui.instant_check.value = True
    first = pg.result
    ui.content_menu.value = "coffee"
    assert pg.result is not first and pg.message.startswith("Painted")
    ui.sliders["size"].value = 96
    assert max(pg.result.shape[-2:]) == 96
    ui.instant_check.value = False
    assert pg.run(wait=True) and pg.message.startswith("Done: 6 steps")  # stylize again


def test_refine_without_an_instant_result_says_so(pg) -> None:
    assert not pg.refine()
    assert pg.kind == "error" and _is_one_sentence(pg.message) and "Nothing to refine" in pg.message
