"""A1's hidden tests (instructors only: tools/make_assignments.py leaves this file out of the release).

Each exercise's ``outputs`` runs beside the student's code on inputs made from a seed; its
``verdict`` runs in the grader, outside the student's code, and raises AssertionError (one
sentence). ``hidden=False``: only what the visible check in the notebook tests. See nst.grading.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import nst
import nst.checks.assignment_checks as checks
from nst.grading import Exercise, generator

LOAD_TOLERANCE = 0.03  # mean absolute difference: resampling filters differ between libraries


# --- Exercise 1: load_and_preprocess -------------------------------------------------------


def _load_inputs(seed: int) -> tuple[int, int, int]:
    """The photo's long side, and the tall grey image's width and enlarged long side."""
    g = generator(seed)
    long_side, width = (int(v) for v in torch.randint(24, 64, (2,), generator=g))
    return (
        long_side,
        max(4, width // 4),
        3 * max(4, width // 4) + int(torch.randint(5, 20, (), generator=g)),
    )


def _grey_ramp(width: int) -> Image.Image:
    """A grey image three times taller than wide: a ramp from black to white."""
    return Image.fromarray(
        np.linspace(0, 255, 3 * width * width).reshape(3 * width, width).astype(np.uint8)
    )


def load_outputs(fn, seed):
    long_side, width, tall_side = _load_inputs(seed)
    out = {"photo": fn(nst.data.content_path("chelsea"), long_side)}  # a pathlib.Path
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tall.png"
        _grey_ramp(width).save(path)
        out["tall"] = fn(str(path), tall_side)  # a str path, enlarged
    out["dtype"] = (
        str(out["photo"].dtype)
        if isinstance(out["photo"], torch.Tensor)
        else type(out["photo"]).__name__
    )
    return out


def load_verdict(seed, out, hidden):
    long_side, width, tall_side = _load_inputs(seed)
    want = nst.load_image(nst.data.content_path("chelsea"), long_side=long_side).numpy()
    photo = out["photo"]
    assert photo.shape == want.shape, (
        f"a photo at long side {long_side}: shape {photo.shape}, expected {want.shape}"
    )
    assert str(out["dtype"]) == "torch.float32", (
        f"return float32 values in [0, 1], not {out['dtype']}"
    )
    assert 0 <= photo.min() and photo.max() <= 1, "values must lie in [0, 1]"
    error = float(np.abs(photo - want).mean())
    assert error < LOAD_TOLERANCE, (
        f"the photo's pixels differ from nst.load_image by {error:.3f} on average"
    )
    if hidden:
        tall, expected = out["tall"], (1, 3, tall_side, round(width * tall_side / (3 * width)))
        assert tall.shape == expected, f"a tall grey image: shape {tall.shape}, expected {expected}"
        assert np.allclose(tall[0, 0], tall[0, 2]), "a grey image must have three equal channels"


# --- Exercise 2: receptive_field ----------------------------------------------------------


def _random_layer(g: torch.Generator) -> list[nn.Module]:
    """A convolution (and its ReLU) or a pooling, with sizes and strides drawn from ``g``."""
    kind = int(torch.randint(0, 4, (), generator=g))
    if kind == 0:  # a max-pool without a stride: PyTorch's default stride is the kernel's size
        return [nn.MaxPool2d(int(torch.randint(2, 4, (), generator=g)))]
    if kind == 1:
        return [nn.AvgPool2d(2, stride=2)]
    kernel = [1, 3, 5, 7][int(torch.randint(0, 4, (), generator=g))]
    stride = int(torch.randint(1, 3, (), generator=g))
    return [nn.Conv2d(2, 2, kernel, stride=stride, padding=kernel // 2), nn.ReLU()]


def _field_cases(seed: int) -> dict[str, list[nn.Module]]:
    """The visible check's four stacks, then three random ones and a VGG19 prefix from ``seed``."""
    vgg = nst.vgg.vgg19_features()
    cases = {f"VGG19 up to {n}": list(vgg[: nst.vgg.LAYER_INDEX[n] + 1]) for n in VISIBLE_LAYERS}
    cases["resnet_stem()"] = list(checks.resnet_stem())
    g = generator(seed)
    for _ in range(3):
        count = int(torch.randint(3, 7, (), generator=g))
        layers = [m for _ in range(count) for m in _random_layer(g)]
        cases[f"the stack {_describe(layers)}"] = layers
    deep = nst.STYLE_LAYERS[int(torch.randint(0, 5, (), generator=g))]
    cases[f"VGG19 up to {deep}"] = list(vgg[: nst.vgg.LAYER_INDEX[deep] + 1])
    return cases


VISIBLE_LAYERS = ("relu1_1", "pool1", "relu4_2")


def _describe(layers: list[nn.Module]) -> str:
    """A stack in a few words: "conv 5 / 2, maxpool 3 / 3" (kernel / stride; ReLUs left out)."""
    words = []
    for m in layers:
        if not isinstance(m, nn.ReLU):
            k, s = (v[0] if isinstance(v, tuple) else v for v in (m.kernel_size, m.stride))
            words.append(f"{type(m).__name__.replace('2d', '').lower()} {k} / {s}")
    return ", ".join(words)


def _pair(value) -> np.ndarray:
    """A returned (field, stride) as floats; NaN when it is not a sequence of numbers."""
    try:
        return np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return np.full(1, np.nan)


def field_outputs(fn, seed):
    return {
        f"case_{i}": _pair(fn(nn.Sequential(*layers)))
        for i, layers in enumerate(_field_cases(seed).values())
    }


def field_verdict(seed, out, hidden):
    cases = list(_field_cases(seed).items())
    for i, (case, layers) in enumerate(cases if hidden else cases[:4]):
        checks.judge_receptive_field(out[f"case_{i}"], layers, case)


# --- Exercise 3: channel_covariance --------------------------------------------------------

SHAPES = [(2, 5, 4, 6), (3, 4, 5, 5), (1, 3, 1, 1), (1, 1, 3, 2), (1, 6, 7, 3)]


def _covariance_inputs(seed: int) -> list[torch.Tensor]:
    """The visible check's features from ``seed``, then four more shapes (a 1 x 1 map too)."""
    return [checks.covariance_inputs(seed + i, shape) for i, shape in enumerate(SHAPES)]


def covariance_outputs(fn, seed):
    feats = _covariance_inputs(seed)
    out = {f"cov_{i}": fn(f.clone()) for i, f in enumerate(feats)}
    order = torch.randperm(21, generator=generator(seed))
    shuffled = feats[-1].reshape(1, 6, 21)[:, :, order].reshape(1, 6, 7, 3)  # positions shuffled
    out["shuffled"] = fn(shuffled)
    x = feats[0].clone().requires_grad_(True)
    result = fn(x)
    out["grad"] = isinstance(result, torch.Tensor) and result.requires_grad
    return out


def covariance_verdict(seed, out, hidden):
    feats = _covariance_inputs(seed)
    for i, f in enumerate(feats if hidden else feats[:1]):
        checks.judge_covariance(out[f"cov_{i}"], f, f"features {tuple(f.shape)}")
    assert bool(out["grad"]), (
        "channel_covariance's result carries no gradient: remove any .detach(), .item() or .numpy()"
    )
    if hidden:
        assert np.allclose(out["shuffled"], out[f"cov_{len(feats) - 1}"], rtol=1e-4, atol=1e-5), (
            "shuffling the positions changed the covariance: it must forget *where*"
        )


EXERCISES = {
    "load_and_preprocess": Exercise(
        load_outputs, load_verdict, ("nst.images.load_image", "nst.images.resize")
    ),
    "receptive_field": Exercise(
        field_outputs,
        field_verdict,
        (
            "nst.vgg.receptive_field",
            "nst.checks.assignment_checks.receptive_field_of",
            "nst.checks.assignment_checks._field_variants",
        ),
    ),
    "channel_covariance": Exercise(
        covariance_outputs,
        covariance_verdict,
        (
            "nst.losses.gram_matrix",
            "nst.checks.assignment_checks.covariance_of",
            "nst.checks.assignment_checks._centred",
        ),
    ),
}


def run(name, fn):
    """The instructor's preview, in the source notebook: this hidden test on a fixed seed."""
    nst.grading.preview(EXERCISES, name, fn)
