"""Keep the photo's colours: luminance-only transfer and colour-histogram matching.

Style transfer copies the painting's palette along with its brush strokes. "Preserving Color in
Neural Artistic Style Transfer" (Gatys, Bethge, Hertzmann, Shechtman 2016) gives two cures:

- **luminance only**: transfer style between the brightness (luma Y) channels only, then put the
  photo's own colour (chroma Cr, Cb) back: ``luma_only`` before, ``combine_luma`` after;
- **colour matching**: first recolour the painting with the photo's colours
  (``match_histograms``), then transfer as usual.

Both use OpenCV's colour conversions on float32 images in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from nst.images import check_image


def _to_hwc(img: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) tensor in [0, 1] -> (H,W,3) float32 numpy array, as OpenCV expects."""
    check_image(img, "img")
    return img[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy().copy()  # (H,W,3)


def _to_tensor(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """(H,W,3) numpy array -> (1,3,H,W) tensor in [0, 1] on ``like``'s device."""
    out = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]  # (1,3,H,W)
    return out.contiguous().clamp(0, 1).to(like.device)  # contiguous: L-BFGS flattens with view


def luma_only(img: torch.Tensor) -> torch.Tensor:
    """(1,3,H,W) RGB -> (1,3,H,W) grey image whose three channels all hold its luma Y."""
    y = cv2.cvtColor(_to_hwc(img), cv2.COLOR_RGB2YCrCb)[..., :1]  # (H,W,1)
    return _to_tensor(np.repeat(y, 3, axis=2), img)  # (1,3,H,W)


def match_luma(img: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``img``'s luma shifted and scaled to the mean and spread of ``reference``'s luma."""
    y = luma_only(img)
    y_ref = luma_only(reference)
    return ((y - y.mean()) * (y_ref.std() / y.std().clamp_min(1e-6)) + y_ref.mean()).clamp(0, 1)


def combine_luma(luma_img: torch.Tensor, color_img: torch.Tensor) -> torch.Tensor:
    """The luma Y of ``luma_img`` with the chroma (Cr, Cb) of ``color_img``; same size -> RGB."""
    y = cv2.cvtColor(_to_hwc(luma_img), cv2.COLOR_RGB2YCrCb)[..., :1]  # (H,W,1)
    crcb = cv2.cvtColor(_to_hwc(color_img), cv2.COLOR_RGB2YCrCb)[..., 1:]  # (H,W,2)
    ycrcb = np.concatenate([y, crcb], axis=2)  # (H,W,3)
    return _to_tensor(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB), luma_img)


def match_histograms(img: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``img`` recoloured so each CIELAB channel's histogram matches ``reference``'s (any sizes)."""
    src = cv2.cvtColor(_to_hwc(img), cv2.COLOR_RGB2Lab)  # (H,W,3): L in [0,100], a, b
    ref = cv2.cvtColor(_to_hwc(reference), cv2.COLOR_RGB2Lab)  # (H',W',3)
    out = np.empty_like(src)
    quantiles = np.linspace(0.0, 1.0, 1001)
    for ch in range(3):
        # Send each value to the reference value at the same rank (quantile): the CDFs then match.
        src_q = np.quantile(src[..., ch], quantiles)
        ref_q = np.quantile(ref[..., ch], quantiles)
        src_q = src_q + np.arange(src_q.size) * 1e-9  # strictly increasing, as np.interp needs
        out[..., ch] = np.interp(src[..., ch], src_q, ref_q)
    return _to_tensor(cv2.cvtColor(out, cv2.COLOR_Lab2RGB), img)
