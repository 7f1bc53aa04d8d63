"""Lesson 07's playground without a browser: uploads, settings, runs and stops in a thread, saving.

The browser itself is tested in test_browser.py; here the widgets are driven from Python, as the
lesson's check cells do, with tiny images so every run takes a second or two.
"""

from __future__ import annotations

import base64
import datetime
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

import nst
from nst import playground
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


@pytest.fixture
def pg(model: nst.vgg.VGG19Features, tmp_path) -> Playground:
    """A playground for 64 px runs of 6 steps on the CPU, a preview every step, saving to tmp."""
    return Playground(64, 6, model=model, device="cpu", preview_every=0.0, save_dir=tmp_path)


# --- uploads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode",
    ["RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "1"],
)
def test_load_upload_reads_any_mode(mode: str) -> None:
    picture = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img = load_upload(f"odd.{fmt.lower()}", _encode(picture, fmt))
    assert img.shape == (1, 3, 30, 40) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1


def test_load_upload_shrinks_large_images() -> None:
    big = Image.new("RGB", (1500, 600), (10, 20, 30))
    img = load_upload("big.png", _encode(big, "PNG"))
    assert max(img.shape[-2:]) == playground.KEEP_LONG_SIDE


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image at all", "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "upload"),  # a JPEG header and nothing else
    ],
    ids=["empty", "text", "broken-jpeg"],
)
def test_load_upload_bad_bytes_one_sentence(content: bytes, expected: str) -> None:
    with pytest.raises(ImageError) as info:
        load_upload("my file.jpg", content)
    message = str(info.value)
    assert _is_one_sentence(message), message
    assert "'my file.jpg'" in message and expected in message


def test_load_upload_truncated_file() -> None:
    whole = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError, match="damaged") as info:
        load_upload("cut.jpg", whole[: len(whole) // 2])
    assert _is_one_sentence(str(info.value)) and "'cut.jpg'" in str(info.value)


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
    before = pg.style.options
    assert not pg.add_upload(pg.style, "notes.txt", b"just text")
    assert pg.kind == "error" and _is_one_sentence(pg.message), pg.message
    assert "notes.txt" in pg.message and "notes.txt" in pg.status.value
    assert pg.style.options == before and pg.style.value == "starry_night"


def test_upload_button_adds_and_selects_the_image(pg: Playground) -> None:
    picture = _encode(Image.new("RGB", (50, 40), (0, 128, 255)), "PNG")
    pg.content_upload.value = (
        {
            "name": "holiday.png",
            "type": "image/png",
            "size": len(picture),
            "content": memoryview(picture),
            "last_modified": datetime.datetime.now(datetime.timezone.utc),
        },
    )
    assert pg.content.value == "upload:holiday.png", pg.message
    assert pg.kind == "info" and "holiday.png (50×40)" in pg.message
    assert pg.content_upload.value == ()  # cleared, so the same file can be chosen again
    assert pg.image(pg.content.value, 32).shape == (1, 3, 26, 32)
    Image.open(io.BytesIO(pg.content_thumb.value)).verify()  # the thumbnail shows it


def test_html_in_names_is_escaped(pg: Playground) -> None:
    pg.add_upload(pg.style, "<b>x</b>.txt", b"no")
    assert "<b>" not in pg.status.value and "&lt;b&gt;" in pg.status.value


# --- settings ---------------------------------------------------------------------------------


def test_settings_follow_the_widgets(pg: Playground) -> None:
    pg.blend.value, pg.blend_weight.value = True, 0.25
    pg.keep_colors.value, pg.color_method.value = True, "linear"
    pg.layers["relu5_1"].value = False
    pg.style_weight.value = 100.0
    settings = pg.settings()
    assert settings["style_blend"] == [0.75, 0.25]
    assert settings["preserve_color"] == "linear"
    assert settings["style_layers"] == ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    assert settings["style_weight"] == pytest.approx(100.0)
    assert (settings["size"], settings["steps"]) == (64, 6)
    assert not pg.style2.disabled and not pg.color_method.disabled
    pg.blend.value = pg.keep_colors.value = False
    assert pg.settings()["style_blend"] is None and pg.settings()["preserve_color"] is None
    assert pg.style2.disabled and pg.color_method.disabled


def test_no_style_layer_is_one_sentence(pg: Playground) -> None:
    for box in pg.layers.values():
        box.value = False
    assert not pg.run()
    assert pg.kind == "error" and "style layer" in pg.message and not pg.running


# --- runs ---------------------------------------------------------------------------------


def test_run_in_a_thread_updates_preview_and_gives_a_result(pg: Playground) -> None:
    previews: list[bytes] = []
    pg.preview.observe(lambda change: previews.append(change["new"]), names="value")
    assert pg.run()  # returns at once
    assert pg.running and pg.run_button.disabled and not pg.stop_button.disabled
    assert not pg.run(), "a second Run while running must be refused"
    assert pg.wait(timeout=120), "the run did not end"
    assert pg.message.startswith("Done: 6 steps"), pg.message
    assert pg.kind == "done" and pg.progress.value == pg.progress.max == 6
    assert len(pg.history) == 6 and pg.history[-1]["size"] == 64
    result = pg.result
    assert result.shape[:2] == (1, 3) and max(result.shape[-2:]) == 64
    assert 0 <= result.min() and result.max() <= 1
    assert len(set(previews)) >= 3, "the preview should change during the run"
    Image.open(io.BytesIO(previews[-1])).verify()  # a real JPEG
    assert not pg.run_button.disabled and pg.stop_button.disabled and not pg.save_button.disabled
    # The download link holds the result as a PNG.
    href = pg.download.value.split('href="', 1)[1].split('"', 1)[0]
    assert href.startswith("data:image/png;base64,") and 'download="nst_chelsea_starry' in (
        pg.download.value
    )
    png = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))
    expected = (result[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(png.convert("RGB")), expected)


def test_stop_ends_the_run_before_its_budget(pg: Playground) -> None:
    pg.steps.value = 500
    assert pg.run()
    deadline = time.monotonic() + 60
    while pg.running and pg.progress.value < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    pg.stop(wait=True)
    assert not pg.running
    assert pg.message.startswith("Stopped after"), pg.message
    assert 2 <= len(pg.history) < 500
    assert pg.result is not None and pg.progress.bar_style == "warning"
    assert not pg.run_button.disabled and pg.stop_button.disabled
    pg.stop()  # stopping when nothing runs is harmless
    assert pg.message.startswith("Stopped after")


def test_blend_passes_two_paintings(pg: Playground, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_stylize(content_img, style, **kwargs):
        seen.update(style=style, **kwargs)
        return content_img, [{"step": 1, "total": 1.0, "size": 64}]

    monkeypatch.setattr(playground, "stylize", fake_stylize)
    pg.blend.value, pg.blend_weight.value = True, 0.5
    pg.run(wait=True)
    assert isinstance(seen["style"], list) and len(seen["style"]) == 2
    assert seen["style_blend"] == [0.5, 0.5] and seen["model"] is pg.model
    assert seen["progress"] is False and callable(seen["callback"])


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
    assert pg.progress.bar_style == "danger"
    assert not pg.run_button.disabled and pg.stop_button.disabled and pg.save_button.disabled


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
