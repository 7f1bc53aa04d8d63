"""The lessons' checks: a learner's Gram matrix, content, style and total-variation loss."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from nst.checks._core import (
    ATOL,
    RTOL,
    CheckError,
    call_on_copies,
    function_name,
    passed,
    random_tensor,
    require_close,
    require_gradient,
    require_result,
)
from nst.losses import content_loss, gram_matrix, style_loss, tv_loss


def check_gram_matrix(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check a Gram matrix function (B,C,H,W) -> (B,C,C), divided by H*W, on random tensors."""
    name = function_name(fn)
    b, c, h, w = 2, 6, 5, 7
    feats = random_tensor(b, c, h, w, seed=0)
    got = call_on_copies(fn, name, feats)
    want = gram_matrix(feats)
    _reject_wrong_gram_shape(name, got, feats.shape)
    require_result(name, got, want)
    _require_images_kept_apart(fn, name, feats, got)
    require_close(name, got, want, {"C": c, "C*H*W": c * h * w, "H*W": h * w, "B": b})
    require_gradient(name, fn, feats)
    _require_no_channel_loop(fn, name)
    passed(name, f"{b} random feature maps of shape {(b, c, h, w)}")


def _reject_wrong_gram_shape(name: str, got: Any, feats_shape: torch.Size) -> None:
    """Raise CheckError if ``got`` has the shape of Fᵀ F or of a Gram matrix across the batch."""
    if not isinstance(got, torch.Tensor):
        return
    b, c, h, w = feats_shape
    if got.shape == (b, h * w, h * w):
        raise CheckError(f"{name} returned (B, H*W, H*W): multiply F Fᵀ (C x C), not Fᵀ F.")
    if got.shape in ((c, c), (b * c, b * c)):
        raise CheckError(
            f"{name} returned {tuple(got.shape)}: it mixes the images of a batch; "
            "reshape to (B, C, H*W) and keep B, returning (B, C, C)."
        )


def _require_images_kept_apart(
    fn: Callable[[torch.Tensor], torch.Tensor], name: str, feats: torch.Tensor, got: torch.Tensor
) -> None:
    """Raise CheckError unless each image's Gram matrix is the same alone as in the batch."""
    alone = torch.cat([call_on_copies(fn, name, feats[i : i + 1]) for i in range(len(feats))])
    if not torch.allclose(got.float(), alone.float(), rtol=1e-3, atol=ATOL):
        raise CheckError(
            f"{name} gives an image a different Gram matrix when others share its batch: "
            "reshape to (B, C, H*W), never across B."
        )


def _require_no_channel_loop(fn: Callable[[torch.Tensor], torch.Tensor], name: str) -> None:
    """Raise CheckError if ``fn`` runs more Python lines for more channels (a loop over them)."""
    lines_small = _count_lines(fn, random_tensor(1, 4, 3, 3, seed=1))
    lines_large = _count_lines(fn, random_tensor(1, 16, 3, 3, seed=1))
    if lines_large > lines_small + 4:
        raise CheckError(
            f"{name} runs a Python loop over the channels ({lines_small} lines for 4 channels, "
            f"{lines_large} for 16); use one batched matrix product (@ or torch.bmm)."
        )


def _count_lines(fn: Callable[..., Any], *args: Any) -> int:
    """How many Python lines of ``fn``'s own code run for these arguments (loops run many)."""
    code, count = getattr(fn, "__code__", None), 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code is code and event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


def check_content_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a content loss (gen_feats, content_feats) -> scalar: mean((F-P)²) / mean(P²)."""
    name = function_name(fn)
    b, c, h, w = 1, 8, 6, 5
    gen, target = random_tensor(b, c, h, w, seed=2), random_tensor(b, c, h, w, seed=3)
    got = call_on_copies(fn, name, gen, target)
    plain_mse = ((gen - target) ** 2).mean()
    if isinstance(got, torch.Tensor) and torch.allclose(got.float(), plain_mse, rtol=RTOL):
        raise CheckError(f"{name} is the plain MSE: divide it by mean(content_feats ** 2).")
    require_close(name, got, content_loss(gen, target), {"C*H*W": c * h * w, "2": 2.0})
    require_gradient(name, fn, gen, target)
    passed(name, f"feature maps of shape {(b, c, h, w)}")


def check_style_loss(fn: Callable[..., torch.Tensor]) -> None:
    """Check a style loss (gen_feats dict, style_grams dict) -> scalar, layers weighted 1/L."""
    name = function_name(fn)
    shapes = {"relu1_1": (1, 4, 8, 8), "relu2_1": (1, 8, 4, 4)}
    gen = {k: random_tensor(*s, seed=i) for i, (k, s) in enumerate(shapes.items())}
    grams = {
        k: gram_matrix(random_tensor(*s, seed=10 + i)) for i, (k, s) in enumerate(shapes.items())
    }
    got = call_on_copies(fn, name, gen, grams)
    require_close(name, got, style_loss(gen, grams), {"L (the number of layers)": len(shapes)})

    def first_layer_only(x: torch.Tensor) -> torch.Tensor:
        return fn({"relu1_1": x, "relu2_1": gen["relu2_1"]}, grams)

    require_gradient(name, first_layer_only, gen["relu1_1"])
    passed(name, "two layers of random features against random Gram targets")


def check_tv_loss(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check a total-variation loss (B,3,H,W) -> scalar: mean squared neighbour difference."""
    name = function_name(fn)
    img = random_tensor(1, 3, 6, 9, seed=4)
    constant = call_on_copies(fn, name, torch.full((1, 3, 6, 9), 0.5))
    if isinstance(constant, torch.Tensor) and constant.abs().max() > ATOL:
        raise CheckError(f"{name} is not 0 on a constant image; compare neighbouring pixels.")
    got = call_on_copies(fn, name, img)
    require_close(name, got, tv_loss(img), {"2": 2.0, "3 (the channels)": 3.0})
    require_gradient(name, fn, img)
    passed(name, "a random 6 x 9 image and a constant one")
