"""nst.masks (guided Gram matrices) and nst.style_stats (what a style loss matches), by numbers."""

from __future__ import annotations

import re

import pytest
import torch

from nst.data import content_path, style_path
from nst.errors import NSTError
from nst.images import load_image
from nst.losses import gram_matrix, make_loss_fn
from nst.masks import as_mask, check_masks, mask_at, masked_gram
from nst.metrics import style_distance
from nst.recipe import stylize
from nst.style_stats import (
    STYLE_STATS,
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


# ------------------------------------------------------------- stylize with masks and statistics


def _halves(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo's left and right halves as two (H,W) 0/1 masks."""
    h, w = img.shape[-2:]
    left = torch.zeros(h, w)
    left[:, : w // 2] = 1
    return left, 1 - left


@pytest.mark.parametrize(
    "photo, paintings",
    [
        ("chelsea", ("starry_night", "great_wave")),
        ("astronaut", ("composition_viii", "village_street_auvers")),
    ],
)
def test_stylize_paints_each_masked_region_like_its_own_painting(model, photo, paintings) -> None:
    content_img = load_image(content_path(photo), long_side=128)
    style_a, style_b = (load_image(style_path(name), long_side=128) for name in paintings)
    gen_img, _ = stylize(
        content_img,
        [style_a, style_b],
        masks=_halves(content_img),
        size=128,
        steps=60,
        model=model,
        progress=False,
    )
    w = gen_img.shape[-1]
    seam = w // 8  # 1/8 of the width either side of the seam is left out
    left, right = gen_img[..., : w // 2 - seam], gen_img[..., w // 2 + seam :]
    for region, own, other in ((left, style_a, style_b), (right, style_b, style_a)):
        d_own, d_other = (style_distance(region, s, model) for s in (own, other))
        assert d_own < 0.8 * d_other, (photo, d_own, d_other)


def test_where_the_masks_sum_to_less_than_one_the_photo_stays(model, content64, style64) -> None:
    left, right = _halves(content64)
    gen_img, _ = stylize(
        content64, style64, masks=[left], size=64, steps=30, model=model, progress=False
    )
    w = content64.shape[-1]
    changed = (gen_img - content64).abs().mean(dim=(0, 1, 2))  # (W,): change per column
    assert changed[: w // 2 - 8].mean() > 2 * changed[w // 2 + 8 :].mean()


@pytest.mark.parametrize("name", ["gram", "mean_std", "sliced_wasserstein"])
def test_each_style_stat_moves_the_photo_towards_the_painting(
    model, content64, style64, name
) -> None:
    gen_img, history = stylize(
        content64, style64, size=64, steps=20, style_stat=name, model=model, progress=False
    )
    assert torch.isfinite(gen_img).all()
    assert history[-1]["style"] < 0.5 * history[0]["style"]
    before = style_distance(content64, style64, model)
    assert style_distance(gen_img, style64, model) < before


def test_masks_work_with_each_stat_and_with_colour_and_scale_options(model, content64, style64):
    left, right = _halves(content64)
    for name in STYLE_STATS:
        gen_img, history = stylize(
            content64,
            [style64, style64.flip(-1)],
            masks=[left, right],
            size=64,
            steps=6,
            style_stat=name,
            preserve_color="luma",
            style_scale=1.5,
            model=model,
            progress=False,
        )
        assert gen_img.shape == content64.shape and len(history) == 6


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"masks": "one"}, "one mask per style image: 2 style images"),
        ({"masks": [torch.ones(5, 5)] * 2}, "but the photo is"),
        (
            {"masks": [torch.ones(3, 40, 64)] * 2},
            "must be a tensor (H, W), (1, H, W) or (1, 1, H, W)",
        ),
        ({"masks": [torch.ones(40, 64), torch.ones(40, 64)]}, "the masks overlap"),
        ({"masks": [torch.full((40, 64), 2.0)] * 2}, "values in [0, 1]"),
        ({"masks": _halves(torch.zeros(1, 3, 40, 64)), "style_blend": [1, 2]}, "style_blend"),
        ({"style_stat": "sliced_wasserstein"}, "give one painting, or masks"),
        ({"style_stat": "gramm"}, "style_stat must be one of gram, mean_std"),
    ],
)
def test_stylize_gives_one_sentence_for_bad_masks_or_stats(model, style64, changes, message):
    content_img = torch.rand(1, 3, 40, 64)
    with pytest.raises(NSTError, match=re.escape(message)):
        stylize(content_img, [style64, style64], size=64, steps=3, model=model, **changes)
