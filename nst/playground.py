"""The playground: pick a photo and a painting, set the knobs, Run, watch, Stop, save.

The widgets are built in ``nst.controls``; this module gives them their behaviour. The
optimisation runs in a background thread, so the notebook, and the Stop button, stay responsive
while it works. Stop only sets a ``threading.Event``; the callback that ``nst.stylize`` calls after
every step returns True once it is set, and the run ends cleanly at that step (a thread is never
killed). The same callback moves the progress bar and, at most every ``preview_every`` seconds,
sends the current image to the live preview. Every problem, a bad upload or a failed run, ends as
one sentence in the status line, never as a traceback.

    pg = nst.playground.Playground()
    pg.widget                                  # show it: the last line of a cell
    pg.controls.sliders["steps"].value = 100   # any widget, by what it is
    pg.run(wait=True)                          # or click Run; pg.stop() is the Stop button
    pg.result                                  # the last result, (1, 3, H, W) in [0, 1]

Instant mode (lesson 09): with "instant" ticked, the painting's fast network (``nst.fast``)
paints the photo in one forward pass, at once, whenever the photo, the painting or the size
changes; Refine then runs ``stylize`` from that result at the final size only. Paintings without
a network grey out the box, with the sentence why beside it.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import torch

from nst import data, fast
from nst.controls import MAX_UPLOAD_MB, THUMB_SIDE, Controls, instant_refusal, to_jpeg
from nst.errors import ImageError, NSTError
from nst.images import load_image, load_image_bytes, resize, save_image
from nst.recipe import stylize
from nst.vgg import VGG19Features, default_device, load_vgg19

MAX_UPLOAD_PIXELS = 25_000_000  # uploads above 25 megapixels are refused before decoding
KEEP_LONG_SIDE = 1024  # uploads are kept at most this large; the runs use less
UPLOAD_PREFIX = "upload:"  # menu values of uploaded images start with it
WELCOME = (
    "Choose a photo and a painting, or upload your own (.jpg or .png, at most "
    f"{MAX_UPLOAD_MB} MB); then click Run."
)

History = list[dict[str, float]]


def load_upload(name: str, file_bytes: bytes, max_pixels: int = MAX_UPLOAD_PIXELS) -> torch.Tensor:
    """Decode an uploaded file to (1, 3, H, W) in [0, 1], shrunk to at most KEEP_LONG_SIDE."""
    megabytes = len(file_bytes) / 1e6
    if megabytes > MAX_UPLOAD_MB:
        raise ImageError(
            f"Cannot load '{name}': it is {megabytes:.1f} MB, above the limit of "
            f"{MAX_UPLOAD_MB} MB; resize it with an image editor first."
        )
    img = load_image_bytes(file_bytes, name, max_pixels=max_pixels)
    if max(img.shape[-2:]) > KEEP_LONG_SIDE:
        img = resize(img, KEEP_LONG_SIDE)
    return img


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


def _enable_colab_widgets() -> None:
    """Let Colab show ipywidgets 8 (through its custom widget manager)."""
    from google.colab import output  # type: ignore[import-not-found]

    output.enable_custom_widget_manager()


class InstantMode:
    """The playground's instant mode: a fast network paints at once; Refine polishes with stylize.

    Mixed into ``Playground``, whose widgets, pictures, status line and runs it uses.
    """

    controls: Controls
    result: torch.Tensor | None
    history: History

    def _wire_instant(self) -> None:
        """Repaint at once when instant is ticked or the photo, painting or size changes."""
        self._nets: dict[str, fast.TransformerNet] = {}  # painting -> its loaded network
        self._refine_from: torch.Tensor | None = None  # the instant result Refine starts from
        ui = self.controls
        ui.refine_button.on_click(lambda _: self.refine())
        for widget in (ui.instant_check, ui.content_menu, ui.style_menu, ui.sliders["size"]):
            widget.observe(lambda _: self._on_picture_change(), names="value")

    def _on_picture_change(self) -> None:
        """An instant result no longer matches the choices: paint again, or forget it."""
        self._refine_from = None
        self.controls.refine_button.disabled = True
        if self.controls.instant_check.value and not self.running:
            self.paint_instantly()

    def paint_instantly(self) -> bool:
        """The painting's fast network paints the photo in one pass; False (and why) if not."""
        ui = self.controls
        painting, size = ui.style_menu.value, ui.sliders["size"].value
        why_not = instant_refusal(painting, ui.blend_check.value)
        if why_not is not None or self.running:
            self._set_status(why_not or "Already running; click Stop first.", "error")
            return False
        try:
            content_img = self.image(ui.content_menu.value, size)
            net = self._nets[painting] = self._nets.get(painting) or fast.load(painting)
            start = time.perf_counter()
            self.result, self.history = fast.stylize(content_img, net), []
        except Exception as err:  # never a traceback in the UI
            self._set_status(one_sentence(err), "error")
            return False
        seconds, (height, width) = time.perf_counter() - start, self.result.shape[-2:]
        self._refine_from = self.result
        ui.show_instant_result(self.result, self._file_name())
        steps = ui.sliders["steps"].value
        self._set_status(
            f"Painted by the fast network in {seconds:.2f} s ({width}×{height} px); "
            f"Refine adds {steps} steps of stylize at this size.",
            "done",
        )
        return True

    def refine(self, wait: bool = False) -> bool:
        """Run stylize from the instant result at the final size only (Refine button)."""
        if self._refine_from is None:
            self._set_status("Nothing to refine yet: tick instant to paint at once.", "error")
            return False
        return self.run(wait=wait, init=self._refine_from)


class Playground(InstantMode):
    """Neural style transfer behind widgets; show ``.widget``, then Run (or call ``run()``)."""

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
        """Build the widgets (``size`` and ``steps`` start their sliders) and connect them."""
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model
        self.preview_every = preview_every
        self.save_dir = Path(save_dir)
        self.result: torch.Tensor | None = None
        self.history: History = []
        self.last_saved: Path | None = None
        self.message, self.kind = "", "info"  # the status line's sentence, and its kind
        self._uploads: dict[str, torch.Tensor] = {}  # menu value -> uploaded image
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_preview, self._last_size = 0.0, 0  # when, and at what size, it was sent
        if _in_colab():
            _enable_colab_widgets()
        self.controls = Controls(size=size, steps=steps)
        self.widget = self.controls.panel
        self._wire()
        self._wire_instant()
        for menu, _, thumb in self.controls.pictures():
            self._show_thumb(menu, thumb)
        self.controls.show_preview(self.image(self.controls.content_menu.value, THUMB_SIDE * 2))
        self._set_status(WELCOME, "info")

    def _wire(self) -> None:
        """Connect the buttons, the menus' thumbnails and the upload buttons to what they do."""
        self.controls.run_button.on_click(lambda _: self.run())
        self.controls.stop_button.on_click(lambda _: self.stop())
        self.controls.save_button.on_click(lambda _: self.save())
        for menu, upload, thumb in self.controls.pictures():
            menu.observe(lambda _, m=menu, t=thumb: self._show_thumb(m, t), names="value")
            upload.observe(lambda change, m=menu: self._on_upload(change, m), names="value")

    # ------------------------------------------------------------------ pictures

    def image(self, key: str, long_side: int) -> torch.Tensor:
        """The image a menu value names (bundled or uploaded), with the given long side."""
        if key.startswith(UPLOAD_PREFIX):
            return resize(self._uploads[key], long_side)
        if key in data.CONTENT_IMAGES:
            return load_image(data.content_path(key), long_side=long_side)
        return load_image(data.style_path(key), long_side=long_side)

    def _show_thumb(self, menu: widgets.Dropdown, thumb: widgets.Image) -> None:
        """Show the menu's current picture in its thumbnail, or say why it cannot be shown."""
        try:
            thumb.value = to_jpeg(self.image(menu.value, THUMB_SIDE))
        except NSTError as err:
            self._set_status(str(err), "error")

    def _on_upload(self, change: dict[str, Any], menu: widgets.Dropdown) -> None:
        """The upload button's handler: add the chosen file to ``menu``, then forget it."""
        files = change["new"]
        if not files:
            return
        upload = files[0]  # ipywidgets 8: a dict with name, type, size, content (memoryview)
        self.add_upload(menu, upload["name"], bytes(upload["content"]))
        change["owner"].value = ()  # forget it, so choosing the same file again works

    def add_upload(self, menu: widgets.Dropdown, name: str, file_bytes: bytes) -> bool:
        """Add an uploaded image to ``menu`` and select it; False (and a sentence) if it is bad."""
        try:
            img = load_upload(name, file_bytes)
        except NSTError as err:  # already one sentence that names the file
            self._set_status(str(err), "error")
            return False
        except Exception as err:  # never a traceback in the UI
            self._set_status(f"Cannot load '{name}': {one_sentence(err)}", "error")
            return False
        key = f"{UPLOAD_PREFIX}{name}"
        self._uploads[key] = img
        others = [option for option in menu.options if option[1] != key]
        menu.options = [*others, (f"⬆ {name}", key)]
        menu.value = key
        height, width = img.shape[-2:]
        self._set_status(f"Loaded {name} ({width}×{height}).", "info")
        return True

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        """True while a run's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def run(self, wait: bool = False, init: torch.Tensor | None = None) -> bool:
        """Start a run in a background thread (Run button); ``wait`` blocks until it ends.

        In instant mode, paint at once instead; ``init``: start from it, at the final size only.
        """
        if init is None and self.controls.instant_check.value:
            return self.paint_instantly()
        if self.running:
            self._set_status("Already running; click Stop first.", "busy")
            return False
        try:
            settings, pictures = self.controls.settings(), self.controls.chosen_pictures()
        except NSTError as err:
            self._set_status(str(err), "error")
            return False
        if init is not None:  # Refine: only the final size, from the given start
            settings |= {"sizes": [settings["size"]], "init": init}
        self._stop_event.clear()
        self._refine_from = None
        self.controls.show_run_started(settings["steps"])
        self._set_status("Starting…", "busy")
        self._thread = threading.Thread(
            target=self._work, args=(pictures, settings), name="nst-playground", daemon=True
        )
        self._thread.start()
        if wait:
            self.wait()
        return True

    def stop(self, wait: bool = False) -> None:
        """Ask the run to end after its current step (Stop button); ``wait`` blocks until it has."""
        if self.running:
            self._stop_event.set()
            self.controls.stop_button.disabled = True
            self._set_status("Stopping after this step…", "busy")
        if wait:
            self.wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run ends (or ``timeout`` seconds); True if none is running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _work(self, pictures: list[str], settings: dict[str, Any]) -> None:
        """The thread: stylize, then show the result, or what went wrong as one sentence."""
        start = time.perf_counter()
        try:
            img, history = self._stylize(pictures, settings)
        except Exception as err:  # everything ends as one sentence in the status line
            self._finish(one_sentence(err), "error", bar_style="danger")
            return
        self.result, self.history = img.detach().cpu(), history
        self.controls.show_preview(self.result)
        self.controls.show_download(self.result, self._file_name())
        message, bar_style = self._ending(settings["steps"], time.perf_counter() - start)
        self._finish(message, "done", bar_style)

    def _stylize(
        self, pictures: list[str], settings: dict[str, Any]
    ) -> tuple[torch.Tensor, History]:
        """Load the pictures (and VGG19, the first time), then ``nst.stylize`` with ``_on_step``."""
        content_img = self.image(pictures[0], settings["size"])
        styles = [self.image(key, settings["size"]) for key in pictures[1:]]
        if self.model is None:
            self._set_status("Loading VGG19 (once)…", "busy")
            self.model = load_vgg19(device=self.device)
        self._last_preview, self._last_size = 0.0, 0
        return stylize(
            content_img,
            styles if len(styles) > 1 else styles[0],
            model=self.model,
            device=self.device,
            callback=self._on_step,
            progress=False,
            **settings,
        )

    def _on_step(self, row: dict[str, float], img: torch.Tensor) -> bool:
        """The callback after every step: progress, a throttled preview; True asks to stop."""
        step, size = int(row["step"]), int(row["size"])  # stylize's rows carry both
        bar = self.controls.progress_bar
        bar.value = step
        now = time.monotonic()
        # a preview at most every preview_every seconds, and at once when a new size starts
        if now - self._last_preview >= self.preview_every or size != self._last_size:
            self._last_preview, self._last_size = now, size
            self.controls.show_preview(img)
            status = f"Running: step {step} of {bar.max}, {size} px, loss {row['total']:.3g}."
            self._set_status(status, "busy")
        return self._stop_event.is_set()

    def _ending(self, steps: int, seconds: float) -> tuple[str, str]:
        """How a run that did not fail ended: its sentence and the progress bar's colour."""
        done = len(self.history)
        if self._stop_event.is_set() and done < steps:
            return f"Stopped after {done} of {steps} steps ({seconds:.0f} s).", "warning"
        height, width = self.result.shape[-2:]
        return f"Done: {done} steps in {seconds:.0f} s ({width}×{height} px).", "success"

    def _finish(self, message: str, kind: str, bar_style: str) -> None:
        """Give the buttons back, colour the progress bar, and say how the run ended."""
        self.controls.show_run_ended(bar_style, can_save=self.result is not None)
        self._set_status(message, kind)

    # ------------------------------------------------------------------ output

    def _set_status(self, message: str, kind: str) -> None:
        """Keep the status sentence and its kind (info, busy, done, error), and show it."""
        self.message, self.kind = message, kind
        self.controls.show_status(message, kind)

    def _file_name(self) -> str:
        """A file name for the result from the photo's and the painting's names."""

        def plain(key: str) -> str:
            stem = Path(key.removeprefix(UPLOAD_PREFIX)).stem
            return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem) or "image"

        photo, painting = self.controls.content_menu.value, self.controls.style_menu.value
        return f"nst_{plain(photo)}_{plain(painting)}.png"

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
