"""Masks for one's own photo (nst.masks): GrabCut, the sky threshold, feathering, label images."""

from __future__ import annotations

import pytest
import torch

from nst.errors import NSTError
from nst.masks import as_mask, feather, grabcut_mask, masks_from_labels, sky_mask

H, W = 96, 128


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")  # (H,W) rows, columns


def _disc_photo() -> tuple[torch.Tensor, torch.Tensor]:
    """A bright yellow disc (radius 25) on a dark textured checkerboard -> (1,3,H,W), (H,W) disc."""
    g = torch.Generator().manual_seed(0)
    yy, xx = _grid()
    disc = (((yy - 48) ** 2 + (xx - 64) ** 2) <= 25**2).float()  # (H,W)
    dark = 0.15 * torch.rand(3, H, W, generator=g) + 0.1 * ((xx // 8 + yy // 8) % 2)  # (3,H,W)
    bright = torch.tensor([0.9, 0.8, 0.3])[:, None, None] + 0.08 * torch.rand(3, H, W, generator=g)
    return (dark * (1 - disc) + bright * disc)[None].clamp(0, 1), disc


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / ((a + b) > 0).sum())


# ------------------------------------------------------------------------------------- GrabCut


def test_grabcut_recovers_a_disc_from_a_box_around_it() -> None:
    img, disc = _disc_photo()
    mask = grabcut_mask(img, (30, 14, 68, 68))  # x, y, w, h: the disc's box plus 4 pixels
    assert mask.shape == (H, W) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert _iou(mask, disc) > 0.9
    assert mask[:, :30].sum() == 0 and mask[:, 98:].sum() == 0  # nothing outside the box
    torch.testing.assert_close(grabcut_mask(img, (30, 14, 68, 68)), mask)  # deterministic
    as_mask(mask, (H, W))  # ready for stylize(masks=...)


@pytest.mark.parametrize(
    "rect", [(-1, 10, 40, 40), (100, 10, 40, 40), (10, 10, 0, 5), (0, 0, W, H)]
)
def test_grabcut_rejects_a_box_outside_the_image_or_the_whole_image(rect) -> None:
    img, _ = _disc_photo()
    with pytest.raises(NSTError, match=r"must lie inside the 128 x 96 image"):
        grabcut_mask(img, rect)


# ------------------------------------------------------------------------------------- the sky


def _landscape() -> torch.Tensor:
    """A blue sky band (rows 0-29), green below, a blue square (rows 60-79) not touching it."""
    img = torch.empty(1, 3, H, W)
    img[0, :, :30] = torch.tensor([0.35, 0.6, 0.95])[:, None, None]  # hue about 215°
    img[0, :, 30:] = torch.tensor([0.2, 0.6, 0.2])[:, None, None]  # green: hue 120°
    img[0, :, 60:80, 40:70] = torch.tensor([0.2, 0.3, 0.9])[:, None, None]  # a blue shirt
    return img


def test_sky_mask_takes_the_top_band_and_not_a_blue_square_below() -> None:
    mask = sky_mask(_landscape())
    assert mask.shape == (H, W)
    assert mask[:30].min() == 1 and mask[30:].max() == 0  # the band, and not the square


def test_sky_mask_takes_blue_below_when_it_touches_the_sky() -> None:
    img = _landscape()
    img[0, :, 30:60, 50:55] = torch.tensor([0.2, 0.3, 0.9])[:, None, None]  # a blue pole
    mask = sky_mask(img)
    assert mask[60:80, 40:70].min() == 1  # the shirt is taken: the failure a lesson can show


def test_sky_mask_takes_a_bright_grey_overcast_sky() -> None:
    img = torch.full((1, 3, H, W), 0.85)  # white-grey clouds
    img[0, :, 40:] = torch.tensor([0.3, 0.25, 0.2])[:, None, None]  # brown ground
    mask = sky_mask(img)
    assert mask[:40].min() == 1 and mask[40:].max() == 0


# ------------------------------------------------------------------------------------- feather


def _half_plane() -> torch.Tensor:
    mask = torch.zeros(H, W)
    mask[:, :64] = 1  # the left half: the edge between columns 63 and 64
    return mask


def test_feather_ramps_a_hard_edge_and_keeps_range_and_mean() -> None:
    mask = _half_plane()
    soft = feather(mask, 8.0)
    assert soft.shape == mask.shape and soft.dtype == torch.float32
    assert soft.min() >= 0 and soft.max() <= 1
    assert abs(float(soft.mean() - mask.mean())) < 1e-3
    edge = soft[:, 63:65].mean(dim=0)  # the two columns either side of the edge
    assert abs(float(edge.mean()) - 0.5) < 1e-3 and 0.5 < float(edge[0]) < 0.7
    assert float(soft[0, 63 - 8]) > 0.95 and float(soft[0, 64 + 8]) < 0.05  # ramp about 8 wide
    assert float(soft[0, 63 - 2]) < 0.95 and float(soft[0, 64 + 2]) > 0.05


def test_feather_keeps_a_batch_shape_and_radius_0_is_the_identity() -> None:
    mask = _half_plane()
    assert feather(mask[None, None], 4.0).shape == (1, 1, H, W)
    torch.testing.assert_close(feather(mask[None, None], 4.0)[0, 0], feather(mask, 4.0))
    assert torch.equal(feather(mask, 0), mask)
    with pytest.raises(NSTError, match="radius_px"):
        feather(mask, -1.0)


# ------------------------------------------------------------------------------------- labels


def test_masks_from_labels_partition_a_label_image() -> None:
    _, xx = _grid()
    labels = (xx * 3 // W).long()  # three vertical stripes: 0, 1, 2
    labels[:10] = 2
    masks = masks_from_labels(labels, [0, 1, 2])
    assert len(masks) == 3 and all(m.shape == (H, W) for m in masks)
    assert all(set(m.unique().tolist()) == {0.0, 1.0} for m in masks)
    torch.testing.assert_close(sum(masks), torch.ones(H, W))  # every pixel in exactly one
    assert torch.equal(masks[1].bool(), labels == 1)


def test_masks_from_labels_names_a_missing_label() -> None:
    labels = torch.zeros(4, 5, dtype=torch.long)
    with pytest.raises(NSTError, match=r"no pixel has the label 3; the label image holds \[0\]"):
        masks_from_labels(labels, [0, 3])
