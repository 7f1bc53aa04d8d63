"""The recipe in one call: coarse-to-fine L-BFGS with the measured speed-ups.

``stylize(content_img, style_img)`` optimises at a few growing sizes (e.g. 128, 256, then 512 px
long side): large-scale structure forms where steps are cheap, and each larger size starts from
the smaller result, upsampled, so its costly steps only add finer strokes. The network is frozen
and cut after its deepest layer used, the targets are computed once per size, and the speed-ups
of ``nst.speedups`` are on: lower precision for the network (the losses stay fp32), the Gram
loss's gradient by hand, and free memory handed back after each step. Options add colour
preservation, several paintings mixed by weights or each given a region by a mask, the style's
scale, what a style layer matches (``style_stat``), and a start image.
"""

from __future__ import annotations

import difflib
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from nst.color import combine_luma, luma_only, match_color, match_luma
from nst.errors import NSTError
from nst.images import check_image, resize, resize_to
from nst.losses import LossFn, make_loss_fn, style_list
from nst.masks import check_masks
from nst.optim import Callback, check_steps, optimize
from nst.progress import Progress
from nst.speedups import autocast_dtype, gram_loss_by_hand, release_free_memory
from nst.style_stats import style_stat
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, VGG19Features, default_device, load_vgg19

PRESERVE_COLOR = (None, "luma", "linear")
STEP_SHARES = (0.3, 0.3, 0.4)  # the step budget's share per size, from the smallest up
History = list[dict[str, float]]


def scale_sizes(size: int, n_scales: int = 3, smallest: int = 128) -> list[int]:
    """Long sides from ``smallest`` up to ``size``, each twice the last: 512 -> [128, 256, 512]."""
    sizes = [size]
    while len(sizes) < n_scales and sizes[0] // 2 >= smallest:
        sizes.insert(0, sizes[0] // 2)
    return sizes


def split_steps(steps: int, n_sizes: int) -> list[int]:
    """Share a step budget among ``n_sizes`` sizes, by STEP_SHARES: 100, 3 -> [30, 30, 40]."""
    check_steps(steps, least=n_sizes, why=f" (one per size, {n_sizes} sizes)")
    shares = STEP_SHARES[-n_sizes:] if n_sizes <= len(STEP_SHARES) else [1.0] * n_sizes
    counts = [max(1, round(steps * s / sum(shares))) for s in shares]
    counts[0] += steps - sum(counts)  # rounding leftovers go to the cheapest size
    return counts


@dataclass(frozen=True)
class Options:
    """stylize's settings and defaults; change any by name: ``stylize(..., steps=40)``."""

    size: int = 512  # the result's long side, px
    steps: int = 80  # loss-and-gradient evaluations in all, shared among the sizes
    sizes: Sequence[int] | None = None  # long sides, smallest first; None: scale_sizes(size)
    style_blend: Sequence[float] | None = None  # a weight per painting, for several
    style_scale: float = 1.0  # the painting's size relative to the result's (2: larger strokes)
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 10.0
    style_layers: Sequence[str] = STYLE_LAYERS
    content_layer: str = CONTENT_LAYER
    preserve_color: str | None = None  # None, "luma" or "linear"
    optimizer: str = "lbfgs"  # or "adam"
    style_stat: str = "gram"  # what a style layer matches: or "mean_std", "sliced_wasserstein"
    pooling: str = "max"  # or "avg" (used when stylize loads the network itself)
    precision: str = "auto"  # bf16 on a CPU, fp16 on CUDA, else fp32; or "fp32", "bf16", "fp16"

    def loss_options(self) -> dict[str, Any]:
        """The keywords of ``make_loss_fn`` these settings fix, at every size."""
        names = ["content_layer", "style_layers", "content_weight", "style_weight", "tv_weight"]
        return {name: getattr(self, name) for name in names + ["style_blend"]}


def with_changes(options: Options, changes: dict[str, Any]) -> Options:
    """``options`` with ``changes`` by name; a name Options lacks gets one sentence."""
    names = [f.name for f in fields(Options)]
    for name in changes:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise NSTError(f"stylize has no option {name!r}; {hint}see nst.recipe.Options.")
    return replace(options, **changes)


@dataclass(frozen=True)
class Plan:
    """Where a coarse-to-fine run goes: its long sides, smallest first, and the steps at each."""

    sizes: list[int]
    steps: list[int]
    optimizer: str = "lbfgs"
    style_scale: float = 1.0  # the painting's size relative to the result's

    def painting_side(self, long_side: int) -> int:
        """The painting's long side beside a result of ``long_side`` px."""
        return max(16, round(long_side * self.style_scale))


def make_plan(options: Options) -> Plan:
    """The sizes (default ``scale_sizes(size)``) and the steps shared among them."""
    sizes = list(options.sizes) if options.sizes is not None else scale_sizes(options.size)
    if not sizes or sorted(sizes) != sizes or min(sizes) < 16:
        raise NSTError(f"sizes must grow from at least 16 px, e.g. [128, 256, 512]; got {sizes}.")
    steps = split_steps(options.steps, len(sizes))
    return Plan(sizes, steps, options.optimizer, options.style_scale)


def start_image(photo: torch.Tensor, init: torch.Tensor | None, long_side: int) -> torch.Tensor:
    """The first size's start (1,3,h,w): the photo, or ``init`` resized to the photo's shape."""
    first = resize(photo, long_side)  # (1,3,h,w)
    if init is None:
        return first
    return resize_to(init.to(photo.device), first.shape[-2:])


def upsample_with_detail(
    gen_img: torch.Tensor, content_img: torch.Tensor, detail: bool = True
) -> torch.Tensor:
    """``gen_img`` upsampled to ``content_img``'s (1,3,h,w) size, plus the photo's finer detail.

    The photo's detail is what the smaller size could not hold: the photo minus its own copy
    blurred to ``gen_img``'s size (one level of a Laplacian pyramid). Without it
    (``detail=False``) the upsampled image is blurry: its first steps at the new size sharpen it.
    """
    size = content_img.shape[-2:]
    if gen_img.shape[-2:] == size:  # already this size (a run's first size): nothing to add
        return gen_img
    up = F.interpolate(gen_img, size=size, mode="bilinear")  # (1,3,h,w), blurry
    if not detail:
        return up.clamp(0.0, 1.0)
    # (1,3,h0,w0): the photo at gen_img's size, antialiased (shrinking averages what it drops)
    small = F.interpolate(content_img, size=gen_img.shape[-2:], mode="bilinear", antialias=True)
    fine = content_img - F.interpolate(small, size=size, mode="bilinear")  # (1,3,h,w) detail
    return (up + fine).clamp(0.0, 1.0)


def check_stylize_args(
    content_img: torch.Tensor,
    style_img: torch.Tensor | Sequence[torch.Tensor],
    init: torch.Tensor | None,
    options: Options,
    masks: Sequence[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """The paintings as a list, after one sentence for a bad image, mask, colour mode or scale."""
    preserve_color, style_scale = options.preserve_color, options.style_scale
    check_image(content_img, "content_img")
    styles = style_list(style_img)
    for i, img in enumerate(styles):
        check_image(img, f"style image {i + 1}")
    if init is not None:
        check_image(init, "init")
    if preserve_color not in PRESERVE_COLOR:
        raise NSTError(f"preserve_color must be None, 'luma' or 'linear', not {preserve_color!r}.")
    if not isinstance(style_scale, (int, float)) or not 0.1 <= style_scale <= 4:
        raise NSTError(f"style_scale must be a number from 0.1 to 4, not {style_scale!r}.")
    _check_masks_and_stat(styles, masks, options, tuple(content_img.shape[-2:]))
    return styles


def _check_masks_and_stat(
    styles: list[torch.Tensor],
    masks: Sequence[torch.Tensor] | None,
    options: Options,
    size: tuple[int, int],
) -> None:
    """One sentence for masks that do not fit the photo, or a statistic paintings cannot share."""
    style_stat(options.style_stat)  # a name it does not know gets one sentence
    if masks is not None:
        check_masks(masks, len(styles), size)
        if options.style_blend is not None:
            raise NSTError("with masks each region takes its own painting: leave style_blend out.")
    elif options.style_stat == "sliced_wasserstein" and len(styles) > 1:
        raise NSTError(
            "sliced_wasserstein matches one painting's whole feature distribution, which cannot "
            "be blended by weights: give one painting, or masks to give each painting a region."
        )


def prepare_colors(
    photo: torch.Tensor,
    styles: list[torch.Tensor],
    preserve_color: str | None,
    device: torch.device,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The photo and paintings on ``device``, as the losses see them under ``preserve_color``.

    "linear": each painting recoloured to the photo's RGB mean and covariance (``match_color``);
    "luma": both grey, the painting's luma given the photo's mean and spread (the colour comes
    back at the end, ``restore_colors``); None: unchanged.
    """
    photo, styles = photo.to(device), [img.to(device) for img in styles]
    if preserve_color == "linear":
        return photo, [match_color(img, photo) for img in styles]
    if preserve_color == "luma":
        return luma_only(photo), [match_luma(img, photo) for img in styles]
    return photo, styles


def restore_colors(
    gen_img: torch.Tensor, content_img: torch.Tensor, preserve_color: str | None
) -> torch.Tensor:
    """Under "luma", the result's luma with the photo's chroma; otherwise the result as it is."""
    if preserve_color != "luma":
        return gen_img
    return combine_luma(gen_img, resize(content_img.to(gen_img.device), max(gen_img.shape[-2:])))


class Run:
    """One stylize run across its sizes: the history, the progress bar, the caller's callback."""

    def __init__(self, steps: int, sizes: list[int], callback: Callback | None, progress: bool):
        self.history: History = []
        self.stopped = False  # the caller's callback asked to stop
        self.callback = callback
        self.bar = Progress(steps, f"stylize ({' -> '.join(map(str, sizes))} px)", enabled=progress)
        self.start = time.perf_counter()

    def at_size(self, long_side: int) -> Callback:
        """The callback ``optimize`` gets at one size: number its rows run-wide, then ask ours."""

        def on_step(row: dict[str, float], img: torch.Tensor) -> bool:
            seconds = time.perf_counter() - self.start  # since the start, targets included
            self.history.append(
                {**row, "step": len(self.history) + 1, "seconds": seconds, "size": long_side}
            )
            self.bar.update(len(self.history), row["total"])
            release_free_memory()  # the step's freed activations go back to the system
            self.stopped = self.callback is not None and bool(self.callback(self.history[-1], img))
            return self.stopped

        return on_step


def stylize(
    content_img: torch.Tensor,
    style_img: torch.Tensor | Sequence[torch.Tensor],
    options: Options | None = None,
    *,
    model: VGG19Features | None = None,
    device: str | torch.device | None = None,
    init: torch.Tensor | None = None,
    masks: Sequence[torch.Tensor] | None = None,
    callback: Callback | None = None,
    progress: bool = True,
    **changes: Any,
) -> tuple[torch.Tensor, History]:
    """Paint ``content_img`` (1,3,H,W) like ``style_img`` (one or a list) -> (img, history).

    Settings: ``options`` (default ``Options()``) with ``changes`` by name, e.g. ``steps=40``.
    ``model`` (reused if given, else loaded with the ``pooling`` option) sets the device;
    ``init``: an image (1,3,h,w) to start from instead of the photo, resized to its shape.
    ``masks``: one per painting, (H,W) at the photo's size, values in [0, 1] summing to at most 1
    at each pixel; region r is painted like painting r, and where the masks sum to less than 1 the
    photo keeps more of itself. Each layer pools the masks to its own positions at every size;
    ``style_scale`` scales every painting and ``preserve_color`` recolours every painting to the
    whole photo's colours, as without masks.
    History rows are ``optimize``'s plus "size"; "step" and "seconds" count from the start.
    ``callback(row, img)`` runs after every step; returning True stops the run.
    """
    options = with_changes(options or Options(), changes)
    styles = check_stylize_args(content_img, style_img, init, options, masks)
    plan = make_plan(options)
    if model is None:
        model = load_vgg19(device=device or default_device(), pooling=options.pooling)
    device = next(model.parameters()).device
    photo, paintings = prepare_colors(content_img, styles, options.preserve_color, device)
    make_loss = functools.partial(  # built once: only the images change from size to size
        make_loss_fn,
        model,
        **options.loss_options(),
        **style_losses(options.style_stat),
        autocast_dtype=autocast_dtype(options.precision, device),
        masks=masks,  # at the photo's size: each layer pools them to its positions
    )
    run = Run(options.steps, plan.sizes, callback, progress)
    gen_img = start_image(photo, init, plan.sizes[0])
    gen_img = coarse_to_fine(gen_img, photo, paintings, plan, make_loss, run)
    run.bar.close()
    return restore_colors(gen_img, content_img, options.preserve_color), run.history


def style_losses(name: str) -> dict[str, Any]:
    """``make_loss_fn``'s style keywords for the statistic ``name`` (Gram: gradient by hand)."""
    stat = style_stat(name)
    layer_loss = gram_loss_by_hand if name == "gram" else stat.loss  # gram_loss's value, faster
    return {
        "style_summary": stat.summary,
        "style_layer_loss": layer_loss,
        "style_region_loss": stat.region_loss,
    }


def coarse_to_fine(
    gen_img: torch.Tensor,
    content_img: torch.Tensor,
    style_imgs: list[torch.Tensor],
    plan: Plan,
    make_loss: Callable[[torch.Tensor, list[torch.Tensor]], LossFn],
    run: Run,
) -> torch.Tensor:
    """Optimise ``gen_img`` at each size of ``plan``, each size starting from the one before."""
    for long_side, n_steps in zip(plan.sizes, plan.steps):
        content_at_size = resize(content_img, long_side)  # (1,3,h,w): the photo at this size
        styles_at_size = [resize(img, plan.painting_side(long_side)) for img in style_imgs]
        # Upsampled from the size before (the first size is already this size: nothing to do),
        # plus the photo's detail at the sizes in between; at the last it would stay as a ghost.
        last = long_side == plan.sizes[-1]
        gen_img = upsample_with_detail(gen_img, content_at_size, detail=not last)
        loss_fn = make_loss(content_at_size, styles_at_size)  # targets at this size, computed once
        callback = run.at_size(long_side)
        gen_img, _ = optimize(
            gen_img, loss_fn, n_steps, plan.optimizer, callback=callback, progress=False
        )
        if run.stopped:
            break
    return gen_img
