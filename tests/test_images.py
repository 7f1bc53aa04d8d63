"""Tests for nst.images: bad files give one clear sentence, odd good files load correctly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst.errors import ImageError
from nst.images import (
    MAX_PIXELS,
    check_image,
    load_image,
    load_image_bytes,
    noise_like,
    pil_to_tensor,
    resize,
    save_image,
    shuffle_tiles,
    tensor_to_pil,
    to_rgb,
)

DATA = Path(__file__).parents[1] / "data"
BUNDLED = sorted((DATA / "content").glob("*.jpg")) + sorted((DATA / "style").glob("*.jpg"))


# ---------------------------------------------------------------------------
# Helpers that write small files
# ---------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """Write a PNG whose header claims width x height 1-bit pixels but whose data is a stub."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    stub = zlib.compress(b"\x00" * 16)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", stub) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def _gradient(width: int = 32, height: int = 24) -> Image.Image:
    """A small RGB image with detail everywhere, so that JPEG data is not trivial."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=-1)  # (H, W, 3)
    return Image.fromarray(pixels.astype(np.uint8))


def _truncated(path: Path, fmt: str) -> Path:
    """Save a real image in fmt, then keep only the first half of its bytes."""
    buffer = io.BytesIO()
    _gradient(64, 64).save(buffer, format=fmt)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def _assert_one_sentence(err: pytest.ExceptionInfo[ImageError], *words: str) -> None:
    """The message is one line and contains every word given (case-insensitive)."""
    message = str(err.value)
    assert "\n" not in message
    assert err.value.__suppress_context__ or err.value.__cause__ is None
    for word in words:
        assert word.lower() in message.lower(), (word, message)


def _pixel(tensor: torch.Tensor, row: int, col: int) -> list[float]:
    """The RGB values of one pixel of a (1, 3, H, W) tensor."""
    return tensor[0, :, row, col].tolist()


def _assert_image(tensor: torch.Tensor, height: int, width: int) -> None:
    """A (1, 3, height, width) float32 tensor in [0, 1]."""
    assert tensor.shape == (1, 3, height, width)
    assert tensor.dtype == torch.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0


# ---------------------------------------------------------------------------
# Bad inputs: each gives ImageError with one sentence naming the file
# ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as err:
        load_image(path)
    _assert_one_sentence(err, "nope.png", "does not exist")


def test_missing_relative_file_mentions_current_folder() -> None:
    with pytest.raises(ImageError) as err:
        load_image("no_such_folder/nope.png")
    _assert_one_sentence(err, "nope.png", "does not exist", str(Path.cwd()))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        load_image(tmp_path)
    _assert_one_sentence(err, str(tmp_path), "folder")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as err:
        load_image(path)
    _assert_one_sentence(err, "empty.png", "empty")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError) as err:
        load_image(str(path))
    _assert_one_sentence(err, "notes.jpg", "not an image")


@pytest.mark.parametrize("fmt, name", [("JPEG", "cut.jpg"), ("PNG", "cut.png")])
def test_truncated_file(tmp_path: Path, fmt: str, name: str) -> None:
    path = _truncated(tmp_path / name, fmt)
    with pytest.raises(ImageError) as err:
        load_image(path)
    _assert_one_sentence(err, name, "truncated")


def test_max_pixels_argument(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    _gradient(40, 30).save(path)
    with pytest.raises(ImageError) as err:
        load_image(path, max_pixels=1000)
    _assert_one_sentence(err, "small.png", "megapixels", "40x30", "max_pixels")


def test_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "huge.png", 8000, 6000)  # 48 megapixels > MAX_PIXELS
    assert 8000 * 6000 > MAX_PIXELS
    with pytest.raises(ImageError) as err:
        load_image(path)
    _assert_one_sentence(err, "huge.png", "48.0 megapixels", "8000x6000")


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "bomb.png", 30000, 30000)  # 900 MP: above Pillow's limit
    with pytest.raises(ImageError) as err:
        load_image(path, max_pixels=10**10)
    _assert_one_sentence(err, "bomb.png", "megapixels")


def test_zero_size_pil_image() -> None:
    with pytest.raises(ImageError) as err:
        load_image(Image.new("RGB", (0, 5)))
    _assert_one_sentence(err, "zero size")


@pytest.mark.parametrize("src", [42, b"cat.jpg", None, np.zeros((4, 4, 3))])
def test_wrong_source_type(src: object) -> None:
    with pytest.raises(ImageError) as err:
        load_image(src)  # type: ignore[arg-type]
    _assert_one_sentence(err, type(src).__name__)


@pytest.mark.parametrize("long_side", [0, -3, 2.5, "512", True])
def test_bad_long_side(long_side: object) -> None:
    with pytest.raises(ImageError) as err:
        resize(torch.zeros(1, 3, 4, 4), long_side)  # type: ignore[arg-type]
    _assert_one_sentence(err, "long_side", repr(long_side))


def test_save_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        save_image(torch.zeros(1, 3, 2, 2), tmp_path / "out.nope")
    _assert_one_sentence(err, "out.nope", "extension")


# ---------------------------------------------------------------------------
# Odd but good inputs load with the right colours
# ---------------------------------------------------------------------------


def _save_and_load(folder: Path, img: Image.Image, name: str, **save_args: object) -> torch.Tensor:
    """Save img as name in folder and load it back with load_image."""
    path = folder / name
    img.save(path, **save_args)
    return load_image(path)


def test_rgba_transparent_becomes_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (3, 2), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 0))  # fully transparent blue
    tensor = _save_and_load(tmp_path, img, "rgba.png")
    _assert_image(tensor, 2, 3)
    assert _pixel(tensor, 0, 0) == [1.0, 0.0, 0.0]
    assert _pixel(tensor, 0, 1) == [1.0, 1.0, 1.0]


def test_la_half_transparent(tmp_path: Path) -> None:
    img = Image.new("LA", (2, 2), (0, 255))
    img.putpixel((0, 0), (0, 0))
    tensor = _save_and_load(tmp_path, img, "la.png")
    _assert_image(tensor, 2, 2)
    assert _pixel(tensor, 0, 0) == [1.0, 1.0, 1.0]
    assert _pixel(tensor, 1, 1) == [0.0, 0.0, 0.0]


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (2, 2), 0)
    img.putpalette([0, 255, 0, 0, 0, 255] + [0] * 762)  # index 0 green, index 1 blue
    img.putpixel((1, 1), 1)
    tensor = _save_and_load(tmp_path, img, "p.png", transparency=1)
    _assert_image(tensor, 2, 2)
    assert _pixel(tensor, 0, 0) == [0.0, 1.0, 0.0]
    assert _pixel(tensor, 1, 1) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("mode, key", [("RGB", (1, 2, 3)), ("L", 7)])
def test_transparent_colour_key(tmp_path: Path, mode: str, key: object) -> None:
    img = Image.new(mode, (2, 1), key)
    img.putpixel((1, 0), 0 if mode == "L" else (0, 0, 0))
    tensor = _save_and_load(tmp_path, img, f"{mode}_key.png", transparency=key)
    assert _pixel(tensor, 0, 0) == [1.0, 1.0, 1.0]  # the key colour is transparent: white
    assert _pixel(tensor, 0, 1) == [0.0, 0.0, 0.0]


def test_palette_without_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (2, 2), 0)
    img.putpalette([0, 0, 255] + [0] * 765)
    tensor = _save_and_load(tmp_path, img, "p.gif")
    _assert_image(tensor, 2, 2)
    assert _pixel(tensor, 0, 0) == [0.0, 0.0, 1.0]


def test_cmyk(tmp_path: Path) -> None:
    img = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # red in CMYK
    tensor = _save_and_load(tmp_path, img, "cmyk.tif")
    _assert_image(tensor, 4, 4)
    assert _pixel(tensor, 2, 2) == [1.0, 0.0, 0.0]


def test_greyscale(tmp_path: Path) -> None:
    tensor = _save_and_load(tmp_path, Image.new("L", (5, 3), 51), "grey.png")
    _assert_image(tensor, 3, 5)
    assert _pixel(tensor, 1, 1) == pytest.approx([0.2, 0.2, 0.2])


def test_one_bit(tmp_path: Path) -> None:
    img = Image.new("1", (4, 2), 0)
    img.putpixel((3, 1), 1)
    tensor = _save_and_load(tmp_path, img, "bits.png")
    _assert_image(tensor, 2, 4)
    assert _pixel(tensor, 0, 0) == [0.0, 0.0, 0.0]
    assert _pixel(tensor, 1, 3) == [1.0, 1.0, 1.0]


def test_sixteen_bit_maps_full_range(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [32768, 65535]], dtype=np.uint16)
    tensor = _save_and_load(tmp_path, Image.fromarray(values), "deep.png")
    _assert_image(tensor, 2, 2)
    assert _pixel(tensor, 0, 0) == [0.0, 0.0, 0.0]
    assert _pixel(tensor, 0, 1) == [1.0, 1.0, 1.0]
    assert _pixel(tensor, 1, 0) == pytest.approx([128 / 255] * 3)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_modes_in_memory(mode: str) -> None:
    img = Image.new(mode, (2, 1), 0)
    img.putpixel((1, 0), 65535)
    assert np.asarray(to_rgb(img)).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_int32_mode_scales_by_range() -> None:
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    eight = Image.fromarray(np.array([[0, 255]], dtype=np.int32))
    assert sixteen.mode == eight.mode == "I"
    assert np.asarray(to_rgb(sixteen))[0, 1].tolist() == [255, 255, 255]
    assert np.asarray(to_rgb(eight))[0, 1].tolist() == [255, 255, 255]


def test_float_mode(tmp_path: Path) -> None:
    unit = Image.fromarray(np.array([[-0.5, 0.5, 1.0]], dtype=np.float32))  # max <= 1: clipped
    wide = Image.fromarray(np.array([[0.0, 51.0, 255.0]], dtype=np.float32))  # max > 1: / 255
    assert unit.mode == wide.mode == "F"
    assert np.asarray(to_rgb(unit))[0, :, 0].tolist() == [0, 128, 255]
    assert np.asarray(to_rgb(wide))[0, :, 0].tolist() == [0, 51, 255]
    in_range = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    tensor = _save_and_load(tmp_path, in_range, "float.tif")
    _assert_image(tensor, 1, 3)
    assert tensor[0, 0, 0].tolist() == pytest.approx([0.0, 128 / 255, 1.0])


def test_ycbcr_in_memory() -> None:
    rgb = to_rgb(Image.new("RGB", (2, 2), (200, 30, 60)).convert("YCbCr"))
    assert rgb.mode == "RGB"
    assert np.abs(np.asarray(rgb, dtype=int) - [200, 30, 60]).max() <= 3


def test_exif_orientation_rotates(tmp_path: Path) -> None:
    img = Image.new("RGB", (4, 2), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))  # white top-left corner before rotation
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    tensor = _save_and_load(tmp_path, img, "rotated.jpg", exif=exif, quality=100)
    _assert_image(tensor, 4, 2)  # 2 wide, 4 tall
    assert tensor[0, :, 0, 1].mean() > 0.5  # the white corner is now top-right


def test_pil_image_source() -> None:
    tensor = load_image(Image.new("LA", (3, 2), (0, 0)))
    _assert_image(tensor, 2, 3)
    assert tensor.min() == 1.0


# ---------------------------------------------------------------------------
# Bytes (an upload): the same checks and the same sentences as files
# ---------------------------------------------------------------------------


def _file_bytes(img: Image.Image, fmt: str) -> bytes:
    """A PIL image as the bytes of a file in ``fmt``."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "1"])
def test_bytes_of_any_mode(mode: str) -> None:
    picture = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    _assert_image(load_image_bytes(_file_bytes(picture, fmt), f"odd.{fmt.lower()}"), 30, 40)


@pytest.mark.parametrize(
    "file_bytes, words",
    [
        (b"", ["empty"]),
        (b"%PDF-1.4 not an image at all", ["not an image", ".jpg"]),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, ["not an image"]),  # a JPEG header, nothing else
    ],
    ids=["empty", "text", "broken-jpeg"],
)
def test_bad_bytes_one_sentence(file_bytes: bytes, words: list[str]) -> None:
    with pytest.raises(ImageError) as err:
        load_image_bytes(file_bytes, "my file.jpg")
    _assert_one_sentence(err, "'my file.jpg'", *words)


def test_truncated_bytes() -> None:
    whole = _file_bytes(_gradient(64, 64), "JPEG")
    with pytest.raises(ImageError) as err:
        load_image_bytes(whole[: len(whole) // 2], "cut.jpg")
    _assert_one_sentence(err, "'cut.jpg'", "damaged")


def test_bytes_above_max_pixels_or_pillows_limit(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as err:
        load_image_bytes(_file_bytes(_gradient(100, 100), "PNG"), "many.png", max_pixels=5_000)
    _assert_one_sentence(err, "'many.png'", "megapixels", "100x100")
    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000).read_bytes()  # 900 megapixels
    with pytest.raises(ImageError) as err:
        load_image_bytes(bomb, "bomb.png", max_pixels=10**10)
    _assert_one_sentence(err, "'bomb.png'", "safety limit")


def test_long_side_resizing(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    _gradient(40, 30).save(path)
    wide = load_image(path, long_side=20)
    _assert_image(wide, 15, 20)
    tall = resize(torch.rand(1, 3, 30, 10), long_side=64)
    _assert_image(tall, 64, 21)
    thin = resize(torch.rand(1, 3, 1, 500), long_side=50)
    _assert_image(thin, 1, 50)


def test_save_load_round_trip(tmp_path: Path) -> None:
    original = torch.rand(1, 3, 6, 7)
    path = save_image(original, tmp_path / "deep" / "folder" / "out.png")
    assert path == tmp_path / "deep" / "folder" / "out.png" and path.exists()
    assert (load_image(path) - original).abs().max() <= 1 / 255


def test_tensor_to_pil_accepts_grad_and_3d() -> None:
    img = torch.full((1, 3, 2, 3), 2.0, requires_grad=True)
    assert tensor_to_pil(img).size == (3, 2)
    assert np.asarray(tensor_to_pil(img)).min() == 255  # clamped to 1.0
    assert tensor_to_pil(torch.zeros(3, 5, 4)).size == (4, 5)


def test_pil_tensor_round_trip_exact() -> None:
    img = _gradient(9, 7)
    assert np.array_equal(np.asarray(tensor_to_pil(pil_to_tensor(img))), np.asarray(img))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 8, 8), (8, 8), (1, 1, 3, 8, 8)])
def test_tensor_to_pil_shape_errors(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageError) as err:
        tensor_to_pil(torch.zeros(shape))
    _assert_one_sentence(err, "(1, 3, H, W)", str(shape))


@pytest.mark.parametrize(
    "value, word",
    [
        (torch.zeros(3, 4, 4), "shape"),
        (torch.zeros(1, 3, 0, 4), "shape"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "float"),
        (torch.full((1, 3, 2, 2), float("nan")), "NaN"),
        (np.zeros((1, 3, 4, 4)), "ndarray"),
    ],
)
def test_check_image_errors(value: object, word: str) -> None:
    with pytest.raises(ImageError) as err:
        check_image(value, name="style")  # type: ignore[arg-type]
    _assert_one_sentence(err, "style", word)


def test_check_image_accepts_image() -> None:
    check_image(torch.rand(1, 3, 5, 6))


def test_noise_like_is_deterministic() -> None:
    img = torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    first, again, other = noise_like(img, seed=1), noise_like(img, seed=1), noise_like(img, seed=2)
    assert first.shape == img.shape and first.dtype == img.dtype and first.device == img.device
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert 0.0 <= first.min() and first.max() < 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_noise_like_same_on_gpu() -> None:
    img = torch.zeros(1, 3, 8, 8)
    assert torch.equal(noise_like(img.cuda(), seed=3).cpu(), noise_like(img, seed=3))


# ---------------------------------------------------------------------------
# The images shipped with the course
# ---------------------------------------------------------------------------


def test_bundled_images_exist() -> None:
    assert len(BUNDLED) >= 2


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_image_loads(path: Path) -> None:
    tensor = load_image(path, long_side=128)
    assert tensor.shape[:2] == (1, 3) and max(tensor.shape[2:]) == 128
    assert tensor.dtype == torch.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    assert tensor.std() > 0.01  # not blank


def test_shuffle_tiles_moves_whole_tiles() -> None:
    img = torch.arange(4 * 8, dtype=torch.float32).reshape(1, 1, 4, 8).expand(1, 3, 4, 8) / 32
    out = shuffle_tiles(img, tiles=2, seed=1)
    assert out.shape == img.shape
    assert not torch.equal(out, img)
    tiles_in = {
        tuple(img[0, 0, r : r + 2, c : c + 4].flatten().tolist()) for r in (0, 2) for c in (0, 4)
    }
    tiles_out = {
        tuple(out[0, 0, r : r + 2, c : c + 4].flatten().tolist()) for r in (0, 2) for c in (0, 4)
    }
    assert tiles_in == tiles_out  # the same four tiles, in another order
    assert torch.equal(shuffle_tiles(img, 2, seed=1), out)  # fixed seed, same layout


def test_shuffle_tiles_too_many_tiles() -> None:
    with pytest.raises(ImageError, match="fewer"):
        shuffle_tiles(torch.rand(1, 3, 3, 3), tiles=4)
