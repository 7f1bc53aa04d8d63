"""Self-checks for exercises: compare a learner's function with nst's reference on random tensors.

Each ``check_*`` returns None and prints one line when the function matches the reference; otherwise
it raises ``CheckError`` with one sentence naming the most likely mistake (a missing normalisation,
a transposed or batch-mixing Gram matrix, a wrong shape, an input changed in place, a ``.detach()``
or ``.item()`` that cuts the gradient, a Python loop where one tensor operation does, NaN).
Expected values come from ``nst`` itself, so the checks hold on CPU, CUDA and Colab alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from nst.errors import NSTError
from nst.losses import content_loss, gram_matrix, style_loss, tv_loss

RTOL, ATOL = 1e-4, 1e-6  # stated tolerances: relative and absolute, as in torch.allclose


class CheckError(NSTError, AssertionError):
    """A learner's function disagrees with the reference; the message says the likely mistake."""


def _rand(*shape: int, seed: int) -> torch.Tensor:
    """Reproducible uniform noise in [0, 1) on the CPU."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _call(fn: Callable[..., Any], name: str, *args: Any) -> Any:
    """Call the learner's function on copies of ``args``; turn usual failures into a sentence."""
    copies = [_copy(a) for a in args]
    try:
        out = fn(*copies)
    except NotImplementedError:
        raise CheckError(
            f"{name} is not written yet: replace the `raise NotImplementedError`."
        ) from None
    except Exception as err:  # the learner's bug, reported in one line
        if "in-place operation" in str(err):
            raise CheckError(f"{name} changes its input in place; compute a new tensor.") from None
        raise CheckError(f"{name} raised {type(err).__name__}: {err}") from None
    if any(not _same(before, after) for before, after in zip(args, copies)):
        raise CheckError(f"{name} changes its input in place; compute a new tensor.")
    return out


def _copy(arg: Any) -> Any:
    """A copy of a tensor or of a {name: tensor} dict, so the learner cannot change ours."""
    if isinstance(arg, dict):
        return {k: _copy(v) for k, v in arg.items()}
    return arg.clone() if isinstance(arg, torch.Tensor) else arg


def _same(before: Any, after: Any) -> bool:
    """Whether a tensor (or a dict of them) still equals its copy."""
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_same(before[k], after[k]) for k in before)
    return not isinstance(before, torch.Tensor) or torch.equal(before, after)


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


def _factor_hint(got: torch.Tensor, want: torch.Tensor, factors: dict[str, float]) -> str:
    """A hint if ``got`` is ``want`` times a constant, naming the constant if it is a known size."""
    ratio = (got / want).flatten()
    ratio = ratio[torch.isfinite(ratio)]
    if ratio.numel() == 0 or not torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-3):
        return ""
    r = ratio[0].item()
    for label, value in factors.items():
        for k, word in ((value, "too large"), (1 / value, "too small")):
            if abs(r / k - 1) < 1e-3:
                return f"it is {word} by a factor of {label} = {value:g}: check the normalisation"
    return f"it is {r:.4g} times the expected value: check the normalisation"


def _check_result(name: str, got: Any, want: torch.Tensor) -> None:
    """Raise CheckError unless ``got`` is a finite tensor of ``want``'s shape."""
    if not isinstance(got, torch.Tensor):
        raise CheckError(f"{name} returned a {type(got).__name__}; return a torch tensor.")
    if got.shape != want.shape:
        raise CheckError(f"{name} returned shape {tuple(got.shape)}, expected {tuple(want.shape)}.")
    if not torch.isfinite(got).all():
        raise CheckError(f"{name} returned NaN or infinity; look for a division by zero.")


def _compare(name: str, got: Any, want: torch.Tensor, factors: dict[str, float]) -> None:
    """Raise CheckError unless ``got`` is a tensor close to ``want``, explaining the difference."""
    _check_result(name, got, want)
    if not torch.allclose(got.float(), want, rtol=RTOL, atol=ATOL):
        hint = _factor_hint(got.float(), want, factors) or "check the formula"
        error = (got.float() - want).abs().max().item()
        raise CheckError(f"{name} differs from the reference by up to {error:.3g}; {hint}.")


def _check_gradient(name: str, fn: Callable[..., Any], *args: torch.Tensor) -> None:
    """The output must carry gradients back to the first input."""
    x = args[0].clone().requires_grad_(True)
    out = _call(fn, name, x, *args[1:])
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise CheckError(
            f"{name}'s result carries no gradient: remove any .detach(), .item(), .numpy() "
            "or torch.tensor(...) re-wrapping on the way."
        )


def _passed(name: str, detail: str) -> None:
    print(f"✓ {name} matches nst's reference ({detail}; rtol {RTOL:g}, atol {ATOL:g})")


def check_gram_matrix(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check a Gram matrix function (B,C,H,W) -> (B,C,C), divided by H*W, on random tensors."""
    name = getattr(fn, "__name__", "your function")
    b, c, h, w = 2, 6, 5, 7
    feats = _rand(b, c, h, w, seed=0)
    got = _call(fn, name, feats)
    want = gram_matrix(feats)
    if isinstance(got, torch.Tensor) and got.shape == (b, h * w, h * w):
        raise CheckError(f"{name} returned (B, H*W, H*W): multiply F Fᵀ (C x C), not Fᵀ F.")
    if isinstance(got, torch.Tensor) and got.shape in ((c, c), (b * c, b * c)):
        raise CheckError(
            f"{name} returned {tuple(got.shape)}: it mixes the images of a batch; "
            "reshape to (B, C, H*W) and keep B, returning (B, C, C)."
        )
    factors = {"C": c, "C*H*W": c * h * w, "H*W": h * w, "B": b}
    _check_result(name, got, want)
    alone = torch.cat([_call(fn, name, feats[i : i + 1]) for i in range(b)])
    if not torch.allclose(got.float(), alone.float(), rtol=1e-3, atol=ATOL):
        raise CheckError(
            f"{name} gives an image a different Gram matrix when others share its batch: "
            "reshape to (B, C, H*W), never across B."
        )
    _compare(name, got, want, factors)
    _check_gradient(name, fn, feats)
    lines_small = _count_lines(fn, _rand(1, 4, 3, 3, seed=1))
    lines_large = _count_lines(fn, _rand(1, 16, 3, 3, seed=1))
    if lines_large > lines_small + 4:
        raise CheckError(
            f"{name} runs a Python loop over the channels ({lines_small} lines for 4 channels, "
            f"{lines_large} for 16); use one batched matrix product (@ or torch.bmm)."
        )
    _passed(name, f"{b} random feature maps of shape {(b, c, h, w)}")


def check_content_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a content loss (gen_feats, content_feats) -> scalar: mean((F-P)²) / mean(P²)."""
    name = getattr(fn, "__name__", "your function")
    b, c, h, w = 1, 8, 6, 5
    gen, target = _rand(b, c, h, w, seed=2), _rand(b, c, h, w, seed=3)
    got = _call(fn, name, gen, target)
    want = content_loss(gen, target)
    raw = ((gen - target) ** 2).mean()
    if isinstance(got, torch.Tensor) and torch.allclose(got.float(), raw, rtol=RTOL):
        raise CheckError(f"{name} is the plain MSE: divide it by mean(content_feats ** 2).")
    _compare(name, got, want, {"C*H*W": c * h * w, "2": 2.0})
    _check_gradient(name, fn, gen, target)
    _passed(name, f"feature maps of shape {(b, c, h, w)}")


def check_style_loss(fn: Callable[..., torch.Tensor]) -> None:
    """Check a style loss (gen_feats dict, style_grams dict) -> scalar, layers weighted 1/L."""
    name = getattr(fn, "__name__", "your function")
    shapes = {"relu1_1": (1, 4, 8, 8), "relu2_1": (1, 8, 4, 4)}
    gen = {k: _rand(*s, seed=i) for i, (k, s) in enumerate(shapes.items())}
    grams = {k: gram_matrix(_rand(*s, seed=10 + i)) for i, (k, s) in enumerate(shapes.items())}
    got = _call(fn, name, gen, grams)
    want = style_loss(gen, grams)
    _compare(name, got, want, {"L (the number of layers)": len(shapes)})

    def first_layer_only(x: torch.Tensor) -> torch.Tensor:
        return fn({"relu1_1": x, "relu2_1": gen["relu2_1"]}, grams)

    first_layer_only.__name__ = name
    _check_gradient(name, first_layer_only, gen["relu1_1"])
    _passed(name, "two layers of random features against random Gram targets")


def check_tv_loss(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check a total-variation loss (B,3,H,W) -> scalar: mean squared neighbour difference."""
    name = getattr(fn, "__name__", "your function")
    img = _rand(1, 3, 6, 9, seed=4)
    constant = _call(fn, name, torch.full((1, 3, 6, 9), 0.5))
    if isinstance(constant, torch.Tensor) and constant.abs().max() > ATOL:
        raise CheckError(f"{name} is not 0 on a constant image; compare neighbouring pixels.")
    got = _call(fn, name, img)
    _compare(name, got, tv_loss(img), {"2": 2.0, "3 (the channels)": 3.0})
    _check_gradient(name, fn, img)
    _passed(name, "a random 6 x 9 image and a constant one")
