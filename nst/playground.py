"""Lesson 07's playground: pick a photo and a painting, set the knobs, Run, watch, Stop, save.

The optimisation runs in a background thread, so the notebook, and the Stop button, stay responsive
while it works. Stop only sets a ``threading.Event``; the callback that ``nst.stylize`` calls after
every step returns True once it is set, and the run ends cleanly at that step (a thread is never
killed). The same callback moves the progress bar and, at most every ``preview_every`` seconds,
sends the current image to the live preview. Every problem, a bad upload or a failed run, ends as
one sentence in the status line, never as a traceback.

    pg = nst.playground.Playground()
    pg.widget          # show it: the last line of a cell
    pg.run(wait=True)  # or click Run; pg.stop() is the Stop button
    pg.result          # the last result, (1, 3, H, W) in [0, 1]
"""

from __future__ import annotations

import base64
import html
import io
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import torch
from PIL import Image, UnidentifiedImageError

from nst import data
from nst.errors import ImageError, NSTError
from nst.images import load_image, resize, save_image, tensor_to_pil
from nst.recipe import stylize
from nst.vgg import STYLE_LAYERS, VGG19Features, default_device, load_vgg19

MAX_UPLOAD_MB = 10  # larger files are refused (Jupyter's connection carries at most 10 MiB)
MAX_UPLOAD_PIXELS = 25_000_000  # and so are images above 25 megapixels
KEEP_LONG_SIDE = 1024  # uploads are kept at most this large; the runs use less
THUMB_SIDE = 120  # long side of the photo and painting thumbnails, in pixels
UPLOAD_PREFIX = "upload:"
_COLOURS = {"info": "#444", "busy": "#1565c0", "done": "#2e7d32", "error": "#c62828"}


def load_upload(name: str, content: bytes, max_pixels: int = MAX_UPLOAD_PIXELS) -> torch.Tensor:
    """Decode an uploaded file's bytes to (1, 3, H, W) in [0, 1]; ImageError with one sentence."""
    label = f"'{name}'"
    if not content:
        raise ImageError(f"Cannot use {label}: the file is empty (0 bytes); choose another file.")
    megabytes = len(content) / 1e6
    if megabytes > MAX_UPLOAD_MB:
        raise ImageError(
            f"Cannot use {label}: it is {megabytes:.0f} MB, above the limit of {MAX_UPLOAD_MB} MB; "
            "resize it with an image editor first."
        )
    try:
        picture = Image.open(io.BytesIO(content))  # reads the header only
    except UnidentifiedImageError:
        raise ImageError(
            f"Cannot use {label}: it is not an image Pillow can read; upload a .jpg or .png file."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"Cannot use {label}: the image has too many pixels; resize it with an image editor "
            "first."
        ) from None
    except Exception:  # any other decoder failure on a damaged header
        raise ImageError(
            f"Cannot use {label}: the file is damaged; upload a .jpg or .png file."
        ) from None
    picture.filename = name  # so load_image's sentences name the uploaded file
    img = load_image(picture, max_pixels=max_pixels)  # size check, decoding, any colour mode
    if max(img.shape[-2:]) > KEEP_LONG_SIDE:
        img = resize(img, KEEP_LONG_SIDE)
    return img


def to_jpeg(img: torch.Tensor, quality: int = 85) -> bytes:
    """(1, 3, H, W) in [0, 1] -> JPEG bytes, small enough to send to the browser every step."""
    buffer = io.BytesIO()
    tensor_to_pil(img).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def to_png(img: torch.Tensor) -> bytes:
    """(1, 3, H, W) in [0, 1] -> PNG bytes (lossless: what the download link holds)."""
    buffer = io.BytesIO()
    tensor_to_pil(img).save(buffer, format="PNG")
    return buffer.getvalue()


def one_sentence(err: BaseException) -> str:
    """Any exception as one sentence for the status line: NSTError's own, or a short summary."""
    if isinstance(err, NSTError):
        return str(err)
    text = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, MemoryError) or "out of memory" in text.lower():
        return "The run ran out of memory; choose a smaller size."
    detail = f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__
    return f"The run failed ({detail}); try a smaller size or other settings."


def _in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


class Playground:
    """Neural style transfer with widgets; show ``.widget``, then Run (or call ``run()``)."""

    def __init__(
        self,
        size: int = 256,
        steps: int = 60,
        *,
        model: VGG19Features | None = None,
        device: str | torch.device | None = None,
        preview_every: float = 0.4,
        save_dir: str | Path = ".",
    ) -> None:
        """Build the widgets; ``size`` and ``steps`` are the sliders' starting values."""
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model
        self.preview_every = preview_every
        self.save_dir = Path(save_dir)
        self.result: torch.Tensor | None = None
        self.history: list[dict[str, float]] = []
        self.last_saved: Path | None = None
        self.message, self.kind = "", "info"  # the status line's sentence, and its kind
        self._uploads: dict[str, torch.Tensor] = {}
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_preview = 0.0
        self._last_size = 0
        if _in_colab():  # Colab shows ipywidgets 8 through its custom widget manager
            from google.colab import output  # type: ignore[import-not-found]

            output.enable_custom_widget_manager()
        self._make_widgets(size, steps)
        self._wire()
        self.widget = self._layout()
        self._show_thumb(self.content, self.content_thumb)
        self._show_thumb(self.style, self.style_thumb)
        self._show_thumb(self.style2, self.style2_thumb)
        self._set_preview(self.image(self.content.value, THUMB_SIDE * 2))

    # ------------------------------------------------------------------ widgets

    def _make_widgets(self, size: int, steps: int) -> None:
        """Create every widget, each with a CSS class (``nst-run``, ...) that tests can find."""
        slider = {"style": {"description_width": "110px"}, "layout": widgets.Layout(width="420px")}
        self.content = self._dropdown("Photo", data.CONTENT_IMAGES, "chelsea", "nst-content")
        self.style = self._dropdown("Painting", data.STYLE_IMAGES, "starry_night", "nst-style")
        self.style2 = self._dropdown("Painting 2", data.STYLE_IMAGES, "great_wave", "nst-style2")
        self.content_upload = self._upload("nst-content-upload")
        self.style_upload = self._upload("nst-style-upload")
        self.style2_upload = self._upload("nst-style2-upload")
        self.content_thumb, self.style_thumb, self.style2_thumb = (
            self._thumb(f"nst-{kind}-thumb") for kind in ("content", "style", "style2")
        )
        self.blend = widgets.Checkbox(
            value=False, description="blend in Painting 2", indent=False,
            layout=widgets.Layout(width="150px"),
        )  # fmt: skip
        self.blend_weight = widgets.FloatSlider(
            value=0.5, min=0.0, max=1.0, step=0.05, description="its share",
            style={"description_width": "60px"}, layout=widgets.Layout(width="270px"),
        )  # fmt: skip
        self.size = widgets.IntSlider(
            value=size, min=64, max=1024, step=32, description="size (px)", **slider
        )
        self.steps = widgets.IntSlider(
            value=steps, min=5, max=500, step=5, description="steps", **slider
        )
        self.content_weight = widgets.FloatLogSlider(
            value=1.0, base=10, min=-2, max=2, step=0.1, description="content weight", **slider
        )
        self.style_weight = widgets.FloatLogSlider(
            value=10.0, base=10, min=-1, max=4, step=0.1, description="style weight", **slider
        )
        self.tv_weight = widgets.FloatLogSlider(
            value=10.0, base=10, min=-2, max=3, step=0.1, description="TV weight", **slider
        )
        self.layers = {
            name: widgets.Checkbox(
                value=True, description=name, indent=False, layout=widgets.Layout(width="74px")
            )
            for name in STYLE_LAYERS
        }
        self.keep_colors = widgets.Checkbox(
            value=False, description="keep the photo's colours", indent=False,
            layout=widgets.Layout(width="190px"),
        )  # fmt: skip
        self.color_method = widgets.Dropdown(
            options=["luma", "linear"], value="luma", layout=widgets.Layout(width="110px")
        )
        self.run_button = widgets.Button(description="Run", icon="play", button_style="success")
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True
        )
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.progress = widgets.IntProgress(
            value=0, min=0, max=steps, layout=widgets.Layout(width="360px")
        )
        self.status = widgets.HTML(layout=widgets.Layout(width="360px"))
        self.preview = widgets.Image(format="jpeg", layout=widgets.Layout(width="360px"))
        self.download = widgets.HTML()
        for widget, css in [
            (self.blend, "nst-blend"),
            (self.blend_weight, "nst-blend-weight"),
            (self.size, "nst-size"),
            (self.steps, "nst-steps"),
            (self.content_weight, "nst-content-weight"),
            (self.style_weight, "nst-style-weight"),
            (self.tv_weight, "nst-tv-weight"),
            (self.keep_colors, "nst-keep-colors"),
            (self.color_method, "nst-color-method"),
            (self.run_button, "nst-run"),
            (self.stop_button, "nst-stop"),
            (self.save_button, "nst-save"),
            (self.progress, "nst-progress"),
            (self.status, "nst-status"),
            (self.preview, "nst-preview"),
            (self.download, "nst-download"),
        ]:
            widget.add_class(css)
        for name, box in self.layers.items():
            box.add_class(f"nst-layer-{name}")

    def _wire(self) -> None:
        """Connect the buttons, the dropdowns' thumbnails, the uploads and the checkboxes."""
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        self.save_button.on_click(lambda _: self.save())
        for dropdown, upload, thumb in self._pictures():
            dropdown.observe(lambda _, d=dropdown, t=thumb: self._show_thumb(d, t), names="value")
            upload.observe(lambda change, d=dropdown: self._on_upload(change, d), names="value")
        self.blend.observe(lambda _: self._sync_enabled(), names="value")
        self.keep_colors.observe(lambda _: self._sync_enabled(), names="value")
        self._sync_enabled()
        self._set_status(
            "Choose a photo and a painting, or upload your own (.jpg or .png, at most "
            f"{MAX_UPLOAD_MB} MB); then click Run.",
            "info",
        )

    def _pictures(self) -> list[tuple[widgets.Dropdown, widgets.FileUpload, widgets.Image]]:
        """(dropdown, upload, thumbnail) for the photo, the painting and painting 2."""
        return [
            (self.content, self.content_upload, self.content_thumb),
            (self.style, self.style_upload, self.style_thumb),
            (self.style2, self.style2_upload, self.style2_thumb),
        ]

    def _layout(self) -> widgets.VBox:
        """Pictures on top; below them the knobs on the left, Run and the result on the right."""

        def row(*children: widgets.Widget) -> widgets.HBox:
            return widgets.HBox(list(children), layout=widgets.Layout(align_items="center"))

        pictures = row(*(widgets.VBox(list(picture)) for picture in self._pictures()))
        knobs = widgets.VBox(
            [
                row(self.blend, self.blend_weight),
                self.size,
                self.steps,
                self.content_weight,
                self.style_weight,
                self.tv_weight,
                row(widgets.Label("style layers", layout=widgets.Layout(width="96px")),
                    *self.layers.values()),
                row(self.keep_colors, self.color_method),
            ],
            layout=widgets.Layout(margin="0 16px 0 0"),
        )  # fmt: skip
        result = widgets.VBox(
            [
                row(self.run_button, self.stop_button, self.save_button),
                self.progress,
                self.status,
                self.preview,
                self.download,
            ]
        )
        below = widgets.HBox([knobs, result], layout=widgets.Layout(flex_flow="row wrap"))
        playground = widgets.VBox([pictures, below])
        playground.add_class("nst-playground")
        return playground

    def _dropdown(
        self, description: str, names: Sequence[str], value: str, css: str
    ) -> widgets.Dropdown:
        """A dropdown of bundled images (label, key); uploads are appended to it later."""
        dropdown = widgets.Dropdown(
            options=[(name, name) for name in names],
            value=value,
            description=description,
            style={"description_width": "80px"},
            layout=widgets.Layout(width="260px"),
        )
        dropdown.add_class(css)
        return dropdown

    def _upload(self, css: str) -> widgets.FileUpload:
        """A one-file image upload button."""
        upload = widgets.FileUpload(
            accept="image/*",
            multiple=False,
            description="or upload",
            tooltip=f"a .jpg or .png file, at most {MAX_UPLOAD_MB} MB",
            layout=widgets.Layout(width="160px", margin="2px 0 2px 84px"),
        )
        upload.add_class(css)
        return upload

    def _thumb(self, css: str) -> widgets.Image:
        """A small image widget showing the current choice of a dropdown."""
        thumb = widgets.Image(
            format="jpeg", layout=widgets.Layout(max_width="160px", margin="0 0 0 84px")
        )
        thumb.add_class(css)
        return thumb

    def _sync_enabled(self) -> None:
        """Grey out the second painting unless blending, and the colour method unless used."""
        off = not self.blend.value
        for widget in (self.style2, self.style2_upload, self.blend_weight):
            widget.disabled = off
        self.color_method.disabled = not self.keep_colors.value

    # ------------------------------------------------------------------ images

    def image(self, key: str, long_side: int) -> torch.Tensor:
        """The image a dropdown value names (bundled or uploaded), with the given long side."""
        if key.startswith(UPLOAD_PREFIX):
            return resize(self._uploads[key], long_side)
        if key in data.CONTENT_IMAGES:
            return load_image(data.content_path(key), long_side=long_side)
        return load_image(data.style_path(key), long_side=long_side)

    def _show_thumb(self, dropdown: widgets.Dropdown, thumb: widgets.Image) -> None:
        """Show the dropdown's current image in its thumbnail."""
        try:
            thumb.value = to_jpeg(self.image(dropdown.value, THUMB_SIDE))
        except NSTError as err:
            self._set_status(str(err), "error")

    def _on_upload(self, change: dict[str, Any], dropdown: widgets.Dropdown) -> None:
        """Check an uploaded file; add it to the dropdown and select it, or say what is wrong."""
        files = change["new"]
        if not files:
            return
        upload = files[0]  # ipywidgets 8: a dict with name, type, size, content (memoryview)
        self.add_upload(dropdown, upload["name"], bytes(upload["content"]))
        change["owner"].value = ()  # forget it, so choosing the same file again works

    def add_upload(self, dropdown: widgets.Dropdown, name: str, content: bytes) -> bool:
        """Add an uploaded image to ``dropdown`` and select it; False (and a sentence) if bad."""
        try:
            img = load_upload(name, content)
        except NSTError as err:
            self._set_status(str(err), "error")
            return False
        except Exception as err:  # never a traceback in the UI
            self._set_status(f"Cannot use '{name}': {one_sentence(err)}", "error")
            return False
        key = f"{UPLOAD_PREFIX}{name}"
        self._uploads[key] = img
        options = [option for option in dropdown.options if option[1] != key]
        dropdown.options = [*options, (f"⬆ {name}", key)]
        dropdown.value = key
        height, width = img.shape[-2:]
        self._set_status(f"Loaded {name} ({width}×{height}).", "info")
        return True

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        """True while a run's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def settings(self) -> dict[str, Any]:
        """The keyword arguments for ``nst.stylize`` that the widgets describe now."""
        layers = tuple(name for name, box in self.layers.items() if box.value)
        if not layers:
            raise NSTError("Tick at least one style layer; relu1_1 to relu5_1 are the paper's.")
        blend = self.blend.value
        return {
            "size": int(self.size.value),
            "steps": int(self.steps.value),
            "content_weight": float(self.content_weight.value),
            "style_weight": float(self.style_weight.value),
            "tv_weight": float(self.tv_weight.value),
            "style_layers": layers,
            "preserve_color": self.color_method.value if self.keep_colors.value else None,
            "style_blend": [1.0 - self.blend_weight.value, self.blend_weight.value]
            if blend
            else None,
        }

    def run(self, wait: bool = False) -> bool:
        """Start a run in a background thread (Run button); ``wait`` blocks until it ends."""
        if self.running:
            self._set_status("Already running; click Stop first.", "busy")
            return False
        try:
            settings = self.settings()
            keys = [self.content.value, self.style.value]
            if self.blend.value:
                keys.append(self.style2.value)
        except NSTError as err:
            self._set_status(str(err), "error")
            return False
        self._stop_event.clear()
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.save_button.disabled = True
        self.progress.max = settings["steps"]
        self.progress.value = 0
        self.progress.bar_style = "info"
        self._set_status("Starting…", "busy")
        self._thread = threading.Thread(
            target=self._work, args=(keys, settings), name="nst-playground", daemon=True
        )
        self._thread.start()
        if wait:
            self.wait()
        return True

    def stop(self, wait: bool = False) -> None:
        """Ask the run to end after its current step (Stop button); ``wait`` blocks until it has."""
        if self.running:
            self._stop_event.set()
            self.stop_button.disabled = True
            self._set_status("Stopping after this step…", "busy")
        if wait:
            self.wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run ends (or ``timeout`` seconds); True if none is running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _work(self, keys: list[str], settings: dict[str, Any]) -> None:
        """The thread: load images and the model, stylize, then show the result or one sentence."""
        start = time.perf_counter()
        try:
            size = settings["size"]
            content_img = self.image(keys[0], size)
            styles = [self.image(key, size) for key in keys[1:]]
            if self.model is None:
                self._set_status("Loading VGG19 (once)…", "busy")
                self.model = load_vgg19(device=self.device)
            self._last_preview, self._last_size = 0.0, 0
            img, history = stylize(
                content_img,
                styles if len(styles) > 1 else styles[0],
                model=self.model,
                device=self.device,
                callback=self._on_step,
                progress=False,
                **settings,
            )
        except Exception as err:  # everything ends as one sentence in the status line
            self._finish(one_sentence(err), "error")
            return
        self.result, self.history = img.detach().cpu(), history
        self._set_preview(self.result)
        self._set_download(self.result)
        seconds = time.perf_counter() - start
        done = len(history)
        height, width = img.shape[-2:]
        if self._stop_event.is_set() and done < settings["steps"]:
            message = f"Stopped after {done} of {settings['steps']} steps ({seconds:.0f} s)."
            self.progress.bar_style = "warning"
        else:
            message = f"Done: {done} steps in {seconds:.0f} s ({width}×{height} px)."
            self.progress.bar_style = "success"
        self._finish(message, "done")

    def _on_step(self, row: dict[str, float], img: torch.Tensor) -> bool:
        """The callback after every step: progress, a throttled preview; True asks to stop."""
        step = int(row["step"])
        self.progress.value = min(step, self.progress.max)
        now = time.monotonic()
        size = int(row.get("size", max(img.shape[-2:])))
        if now - self._last_preview >= self.preview_every or size != self._last_size:
            self._last_preview, self._last_size = now, size
            self._set_preview(img)
            loss = row.get("total", float("nan"))
            self._set_status(
                f"Running: step {step} of {self.progress.max}, {size} px, loss {loss:.3g}.", "busy"
            )
        return self._stop_event.is_set()

    def _finish(self, message: str, kind: str) -> None:
        """Reset the buttons and the progress bar's colour after a run, and say how it ended."""
        if kind == "error":
            self.progress.bar_style = "danger"
        self.run_button.disabled = False
        self.stop_button.disabled = True
        self.save_button.disabled = self.result is None
        self._set_status(message, kind)

    # ------------------------------------------------------------------ output

    def _set_status(self, message: str, kind: str) -> None:
        """Show one sentence in the status line, coloured by kind (info, busy, done, error)."""
        colour = _COLOURS.get(kind, _COLOURS["info"])
        self.message, self.kind = message, kind
        text = html.escape(message)
        self.status.value = f'<span style="color:{colour}" data-kind="{kind}">{text}</span>'

    def _set_preview(self, img: torch.Tensor) -> None:
        """Send an image (1, 3, H, W) to the live preview as JPEG."""
        self.preview.value = to_jpeg(img)

    def _set_download(self, img: torch.Tensor) -> None:
        """A link that downloads the result as a PNG, with the image inside it (data URI)."""
        encoded = base64.b64encode(to_png(img)).decode("ascii")
        height, width = img.shape[-2:]
        self.download.value = (
            f'<a download="{self._file_name()}" href="data:image/png;base64,{encoded}">'
            f"⬇ Download the result (PNG, {width}×{height})</a>"
        )

    def _file_name(self) -> str:
        """A file name for the result from the photo's and the painting's names."""
        def plain(key: str) -> str:
            stem = Path(key.removeprefix(UPLOAD_PREFIX)).stem
            return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem) or "image"

        return f"nst_{plain(self.content.value)}_{plain(self.style.value)}.png"

    def save(self, path: str | Path | None = None) -> Path | None:
        """Save the last result as a PNG next to the notebook (Save button); its path or None."""
        if self.result is None:
            self._set_status("Nothing to save yet: click Run first.", "error")
            return None
        target = Path(path) if path is not None else self.save_dir / self._file_name()
        try:
            saved = save_image(self.result, target)
        except (NSTError, OSError) as err:
            self._set_status(f"Cannot save: {one_sentence(err)}", "error")
            return None
        self.last_saved = saved
        self._set_status(f"Saved as {saved}.", "done")
        if _in_colab():  # Colab's files live on its VM: hand the file to the browser too
            from google.colab import files  # type: ignore[import-not-found]

            files.download(str(saved))
        return saved

