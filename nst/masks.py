"""Spatial control: which region of the photo takes which painting (Gatys et al. 2017).

A mask m_r says how much each pixel belongs to region r (1: inside, 0: outside, in between: a
feathered edge). At a style layer with feature map F (C channels, M = H*W positions) the mask is
average-pooled to the layer's H × W, and region r's Gram matrix is

    G_r = (F·m_r)(F·m_r)ᵀ / Σ m_r,

the average product of two channels *over the region*: for a 0/1 mask aligned with the layer's
positions it is exactly the Gram matrix of the region's features alone. Each G_r is matched to its
own painting's whole-image Gram matrix, in one optimisation. Where the masks sum to less than 1 the
photo keeps more of itself (only the content and TV losses act there).

Masks for a learner's own photo: ``grabcut_mask`` (OpenCV's GrabCut from a box round the
subject), ``sky_mask`` (sky colours touching the top edge), ``masks_from_labels`` (a hand-painted
label image), and ``feather`` (a soft edge).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from nst.color import to_hwc
from nst.errors import NSTError


def as_mask(mask: torch.Tensor, size: tuple[int, int] | None, name: str = "mask") -> torch.Tensor:
    """A float or bool mask (H,W), (1,H,W) or (1,1,H,W) in [0, 1] at ``size`` -> (1,1,H,W) float.

    ``size``: the photo's (H, W); None accepts any size.
    """
    leading = mask.shape[:-2] if isinstance(mask, torch.Tensor) else ()  # () or (1,) or (1, 1)
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3, 4) or set(leading) - {1}:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise NSTError(f"{name} must be a tensor (H, W), (1, H, W) or (1, 1, H, W), got {shape}.")
    mask = mask.float().reshape(1, 1, *mask.shape[-2:])  # (1,1,H,W)
    if size is not None and tuple(mask.shape[-2:]) != tuple(size):
        raise NSTError(
            f"{name} is {tuple(mask.shape[-2:])} but the photo is {tuple(size)}: "
            "make each mask at the photo's size (H, W)."
        )
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise NSTError(f"{name} must hold values in [0, 1] (1: the region, 0: outside it).")
    return mask


def check_masks(
    masks: Sequence[torch.Tensor], n_styles: int, size: tuple[int, int] | None = None
) -> list[torch.Tensor]:
    """One (1,1,H,W) mask per painting, checked: count, shape, range, and a sum of at most 1."""
    if isinstance(masks, torch.Tensor) or len(masks) != n_styles:
        count = "one tensor" if isinstance(masks, torch.Tensor) else f"{len(masks)} masks"
        raise NSTError(
            f"give a list with one mask per style image: {n_styles} style images, {count}."
        )
    masks = [as_mask(m, size, f"mask {i + 1}") for i, m in enumerate(masks)]
    total = torch.stack(masks).sum(dim=0)  # (1,1,H,W)
    if total.max() > 1 + 1e-3:
        raise NSTError(
            f"the masks overlap: they sum to {float(total.max()):.3g} somewhere; a pixel's "
            "shares of the regions must add up to at most 1."
        )
    return masks


def mask_at(mask: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """A (1,1,H,W) mask average-pooled to the (B,C,h,w) feature map's positions -> (1,1,h,w)."""
    return F.adaptive_avg_pool2d(mask, feats.shape[-2:])  # each position: its pixels' share


def masked_gram(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) features, a (1,1,h,w) mask -> the region's (B,C,C) Gram: (F·m)(F·m)ᵀ / Σm."""
    b, c, h, w = feats.shape
    flat = (feats * mask).reshape(b, c, h * w)  # (B,C,M): each position weighted by its share
    return flat @ flat.transpose(1, 2) / mask.sum().clamp_min(1e-8)  # (B,C,C)


# --- making masks for one's own photo: OpenCV's GrabCut, a sky threshold, feathering, labels ---


def grabcut_mask(
    img: torch.Tensor, rect: tuple[int, int, int, int], iterations: int = 5
) -> torch.Tensor:
    """GrabCut from a box (x, y, w, h) round the subject: (1,3,H,W) in [0, 1] -> (H,W) 0/1 mask."""
    height, width = img.shape[-2:]
    x, y, w, h = (int(v) for v in rect)
    inside = 0 <= x < x + w <= width and 0 <= y < y + h <= height  # and at least 1 x 1
    if not inside or w * h == width * height:
        raise NSTError(
            f"rect {tuple(rect)} (x, y, w, h) must lie inside the {width} x {height} image and "
            "leave some background outside it."
        )
    bgr = np.ascontiguousarray(to_hwc(img)[..., ::-1] * 255).round().astype(np.uint8)  # (H,W,3)
    labels = np.zeros((height, width), np.uint8)  # GrabCut's labels, filled from the rectangle
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)  # its colour models
    cv2.setRNGSeed(0)  # GrabCut starts its colour models with k-means: the same mask every run
    cv2.grabCut(bgr, labels, (x, y, w, h), *models, iterations, cv2.GC_INIT_WITH_RECT)
    foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)  # sure or probable
    return torch.from_numpy(foreground).float().to(img.device)  # (H,W)


def sky_mask(
    img: torch.Tensor,
    blue_hues: tuple[float, float] = (180.0, 260.0),
    min_saturation: float = 0.15,
    overcast_value: float = 0.75,
) -> torch.Tensor:
    """Sky-coloured pixels connected to the top edge: (1,3,H,W) in [0, 1] -> (H,W) 0/1 mask."""
    hsv = cv2.cvtColor(to_hwc(img), cv2.COLOR_RGB2HSV)  # (H,W,3): hue in degrees, S and V in [0,1]
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    in_hues = (hue >= blue_hues[0]) & (hue <= blue_hues[1])  # cyan to blue
    blue = in_hues & (sat >= min_saturation) & (val >= 0.3)  # a clear sky: blue, not dark
    overcast = (sat < min_saturation) & (val >= overcast_value)  # a cloudy sky: bright grey-white
    candidate = (blue | overcast).astype(np.uint8)  # (H,W): sky-coloured, wherever it is
    _, regions = cv2.connectedComponents(candidate, connectivity=4)  # (H,W): 0 is "not sky"
    # keep the regions touching the top row: a blue shirt below is dropped, unless it touches one
    top = np.unique(regions[0][regions[0] > 0])
    return torch.from_numpy(np.isin(regions, top)).float().to(img.device)  # (H,W)


def feather(mask: torch.Tensor, radius_px: float) -> torch.Tensor:
    """A (H,W) or (1,1,H,W) mask blurred so a hard edge ramps over ~radius_px -> same shape."""
    if radius_px < 0:
        raise NSTError(f"radius_px must be 0 or more pixels, not {radius_px}.")
    if radius_px == 0:
        return mask.float()
    plane = mask.detach().float().cpu().numpy().reshape(mask.shape[-2:])  # (H,W)
    sigma = radius_px / 2  # 16% to 84% of the way across the edge is 2 sigma = radius_px
    blurred = cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)  # (H,W)
    return torch.from_numpy(blurred).clamp(0, 1).reshape(mask.shape).to(mask.device)


def masks_from_labels(labels: torch.Tensor, values: Sequence[int]) -> list[torch.Tensor]:
    """A (H,W) integer label image -> one (H,W) 0/1 float mask per value in ``values``."""
    present = labels.unique().tolist()
    missing = [v for v in values if v not in present]
    if missing:
        raise NSTError(f"no pixel has the label {missing[0]}; the label image holds {present}.")
    return [(labels == v).float() for v in values]
