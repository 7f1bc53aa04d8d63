"""A2's hidden tests (instructors only: tools/make_assignments.py leaves this file out of the release).

Each exercise's ``outputs`` runs beside the student's code on inputs made from a seed; its
``verdict`` runs in the grader, outside the student's code, and raises AssertionError (one
sentence). ``hidden=False``: only what the visible check in the notebook tests. See nst.grading.
"""

from __future__ import annotations

import numpy as np
import torch

import nst
from nst.grading import Exercise, generator


def _close(got: np.ndarray, want: torch.Tensor, what: str) -> None:
    """``got`` must be a scalar close to ``want`` (rtol 1e-4)."""
    assert got.shape == (), f"{what}: returned shape {got.shape}; return a scalar"
    assert np.isfinite(got), f"{what}: returned {got}; look for a division by zero"
    assert np.isclose(got, want.item(), rtol=1e-4, atol=1e-8), (
        f"{what}: {got:.6g}, expected {want.item():.6g}"
    )


def _grad_flows(fn, *args) -> bool:
    """Whether fn's result carries a gradient back to its first argument."""
    first = args[0]
    if isinstance(first, dict):
        first = {k: v.clone().requires_grad_(True) for k, v in first.items()}
    else:
        first = first.clone().requires_grad_(True)
    result = fn(first, *args[1:])
    return isinstance(result, torch.Tensor) and result.requires_grad


def _check_gradient(out) -> None:
    """The outputs say whether the loss carried a gradient back to its input."""
    assert bool(out["grad"]), "the loss carries no gradient: remove any .detach() or .item()"


# --- Exercise 1: content_loss --------------------------------------------------------------


def _content_inputs(seed):
    g = generator(seed)
    shape = (2, int(torch.randint(8, 24, (), generator=g)), 7, 3)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


def content_outputs(fn, seed):
    gen, target = _content_inputs(seed)
    return {
        "loss": fn(gen, target),
        "same": fn(target, target),
        "scaled": fn(10 * gen, 10 * target),
        "zero": fn(torch.zeros_like(target), target),
        "grad": _grad_flows(fn, gen, target),
    }


def content_verdict(seed, out, hidden):
    gen, target = _content_inputs(seed)
    _close(out["loss"], nst.content_loss(gen, target), "a batch of two random feature maps")
    _check_gradient(out)
    if hidden:
        assert out["same"] == 0, "the loss of the photo's own features must be 0"
        _close(
            out["scaled"],
            nst.content_loss(gen, target),
            "features ten times larger (the loss must not change)",
        )
        _close(out["zero"], torch.tensor(1.0), "generated features all 0 (the relative error is 1)")


# --- Exercise 2: style_loss ----------------------------------------------------------------

SHAPES = {"relu1_1": (1, 4, 9, 9), "relu2_1": (1, 8, 5, 5), "relu3_1": (1, 16, 3, 3)}


def _style_inputs(seed):
    g = generator(seed)
    gen = {k: torch.rand(*s, generator=g) for k, s in SHAPES.items()}
    gen["relu4_2"] = torch.rand(
        1, 16, 2, 2, generator=g
    )  # an extra layer that is not a style layer
    grams = {k: nst.gram_matrix(torch.rand(*s, generator=g)) for k, s in SHAPES.items()}
    return gen, grams


def style_outputs(fn, seed):
    gen, grams = _style_inputs(seed)
    own = {k: nst.gram_matrix(gen[k]) for k in SHAPES}
    return {
        "three": fn(gen, grams),
        "one": fn(gen, {"relu2_1": grams["relu2_1"]}),
        "own": fn(gen, own),
        "grad": _grad_flows(fn, gen, grams),
    }


def style_verdict(seed, out, hidden):
    gen, grams = _style_inputs(seed)
    _close(out["three"], nst.style_loss(gen, grams), "three style layers")
    _check_gradient(out)
    if hidden:
        one = {"relu2_1": grams["relu2_1"]}
        _close(out["one"], nst.style_loss(gen, one), "one style layer")
        assert out["own"] < 1e-10, "the loss against the image's own Gram matrices must be 0"


# --- Exercise 3: tv_loss -------------------------------------------------------------------


def _tv_inputs(seed):
    g = generator(seed)
    step = 0.05 * int(torch.randint(1, 5, (), generator=g))
    images = [
        torch.rand(*shape, generator=g) for shape in [(2, 3, 4, 4), (1, 3, 1, 7), (1, 3, 7, 1)]
    ]
    return step, images


def tv_outputs(fn, seed):
    step, images = _tv_inputs(seed)
    out = {f"image_{i}": fn(img) for i, img in enumerate(images)}
    out["ramp"] = fn((torch.arange(8.0) * step).expand(2, 3, 5, 8))
    out["pixel"] = fn(torch.full((1, 3, 1, 1), 0.3))
    out["grad"] = _grad_flows(fn, images[0])
    return out


def tv_verdict(seed, out, hidden):
    step, images = _tv_inputs(seed)
    _close(out["image_0"], nst.tv_loss(images[0]), "a batch of two random 4 x 4 images")
    _check_gradient(out)
    if hidden:
        _close(
            out["ramp"],
            torch.tensor(step**2),
            f"a horizontal ramp of step {step:g} (every difference is {step:g})",
        )
        for i, img in enumerate(images[1:], start=1):
            shape = tuple(img.shape)
            assert np.isfinite(out[f"image_{i}"]), (
                f"an image {shape}: skip a direction with no neighbours"
            )
            _close(out[f"image_{i}"], nst.tv_loss(img), f"an image {shape}")
        assert out["pixel"] == 0, "a single pixel has total variation 0"


EXERCISES = {
    # nst's functions that compute the answer, or its core: calling any of them scores 0
    "content_loss": Exercise(
        content_outputs,
        content_verdict,
        ("nst.losses.content_loss", "nst.losses.relative_squared_error"),
    ),
    "style_loss": Exercise(
        style_outputs,
        style_verdict,
        ("nst.losses.style_loss", "nst.losses.gram_loss", "nst.losses.relative_squared_error"),
    ),
    "tv_loss": Exercise(tv_outputs, tv_verdict, ("nst.losses.tv_loss", "nst.losses._mean_square")),
}


def run(name, fn):
    """The instructor's preview, in the source notebook: this hidden test on a fixed seed."""
    nst.grading.preview(EXERCISES, name, fn)
