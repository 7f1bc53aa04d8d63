"""A feed-forward network that paints a photo in one pass (Johnson et al., 2016).

``TransformerNet`` is trained once per painting with the perceptual losses of ``nst.losses``
(``nst.perceptual`` trains it); afterwards it paints any photo in one forward pass instead of an
optimisation. Its shape follows Johnson et al. at half their width (16-32-64 channels): two
stride-2 convolutions down, five residual blocks, two upsample-then-convolve steps up, reflection
padding everywhere and instance normalisation (Ulyanov et al.), which ``norm="batch"`` replaces
for lesson 09's comparison.

``load(name)`` reads a committed network from ``data/fast/<name>.pt`` (weights only) and the JSON
beside it; ``stylize(content_img, name)`` paints a (1,3,H,W) photo of any size ≥ 32 px.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nst.data import DATA_DIR
from nst.errors import ImageError, NSTError
from nst.images import check_image

FAST_DIR = DATA_DIR / "fast"
NORMS = ("instance", "batch")
MIN_SIDE = 32  # the smallest side tested: the residual blocks then see 8 x 8 positions


def _norm(channels: int, norm: str) -> nn.Module:
    """Instance normalisation (per image, per channel) or batch normalisation, with a scale."""
    if norm not in NORMS:
        raise NSTError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}.")
    return (
        nn.InstanceNorm2d(channels, affine=True) if norm == "instance" else nn.BatchNorm2d(channels)
    )


class ConvLayer(nn.Sequential):
    """Reflection padding, then a convolution: the border is mirrored, not filled with zeros."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride))


class ResidualBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x): the block learns a change to its input, not a copy of it."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            _norm(channels, norm),
            nn.ReLU(),
            ConvLayer(channels, channels, 3),
            _norm(channels, norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,C,H,W)."""
        return x + self.body(x)


class UpsampleConv(nn.Sequential):
    """Nearest-neighbour 2x upsampling, then a convolution: no checkerboard, unlike a strided
    transposed convolution, whose kernels overlap unevenly."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(c_in, c_out, kernel)
        )


def _down(c_in: int, c_out: int, kernel: int, stride: int, norm: str) -> list[nn.Module]:
    """A convolution (stride 2 halves the size), its normalisation and a ReLU."""
    return [ConvLayer(c_in, c_out, kernel, stride), _norm(c_out, norm), nn.ReLU()]


def _up(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    """2x upsampling and a convolution, its normalisation and a ReLU."""
    return [UpsampleConv(c_in, c_out), _norm(c_out, norm), nn.ReLU()]


class TransformerNet(nn.Module):
    """(B,3,H,W) photos in [0,1] -> (B,3,H,W) results in [0,1]; ``stylize`` asks sides ≥ 32 px."""

    def __init__(
        self,
        widths: tuple[int, int, int] = (16, 32, 64),
        n_residual: int = 5,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        # saved beside the weights (``save``), so that ``load`` rebuilds this very shape
        self.config = {"widths": list(widths), "n_residual": n_residual, "norm": norm}
        self.net = nn.Sequential(
            *_down(3, w1, kernel=9, stride=1, norm=norm),  # (B,w1,H,W)
            *_down(w1, w2, kernel=3, stride=2, norm=norm),  # (B,w2,H/2,W/2)
            *_down(w2, w3, kernel=3, stride=2, norm=norm),  # (B,w3,H/4,W/4)
            *[ResidualBlock(w3, norm) for _ in range(n_residual)],  # (B,w3,H/4,W/4)
            *_up(w3, w2, norm),  # (B,w2,H/2,W/2)
            *_up(w2, w1, norm),  # (B,w1,H,W)
            ConvLayer(w1, 3, 9),  # (B,3,H,W), any real number
            nn.Sigmoid(),  # (B,3,H,W) in (0,1)
        )

    def forward(self, photo: torch.Tensor) -> torch.Tensor:
        """Pad H and W up to multiples of 4 (mirrored), paint, cut back to H×W."""
        h, w = photo.shape[-2:]
        pad_h, pad_w = -h % 4, -w % 4  # the two halvings need sides divisible by 4
        x = F.pad(photo, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else photo
        return self.net(x)[..., :h, :w]  # (B,3,H,W)


def available() -> list[str]:
    """The paintings with a committed network: ``data/fast/<name>.pt`` beside its JSON."""
    return sorted(p.stem for p in FAST_DIR.glob("*.pt") if p.with_suffix(".json").is_file())


def info(name: str) -> dict:
    """The JSON written beside a committed network: architecture, settings, time, machine."""
    if name not in available():
        choices = ", ".join(available()) or "none (train one with make train STYLE=<painting>)"
        raise NSTError(f"No trained network for {name!r}; choose one of {choices}.")
    return json.loads((FAST_DIR / f"{name}.json").read_text())


def training_log(name: str) -> list[dict[str, float]]:
    """The loss of every training step of a committed network: step, seconds, total, content, ..."""
    info(name)  # one sentence for an unknown name
    with (FAST_DIR / f"{name}.log.csv").open() as f:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]


def load(name: str, device: str | torch.device = "cpu") -> TransformerNet:
    """The committed network for painting ``name``, in eval mode, its weights frozen."""
    config = info(name)["architecture"]
    net = TransformerNet(tuple(config["widths"]), config["n_residual"], config["norm"])
    state = torch.load(FAST_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.requires_grad_(False).eval().to(device)


def stylize(content_img: torch.Tensor, style: str | TransformerNet) -> torch.Tensor:
    """Paint a (1,3,H,W) photo in one forward pass -> (1,3,H,W); ``style``: a name or a net.

    A network is used in the mode it is in: ``load`` returns it in eval mode; call ``.eval()`` on
    one you trained with batch normalisation, or it normalises by this photo's own statistics.
    """
    check_image(content_img, "content_img")
    if min(content_img.shape[-2:]) < MIN_SIDE:
        raise ImageError(
            f"content_img is {tuple(content_img.shape[-2:])} px; the fast network needs both "
            f"sides at least {MIN_SIDE} px: resize it with nst.images.resize."
        )
    net = load(style) if isinstance(style, str) else style
    param = next(net.parameters())
    with torch.inference_mode():
        return net(content_img.to(param.device, param.dtype)).float()  # (1,3,H,W)


def save(net: TransformerNet, name: str, record: dict, folder: Path = FAST_DIR) -> Path:
    """Write ``<folder>/<name>.pt`` (weights only) and ``<name>.json`` (``record`` + sha256)."""
    from nst.vgg import sha256_of  # here: only training writes networks

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    torch.save(net.state_dict(), path)
    record = {"architecture": net.config, **record, "sha256": sha256_of(path)}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return path
