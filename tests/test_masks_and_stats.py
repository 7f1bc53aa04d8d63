"""nst.masks (guided Gram matrices) and nst.style_stats (what a style loss matches), by numbers."""

from __future__ import annotations

import pytest
import torch

from nst.errors import NSTError
from nst.losses import gram_matrix, make_loss_fn
from nst.masks import as_mask, check_masks, mask_at, masked_gram
from nst.style_stats import (
    _resample,
    adain,
    mean_std,
    mean_std_loss,
    positions,
    sliced_wasserstein_loss,
    style_stat,
)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------- masks


def test_masked_gram_of_an_aligned_binary_mask_is_the_regions_gram() -> None:
    feats = _rand(1, 8, 6, 10)  # a layer at stride 4 of a 24 x 40 photo
    pixels = torch.zeros(24, 40)
    pixels[:, :16] = 1  # the left 16 pixel columns: the layer's first 4 columns exactly
    mask = mask_at(as_mask(pixels, (24, 40)), feats)  # (1,1,6,10) of 0s and 1s
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    region = feats[:, :, :, :4]  # the region's features alone
    torch.testing.assert_close(masked_gram(feats, mask), gram_matrix(region))


def test_a_mask_of_ones_gives_the_whole_gram_and_halves_weigh_positions() -> None:
    feats = _rand(2, 5, 4, 4, seed=1)
    ones = torch.ones(1, 1, 4, 4)
    torch.testing.assert_close(masked_gram(feats, ones), gram_matrix(feats))
    # a feathered (0.5 everywhere) mask: (F/2)(F/2)ᵀ / (M/2) = G / 2
    torch.testing.assert_close(masked_gram(feats, ones / 2), gram_matrix(feats) / 2)


def test_mask_at_averages_the_pixels_of_each_position() -> None:
    pixels = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])  # (2,4)
    pooled = mask_at(as_mask(pixels, (2, 4)), torch.zeros(1, 3, 1, 2))
    torch.testing.assert_close(pooled, torch.tensor([[[[0.5, 0.5]]]]))


@pytest.mark.parametrize("shape", [(6, 8), (1, 6, 8), (1, 1, 6, 8)])
def test_as_mask_takes_float_or_bool_in_three_shapes(shape) -> None:
    assert as_mask(torch.ones(shape, dtype=torch.bool), (6, 8)).shape == (1, 1, 6, 8)


def test_bad_masks_get_one_sentence() -> None:
    size = (6, 8)
    with pytest.raises(NSTError, match="photo's size"):
        as_mask(torch.ones(6, 9), size)
    with pytest.raises(NSTError, match=r"values in \[0, 1\]"):
        as_mask(torch.full((6, 8), 2.0), size)
    with pytest.raises(NSTError, match="tensor"):
        as_mask([[1.0]], size)
    with pytest.raises(NSTError, match="one mask per style image"):
        check_masks([torch.ones(6, 8)], 2, size)
    with pytest.raises(NSTError, match="overlap"):
        check_masks([torch.ones(6, 8), torch.full((6, 8), 0.01)], 2, size)
    halves = check_masks([torch.full((6, 8), 0.5), torch.full((6, 8), 0.5)], 2, size)
    assert len(halves) == 2  # shares that add up to 1 are fine


# ----------------------------------------------------------------------------- statistics


def test_mean_std_is_per_channel_over_positions() -> None:
    feats = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]])  # (1,2,1,2)
    torch.testing.assert_close(mean_std(feats), torch.tensor([[[2.0, 2.0], [1.0, 0.0]]]))
    assert float(mean_std_loss(feats, mean_std(feats))) == 0.0


def test_sliced_wasserstein_ignores_where_things_are_but_not_what() -> None:
    feats = _rand(1, 6, 8, 8, seed=2)
    shuffled = feats.flatten(2)[:, :, torch.randperm(64)].reshape(1, 6, 8, 8)
    target = positions(feats)
    same = sliced_wasserstein_loss(shuffled, target, torch.Generator().manual_seed(0))
    assert float(same) < 1e-10  # the same values at other positions: the same distribution
    other = sliced_wasserstein_loss(feats * 2 + 1, target, torch.Generator().manual_seed(0))
    assert float(other) > 0.1


def test_sliced_wasserstein_compares_sizes_through_quantiles() -> None:
    values = torch.arange(5.0).view(1, 1, 5)  # sorted 0..4
    torch.testing.assert_close(_resample(values, 9), torch.arange(9.0).view(1, 1, 9) / 2)
    small = _rand(1, 4, 4, 4, seed=3)  # 16 positions against the painting's 64
    loss = sliced_wasserstein_loss(small, positions(_rand(1, 4, 8, 8, seed=4)))
    assert torch.isfinite(loss) and loss.dim() == 0


@pytest.mark.parametrize("name", ["gram", "mean_std", "sliced_wasserstein"])
def test_each_statistic_goes_through_make_loss_fns_hook(model, content64, style64, name) -> None:
    stat = style_stat(name)
    loss_fn = make_loss_fn(
        model,
        content64,
        style64,
        style_layers=["relu1_1", "relu2_1"],
        style_summary=stat.summary,
        style_layer_loss=stat.loss,
    )
    gen = content64.clone().requires_grad_(True)
    out = loss_fn(gen)
    out["total"].backward()
    assert out["style"] > 0 and gen.grad.abs().sum() > 0
    painting = make_loss_fn(
        model,
        None,
        style64,
        style_layers=["relu1_1"],
        style_summary=stat.summary,
        style_layer_loss=stat.loss,
    )(style64)["style"]
    assert float(painting) < 1e-6  # the painting matches its own statistic


def test_an_unknown_statistic_gets_one_sentence() -> None:
    with pytest.raises(NSTError, match="gram, mean_std, sliced_wasserstein"):
        style_stat("histogram")


def test_adain_gives_the_photos_features_the_paintings_means_and_stds() -> None:
    photo, painting = _rand(1, 4, 6, 6, seed=5), _rand(1, 4, 9, 7, seed=6) * 3 + 2
    out = adain(photo, painting)
    assert out.shape == photo.shape
    torch.testing.assert_close(mean_std(out), mean_std(painting), rtol=1e-3, atol=1e-3)
    # the layout is the photo's: per channel, the same order of positions
    assert torch.equal(out.flatten(2).argsort(dim=2), photo.flatten(2).argsort(dim=2))
