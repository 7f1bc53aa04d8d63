"""Lesson 05's recipe in one call: coarse-to-fine L-BFGS with the speed-ups measured there.

``stylize(content_img, style_img)`` optimises at a few growing sizes (e.g. 128, 256, then 512 px
long side): most steps are spent where a step is cheap and large-scale structure forms quickly,
and each larger size starts from the smaller result, upsampled, so its few costly steps only add
fine detail. The network is frozen and cut after its deepest layer used, the targets are computed
once per size, on a CPU or CUDA the network runs in lower precision (bf16 / fp16 autocast) while
every loss stays in fp32, and the style loss's gradient is written by hand. After each step the
memory it freed goes back to the system. Options add colour preservation, several paintings mixed
by weights, and the style's scale.
"""

from __future__ import annotations

import ctypes
import functools
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nst.color import combine_luma, luma_only, match_histograms, match_luma
from nst.errors import NSTError
from nst.images import check_image, resize
from nst.losses import make_loss_fn
from nst.optim import Callback, optimize
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, VGG19Features, default_device, load_vgg19

PRESERVE_COLOR = (None, "luma", "histogram")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STEP_SHARES = (0.45, 0.3, 0.25)  # the step budget's share per size, from the smallest up


def scale_sizes(size: int, n_scales: int = 3, smallest: int = 128) -> list[int]:
    """Long sides from ``smallest`` up to ``size``, each twice the last: 512 -> [128, 256, 512]."""
    sizes = [size]
    while len(sizes) < n_scales and sizes[0] // 2 >= smallest:
        sizes.insert(0, sizes[0] // 2)
    return sizes


def split_steps(steps: int, n_sizes: int) -> list[int]:
    """Share a step budget among ``n_sizes`` sizes, most on the smallest: 100, 3 -> [45, 30, 25]."""
    shares = STEP_SHARES[-n_sizes:] if n_sizes <= len(STEP_SHARES) else [1.0] * n_sizes
    counts = [max(1, round(steps * s / sum(shares))) for s in shares]
    counts[0] += steps - sum(counts)  # rounding leftovers go to the cheapest size
    if steps < n_sizes or counts[0] < 1:
        raise NSTError(f"steps={steps} is too few for {n_sizes} sizes; give at least {n_sizes}.")
    return counts


def upsample_with_detail(gen_img: torch.Tensor, content_img: torch.Tensor) -> torch.Tensor:
    """``gen_img`` upsampled to ``content_img``'s (1,3,h,w) size, plus the photo's finer detail.

    The photo's detail is what the smaller size could not hold: the photo minus its own copy
    blurred to ``gen_img``'s size (one level of a Laplacian pyramid). An image upsampled alone is
    blurry, and its first steps at the new size would spend themselves sharpening it.
    """
    size = content_img.shape[-2:]
    if gen_img.shape[-2:] == size:
        return gen_img
    up = F.interpolate(gen_img, size=size, mode="bilinear")  # (1,3,h,w), blurry
    small = F.interpolate(content_img, size=gen_img.shape[-2:], mode="bilinear", antialias=True)
    detail = content_img - F.interpolate(small, size=size, mode="bilinear")  # (1,3,h,w) fine detail
    return (up + detail).clamp(0.0, 1.0)


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

    ``steps`` (loss-and-gradient evaluations in all) are shared among ``sizes``, most on the
    smallest; the result has the last size on its long side (default ``scale_sizes(size)``).
    ``style_blend``: a weight per painting; ``style_scale``: the painting's size relative to the
    result (2 = strokes twice as large); ``preserve_color``: None, "luma" or "histogram";
    ``precision``: "auto" (bf16 on CPU, fp16 on CUDA), "fp32", "bf16" or "fp16";
    ``model`` (reused if given, else loaded with ``pooling``) sets the device.
    History rows are ``optimize``'s plus "size"; "step" and "seconds" count from the start.
    ``callback(row, img)`` runs after every step; returning True stops the run.
    """
    check_image(content_img, "content_img")
    styles = [style_img] if isinstance(style_img, torch.Tensor) else list(style_img)
    for i, img in enumerate(styles):
        check_image(img, f"style image {i + 1}")
    if preserve_color not in PRESERVE_COLOR:
        raise NSTError(
            f"preserve_color must be None, 'luma' or 'histogram', not {preserve_color!r}."
        )
    if not isinstance(style_scale, (int, float)) or not 0.1 <= style_scale <= 4:
        raise NSTError(f"style_scale must be a number from 0.1 to 4, not {style_scale!r}.")
    sizes = list(sizes) if sizes is not None else scale_sizes(size)
    if not sizes or sorted(sizes) != sizes or min(sizes) < 16:
        raise NSTError(f"sizes must grow from at least 16 px, e.g. [128, 256, 512]; got {sizes}.")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise NSTError(f"steps must be a whole number, not {steps!r}.")
    counts = split_steps(steps, len(sizes))
    if model is None:
        model = load_vgg19(device=device or default_device(), pooling=pooling)
    dev = next(model.parameters()).device
    amp = autocast_dtype(precision, dev)
    photo = content_img.to(dev)
    styles = [img.to(dev) for img in styles]
    if preserve_color == "histogram":  # recolour the paintings with the photo's colours
        styles = [match_histograms(img, photo) for img in styles]
    elif preserve_color == "luma":  # transfer between grey images; colour comes back at the end
        styles = [match_luma(img, photo) for img in styles]
        photo = luma_only(photo)

    history: list[dict[str, float]] = []
    start = time.perf_counter()
    stopped = False
    gen_img = resize(photo, sizes[0])  # (1,3,h0,w0): start from the photo, smallest size
    for long_side, n_steps in zip(sizes, counts):
        content_s = resize(photo, long_side)  # (1,3,h,w)
        styles_s = [resize(img, max(16, round(long_side * style_scale))) for img in styles]
        gen_img = upsample_with_detail(gen_img, content_s)  # (1,3,h,w)
        loss_fn = make_loss_fn(
            model,
            content_s,
            styles_s,
            content_layer=content_layer,
            style_layers=style_layers,
            content_weight=content_weight,
            style_weight=style_weight,
            tv_weight=tv_weight,
            style_blend=style_blend,
            autocast_dtype=amp,
            hand_gradient=True,  # the Gram loss's gradient by hand: faster, less memory
        )

        def on_step(row: dict[str, float], img: torch.Tensor, long_side: int = long_side) -> bool:
            nonlocal stopped
            seconds = time.perf_counter() - start  # since the start, targets included
            history.append({**row, "step": len(history) + 1, "seconds": seconds, "size": long_side})
            release_free_memory()  # the step's freed activations go back to the system
            stopped = bool(callback is not None and callback(history[-1], img))
            return stopped

        gen_img, _ = optimize(
            gen_img, loss_fn, n_steps, optimizer, callback=on_step, progress=progress
        )
        if stopped:
            break
    if preserve_color == "luma":  # the result's luma with the photo's chroma
        gen_img = combine_luma(gen_img, resize(content_img.to(dev), max(gen_img.shape[-2:])))
    return gen_img, history
