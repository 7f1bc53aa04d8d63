"""Keep the photo's colours: luminance-only transfer and linear colour transfer.

Style transfer copies the painting's palette along with its brush strokes. "Preserving Color in
Neural Artistic Style Transfer" (Gatys, Bethge, Hertzmann, Shechtman 2016) gives two cures:

- **luminance only**: transfer style between the brightness (luma Y) channels only, then put the
  photo's own colour (chroma Cr, Cb) back: ``luma_only`` before, ``combine_luma`` after;
- **colour transfer**: first recolour the painting with a linear map of its RGB values,
  x' = A (x - mu_s) + mu_c, that gives it the photo's mean colour and colour covariance
  (``match_color``), then transfer as usual.

The luma conversions use OpenCV on float32 images in [0, 1]; the colour transfer is a 3 x 3 matrix.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from nst.errors import NSTError
from nst.images import check_image


def to_hwc(img: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) tensor in [0, 1] -> (H,W,3) float32 numpy array, as OpenCV expects."""
    check_image(img, "img")
    return img[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy().copy()  # (H,W,3)


def _to_tensor(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """(H,W,3) numpy array -> (1,3,H,W) tensor in [0, 1] on ``like``'s device."""
    out = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]  # (1,3,H,W)
    return out.contiguous().clamp(0, 1).to(like.device)  # contiguous: L-BFGS flattens with view


def luma_only(img: torch.Tensor) -> torch.Tensor:
    """(1,3,H,W) RGB -> (1,3,H,W) grey image whose three channels all hold its luma Y."""
    y = cv2.cvtColor(to_hwc(img), cv2.COLOR_RGB2YCrCb)[..., :1]  # (H,W,1)
    return _to_tensor(np.repeat(y, 3, axis=2), img)  # (1,3,H,W)


def match_luma(img: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``img``'s luma shifted and scaled to the mean and spread of ``reference``'s luma."""
    y = luma_only(img)
    y_ref = luma_only(reference)
    return ((y - y.mean()) * (y_ref.std() / y.std().clamp_min(1e-6)) + y_ref.mean()).clamp(0, 1)


def combine_luma(luma_img: torch.Tensor, color_img: torch.Tensor) -> torch.Tensor:
    """The luma Y of ``luma_img`` with the chroma (Cr, Cb) of ``color_img``; same size -> RGB."""
    y = cv2.cvtColor(to_hwc(luma_img), cv2.COLOR_RGB2YCrCb)[..., :1]  # (H,W,1)
    crcb = cv2.cvtColor(to_hwc(color_img), cv2.COLOR_RGB2YCrCb)[..., 1:]  # (H,W,2)
    ycrcb = np.concatenate([y, crcb], axis=2)  # (H,W,3)
    return _to_tensor(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB), luma_img)


def _rgb_stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3,) and covariance (3,3) of the RGB values of a (1,3,H,W) image, in float64."""
    pixels = img.detach().double().reshape(3, -1)  # (3,N): one column per pixel
    return pixels.mean(dim=1), torch.cov(pixels)


def _sqrtm(cov: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a (3,3) covariance matrix, by its eigen-decomposition."""
    values, vectors = torch.linalg.eigh(cov)
    return vectors @ torch.diag(values.clamp_min(1e-12).sqrt()) @ vectors.T


def match_color(
    img: torch.Tensor, reference: torch.Tensor, method: str = "eig", clamp: bool = False
) -> torch.Tensor:
    """``img`` (1,3,H,W) linearly recoloured to ``reference``'s RGB mean and covariance.

    x' = A (x - mu_img) + mu_ref with A cov_img Aᵀ = cov_ref: ``method="eig"`` takes
    A = cov_ref^½ cov_img^-½ (symmetric square roots, as in Image Analogies), ``"chol"``
    A = L_ref L_img⁻¹ (Cholesky factors). A linear map can leave [0, 1] where the photo is more
    saturated than the painting; the network takes such values as they are, and clipping them
    (``clamp=True``, for an image to show or save) would change the statistics again.
    """
    check_image(img, "img")
    check_image(reference, "reference")
    if method not in ("eig", "chol"):
        raise NSTError(f"method must be 'eig' or 'chol', not {method!r}.")
    mu_s, cov_s = _rgb_stats(img)
    mu_c, cov_c = _rgb_stats(reference)
    eye = 1e-8 * torch.eye(3, dtype=torch.float64)  # a flat, one-colour image stays solvable
    root = _sqrtm if method == "eig" else torch.linalg.cholesky  # cov = root rootᵀ either way
    a = root(cov_c + eye) @ torch.linalg.inv(root(cov_s + eye))  # (3,3)
    pixels = img.detach().double().reshape(3, -1)  # (3,N)
    out = a @ (pixels - mu_s[:, None]) + mu_c[:, None]  # (3,N) with the reference's statistics
    out = out.reshape(img.shape).to(img.dtype)  # (1,3,H,W)
    return out.clamp(0.0, 1.0) if clamp else out
