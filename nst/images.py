"""Load, convert, resize and save images as (1, 3, H, W) float tensors in [0, 1].

Every image in this package is a float tensor of shape (1, 3, H, W): a batch of one,
three colour channels (red, green, blue), height H and width W, with values in [0, 1].
Anything that goes wrong while reading a file raises ImageError with one sentence that
names the file and says what to do.
"""

from __future__ import annotations

import io
import os
import struct
from numbers import Integral
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from nst.errors import ImageError

MAX_PIXELS: int = 40_000_000  # refuse to decode images above 40 megapixels

# What Pillow's decoders raise for a damaged or truncated file while decoding it.
_DECODE_ERRORS = (OSError, EOFError, SyntaxError, ValueError, struct.error)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_image(
    src: str | os.PathLike[str] | Image.Image,
    long_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """Load a file path or PIL image as a (1, 3, H, W) float32 RGB tensor in [0, 1]."""
    if long_side is not None:
        _check_long_side(long_side)
    if isinstance(src, Image.Image):
        tensor = _decode(src, _pil_name(src), max_pixels)
    elif isinstance(src, (str, os.PathLike)):
        tensor = _load_path(src, max_pixels)
    else:
        raise ImageError(
            f"Cannot load an image from a {type(src).__name__}: "
            "pass a file path (str or pathlib.Path) or a PIL image."
        )
    if long_side is not None:
        tensor = resize(tensor, long_side)
    return tensor


def _load_path(src: str | os.PathLike[str], max_pixels: int) -> torch.Tensor:
    """Check that a path is a readable image file, then decode it to (1, 3, H, W)."""
    name = f"'{os.fspath(src)}'"
    path = Path(src)
    if os.fspath(src) == "":
        raise ImageError("Cannot load '': the path is empty; pass the name of an image file.")
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative paths start in {Path.cwd()})"
        raise ImageError(f"Cannot load {name}: the file does not exist; check the path{where}.")
    if path.is_dir():
        raise ImageError(
            f"Cannot load {name}: it is a folder, not a file; pass the path of an image inside it."
        )
    if path.stat().st_size == 0:
        raise ImageError(
            f"Cannot load {name}: the file is empty (0 bytes); download or copy it again."
        )
    with _open(path, name) as opened:
        return _decode(opened, name, max_pixels)


def load_image_bytes(file_bytes: bytes, name: str, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Decode an image file's bytes (an upload) to (1, 3, H, W); ``name`` is what errors call it."""
    label = f"'{name}'"
    if not file_bytes:
        raise ImageError(f"Cannot load {label}: the file is empty (0 bytes); choose another file.")
    with _open(io.BytesIO(file_bytes), label) as opened:
        return _decode(opened, label, max_pixels)


def _open(src: Path | BinaryIO, name: str) -> Image.Image:
    """Open an image file, reading only its header; ImageError with one sentence if it cannot."""
    try:
        return Image.open(src)  # pixels are decoded later, in _decode, after the size check
    except UnidentifiedImageError:
        raise ImageError(
            f"Cannot load {name}: it is not an image Pillow can read; use a .jpg or .png file."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageError(
            f"Cannot load {name}: the image is larger than Pillow's safety limit of "
            f"{limit:.0f} megapixels; resize it with an image editor first."
        ) from None
    except PermissionError:
        raise ImageError(
            f"Cannot load {name}: permission denied; check who may read the file."
        ) from None
    except OSError as err:
        raise ImageError(
            f"Cannot load {name}: the file cannot be read ({err}); copy it again."
        ) from None
    except (EOFError, SyntaxError, ValueError, struct.error):  # a decoder on a damaged header
        raise ImageError(
            f"Cannot load {name}: the file is damaged; download or copy it again."
        ) from None


def _decode(img: Image.Image, name: str, max_pixels: int) -> torch.Tensor:
    """Check the size, decode all pixels, apply EXIF rotation: PIL image -> (1, 3, H, W)."""
    width, height = img.size
    if width == 0 or height == 0:
        raise ImageError(
            f"Cannot load {name}: the image has zero size ({width}x{height}); use another image."
        )
    if width * height > max_pixels:
        raise ImageError(
            f"Cannot load {name}: the image is {width * height / 1e6:.1f} megapixels "
            f"({width}x{height}), above the limit of {max_pixels / 1e6:.1f} megapixels; "
            "resize it first or pass a larger max_pixels."
        )
    try:
        img.load()  # decode every pixel now, so a truncated file fails here
        img = ImageOps.exif_transpose(img)  # turn it upright as the camera recorded
    except _DECODE_ERRORS:
        raise ImageError(
            f"Cannot load {name}: the file is damaged or truncated; download or copy it again."
        ) from None
    return pil_to_tensor(to_rgb(img))


def _pil_name(img: Image.Image) -> str:
    """Describe a PIL image for an error message: its file name if it has one."""
    filename = getattr(img, "filename", "")
    return f"'{filename}'" if filename else "the PIL image"


# ---------------------------------------------------------------------------
# Colour modes
# ---------------------------------------------------------------------------


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode (L, RGBA, P, CMYK, I;16, F, ...) to RGB, H x W kept."""
    if img.mode.startswith("I") or img.mode == "F":
        return _high_depth_to_rgb(img)
    if _has_transparency(img):  # put it on a white sheet of paper
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, ...
    except ValueError:
        raise ImageError(
            f"Cannot convert an image in mode {img.mode!r} to RGB; "
            "save it as an ordinary RGB .png or .jpg."
        ) from None


def _has_transparency(img: Image.Image) -> bool:
    """True for RGBA, LA, PA, and P / L / RGB images with a transparent colour."""
    alpha_band = "A" in img.getbands() or "a" in img.getbands()  # "a": premultiplied alpha
    rgba_palette = img.mode == "P" and getattr(img.palette, "mode", "") == "RGBA"
    return alpha_band or rgba_palette or "transparency" in img.info


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float grey image (H x W) to 8-bit RGB."""
    values = np.asarray(img).astype(np.float64)  # (H, W)
    peak = float(values.max(initial=0.0))
    if img.mode.startswith("I;16"):
        scale = 65535.0  # 16-bit: 65535 becomes white
    elif img.mode == "I":
        scale = 65535.0 if peak > 255 else 255.0  # 32-bit ints usually hold 16-bit or 8-bit data
    else:  # "F": floats are either in [0, 1] or in [0, 255]
        scale = 1.0 if peak <= 1.0 else 255.0
    unit = np.clip(np.nan_to_num(values / scale), 0.0, 1.0)  # (H, W) in [0, 1]
    grey = Image.fromarray(np.round(unit * 255).astype(np.uint8))  # mode "L", H x W
    return grey.convert("RGB")


# ---------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """Convert an RGB PIL image (H x W) to a (1, 3, H, W) float32 tensor in [0, 1]."""
    pixels = torch.from_numpy(np.array(to_rgb(img), dtype=np.uint8))  # (H, W, 3) uint8
    chw = pixels.permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    return chw.unsqueeze(0).float() / 255.0  # (3, H, W) -> (1, 3, H, W)


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """Convert a (1, 3, H, W) or (3, H, W) float tensor in [0, 1] to an RGB PIL image."""
    if not isinstance(img, torch.Tensor):
        raise ImageError(f"Cannot convert a {type(img).__name__} to an image; pass a torch.Tensor.")
    shape = tuple(img.shape)
    if not (len(shape) == 4 and shape[:2] == (1, 3)) and not (len(shape) == 3 and shape[0] == 3):
        raise ImageError(
            "Cannot convert the tensor to an image: expected an image tensor of shape "
            f"(1, 3, H, W) or (3, H, W), got {shape}; select one image and its 3 colour channels."
        )
    if not img.is_floating_point():
        raise ImageError(
            f"Cannot convert the tensor to an image: expected floats in [0, 1], got {img.dtype}; "
            "divide by 255 first."
        )
    chw = img.detach().cpu().float().reshape(shape[-3:])  # (1, 3, H, W) or (3, H, W) -> (3, H, W)
    chw = torch.nan_to_num(chw).clamp(0.0, 1.0)
    pixels = (chw * 255).round().to(torch.uint8)  # (3, H, W) uint8
    hwc = pixels.permute(1, 2, 0).contiguous()  # (3, H, W) -> (H, W, 3)
    return Image.fromarray(hwc.numpy())


def save_image(img: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Save a (1, 3, H, W) or (3, H, W) tensor as an image file; return its path."""
    path = Path(path)
    picture = tensor_to_pil(img)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        picture.save(path, quality=95)  # quality is used by JPEG and ignored by PNG
    except (ValueError, KeyError):
        raise ImageError(
            f"Cannot save '{path}': unknown file extension {path.suffix!r}; "
            "end the name with .png or .jpg."
        ) from None
    return path


def check_image(img: torch.Tensor, name: str = "image") -> None:
    """Raise ImageError unless img is a float tensor of shape (1, 3, H, W) without NaN."""
    if not isinstance(img, torch.Tensor):
        raise ImageError(
            f"{name} must be a torch.Tensor of shape (1, 3, H, W), got a {type(img).__name__}."
        )
    shape = tuple(img.shape)
    if len(shape) != 4 or shape[:2] != (1, 3) or shape[2] < 1 or shape[3] < 1:
        raise ImageError(
            f"{name} must have shape (1, 3, H, W), got {shape}; use load_image or add a batch "
            "dimension with .unsqueeze(0)."
        )
    if not img.is_floating_point():
        raise ImageError(
            f"{name} must be a float tensor with values in [0, 1], got {img.dtype}; "
            "use .float() / 255."
        )
    if torch.isnan(img).any():
        raise ImageError(
            f"{name} contains NaN values; check the step that produced it "
            "(is the learning rate too high?)."
        )


def noise_like(img: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform noise in [0, 1) with img's shape, device and dtype, the same on every device."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.rand(img.shape, generator=generator)  # img's shape, float32 on the CPU
    return noise.to(device=img.device, dtype=img.dtype)


# ---------------------------------------------------------------------------
# Resizing
# ---------------------------------------------------------------------------


def resize(img: torch.Tensor, long_side: int) -> torch.Tensor:
    """Resize (1, 3, H, W) to (1, 3, h, w) with max(h, w) == long_side, keeping the aspect ratio."""
    _check_long_side(long_side)
    check_image(img)
    height, width = img.shape[-2:]
    scale = long_side / max(height, width)
    if height >= width:
        size = (int(long_side), max(1, round(width * scale)))
    else:
        size = (max(1, round(height * scale)), int(long_side))
    return resize_to(img, size)


def resize_to(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 3, h, w) at ``size`` = (h, w): bilinear, antialiased, in [0, 1]."""
    resized = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp(0.0, 1.0)  # (1, 3, h, w)


def _check_long_side(long_side: int) -> None:
    """Raise ImageError unless long_side is a positive whole number of pixels."""
    if isinstance(long_side, bool) or not isinstance(long_side, Integral) or long_side < 1:
        raise ImageError(
            f"long_side must be a positive whole number of pixels, got {long_side!r}; try 512."
        )


def shuffle_tiles(img: torch.Tensor, tiles: int = 4, seed: int = 0) -> torch.Tensor:
    """Cut (1,3,H,W) into tiles x tiles blocks and shuffle them: same "stuff", new layout."""
    check_image(img)
    _, c, h, w = img.shape
    th, tw = h // tiles, w // tiles  # tile size; the rest at the bottom/right is cropped
    if th < 1 or tw < 1:
        raise ImageError(f"Cannot cut a {h}x{w} image into {tiles}x{tiles} tiles; use fewer.")
    blocks = img[:, :, : th * tiles, : tw * tiles].reshape(c, tiles, th, tiles, tw)  # (3,t,th,t,tw)
    blocks = blocks.permute(1, 3, 0, 2, 4).reshape(tiles * tiles, c, th, tw)  # (t*t,3,th,tw)
    order = torch.randperm(tiles * tiles, generator=torch.Generator().manual_seed(seed))
    blocks = blocks[order].reshape(tiles, tiles, c, th, tw)  # (t,t,3,th,tw), shuffled
    return blocks.permute(2, 0, 3, 1, 4).reshape(1, c, th * tiles, tw * tiles)  # (1,3,H',W')
