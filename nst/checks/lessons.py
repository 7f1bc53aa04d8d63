"""The lessons' checks: Gram matrix, content, style and TV loss; masked Gram, mean-std loss."""

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
from nst.losses import content_loss, gram_matrix, relative_squared_error, style_loss, tv_loss
from nst.masks import masked_gram
from nst.style_stats import mean_std, mean_std_loss

Mistakes = list[tuple[str, torch.Tensor]]  # (the sentence after the name, the wrong value)


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


def _reject_known_mistakes(name: str, got: Any, mistakes: Mistakes) -> None:
    """Raise CheckError with the sentence of the first known wrong value that ``got`` equals."""
    if not isinstance(got, torch.Tensor):
        return
    for sentence, wrong in mistakes:
        if got.shape == wrong.shape and torch.allclose(got.float(), wrong, rtol=RTOL, atol=ATOL):
            raise CheckError(f"{name} {sentence}")


def check_masked_gram(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a masked Gram (B,C,h,w) features, (1,1,h,w) mask -> (B,C,C): (F·m)(F·m)ᵀ / Σm."""
    name = function_name(fn)
    b, c, h, w = 2, 6, 5, 7
    feats = random_tensor(b, c, h, w, seed=5)
    feathered = 0.05 + 0.9 * random_tensor(1, 1, h, w, seed=6)  # (1,1,h,w) in (0, 1)
    binary = (random_tensor(1, 1, h, w, seed=7) > 0.5).float()  # (1,1,h,w) of 0s and 1s
    for mask in (feathered, binary):
        got = call_on_copies(fn, name, feats, mask)
        _reject_wrong_gram_shape(name, got, feats.shape)
        _reject_known_mistakes(name, got, _masked_gram_mistakes(feats, mask))
        total = mask.sum().item()  # Σm
        factors = {"Σm (the mask's sum)": total, "H*W / Σm": h * w / total, "C": c}
        require_close(name, got, masked_gram(feats, mask), factors)
    require_gradient(name, fn, feats, feathered)
    passed(name, f"features of shape {(b, c, h, w)} with a feathered and a binary mask")


def _masked_gram_mistakes(feats: torch.Tensor, mask: torch.Tensor) -> Mistakes:
    """The usual wrong masked Gram matrices of (B,C,h,w) features, each with its sentence."""
    b, c, h, w = feats.shape
    flat, masked = feats.reshape(b, c, h * w), (feats * mask).reshape(b, c, h * w)  # (B,C,M)
    by_hw = "divides by h*w: divide by mask.sum(), the region's size in positions."
    one_side = "masks only one side: multiply the features by the mask first, then (F·m)(F·m)ᵀ."
    no_mask = "ignores the mask: multiply the features by it before the product."
    mistakes = [(by_hw, masked @ masked.transpose(1, 2) / (h * w)), (no_mask, gram_matrix(feats))]
    if ((mask > 0) & (mask < 1)).any():  # on a 0/1 mask m² = m: one side is then the same
        mistakes.append((one_side, masked @ flat.transpose(1, 2) / mask.sum()))
    return mistakes


def check_mean_std_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a mean-std loss (B,C,H,W) features, (B,2,C) target -> mean((S-T)²) / mean(T²)."""
    name = function_name(fn)
    b, c, h, w = 2, 8, 6, 5
    gen = random_tensor(b, c, h, w, seed=8)
    target = mean_std(0.3 + 2 * random_tensor(b, c, h, w, seed=9))  # (B,2,C)
    got = call_on_copies(fn, name, gen, target)
    _reject_known_mistakes(name, got, _mean_std_mistakes(gen, target))
    require_close(name, got, mean_std_loss(gen, target), {"2*B*C (the statistics)": 2 * b * c})
    require_gradient(name, fn, gen, target)
    passed(name, f"feature maps of shape {(b, c, h, w)} against a random (B,2,C) target")


def _mean_std_mistakes(gen: torch.Tensor, target: torch.Tensor) -> Mistakes:
    """The usual wrong mean-std losses of (B,C,H,W) features, each with its sentence."""
    flat = gen.flatten(2)  # (B,C,M)
    mean = flat.mean(dim=2)  # (B,C)
    unbiased = torch.stack([mean, flat.std(dim=2, correction=1)], dim=1)  # (B,2,C): / (M-1)
    variance = torch.stack([mean, flat.var(dim=2, correction=0)], dim=1)  # (B,2,C): no sqrt
    std = "uses the unbiased std: use the population std, torch.std(..., correction=0)."
    plain = "is the plain MSE: divide it by mean(style_mean_std ** 2)."
    var = "takes the variance: use its square root, the std."
    return [
        (std, relative_squared_error(unbiased, target)),
        (std, ((unbiased - target) ** 2).mean()),  # both mistakes: the std first
        (plain, ((mean_std(gen) - target) ** 2).mean()),
        (var, relative_squared_error(variance, target)),
    ]
