"""Self-checks for exercises: compare a learner's function with nst's reference on random tensors.

Each ``check_*`` returns None and prints one line when the function matches the reference; otherwise
it raises ``CheckError`` with one sentence naming the most likely mistake (a missing normalisation,
a transposed or batch-mixing Gram matrix, a wrong shape, an input changed in place, a ``.detach()``
or ``.item()`` that cuts the gradient, a Python loop where one tensor operation does, NaN).
Expected values come from ``nst`` itself, so the checks hold on CPU, CUDA and Colab alike.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nst.errors import NSTError
from nst.images import load_image
from nst.losses import content_loss, gram_matrix, style_loss, tv_loss
from nst.vgg import LAYER_INDEX, VGG19Features, extract_features

RTOL, ATOL = 1e-4, 1e-6  # stated tolerances: relative and absolute, as in torch.allclose


class CheckError(NSTError, AssertionError):
    """A learner's function disagrees with the reference; the message says the likely mistake."""


def _rand(*shape: int, seed: int) -> torch.Tensor:
    """Reproducible uniform noise in [0, 1) on the CPU."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _call(fn: Callable[..., Any], name: str, *args: Any) -> Any:
    """Call the learner's function on copies of ``args``; turn usual failures into a sentence."""
    copies = [_copy(a) for a in args]
    out = _invoke(fn, name, *copies)
    if any(not _same(before, after) for before, after in zip(args, copies)):
        raise CheckError(f"{name} changes its input in place; compute a new tensor.")
    return out


def _invoke(fn: Callable[..., Any], name: str, *args: Any) -> Any:
    """Call the learner's function on ``args`` themselves; turn usual failures into a sentence."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckError(
            f"{name} is not written yet: replace the `raise NotImplementedError`."
        ) from None
    except Exception as err:  # the learner's bug, reported in one line
        if "in-place operation" in str(err):
            raise CheckError(f"{name} changes its input in place; compute a new tensor.") from None
        raise CheckError(f"{name} raised {type(err).__name__}: {err}") from None


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


# --- assignments: loading, feature extraction, the L-BFGS closure -------------------------------

LOAD_TOLERANCE = (
    0.03  # mean absolute difference allowed: resampling filters differ between libraries
)


def _test_image(folder: Path, mode: str) -> Path:
    """A smooth 40 x 20 (W x H) image saved in ``mode``: red grows rightwards, green downwards."""
    x = np.linspace(0, 255, 40)[None, :].repeat(20, axis=0)  # (20, 40)
    y = np.linspace(0, 255, 20)[:, None].repeat(40, axis=1)  # (20, 40)
    rgb = np.stack([x, y, np.full_like(x, 50.0)], axis=-1).round().astype(np.uint8)  # (20, 40, 3)
    img = Image.fromarray(rgb)
    if mode == "RGBA":
        img.putalpha(255)  # an alpha channel, fully opaque
    elif mode == "P":
        img = img.quantize(colors=256)  # a palette image
    else:
        img = img.convert(mode)
    path = folder / f"check_{mode}.png"
    img.save(path)
    return path


def check_load(fn: Callable[[str, int], torch.Tensor]) -> None:
    """Check a loader (path, long_side) -> (1,3,H,W) float RGB in [0, 1] on RGBA, P and L files."""
    name = getattr(fn, "__name__", "your function")
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("RGBA", "P", "L"):
            path = _test_image(Path(folder), mode)
            for long_side in (20, 60):
                want = load_image(path, long_side=long_side)  # (1, 3, H, W)
                got = _invoke(fn, name, str(path), long_side)
                _check_loaded(name, got, want, f"a 40 x 20 {mode} image with long_side={long_side}")
    print(
        f"✓ {name} matches nst.load_image (RGBA, P and L images, long sides 20 and 60; "
        f"mean absolute difference < {LOAD_TOLERANCE})"
    )


def _check_loaded(name: str, got: Any, want: torch.Tensor, case: str) -> None:
    """Raise CheckError unless ``got`` is ``want`` up to resampling, naming the likely mistake."""
    if not isinstance(got, torch.Tensor):
        raise CheckError(f"{name} returned a {type(got).__name__} for {case}; return a tensor.")
    _, _, h, w = want.shape
    shape = tuple(got.shape)
    if shape in ((1, h, w, 3), (h, w, 3)):
        raise CheckError(
            f"{name} returned shape {shape} for {case}: channels come first in PyTorch; "
            "use .permute(2, 0, 1) and add the batch dimension with .unsqueeze(0)."
        )
    if shape == (3, h, w):
        raise CheckError(
            f"{name} returned shape {shape} for {case}: add the batch dimension with .unsqueeze(0)."
        )
    if len(shape) == 4 and shape[1] != 3 or len(shape) in (2, 3) and 3 not in shape[-3:]:
        raise CheckError(
            f"{name} returned shape {shape} for {case}: convert every image to RGB first "
            "(PIL: img.convert('RGB')), so it has 3 channels."
        )
    if len(shape) != 4 or shape[0] != 1:
        raise CheckError(f"{name} returned shape {shape} for {case}; expected (1, 3, H, W).")
    if max(shape[2:]) != max(h, w):
        raise CheckError(
            f"{name} returned {shape[2]} x {shape[3]} pixels for {case}: the longer side must "
            f"be long_side = {max(h, w)}."
        )
    if shape != tuple(want.shape):
        raise CheckError(
            f"{name} returned {shape[2]} x {shape[3]} pixels for {case}, expected {h} x {w}: "
            "scale both sides by the same factor to keep the aspect ratio."
        )
    if not got.is_floating_point():
        raise CheckError(
            f"{name} returned {got.dtype} pixels for {case}; convert to float and divide by 255."
        )
    got = got.detach().cpu().float()
    if got.max() > 1.5:
        raise CheckError(
            f"{name} returned values up to {got.max().item():.4g} for {case}: "
            "pixels must be in [0, 1], so divide by 255."
        )
    if got.min() < 0 or got.max() > 1:
        raise CheckError(f"{name} returned values outside [0, 1] for {case}; clamp them.")
    error = (got - want).abs().mean().item()
    if error > LOAD_TOLERANCE and (got - want.flip(1)).abs().mean().item() < LOAD_TOLERANCE:
        raise CheckError(
            f"{name} returned the channels in BGR order for {case} (OpenCV's order); "
            "return them as RGB."
        )
    if error > LOAD_TOLERANCE:
        raise CheckError(
            f"{name} differs from nst.load_image by {error:.3g} on average for {case} "
            f"(allowed {LOAD_TOLERANCE}): check the colour conversion and the resizing."
        )


def _raw_features(
    model: VGG19Features, img: torch.Tensor, layers: list[str]
) -> dict[str, torch.Tensor]:
    """Features of ``img`` fed to ``model.features`` WITHOUT the preprocessing (a usual mistake)."""
    wanted, x, out = {LAYER_INDEX[name]: name for name in layers}, img, {}
    for index, layer in enumerate(model.features[: max(wanted) + 1]):
        x = layer(x)
        if index in wanted:
            out[wanted[index]] = x
    return out


def check_extract_features(
    fn: Callable[..., dict[str, torch.Tensor]], model: VGG19Features
) -> None:
    """Check a feature extractor (model, img, layers) -> {layer: (1,C,H,W)} on a random image."""
    name = getattr(fn, "__name__", "your function")
    layers = ["relu1_1", "conv2_1", "relu3_1"]  # after and before a ReLU
    param = next(model.parameters())
    img = _rand(1, 3, 32, 32, seed=5).to(device=param.device, dtype=param.dtype)  # (1, 3, 32, 32)
    with torch.no_grad():
        want = extract_features(model, img, layers)
        raw = _raw_features(model, img, layers)
    got = _call(fn, name, model, img, list(layers))
    if not isinstance(got, dict):
        raise CheckError(
            f"{name} returned a {type(got).__name__}; return a dict {{layer: tensor}}."
        )
    if set(got) != set(layers):
        raise CheckError(
            f"{name} returned the layers {sorted(got)} for {layers}; "
            "return exactly the layers asked for, keyed by their names."
        )
    for layer in layers:
        _check_result(f"{name}(...)[{layer!r}]", got[layer], want[layer])
        feats = got[layer].detach().float()
        if torch.allclose(feats, raw[layer], rtol=RTOL, atol=ATOL):
            raise CheckError(
                f"{name} passed the raw image to model.features: apply model.preprocess(img) "
                "first (the weights expect BGR 0-255 minus the mean)."
            )
        if layer.startswith("relu") and (feats < 0).any():
            raise CheckError(
                f"{name} returned negative values for {layer!r}, so it is the conv output "
                f"before the ReLU: an index off by one; use nst.vgg.LAYER_INDEX[{layer!r}]."
            )
        if layer.startswith("conv") and torch.allclose(
            feats, want[layer].clamp_min(0), rtol=RTOL, atol=ATOL
        ):
            raise CheckError(
                f"{name} returned {layer!r} after its ReLU (no negative values): an index off "
                f"by one; use nst.vgg.LAYER_INDEX[{layer!r}]."
            )
        if not torch.allclose(feats, want[layer], rtol=RTOL, atol=ATOL):
            error = (feats - want[layer]).abs().max().item()
            raise CheckError(
                f"{name}'s {layer!r} differs from nst.extract_features by up to {error:.3g}: "
                "check the layer index and apply model.preprocess before the first layer."
            )

    def first_layer(x: torch.Tensor) -> torch.Tensor:
        return fn(model, x, ["relu1_1"])["relu1_1"]

    first_layer.__name__ = name
    _check_gradient(name, first_layer, img)
    _passed(name, f"{layers} of a random 32 x 32 image")


def _quadratic_problem() -> tuple[torch.Tensor, Callable[[torch.Tensor], dict[str, torch.Tensor]]]:
    """A (1,3,4,4) image partly outside [0, 1] and a quadratic loss_fn with nst's four keys."""
    target = _rand(1, 3, 4, 4, seed=6)  # (1, 3, 4, 4)
    gen_img = (_rand(1, 3, 4, 4, seed=7) * 2 - 0.5).requires_grad_(True)  # values in [-0.5, 1.5)

    def loss_fn(img: torch.Tensor) -> dict[str, torch.Tensor]:
        content = ((img - target) ** 2).mean()
        style = (img.mean() - 0.3) ** 2
        tv = tv_loss(img)
        return {"total": content + style + 0.1 * tv, "content": content, "style": style, "tv": tv}

    return gen_img, loss_fn


def check_closure(make_closure: Callable[..., Callable[[], torch.Tensor]]) -> None:
    """Check make_closure(optimizer, gen_img, loss_fn, history) on a tiny quadratic problem."""
    name = getattr(make_closure, "__name__", "your function")
    gen_img, loss_fn = _quadratic_problem()
    optimizer = torch.optim.LBFGS([gen_img], lr=1.0, max_iter=5)
    history: list[dict[str, float]] = []
    closure = _invoke(make_closure, name, optimizer, gen_img, loss_fn, history)
    if not callable(closure):
        raise CheckError(f"{name} returned a {type(closure).__name__}; return the closure itself.")
    if history:
        raise CheckError(f"{name} evaluated the loss already; only define and return the closure.")
    before = gen_img.detach().clone()
    loss = _invoke(closure, "the closure")
    if not torch.equal(gen_img.detach(), before):
        raise CheckError(
            "the closure changed gen_img (a clamp?): only the optimiser may move the pixels, "
            "or L-BFGS's memory describes steps that never happened."
        )
    if not isinstance(loss, torch.Tensor):
        raise CheckError(
            f"the closure returned a {type(loss).__name__}; return the loss tensor "
            "losses['total'] itself, not .item()."
        )
    want = loss_fn(before)["total"]
    if loss.dim() != 0 or not torch.allclose(loss.detach(), want, rtol=RTOL, atol=ATOL):
        raise CheckError("the closure must return losses['total'], the scalar being minimised.")
    if gen_img.grad is None or not gen_img.grad.abs().sum() > 0:
        raise CheckError("the closure left no gradient in gen_img.grad: call .backward() on it.")
    grad_once = gen_img.grad.clone()
    _check_rows(history, 1, loss_fn(before))
    _invoke(closure, "the closure")
    if torch.allclose(gen_img.grad, 2 * grad_once, rtol=RTOL, atol=ATOL):
        raise CheckError(
            "gradients pile up from call to call: call optimizer.zero_grad() before backward()."
        )
    if not torch.allclose(gen_img.grad, grad_once, rtol=RTOL, atol=ATOL):
        raise CheckError("the closure gives a different gradient each call; compute it afresh.")
    _check_rows(history, 2, loss_fn(before))

    calls = []

    def counted(img: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(1)
        return loss_fn(img)

    gen_img, _ = _quadratic_problem()
    optimizer = torch.optim.LBFGS([gen_img], lr=1.0, max_iter=5)
    history = []
    optimizer.step(_invoke(make_closure, name, optimizer, gen_img, counted, history))
    if len(history) != len(calls):
        raise CheckError(
            f"one optimizer.step evaluated the loss {len(calls)} times but history has "
            f"{len(history)} rows: append one row inside the closure, at every evaluation."
        )
    if not history[-1]["total"] < history[0]["total"] / 2:
        raise CheckError(
            f"the loss did not fall in one L-BFGS step ({history[0]['total']:.4g} -> "
            f"{history[-1]['total']:.4g}): return the loss that the closure backpropagated."
        )
    print(
        f"✓ {name} builds a correct closure (a quadratic loss over a (1, 3, 4, 4) image: one row "
        "per evaluation, gradients zeroed, pixels untouched, the loss falls in one L-BFGS step)"
    )


def _check_rows(history: list[Any], n: int, losses: dict[str, torch.Tensor]) -> None:
    """After n closure calls: n rows {"step": i, "total": float, ...} holding the losses."""
    if len(history) != n:
        raise CheckError(
            f"after {n} closure call(s) history has {len(history)} rows: "
            "append exactly one row per evaluation."
        )
    row = history[-1]
    if not isinstance(row, dict) or not {"step", *losses} <= set(row):
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise CheckError(
            f"a history row is {keys}; make it a dict with 'step' and every loss: "
            "{'step': ..., 'total': ..., 'content': ..., 'style': ..., 'tv': ...}."
        )
    if any(isinstance(v, torch.Tensor) for v in row.values()):
        raise CheckError(
            "history holds tensors, which keep every step's graph in memory: store float(value)."
        )
    if row["step"] != n:
        raise CheckError(f"row {n} of history has step {row['step']!r}; number the steps 1, 2, …")
    for key, value in losses.items():
        if not abs(row[key] - value.item()) <= 1e-5 * max(1.0, abs(value.item())):
            raise CheckError(f"history's {key!r} is {row[key]!r}, expected {value.item():.6g}.")
