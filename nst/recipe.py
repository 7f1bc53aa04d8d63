"""Lesson 05's recipe in one call: coarse-to-fine L-BFGS with the speed-ups measured there.

``stylize(content_img, style_img)`` optimises at a few growing sizes (e.g. 128, 256, then 512 px
long side): large-scale structure forms where steps are cheap, and each larger size starts from
the smaller result, upsampled, so its costly steps only add finer strokes. The network is frozen
and cut after its deepest layer used, the targets are computed once per size, on a CPU or CUDA
the network runs in lower precision (bf16 / fp16 autocast) while every loss stays in fp32, and
the style loss's gradient is written by hand. Options add colour preservation, several paintings
mixed by weights, and the style's scale.
"""

from __future__ import annotations

import ctypes
import functools
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nst.color import combine_luma, luma_only, match_color, match_luma
from nst.errors import NSTError
from nst.images import check_image, resize
from nst.losses import make_loss_fn
from nst.optim import Callback, optimize
from nst.progress import Progress
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, VGG19Features, default_device, load_vgg19

PRESERVE_COLOR = (None, "luma", "linear")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STEP_SHARES = (0.3, 0.3, 0.4)  # the step budget's share per size, from the smallest up


def scale_sizes(size: int, n_scales: int = 3, smallest: int = 128) -> list[int]:
    """Long sides from ``smallest`` up to ``size``, each twice the last: 512 -> [128, 256, 512]."""
    sizes = [size]
    while len(sizes) < n_scales and sizes[0] // 2 >= smallest:
        sizes.insert(0, sizes[0] // 2)
    return sizes


def split_steps(steps: int, n_sizes: int) -> list[int]:
    """Share a step budget among ``n_sizes`` sizes, by STEP_SHARES: 100, 3 -> [30, 30, 40]."""
    shares = STEP_SHARES[-n_sizes:] if n_sizes <= len(STEP_SHARES) else [1.0] * n_sizes
    counts = [max(1, round(steps * s / sum(shares))) for s in shares]
    counts[0] += steps - sum(counts)  # rounding leftovers go to the cheapest size
    if steps < n_sizes or counts[0] < 1:
        raise NSTError(f"steps={steps} is too few for {n_sizes} sizes; give at least {n_sizes}.")
    return counts


def upsample_with_detail(
    gen_img: torch.Tensor, content_img: torch.Tensor, detail: bool = True
) -> torch.Tensor:
    """``gen_img`` upsampled to ``content_img``'s (1,3,h,w) size, plus the photo's finer detail.

    The photo's detail is what the smaller size could not hold: the photo minus its own copy
    blurred to ``gen_img``'s size (one level of a Laplacian pyramid). Without it
    (``detail=False``) the upsampled image is blurry: its first steps at the new size sharpen it.
    """
    size = content_img.shape[-2:]
    if gen_img.shape[-2:] == size:
        return gen_img
    up = F.interpolate(gen_img, size=size, mode="bilinear")  # (1,3,h,w), blurry
    if not detail:
        return up.clamp(0.0, 1.0)
    small = F.interpolate(content_img, size=gen_img.shape[-2:], mode="bilinear", antialias=True)
    fine = content_img - F.interpolate(small, size=size, mode="bilinear")  # (1,3,h,w) detail
    return (up + fine).clamp(0.0, 1.0)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    if precision not in PRECISIONS:
        raise NSTError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    if precision == "auto":  # what lesson 05 measured to win: bf16 on CPUs, fp16 on CUDA
        precision = {"cpu": "bf16", "cuda": "fp16"}.get(device.type, "fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is another (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (Linux with glibc; elsewhere nothing).

    glibc keeps the memory of freed tensors in its heap, scattered between live blocks, so a run's
    resident memory creeps up although its tensors do not: at 512 px, calling this after every
    step keeps ``stylize``'s peak about 150 MB lower (``python -m nst.bench``), at no measured cost.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def check_options(
    styles: list[torch.Tensor], preserve_color: str | None, style_scale: float, steps: int
) -> None:
    """Raise NSTError with one sentence for a bad painting, colour mode, scale or step count."""
    for i, img in enumerate(styles):
        check_image(img, f"style image {i + 1}")
    if preserve_color not in PRESERVE_COLOR:
        raise NSTError(f"preserve_color must be None, 'luma' or 'linear', not {preserve_color!r}.")
    if not isinstance(style_scale, (int, float)) or not 0.1 <= style_scale <= 4:
        raise NSTError(f"style_scale must be a number from 0.1 to 4, not {style_scale!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise NSTError(f"steps must be a whole number, not {steps!r}.")


def painting_at(
    style_img: torch.Tensor, long_side: int, photo: torch.Tensor, preserve_color: str | None
) -> torch.Tensor:
    """The painting as the loss sees it beside ``photo``: resized, recoloured by the option.

    "linear": the photo's RGB mean and covariance (``match_color``); "luma": a grey image whose
    luma has the mean and spread of the photo's (``photo`` is then grey too, ``luma_only``).
    """
    img = resize(style_img, long_side)  # (1,3,h,w)
    if preserve_color == "linear":
        return match_color(img, photo)
    if preserve_color == "luma":
        return match_luma(img, photo)
    return img


def stylize(
    content_img: torch.Tensor,
    style_img: torch.Tensor | Sequence[torch.Tensor],
    *,
    size: int = 512,
    steps: int = 80,
    sizes: Sequence[int] | None = None,
    style_blend: Sequence[float] | None = None,
    style_scale: float = 1.0,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    tv_weight: float = 10.0,
    style_layers: Sequence[str] = STYLE_LAYERS,
    content_layer: str = CONTENT_LAYER,
    preserve_color: str | None = None,
    optimizer: str = "lbfgs",
    pooling: str = "max",
    precision: str = "auto",
    model: VGG19Features | None = None,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Paint ``content_img`` (1,3,H,W) like ``style_img`` (one or a list) -> (img, history).

    ``steps`` (loss-and-gradient evaluations in all) are shared among ``sizes`` by
    ``split_steps``; the result has the last size on its long side (default ``scale_sizes(size)``).
    ``style_blend``: a weight per painting; ``style_scale``: the painting's size relative to the
    result (2 = strokes twice as large); ``preserve_color``: None, "luma" or "linear";
    ``precision``: "auto" (bf16 on CPU, fp16 on CUDA), "fp32", "bf16" or "fp16";
    ``model`` (reused if given, else loaded with ``pooling``) sets the device.
    History rows are ``optimize``'s plus "size"; "step" and "seconds" count from the start.
    ``callback(row, img)`` runs after every step; returning True stops the run.
    """
    check_image(content_img, "content_img")
    styles = [style_img] if isinstance(style_img, torch.Tensor) else list(style_img)
    check_options(styles, preserve_color, style_scale, steps)
    sizes = list(sizes) if sizes is not None else scale_sizes(size)
    if not sizes or sorted(sizes) != sizes or min(sizes) < 16:
        raise NSTError(f"sizes must grow from at least 16 px, e.g. [128, 256, 512]; got {sizes}.")
    counts = split_steps(steps, len(sizes))
    if model is None:
        model = load_vgg19(device=device or default_device(), pooling=pooling)
    dev = next(model.parameters()).device
    photo, styles = content_img.to(dev), [img.to(dev) for img in styles]
    if preserve_color == "luma":  # transfer between grey images; the colour comes back at the end
        photo = luma_only(photo)
    loss_options = dict(
        content_layer=content_layer,
        style_layers=style_layers,
        content_weight=content_weight,
        style_weight=style_weight,
        tv_weight=tv_weight,
        style_blend=style_blend,
        autocast_dtype=autocast_dtype(precision, dev),
        hand_gradient=True,  # the Gram loss's gradient by hand: faster, less memory
    )
    history: list[dict[str, float]] = []
    stopped: list[bool] = []  # on_step appends True when the caller's callback asks to stop
    bar = Progress(steps, f"stylize ({' -> '.join(map(str, sizes))} px)", enabled=progress)
    start = time.perf_counter()
    gen_img = resize(photo, sizes[0])  # (1,3,h0,w0): start from the photo, smallest size
    for long_side, n_steps in zip(sizes, counts):
        content_s = resize(photo, long_side)  # (1,3,h,w)
        paint_side = max(16, round(long_side * style_scale))
        styles_s = [painting_at(img, paint_side, content_s, preserve_color) for img in styles]
        # the photo's detail at the sizes in between; at the last size it would stay as a ghost
        gen_img = upsample_with_detail(gen_img, content_s, detail=long_side != sizes[-1])
        loss_fn = make_loss_fn(model, content_s, styles_s, **loss_options)

        def on_step(row: dict[str, float], img: torch.Tensor, long_side: int = long_side) -> bool:
            seconds = time.perf_counter() - start  # since the start, targets included
            history.append({**row, "step": len(history) + 1, "seconds": seconds, "size": long_side})
            bar.update(len(history), row["total"])
            release_free_memory()  # the step's freed activations go back to the system
            if callback is not None and callback(history[-1], img):
                stopped.append(True)
            return bool(stopped)

        gen_img, _ = optimize(
            gen_img, loss_fn, n_steps, optimizer, callback=on_step, progress=False
        )
        if stopped:
            break
    bar.close()
    if preserve_color == "luma":  # the result's luma with the photo's chroma
        gen_img = combine_luma(gen_img, resize(content_img.to(dev), max(gen_img.shape[-2:])))
    return gen_img, history
