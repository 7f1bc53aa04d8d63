"""The playground's widgets and their layout; ``nst.playground`` gives them their behaviour.

Every widget is created with its CSS class (``nst-run``, ``nst-steps``, ...) in one call to
``make``: the browser test finds the widgets by these classes. The sliders are one table,
``SLIDERS``, keyed by the ``nst.stylize`` argument each one sets, so a new slider is one row
there: it is created, placed in the panel and read by ``Controls.settings()`` from that row.
Attribute names end in the kind of widget (``content_menu``, ``run_button``, ``status_line``), so
none of them reads like the image tensors elsewhere in nst.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any, TypeVar

import ipywidgets as widgets
import torch

from nst import data, fast
from nst.errors import NSTError
from nst.images import tensor_to_pil
from nst.style_stats import STYLE_STATS
from nst.vgg import STYLE_LAYERS

MAX_UPLOAD_MB = 10  # Jupyter's connection drops messages over 10 MiB: larger uploads never arrive
THUMB_SIDE = 120  # long side of the photo and painting thumbnails, in pixels
PICTURES = ("content", "style", "style2")  # the photo, the painting, and painting 2 of a blend
STATUS_COLOURS = {"info": "#444", "busy": "#1565c0", "done": "#2e7d32", "error": "#c62828"}

# One row per slider: the nst.stylize argument it sets, the widget, its label, its start, min,
# max and step. A FloatLogSlider's min and max are powers of ten: -2 and 2 span 0.01 to 100.
SLIDERS = [
    ("size", widgets.IntSlider, "size (px)", 256, 64, 1024, 32),
    ("steps", widgets.IntSlider, "steps", 60, 5, 500, 5),
    ("content_weight", widgets.FloatLogSlider, "content weight", 1.0, -2, 2, 0.1),
    ("style_weight", widgets.FloatLogSlider, "style weight", 10.0, -1, 4, 0.1),
    ("tv_weight", widgets.FloatLogSlider, "TV weight", 10.0, -2, 3, 0.1),
]
# What a style layer matches (nst.stylize's style_stat), as the style statistic menu names it.
STAT_LABELS = {
    "gram": "Gram matrix",
    "mean_std": "mean and std (AdaIN)",
    "sliced_wasserstein": "sliced Wasserstein",
}
SLIDER_LOOK = {"style": {"description_width": "110px"}, "layout": {"width": "420px"}}
RESULT_LAYOUT = {"width": "360px"}  # the progress bar, the status line and the preview
BUTTON_LAYOUT = {"width": "86px"}  # four side by side within the result column

AnyWidget = TypeVar("AnyWidget", bound=widgets.DOMWidget)


def make(kind: type[AnyWidget], css: str, **options: Any) -> AnyWidget:
    """Create a widget with its CSS class, the name the browser test finds it by."""
    widget = kind(**options)
    widget.add_class(css)
    return widget


def slider_class(argument: str) -> str:
    """The CSS class of a stylize argument's slider: ``tv_weight`` -> ``nst-tv-weight``."""
    return "nst-" + argument.replace("_", "-")


def make_sliders(starts: dict[str, float]) -> dict[str, widgets.ValueWidget]:
    """The sliders of ``SLIDERS`` keyed by stylize argument; ``starts`` overrides start values."""
    return {
        name: make(
            kind,
            slider_class(name),
            description=label,
            value=starts.get(name, start),
            min=low,
            max=high,
            step=step,
            **SLIDER_LOOK,
        )
        for name, kind, label, start, low, high, step in SLIDERS
    }


def _menu(label: str, names: Sequence[str], value: str, css: str) -> widgets.Dropdown:
    """A dropdown of bundled images by name; uploads are appended to it later."""
    return make(
        widgets.Dropdown,
        css,
        options=[(name, name) for name in names],
        value=value,
        description=label,
        style={"description_width": "80px"},
        layout={"width": "260px"},
    )


def _stat_menu() -> widgets.Dropdown:
    """The style statistic menu: readable labels for nst.stylize's ``style_stat`` values."""
    return make(
        widgets.Dropdown,
        slider_class("style_stat"),
        options=[(STAT_LABELS[name], name) for name in STYLE_STATS],
        value="gram",
        description="style statistic",
        tooltip="what each style layer matches: sliced Wasserstein takes one painting, no blend",
        style=SLIDER_LOOK["style"],
        layout={"width": "330px"},
    )


def _upload(picture: str) -> widgets.FileUpload:
    """The one-file upload button under a picture's menu."""
    return make(
        widgets.FileUpload,
        f"nst-{picture}-upload",
        accept="image/*",
        multiple=False,
        description="or upload",
        tooltip=f"a .jpg or .png file, at most {MAX_UPLOAD_MB} MB",
        layout={"width": "160px", "margin": "2px 0 2px 84px"},
    )


def _thumb(picture: str) -> widgets.Image:
    """The thumbnail under a picture's menu, for its current choice."""
    return make(
        widgets.Image,
        f"nst-{picture}-thumb",
        format="jpeg",
        layout={"max_width": "160px", "margin": "0 0 0 84px"},
    )


def _checkbox(css: str, label: str, value: bool, width: str) -> widgets.Checkbox:
    """A checkbox with its label beside it, not indented."""
    return make(
        widgets.Checkbox, css, value=value, description=label, indent=False, layout={"width": width}
    )


def _button(css: str, label: str, icon: str, style: str = "", tooltip: str = "") -> widgets.Button:
    """A button, narrow enough for four in a row; all but Run start disabled."""
    return make(
        widgets.Button,
        css,
        description=label,
        icon=icon,
        button_style=style,
        disabled=css != "nst-run",
        tooltip=tooltip,
        layout=BUTTON_LAYOUT,
    )


def _row(*children: widgets.Widget) -> widgets.HBox:
    """Widgets side by side, centred vertically."""
    return widgets.HBox(list(children), layout={"align_items": "center"})


def instant_refusal(painting: str, blending: bool) -> str | None:
    """Why instant mode cannot paint with ``painting`` (a menu value), or None if it can."""
    if blending:
        return "Instant mode paints one painting: untick the blend."
    if painting in fast.available():
        return None
    if painting not in data.STYLE_IMAGES:  # an upload
        return "Instant mode needs a network trained for the painting; uploads have none."
    return f"No fast network for {painting} yet: make train STYLE={painting} trains one."


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


class Controls:
    """The playground's widgets, each named with its kind (``content_menu``, ``run_button``)."""

    def __init__(self, **starts: float) -> None:
        """Create every widget, then the panel; ``starts``: sliders' start values, e.g. steps=60."""
        self._make_pictures()
        self._make_knobs(starts)
        self._make_run_widgets()
        self.panel = self._layout()
        for widget in (self.blend_check, self.keep_colors_check, self.style_menu):
            widget.observe(lambda _: self.sync_enabled(), names="value")
        self.sync_enabled()

    def _make_pictures(self) -> None:
        """For the photo, the painting and painting 2: a menu, an upload button, a thumbnail."""
        self.content_menu = _menu("Photo", data.CONTENT_IMAGES, "chelsea", "nst-content")
        self.style_menu = _menu("Painting", data.STYLE_IMAGES, "starry_night", "nst-style")
        self.style2_menu = _menu("Painting 2", data.STYLE_IMAGES, "great_wave", "nst-style2")
        self.content_upload, self.style_upload, self.style2_upload = map(_upload, PICTURES)
        self.content_thumb, self.style_thumb, self.style2_thumb = map(_thumb, PICTURES)

    def _make_knobs(self, starts: dict[str, float]) -> None:
        """Instant mode, the sliders, the style statistic, the blend, the style layers, colours."""
        self.sliders = make_sliders(starts)
        self.instant_check = _checkbox("nst-instant", "instant: the fast network", False, "200px")
        self.instant_note = make(widgets.HTML, "nst-instant-note", layout={"width": "220px"})
        self.stat_menu = _stat_menu()
        self.blend_check = _checkbox("nst-blend", "blend in Painting 2", False, "150px")
        self.blend_share = make(
            widgets.FloatSlider,
            "nst-blend-weight",
            value=0.5,
            min=0.0,
            max=1.0,
            step=0.05,
            description="its share",
            style={"description_width": "60px"},
            layout={"width": "270px"},
        )
        self.layer_checks = {
            name: _checkbox(f"nst-layer-{name}", name, True, "74px") for name in STYLE_LAYERS
        }
        self.keep_colors_check = _checkbox(
            "nst-keep-colors", "keep the photo's colours", False, "190px"
        )
        self.color_menu = make(
            widgets.Dropdown,
            "nst-color-method",
            options=["luma", "linear"],
            value="luma",
            layout={"width": "110px"},
        )

    def _make_run_widgets(self) -> None:
        """Run, Refine, Stop and Save, then what shows a run: progress, status, preview, link."""
        self.run_button = _button("nst-run", "Run", "play", "success")
        self.refine_button = _button(
            "nst-refine",
            "Refine",
            "magic",
            tooltip="stylize from the instant result, final size only",
        )
        self.stop_button = _button("nst-stop", "Stop", "stop", "danger")
        self.save_button = _button("nst-save", "Save", "save")
        steps = self.sliders["steps"].value
        self.progress_bar = make(
            widgets.IntProgress, "nst-progress", value=0, min=0, max=steps, layout=RESULT_LAYOUT
        )
        self.status_line = make(widgets.HTML, "nst-status", layout=RESULT_LAYOUT)
        self.preview_pane = make(widgets.Image, "nst-preview", format="jpeg", layout=RESULT_LAYOUT)
        self.download_link = make(widgets.HTML, "nst-download")

    def _layout(self) -> widgets.VBox:
        """Pictures on top; below them the knobs on the left, Run and the result on the right."""
        pictures = _row(*(widgets.VBox(list(picture)) for picture in self.pictures()))
        layers = _row(
            widgets.Label("style layers", layout={"width": "96px"}), *self.layer_checks.values()
        )
        knobs = widgets.VBox(
            [
                _row(self.instant_check, self.instant_note),
                _row(self.blend_check, self.blend_share),
                *self.sliders.values(),
                self.stat_menu,
                layers,
                _row(self.keep_colors_check, self.color_menu),
            ],
            layout={"margin": "0 16px 0 0"},
        )
        result = widgets.VBox(
            [
                _row(self.run_button, self.refine_button, self.stop_button, self.save_button),
                self.progress_bar,
                self.status_line,
                self.preview_pane,
                self.download_link,
            ]
        )
        below = widgets.HBox([knobs, result], layout={"flex_flow": "row wrap"})
        return make(widgets.VBox, "nst-playground", children=[pictures, below])

    def pictures(self) -> list[tuple[widgets.Dropdown, widgets.FileUpload, widgets.Image]]:
        """(menu, upload button, thumbnail) for the photo, the painting and painting 2."""
        return [
            (self.content_menu, self.content_upload, self.content_thumb),
            (self.style_menu, self.style_upload, self.style_thumb),
            (self.style2_menu, self.style2_upload, self.style2_thumb),
        ]

    def sync_enabled(self) -> None:
        """Grey out painting 2 unless blending, the colour method unless keeping colours, and
        instant mode (with the sentence why) for a painting without a fast network."""
        for widget in (self.style2_menu, self.style2_upload, self.blend_share):
            widget.disabled = not self.blend_check.value
        self.color_menu.disabled = not self.keep_colors_check.value
        why_not = instant_refusal(self.style_menu.value, self.blend_check.value)
        self.instant_check.disabled = why_not is not None
        self.instant_check.value = self.instant_check.value and why_not is None
        self.instant_note.value = f'<span style="color:#666">{html.escape(why_not or "")}</span>'

    # ------------------------------------------------------------------ reading

    def settings(self) -> dict[str, Any]:
        """The keyword arguments for ``nst.stylize`` that the widgets describe now."""
        kwargs: dict[str, Any] = {name: slider.value for name, slider in self.sliders.items()}
        kwargs["style_stat"] = self.stat_menu.value
        kwargs["style_layers"] = tuple(name for name, box in self.layer_checks.items() if box.value)
        if not kwargs["style_layers"]:
            raise NSTError("Tick at least one style layer; relu1_1 to relu5_1 are the paper's.")
        share = self.blend_share.value
        kwargs["style_blend"] = [1.0 - share, share] if self.blend_check.value else None
        kwargs["preserve_color"] = self.color_menu.value if self.keep_colors_check.value else None
        return kwargs

    def chosen_pictures(self) -> list[str]:
        """The menu values a run uses: the photo, the painting, and painting 2 when blending."""
        chosen = [self.content_menu.value, self.style_menu.value]
        if self.blend_check.value:
            chosen.append(self.style2_menu.value)
        return chosen

    # ------------------------------------------------------------------ showing

    def show_status(self, message: str, kind: str) -> None:
        """One sentence in the status line, coloured by kind (info, busy, done, error)."""
        colour = STATUS_COLOURS.get(kind, STATUS_COLOURS["info"])
        text = html.escape(message)  # file names come from the user
        self.status_line.value = f'<span style="color:{colour}" data-kind="{kind}">{text}</span>'

    def show_preview(self, img: torch.Tensor) -> None:
        """Send an image (1, 3, H, W) to the preview as JPEG."""
        self.preview_pane.value = to_jpeg(img)

    def show_download(self, img: torch.Tensor, file_name: str) -> None:
        """A link that downloads ``img`` as a PNG, with the image inside it (a data URI)."""
        encoded = base64.b64encode(to_png(img)).decode("ascii")
        height, width = img.shape[-2:]
        self.download_link.value = (
            f'<a download="{file_name}" href="data:image/png;base64,{encoded}">'
            f"⬇ Download the result (PNG, {width}×{height})</a>"
        )

    def show_instant_result(self, img: torch.Tensor, file_name: str) -> None:
        """The fast network's result: shown, downloadable, and Save and Refine enabled."""
        self.show_preview(img)
        self.show_download(img, file_name)
        self.save_button.disabled = self.refine_button.disabled = False

    def show_run_started(self, steps: int) -> None:
        """Only Stop is enabled during a run; the progress bar starts empty, out of ``steps``."""
        self.run_button.disabled = self.refine_button.disabled = True
        self.stop_button.disabled = False
        self.save_button.disabled = True
        self.progress_bar.max = steps
        self.progress_bar.value = 0
        self.progress_bar.bar_style = "info"

    def show_run_ended(self, bar_style: str, can_save: bool) -> None:
        """Run (and Save, if there is a result) enabled again; the bar coloured by ``bar_style``."""
        self.progress_bar.bar_style = bar_style
        self.run_button.disabled = False
        self.stop_button.disabled = True
        self.save_button.disabled = not can_save
