"""A1's hidden tests (instructors only: tools/make_assignments.py leaves this file out of the release).

Each exercise's ``outputs`` runs beside the student's code on inputs made from a seed; its
``verdict`` runs in the grader, outside the student's code, and raises AssertionError (one
sentence). ``hidden=False``: only what the visible check in the notebook tests. See nst.grading.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import nst
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


# --- Exercise 2: extract_named_features ----------------------------------------------------

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


@functools.lru_cache(maxsize=1)
def _model() -> nst.vgg.VGG19Features:
    return nst.load_vgg19(device="cpu")


def _features_inputs(seed: int) -> tuple[torch.Tensor, list[str]]:
    """A real photo at a size from the seed, and the six layers in an order from the seed."""
    g = generator(seed)
    long_side = int(torch.randint(40, 57, (), generator=g))
    layers = [LAYERS[i] for i in torch.randperm(len(LAYERS), generator=g)]
    return nst.load_image(nst.data.content_path("chelsea"), long_side=long_side), layers


class _MustNotRun(torch.nn.Module):
    def forward(self, x):
        raise AssertionError(
            "extract_named_features ran a layer deeper than the deepest one asked for"
        )


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal up to float rounding: a convolution's sums run in another order with another
    number of threads (the submission's sandbox has its own), which moves activations of
    thousands by up to ~1e-3, so the tolerance scales with the layer's largest value."""
    return np.allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


def features_outputs(fn, seed):
    img, layers = _features_inputs(seed)
    model = _model()
    got = fn(model, img, layers)
    out = {f"layer_{name}": got[name] for name in layers if name in got}
    out["names"] = np.array(sorted(got), dtype=str)
    short = nst.vgg.VGG19Features(
        model.preprocess, torch.nn.Sequential(*model.features[:2], _MustNotRun())
    )
    try:
        out["short"] = fn(short, img, ["relu1_1"])["relu1_1"]
    except AssertionError as err:
        out["short_error"] = str(err)
    return out


def features_verdict(seed, out, hidden):
    img, layers = _features_inputs(seed)
    with torch.no_grad():
        want = nst.extract_features(_model(), img, layers)
    names = sorted(str(n) for n in out["names"])
    assert names == sorted(layers), f"returned the layers {names}, expected {sorted(layers)}"
    for name in layers if hidden else layers[:3]:
        got = out[f"layer_{name}"]
        assert got.shape == tuple(want[name].shape), (
            f"{name}: shape {got.shape}, expected {tuple(want[name].shape)}"
        )
        assert _close(got, want[name].numpy()), f"the features at {name} differ"
    if hidden:
        assert "short_error" not in out, str(out.get("short_error", ""))
        assert _close(out["short"], want["relu1_1"].numpy()), "relu1_1 of a two-layer model differs"


# --- Exercise 3: gram_matrix ---------------------------------------------------------------


def _gram_inputs(seed: int) -> list[torch.Tensor]:
    """Random feature maps: a batch, a 1 x 1 map, a single channel; then one to shuffle."""
    g = generator(seed)
    shapes = [(3, 5, 4, 6), (1, 7, 1, 1), (2, 1, 3, 2), (1, 4, 5, 5)]
    feats = [torch.randn(*shape, generator=g) for shape in shapes]
    order = torch.randperm(25, generator=g)
    feats.append(feats[-1].reshape(1, 4, 25)[:, :, order].reshape(1, 4, 5, 5))  # positions shuffled
    return feats


def gram_outputs(fn, seed):
    return {f"gram_{i}": fn(f) for i, f in enumerate(_gram_inputs(seed))}


def gram_verdict(seed, out, hidden):
    feats = _gram_inputs(seed)
    for i, f in enumerate(feats[: 4 if hidden else 1]):
        got, want = out[f"gram_{i}"], nst.gram_matrix(f).numpy()
        shape = tuple(f.shape)
        assert got.shape == want.shape, (
            f"shape {got.shape} for input {shape}, expected {want.shape}"
        )
        assert np.allclose(got, want, rtol=1e-4, atol=1e-6), (
            f"values differ from the Gram matrix for input {shape}"
        )
    if hidden:
        assert np.allclose(out["gram_3"], out["gram_4"], rtol=1e-4, atol=1e-6), (
            "shuffling the positions changed the Gram matrix: it must forget *where*"
        )


EXERCISES = {
    "load_and_preprocess": Exercise(
        load_outputs, load_verdict, ("nst.images.load_image", "nst.images.resize")
    ),
    "extract_named_features": Exercise(
        features_outputs,
        features_verdict,
        ("nst.vgg.extract_features", "nst.vgg.VGG19Features.forward"),
    ),
    "gram_matrix": Exercise(gram_outputs, gram_verdict, ("nst.losses.gram_matrix",)),
}


def run(name, fn):
    """The instructor's preview, in the source notebook: this hidden test on a fixed seed."""
    nst.grading.preview(EXERCISES, name, fn)
