"""Spatial control: which region of the photo takes which painting (Gatys et al. 2017).

A mask m_r says how much each pixel belongs to region r (1: inside, 0: outside, in between: a
feathered edge). At a style layer with feature map F (C channels, M = H*W positions) the mask is
average-pooled to the layer's H × W, and region r's Gram matrix is

    G_r = (F·m_r)(F·m_r)ᵀ / Σ m_r,

the average product of two channels *over the region*: for a 0/1 mask aligned with the layer's
positions it is exactly the Gram matrix of the region's features alone. Each G_r is matched to its
own painting's whole-image Gram matrix, in one optimisation. Where the masks sum to less than 1 the
photo keeps more of itself (only the content and TV losses act there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nst.errors import NSTError


def as_mask(mask: torch.Tensor, size: tuple[int, int], name: str = "mask") -> torch.Tensor:
    """A float or bool mask (H,W), (1,H,W) or (1,1,H,W) in [0, 1] at ``size`` -> (1,1,H,W) float."""
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3, 4):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise NSTError(f"{name} must be a tensor (H, W), (1, H, W) or (1, 1, H, W), got {shape}.")
    mask = mask.float().reshape(1, 1, *mask.shape[-2:])  # (1,1,H,W)
    if tuple(mask.shape[-2:]) != tuple(size):
        raise NSTError(
            f"{name} is {tuple(mask.shape[-2:])} but the photo is {tuple(size)}: "
            "make each mask at the photo's size (H, W)."
        )
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise NSTError(f"{name} must hold values in [0, 1] (1: the region, 0: outside it).")
    return mask


def check_masks(
    masks: Sequence[torch.Tensor], n_styles: int, size: tuple[int, int]
) -> list[torch.Tensor]:
    """One (1,1,H,W) mask per painting, checked: count, shape, range, and a sum of at most 1."""
    if len(masks) != n_styles:
        raise NSTError(
            f"give one mask per style image: {n_styles} style images, {len(masks)} masks."
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
