"""The assignments' checks: a learner's image loader, feature extractor and L-BFGS closure."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from nst.checks._core import (
    ATOL,
    RTOL,
    CheckError,
    call_on_copies,
    call_reporting_errors,
    function_name,
    passed,
    random_tensor,
    require_gradient,
    require_result,
)
from nst.images import load_image
from nst.losses import tv_loss
from nst.vgg import VGG19Features, extract_features

# mean absolute difference allowed between two loaders: resampling filters differ between libraries
LOAD_TOLERANCE = 0.03

LossFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # an image -> {"total": ..., ...}

# --- loading an image ---------------------------------------------------------------------------


def check_load(fn: Callable[[str, int], torch.Tensor]) -> None:
    """Check a loader (path, long_side) -> (1,3,H,W) float RGB in [0, 1] on RGBA, P and L files."""
    name = function_name(fn)
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("RGBA", "P", "L"):
            path = _save_test_image(Path(folder), mode)
            for long_side in (20, 60):
                want = load_image(path, long_side=long_side)  # (1, 3, H, W)
                got = call_reporting_errors(fn, name, str(path), long_side)
                case = f"a 40 x 20 {mode} image with long_side={long_side}"
                _require_layout(name, got, want, case)
                _require_size(name, got, want, case)
                _require_pixels(name, got, case)
                _require_same_image(name, got, want, case)
    passed(
        name,
        "RGBA, P and L images, long sides 20 and 60",
        reference="nst.load_image",
        tolerance=f"mean absolute difference < {LOAD_TOLERANCE}",
    )


def _save_test_image(folder: Path, mode: str) -> Path:
    """Save a smooth 40 x 20 (W x H) image in ``mode``: red grows rightwards, green downwards."""
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


def _require_layout(name: str, got: Any, want: torch.Tensor, case: str) -> None:
    """Raise CheckError unless ``got`` is a (1, 3, H, W) tensor, naming the misplaced axis."""
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


def _require_size(name: str, got: torch.Tensor, want: torch.Tensor, case: str) -> None:
    """Raise CheckError unless ``got`` has ``want``'s height and width (long side, aspect ratio)."""
    _, _, h, w = want.shape
    _, _, got_h, got_w = got.shape
    if max(got_h, got_w) != max(h, w):
        raise CheckError(
            f"{name} returned {got_h} x {got_w} pixels for {case}: the longer side must "
            f"be long_side = {max(h, w)}."
        )
    if (got_h, got_w) != (h, w):
        raise CheckError(
            f"{name} returned {got_h} x {got_w} pixels for {case}, expected {h} x {w}: "
            "scale both sides by the same factor to keep the aspect ratio."
        )


def _require_pixels(name: str, got: torch.Tensor, case: str) -> None:
    """Raise CheckError unless ``got``'s pixels are floats in [0, 1]."""
    if not got.is_floating_point():
        raise CheckError(
            f"{name} returned {got.dtype} pixels for {case}; convert to float and divide by 255."
        )
    if got.max() > 1.5:
        raise CheckError(
            f"{name} returned values up to {got.max().item():.4g} for {case}: "
            "pixels must be in [0, 1], so divide by 255."
        )
    if got.min() < 0 or got.max() > 1:
        raise CheckError(f"{name} returned values outside [0, 1] for {case}; clamp them.")


def _require_same_image(name: str, got: torch.Tensor, want: torch.Tensor, case: str) -> None:
    """Raise CheckError unless ``got`` is ``want`` up to resampling, naming swapped channels."""
    got = got.detach().cpu().float()
    error = (got - want).abs().mean().item()
    if error <= LOAD_TOLERANCE:
        return
    if (got - want.flip(1)).abs().mean().item() < LOAD_TOLERANCE:  # channels reversed: BGR
        raise CheckError(
            f"{name} returned the channels in BGR order for {case} (OpenCV's order); "
            "return them as RGB."
        )
    raise CheckError(
        f"{name} differs from nst.load_image by {error:.3g} on average for {case} "
        f"(allowed {LOAD_TOLERANCE}): check the colour conversion and the resizing."
    )


# --- extracting features ------------------------------------------------------------------------


def check_extract_features(
    fn: Callable[..., dict[str, torch.Tensor]], model: VGG19Features
) -> None:
    """Check a feature extractor (model, img, layers) -> {layer: (1,C,H,W)} on a random image."""
    name = function_name(fn)
    layers = ["relu1_1", "conv2_1", "relu3_1"]  # after and before a ReLU
    param = next(model.parameters())  # where and in which precision the model computes
    img = random_tensor(1, 3, 32, 32, seed=5).to(param.device, param.dtype)  # (1, 3, 32, 32)
    with torch.no_grad():
        want = extract_features(model, img, layers)
        # the same layers without model.preprocess: what the usual mistake returns
        unprocessed = VGG19Features(nn.Identity(), model.features)(img, layers)
    got = call_on_copies(fn, name, model, img, list(layers))
    _require_layer_dict(name, got, layers)
    for layer in layers:
        require_result(f"{name}(...)[{layer!r}]", got[layer], want[layer])
        feats = got[layer].detach().float()
        _reject_unprocessed(name, feats, unprocessed[layer])
        _reject_neighbour_layer(name, layer, feats, want[layer])
        _require_same_features(name, layer, feats, want[layer])

    def first_layer(x: torch.Tensor) -> torch.Tensor:
        return fn(model, x, ["relu1_1"])["relu1_1"]

    require_gradient(name, first_layer, img)
    passed(name, f"{layers} of a random 32 x 32 image")


def _require_layer_dict(name: str, got: Any, layers: list[str]) -> None:
    """Raise CheckError unless ``got`` is a dict keyed by exactly the layers asked for."""
    if not isinstance(got, dict):
        raise CheckError(
            f"{name} returned a {type(got).__name__}; return a dict {{layer: tensor}}."
        )
    if set(got) != set(layers):
        raise CheckError(
            f"{name} returned the layers {sorted(got)} for {layers}; "
            "return exactly the layers asked for, keyed by their names."
        )


def _reject_unprocessed(name: str, feats: torch.Tensor, unprocessed: torch.Tensor) -> None:
    """Raise CheckError if ``feats`` were computed from the image without model.preprocess."""
    if torch.allclose(feats, unprocessed, rtol=RTOL, atol=ATOL):
        raise CheckError(
            f"{name} passed the raw image to model.features: apply model.preprocess(img) "
            "first (the weights expect BGR 0-255 minus the mean)."
        )


def _reject_neighbour_layer(name: str, layer: str, feats: torch.Tensor, want: torch.Tensor) -> None:
    """Raise CheckError if ``feats`` come from the ReLU next to ``layer`` (an index off by one)."""
    if layer.startswith("relu") and (feats < 0).any():
        raise CheckError(
            f"{name} returned negative values for {layer!r}, so it is the conv output "
            f"before the ReLU: an index off by one; use nst.vgg.LAYER_INDEX[{layer!r}]."
        )
    if layer.startswith("conv") and torch.allclose(feats, want.clamp_min(0), rtol=RTOL, atol=ATOL):
        raise CheckError(
            f"{name} returned {layer!r} after its ReLU (no negative values): an index off "
            f"by one; use nst.vgg.LAYER_INDEX[{layer!r}]."
        )


def _require_same_features(name: str, layer: str, feats: torch.Tensor, want: torch.Tensor) -> None:
    """Raise CheckError unless ``feats`` equal the reference features of ``layer``."""
    if not torch.allclose(feats, want, rtol=RTOL, atol=ATOL):
        error = (feats - want).abs().max().item()
        raise CheckError(
            f"{name}'s {layer!r} differs from nst.extract_features by up to {error:.3g}: "
            "check the layer index and apply model.preprocess before the first layer."
        )


# --- the L-BFGS closure -------------------------------------------------------------------------


def check_closure(make_closure: Callable[..., Callable[[], torch.Tensor]]) -> None:
    """Check make_closure(optimizer, gen_img, loss_fn, history) on a tiny quadratic problem."""
    name = function_name(make_closure)
    gen_img, loss_fn = _quadratic_problem()
    history: list[dict[str, float]] = []
    closure = _build_closure(make_closure, name, gen_img, loss_fn, history)
    expected = loss_fn(gen_img.detach().clone())
    first_grad = _check_first_call(closure, gen_img, expected, history)
    _check_second_call(closure, gen_img, first_grad, expected, history)
    _check_lbfgs_step(make_closure, name)
    print(
        f"✓ {name} builds a correct closure (a quadratic loss over a (1, 3, 4, 4) image: one row "
        "per evaluation, gradients zeroed, pixels untouched, the loss falls in one L-BFGS step)"
    )


def _quadratic_problem() -> tuple[torch.Tensor, LossFn]:
    """A (1,3,4,4) image partly outside [0, 1] and a quadratic loss_fn with nst's four keys."""
    target = random_tensor(1, 3, 4, 4, seed=6)  # (1, 3, 4, 4)
    gen_img = (random_tensor(1, 3, 4, 4, seed=7) * 2 - 0.5).requires_grad_(True)  # in [-0.5, 1.5)

    def loss_fn(img: torch.Tensor) -> dict[str, torch.Tensor]:
        content = ((img - target) ** 2).mean()
        style = (img.mean() - 0.3) ** 2
        tv = tv_loss(img)
        return {"total": content + style + 0.1 * tv, "content": content, "style": style, "tv": tv}

    return gen_img, loss_fn


def _build_closure(
    make_closure: Callable[..., Any],
    name: str,
    gen_img: torch.Tensor,
    loss_fn: LossFn,
    history: list[Any],
) -> Callable[[], Any]:
    """Call ``make_closure`` with an L-BFGS optimiser; raise CheckError unless it only builds."""
    optimizer = torch.optim.LBFGS([gen_img], lr=1.0, max_iter=5)
    closure = call_reporting_errors(make_closure, name, optimizer, gen_img, loss_fn, history)
    if not callable(closure):
        raise CheckError(f"{name} returned a {type(closure).__name__}; return the closure itself.")
    if history:
        raise CheckError(f"{name} evaluated the loss already; only define and return the closure.")
    return closure


def _check_first_call(
    closure: Callable[[], Any],
    gen_img: torch.Tensor,
    expected: dict[str, torch.Tensor],
    history: list[Any],
) -> torch.Tensor:
    """Call the closure once: it must return the total loss, backpropagate and add one row."""
    before = gen_img.detach().clone()
    loss = call_reporting_errors(closure, "the closure")
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
    if loss.dim() != 0 or not torch.allclose(
        loss.detach(), expected["total"], rtol=RTOL, atol=ATOL
    ):
        raise CheckError("the closure must return losses['total'], the scalar being minimised.")
    if gen_img.grad is None or not gen_img.grad.abs().sum() > 0:
        raise CheckError("the closure left no gradient in gen_img.grad: call .backward() on it.")
    _check_rows(history, 1, expected)
    return gen_img.grad.clone()


def _check_second_call(
    closure: Callable[[], Any],
    gen_img: torch.Tensor,
    first_grad: torch.Tensor,
    expected: dict[str, torch.Tensor],
    history: list[Any],
) -> None:
    """Call the closure again: the gradient must be the first one afresh, not added to it."""
    call_reporting_errors(closure, "the closure")
    if torch.allclose(gen_img.grad, 2 * first_grad, rtol=RTOL, atol=ATOL):
        raise CheckError(
            "gradients pile up from call to call: call optimizer.zero_grad() before backward()."
        )
    if not torch.allclose(gen_img.grad, first_grad, rtol=RTOL, atol=ATOL):
        raise CheckError("the closure gives a different gradient each call; compute it afresh.")
    _check_rows(history, 2, expected)


def _check_rows(history: list[Any], n: int, expected: dict[str, torch.Tensor]) -> None:
    """After n closure calls: n rows {"step": i, "total": float, ...} holding the losses."""
    if len(history) != n:
        raise CheckError(
            f"after {n} closure call(s) history has {len(history)} rows: "
            "append exactly one row per evaluation."
        )
    row = history[-1]
    if not isinstance(row, dict) or not {"step", *expected} <= set(row):
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
    for key, value in expected.items():
        if not abs(row[key] - value.item()) <= 1e-5 * max(1.0, abs(value.item())):
            raise CheckError(f"history's {key!r} is {row[key]!r}, expected {value.item():.6g}.")


def _check_lbfgs_step(make_closure: Callable[..., Any], name: str) -> None:
    """Run one real L-BFGS step: one history row per evaluation, and the loss must fall."""
    gen_img, loss_fn = _quadratic_problem()
    calls = []

    def counted(img: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(1)
        return loss_fn(img)

    history: list[dict[str, float]] = []
    optimizer = torch.optim.LBFGS([gen_img], lr=1.0, max_iter=5)
    optimizer.step(call_reporting_errors(make_closure, name, optimizer, gen_img, counted, history))
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
