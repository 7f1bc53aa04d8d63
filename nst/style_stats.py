"""What "style" is matched by: three statistics of a layer's features, each a per-layer style loss.

Each statistic is a triple for ``make_loss_fn(style_summary=..., style_layer_loss=...,
style_region_loss=...)``: the summary taken once of the painting's features, the loss comparing
the result's features with it, and the same loss on one masked region of the result (lesson 08's
spatial control), all relative like ``nst.losses.gram_loss`` (0 for a match, about 1 for an image
sharing nothing).

- ``gram``: the Gram matrix, every pair of channels' average product (Gatys et al. 2015).
- ``mean_std``: each channel's mean and standard deviation over the positions, what AdaIN
  transfers (Huang & Belongie 2017, ``adain``); it ignores how channels vary together.
- ``sliced_wasserstein``: the whole distribution of the features, compared along random
  directions (Heitz et al. 2021): project the C-dimensional feature of every position on a unit
  direction, sort, and compare the sorted values; new directions at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from nst.errors import NSTError
from nst.losses import (
    LayerLoss,
    RegionLoss,
    gram_loss,
    gram_matrix,
    masked_gram_loss,
    relative_squared_error,
)


class StyleStat(NamedTuple):
    """A style statistic: ``summary`` of the painting's features, once; ``loss`` at every step."""

    summary: Callable[[torch.Tensor], torch.Tensor]  # (1,C,H,W) painting features -> summary
    loss: LayerLoss  # (B,C,H,W) result features, the summary -> a scalar
    region_loss: RegionLoss  # the same on a region: features, (1,1,H,W) mask, summary -> scalar


def mean_std(feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B,C,H,W) features -> (B,2,C): each channel's mean and std over positions (mask-weighted)."""
    flat = feats.flatten(2)  # (B,C,M)
    weights = flat.new_ones(1, 1, flat.shape[2]) if mask is None else mask.flatten(2)  # (1,1,M)
    total = weights.sum(dim=2).clamp_min(1e-8)  # (1,1): the region's size in positions
    mean = (flat * weights).sum(dim=2) / total  # (B,C)
    var = ((flat - mean[..., None]) ** 2 * weights).sum(dim=2) / total  # (B,C)
    return torch.stack([mean, var.clamp_min(1e-12).sqrt()], dim=1)  # (B,2,C)


def mean_std_loss(gen_feats: torch.Tensor, style_mean_std: torch.Tensor) -> torch.Tensor:
    """mean((S - T)²) / mean(T²) between the result's and the painting's (B,2,C) means and stds."""
    return relative_squared_error(mean_std(gen_feats.float()), style_mean_std)


def masked_mean_std_loss(
    gen_feats: torch.Tensor, mask: torch.Tensor, style_mean_std: torch.Tensor
) -> torch.Tensor:
    """``mean_std_loss`` on one region: each position weighted by its (1,1,H,W) mask share."""
    return relative_squared_error(mean_std(gen_feats.float(), mask), style_mean_std)


def adain(content_feats: torch.Tensor, style_feats: torch.Tensor) -> torch.Tensor:
    """AdaIN: the photo's (B,C,H,W) features re-scaled to the painting's channel means and stds."""
    c_mean = content_feats.mean(dim=(2, 3), keepdim=True)  # (B,C,1,1): over the positions
    c_std = content_feats.std(dim=(2, 3), keepdim=True, correction=0)  # (B,C,1,1)
    s_mean = style_feats.mean(dim=(2, 3), keepdim=True)  # (B,C,1,1)
    s_std = style_feats.std(dim=(2, 3), keepdim=True, correction=0)  # (B,C,1,1)
    normalised = (content_feats - c_mean) / (c_std + 1e-5)  # (B,C,H,W): per channel mean 0, std 1
    return normalised * s_std + s_mean  # (B,C,H,W)


def positions(feats: torch.Tensor) -> torch.Tensor:
    """(1,C,H,W) features -> (1,C,M): the painting's features at every position, kept whole."""
    return feats.flatten(2)


def sliced_wasserstein_loss(
    gen_feats: torch.Tensor, style_positions: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sorted projections on C random unit directions: (B,C,H,W) or (B,C,M), (1,C,N) -> scalar."""
    gen = gen_feats.float().flatten(2)  # (B,C,M)
    c, m = gen.shape[1], gen.shape[2]
    # (C dirs, C): drawn on the CPU, so one generator gives the same directions on every device
    directions = torch.randn(c, c, generator=generator).to(gen.device)
    directions = directions / directions.norm(dim=1, keepdim=True)  # unit length
    gen_sorted = (directions @ gen).sort(dim=2).values  # (B,C,M): C projections, sorted
    style_sorted = (directions @ style_positions).sort(dim=2).values  # (1,C,N)
    style_sorted = _resample(style_sorted, m)  # (1,C,M): the painting's quantiles at M points
    return relative_squared_error(gen_sorted, style_sorted.expand_as(gen_sorted))


def _resample(sorted_values: torch.Tensor, m: int) -> torch.Tensor:
    """(1,C,N) sorted values -> (1,C,m): the values at m evenly spaced quantiles (linear)."""
    n = sorted_values.shape[-1]
    where = torch.linspace(0, n - 1, m, device=sorted_values.device)  # fractional indices
    low = where.floor().long()
    high = (low + 1).clamp_max(n - 1)
    frac = where - low  # (m,)
    return sorted_values[..., low] * (1 - frac) + sorted_values[..., high] * frac


def masked_sliced_wasserstein_loss(
    gen_feats: torch.Tensor, mask: torch.Tensor, style_positions: torch.Tensor
) -> torch.Tensor:
    """``sliced_wasserstein_loss`` on the positions at least half inside the (1,1,H,W) mask."""
    inside = mask.flatten() >= 0.5  # (M,): a distribution has no weights: a position is in or out
    if not inside.any():
        return gen_feats.new_zeros((), dtype=torch.float32)
    return sliced_wasserstein_loss(gen_feats.flatten(2)[..., inside], style_positions)  # (B,C,K)


STYLE_STATS = {
    "gram": StyleStat(gram_matrix, gram_loss, masked_gram_loss),
    "mean_std": StyleStat(mean_std, mean_std_loss, masked_mean_std_loss),
    "sliced_wasserstein": StyleStat(
        positions, sliced_wasserstein_loss, masked_sliced_wasserstein_loss
    ),
}


def style_stat(name: str) -> StyleStat:
    """The statistic called ``name`` ("gram", "mean_std" or "sliced_wasserstein")."""
    if name not in STYLE_STATS:
        raise NSTError(f"style_stat must be one of {', '.join(STYLE_STATS)}, not {name!r}.")
    return STYLE_STATS[name]
