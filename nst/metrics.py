"""Distances that say how well a result matches its photo and its painting, comparable across runs.

A loss is what one run minimises; a *distance* is how every run is judged, whatever its weights,
optimiser, precision or sizes. All are relative errors (0 = a perfect match, 1 = as far away as an
all-zero answer), computed in fp32 with the frozen Oxford VGG19 at the photo's size (a result of
another size, such as a snapshot from a coarse-to-fine run's smaller sizes, is resized to it):

- ``content_distance``: ‖F - P‖ / ‖P‖ at relu4_2 (F: the result's features, P: the photo's).
- ``style_distances``: per layer ‖G - A‖ / ‖A‖ between Gram matrices (G: the result's, A: the
  painting's), for relu1_1 … relu5_1; ``style_distance`` is their plain average.
- ``sliced_wasserstein_distance`` (lesson 08): per layer, the whole distributions of the two
  images' features compared along fixed random directions, relative like the others; averaged.
- ``ssim``: structural similarity (Wang et al. 2004) of the two images' luma, 1 = identical.

The content distance is the square root of lesson 03's content loss; the style distance averages
the square roots of the per-layer style losses, unweighted and always over the same layers, so a run
that changes the weights or the layers is still measured on the same scale.
Keep ``style_img`` at the same size for every result you compare: a Gram matrix depends on the
scale of the painting's brush strokes in pixels.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nst.errors import NSTError
from nst.images import check_image, resize_to
from nst.losses import LossFn, gram_matrix, relative_error
from nst.style_stats import positions, sliced_wasserstein_loss
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, VGG19Features, extract_features


def _fp32(img: torch.Tensor) -> contextlib.ExitStack:
    """A context with no graph and no autocast on ``img``'s device: every distance is fp32."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(torch.autocast(device_type=img.device.type, enabled=False))
    return stack


def _fp32_features(
    model: VGG19Features, img: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Features {layer: (1,C,H,W)} of ``img`` in fp32 without a graph, whatever autocast is on."""
    with _fp32(img):
        return {k: v.float() for k, v in extract_features(model, img.float(), list(layers)).items()}


def _fp32_grams(
    model: VGG19Features, img: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Gram matrices {layer: (1,C,C)} of ``img``'s features, in fp32 without a graph."""
    with _fp32(img):
        return {k: gram_matrix(f) for k, f in _fp32_features(model, img, layers).items()}


def content_distance(
    gen_img: torch.Tensor,
    content_img: torch.Tensor,
    model: VGG19Features,
    content_layer: str = CONTENT_LAYER,
) -> float:
    """‖F - P‖ / ‖P‖ of two (1,3,H,W) images' features at ``content_layer`` (same size needed)."""
    if gen_img.shape != content_img.shape:
        raise NSTError(
            f"content_distance needs images of one size, got {tuple(gen_img.shape)} and "
            f"{tuple(content_img.shape)}; resize the photo with nst.images.resize."
        )
    gen = _fp32_features(model, gen_img, [content_layer])[content_layer]
    target = _fp32_features(model, content_img, [content_layer])[content_layer]
    return relative_error(gen, target)


def style_distances(
    gen_img: torch.Tensor,
    style_img: torch.Tensor,
    model: VGG19Features,
    style_layers: Sequence[str] = STYLE_LAYERS,
) -> dict[str, float]:
    """{layer: ‖G - A‖ / ‖A‖} between the Gram matrices of a result and a painting (any sizes)."""
    gen = _fp32_grams(model, gen_img, style_layers)
    target = _fp32_grams(model, style_img, style_layers)
    return {layer: relative_error(gen[layer], target[layer]) for layer in style_layers}


def style_distance(
    gen_img: torch.Tensor,
    style_img: torch.Tensor,
    model: VGG19Features,
    style_layers: Sequence[str] = STYLE_LAYERS,
) -> float:
    """The average over ``style_layers`` of the relative Gram error (see ``style_distances``)."""
    per_layer = style_distances(gen_img, style_img, model, style_layers)
    return sum(per_layer.values()) / len(per_layer)


def sliced_wasserstein_distance(
    gen_img: torch.Tensor,
    style_img: torch.Tensor,
    model: VGG19Features,
    style_layers: Sequence[str] = STYLE_LAYERS,
    seed: int = 0,
) -> float:
    """The average over layers of √(sliced Wasserstein loss), on directions fixed by ``seed``."""
    gen = _fp32_features(model, gen_img, style_layers)
    target = _fp32_features(model, style_img, style_layers)
    total = 0.0
    with _fp32(gen_img):
        for layer in style_layers:
            directions = torch.Generator().manual_seed(seed)  # the same directions for every image
            loss = sliced_wasserstein_loss(gen[layer], positions(target[layer]), directions)
            total += float(loss) ** 0.5
    return total / len(style_layers)


def _luma(img: torch.Tensor) -> torch.Tensor:
    """(1,3,H,W) RGB -> (1,1,H,W) luma Y of ITU-R BT.601, the Y that JPEG and cv2 use."""
    weights = img.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (img * weights).sum(dim=1, keepdim=True)


def ssim(img_a: torch.Tensor, img_b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity of two (1,3,H,W) images in [0, 1] on their luma: 1 means identical."""
    with _fp32(img_a):
        return _ssim(img_a, img_b, window, sigma)


def _ssim(img_a: torch.Tensor, img_b: torch.Tensor, window: int, sigma: float) -> float:
    """``ssim`` itself, run inside the fp32 context."""
    check_image(img_a, "img_a")
    check_image(img_b, "img_b")
    if img_a.shape != img_b.shape:
        raise NSTError(
            f"ssim needs images of one size, got {tuple(img_a.shape)} and {tuple(img_b.shape)}."
        )
    x, y = _luma(img_a.float()), _luma(img_b.float())  # (1,1,H,W) each
    coords = torch.arange(window, dtype=torch.float32, device=x.device) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, window, window)  # sums to 1

    def blur(t: torch.Tensor) -> torch.Tensor:  # local Gaussian-weighted mean, same size
        return F.conv2d(F.pad(t, [window // 2] * 4, mode="replicate"), kernel)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2  # Wang et al.'s constants for a dynamic range of 1
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


PhotoAndPainting = tuple[torch.Tensor, dict[str, torch.Tensor]]  # (relu4_2 features, {layer: Gram})


def _photo_and_painting(
    content_img: torch.Tensor, style_img: torch.Tensor, model: VGG19Features
) -> PhotoAndPainting:
    """The photo's relu4_2 features (1,C,H,W) and the painting's Gram matrices {layer: (1,C,C)}."""
    content = _fp32_features(model, content_img, [CONTENT_LAYER])[CONTENT_LAYER]
    return content, _fp32_grams(model, style_img, STYLE_LAYERS)


def _distances_to(
    gen_img: torch.Tensor,
    content_img: torch.Tensor,
    targets: PhotoAndPainting,
    model: VGG19Features,
) -> dict[str, float]:
    """``evaluate``'s numbers from one forward pass of ``gen_img``, against ready targets."""
    content_target, style_grams = targets
    gen_img = _at_size_of(gen_img, content_img)  # (1,3,H,W) like the photo
    feats = _fp32_features(model, gen_img, [CONTENT_LAYER, *STYLE_LAYERS])
    with _fp32(gen_img):
        per_layer = {k: relative_error(gram_matrix(feats[k]), a) for k, a in style_grams.items()}
        content = relative_error(feats[CONTENT_LAYER], content_target)
    return {
        "content": content,
        "style": sum(per_layer.values()) / len(per_layer),
        "ssim": ssim(gen_img, content_img),
        **{f"style_{layer}": value for layer, value in per_layer.items()},
    }


def evaluate(
    gen_img: torch.Tensor,
    content_img: torch.Tensor,
    style_img: torch.Tensor,
    model: VGG19Features,
) -> dict[str, float]:
    """{"content", "style", "ssim", and "style_<layer>" per layer} for a (1,3,H,W) result.

    A result of another size than ``content_img`` is first resized to the photo's size.
    """
    return _distances_to(
        gen_img, content_img, _photo_and_painting(content_img, style_img, model), model
    )


def _at_size_of(img: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``img`` (1,3,h,w) resized to ``reference``'s (1,3,H,W) size, if it differs."""
    return img if img.shape[-2:] == reference.shape[-2:] else resize_to(img, reference.shape[-2:])


class Snapshots:
    """A ``callback`` for ``optimize``/``stylize``: an 8-bit copy of the image every few steps.

    Taking a copy costs microseconds, so a timed run stays honest; the distances are computed
    afterwards by ``distance_history``.
    """

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.items: list[tuple[dict[str, float], torch.Tensor]] = []  # (row, (1,3,h,w) uint8)

    def __call__(self, row: dict[str, float], img: torch.Tensor) -> bool:
        """Keep (row, image) on every ``every``-th step; never asks the run to stop."""
        if row["step"] % self.every == 0:
            self.add(row, img)
        return False

    def add(self, row: dict[str, float], img: torch.Tensor) -> None:
        """Keep ``row`` and an 8-bit copy of ``img`` (1,3,h,w), e.g. a run's final result."""
        self.items.append((dict(row), (img.detach().clamp(0, 1) * 255).round().byte().cpu()))

    def distance_history(
        self, content_img: torch.Tensor, style_img: torch.Tensor, model: VGG19Features
    ) -> list[dict[str, float]]:
        """One row per snapshot: step, seconds, size and ``evaluate``'s distances."""
        rows = []
        targets = _photo_and_painting(content_img, style_img, model)  # once, not once per snapshot
        for row, img8 in self.items:
            img = img8.to(content_img.device).float() / 255  # (1,3,h,w) in [0, 1]
            keep = {k: row[k] for k in ("step", "seconds", "size") if k in row}
            rows.append({**keep, **_distances_to(img, content_img, targets, model)})
        return rows


def seconds_per_step(loss_fn: LossFn, img: torch.Tensor, repeats: int = 3) -> float:
    """Mean seconds of one loss-and-gradient evaluation of ``loss_fn`` at ``img`` (1,3,H,W)."""
    x = img.detach().clone().requires_grad_(True)
    loss_fn(x)["total"].backward()  # a warm-up call: the first one allocates memory
    start = time.perf_counter()
    for _ in range(repeats):
        x.grad = None
        loss_fn(x)["total"].backward()
    return (time.perf_counter() - start) / repeats


def first_match(rows: list[dict], target: dict) -> float | None:
    """Seconds of the first row at least as good as ``target`` on both distances, or None."""
    for row in rows:
        if row["content"] <= target["content"] and row["style"] <= target["style"]:
            return row["seconds"]
    return None


def row_at(rows: list[dict], seconds: float) -> dict:
    """The last of ``rows`` (sorted by time) recorded at or before ``seconds``, else the first."""
    earlier = [row for row in rows if row["seconds"] <= seconds]
    return max(earlier, key=lambda row: row["seconds"]) if earlier else rows[0]
