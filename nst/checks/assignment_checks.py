"""A1 and A2's visible checks: receptive fields, channel covariance, layer weights, fronts.

Each ``check_*`` calls a learner's function on public inputs, prints one line starting with ✓ when
it is right and raises ``CheckError`` (one sentence naming the likely mistake) otherwise. The
``judge_*`` functions hold what a check decides, so that an assignment's hidden tests
(``hidden_tests.py``) judge their recorded outputs with the same sentences. The references
(``receptive_field_of``, ``covariance_of``, ``balanced_weights_of``, ``pareto_names``) are what
the hidden tests block while a learner's function runs. Not imported by ``nst`` itself: a cell
imports ``nst.checks.assignment_checks``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nst.checks._core import CheckError, call_on_copies, function_name, require_gradient
from nst.losses import gram_loss, gram_matrix
from nst.vgg import LAYER_INDEX, VGG19Features, extract_features, receptive_field, vgg19_features

Distances = Mapping[str, Mapping[str, float]]  # {name: {"content": c, "style": s}}

# --- A1, exercise 2: the receptive field of a stack of layers ----------------------------------


def _side(value: int | tuple[int, ...]) -> int:
    """A square kernel's or stride's side: 3 or (3, 3) -> 3."""
    return int(value[0]) if isinstance(value, tuple) else int(value)


def _field_variants(layers: Sequence[nn.Module]) -> dict[str, tuple[int, int]]:
    """(field, stride) computed right ("right") and the three usual wrong ways, by name."""
    right, flat, stride_first, whole_kernel = [1, 1], [1, 1], [1, 1], [1, 1]
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _side(layer.kernel_size), _side(layer.stride)
            right[0] += (k - 1) * right[1]
            flat[0] += k - 1
            stride_first[1] *= s
            stride_first[0] += (k - 1) * stride_first[1]
            whole_kernel[0] += k * whole_kernel[1]
            for pair in (right, flat, whole_kernel):
                pair[1] *= s
    names = ("right", "flat", "stride_first", "whole_kernel")
    return {n: (v[0], v[1]) for n, v in zip(names, (right, flat, stride_first, whole_kernel))}


def receptive_field_of(layers: Sequence[nn.Module]) -> tuple[int, int]:
    """(receptive field, stride) in input pixels of one output position of ``layers`` in order."""
    return _field_variants(layers)["right"]


FIELD_MISTAKES = {
    "flat": "each layer widened the field by k - 1 input pixels, but after a stride the positions "
    "are farther apart: widen it by (k - 1) times the stride so far",
    "stride_first": "a layer's own stride was applied before its kernel: the kernel spans "
    "positions of its input, spaced by the strides of the layers before it only",
    "whole_kernel": "a k x k kernel adds k - 1 positions to the field (its centre is already "
    "there), not k",
}


def judge_receptive_field(got: Any, layers: Sequence[nn.Module], case: str) -> None:
    """Raise CheckError unless ``got`` is the (field, stride) pair of ``layers``."""
    try:
        values = tuple(float(v) for v in got)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 2 or any(v != int(v) for v in values):
        raise CheckError(f"receptive_field returned {got!r} for {case}; return (field, stride).")
    pair = (int(values[0]), int(values[1]))
    variants = _field_variants(layers)
    if pair == variants["right"]:
        return
    for mistake, sentence in FIELD_MISTAKES.items():
        if pair == variants[mistake]:
            raise CheckError(f"receptive_field gave {pair} for {case}: {sentence}.")
    want = variants["right"]
    part = "stride (the product of the strides)" if pair[0] == want[0] else "field"
    raise CheckError(f"receptive_field gave {pair} for {case}, expected {want}: check the {part}.")


def resnet_stem() -> nn.Sequential:
    """A ResNet-like stem: a 7x7 conv of stride 2, a 3x3 max-pool of stride 2, two 3x3, a 2x2."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 7, stride=2, padding=3),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.AvgPool2d(2),
    )


@functools.lru_cache(maxsize=1)
def _vgg_layers() -> nn.Sequential:
    """VGG19's feature layers (random weights: only their shapes matter here)."""
    return vgg19_features()


def check_receptive_field(fn: Callable[[Sequence[nn.Module]], tuple[int, int]]) -> None:
    """Check fn(layers) -> (field, stride) on VGG19 up to relu1_1, pool1, relu4_2 and a stem."""
    name = function_name(fn)
    cases = {f"VGG19 up to {n}": _vgg_layers()[: LAYER_INDEX[n] + 1] for n in _VGG_CASES}
    cases["resnet_stem()"] = resnet_stem()
    for case, layers in cases.items():
        got = call_on_copies(fn, name, layers)
        judge_receptive_field(got, list(layers), case)
    for layer in _VGG_CASES:  # the formula above agrees with the layer table's
        assert receptive_field_of(list(cases[f"VGG19 up to {layer}"])) == receptive_field(layer)
    print(f"✓ {name} gives the right (field, stride) for VGG19 up to {', '.join(_VGG_CASES)}")


_VGG_CASES = ("relu1_1", "pool1", "relu4_2")

# --- A1, exercise 3: the channel covariance -----------------------------------------------------


def _centred(feats: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """(B, C, H*W) features minus their mean over ``dims`` of that view."""
    b, c, h, w = feats.shape
    flat = feats.reshape(b, c, h * w)  # (B, C, M)
    return flat - flat.mean(dim=dims, keepdim=True)


def covariance_of(feats: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) covariance of the channels over the M = H*W positions (/ M)."""
    b, c, h, w = feats.shape
    centred = _centred(feats, (2,))  # (B, C, M)
    return centred @ centred.transpose(1, 2) / (h * w)


def _covariance_mistakes(feats: torch.Tensor) -> dict[str, torch.Tensor]:
    """{the sentence after the name: the (B, C, C) value} of the usual wrong covariances."""
    b, c, h, w = feats.shape
    flat = feats.reshape(b, c, h * w)
    gram = flat @ flat.transpose(1, 2) / (h * w)
    across = _centred(feats, (1,))
    everything = _centred(feats, (1, 2))
    out = {
        "is the Gram matrix: subtract each channel's mean over the positions first": gram,
        "subtracted the mean over the channels; subtract each channel's mean over the "
        "positions (dim 2 of (B, C, H*W))": across @ across.transpose(1, 2) / (h * w),
        "subtracted one mean of everything; subtract each channel's own mean": everything
        @ everything.transpose(1, 2)
        / (h * w),
    }
    if h * w > 1:
        out["divided by H*W - 1; divide by the number of positions H*W"] = (
            covariance_of(feats) * (h * w) / (h * w - 1)
        )
    return out


def judge_covariance(got: Any, feats: torch.Tensor, case: str) -> None:
    """Raise CheckError unless ``got`` is the (B, C, C) channel covariance of ``feats``."""
    want = covariance_of(feats)
    got = torch.as_tensor(got).float() if not isinstance(got, torch.Tensor) else got.detach()
    if got.shape != want.shape:
        shape = tuple(got.shape)
        raise CheckError(
            f"channel_covariance returned shape {shape} for {case}; expected {tuple(want.shape)}."
        )
    scale = 1e-5 * max(1.0, want.abs().max().item())
    if torch.allclose(got.float(), want, rtol=1e-4, atol=scale):
        return
    for sentence, wrong in _covariance_mistakes(feats).items():
        if torch.allclose(got.float(), wrong, rtol=1e-4, atol=scale):
            raise CheckError(f"channel_covariance for {case} {sentence}.")
    error = (got.float() - want).abs().max().item()
    raise CheckError(f"channel_covariance differs by up to {error:.3g} for {case}.")


def covariance_inputs(seed: int, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Random (B, C, H, W) features whose channels have means 0 to 4, like ReLU outputs."""
    g = torch.Generator().manual_seed(seed)
    b, c, _, _ = shape
    return torch.rand(shape, generator=g) + 4 * torch.rand(b, c, 1, 1, generator=g)


def check_channel_covariance(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check fn(feats) (B,C,H,W) -> (B,C,C) covariance over positions on random features."""
    name = function_name(fn)
    feats = covariance_inputs(0, (2, 5, 4, 6))
    judge_covariance(call_on_copies(fn, name, feats), feats, "features (2, 5, 4, 6)")
    require_gradient(name, fn, feats)
    print(f"✓ {name} matches the covariance over positions (random features (2, 5, 4, 6))")


# --- A2, exercise 1: style layer weights that balance the gradients ----------------------------


def gradient_norms(
    model: VGG19Features, img: torch.Tensor, style_grams: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """{layer: ‖∂L_l/∂img‖} of each layer's own Gram loss L_l at ``img`` (1,3,H,W)."""
    norms = {}
    for layer, target in style_grams.items():
        x = img.detach().clone().requires_grad_(True)
        feats = extract_features(model, x, [layer])[layer]  # (1, C, h, w)
        gram_loss(feats, target).backward()
        norms[layer] = x.grad.norm().item()
    return norms


def _normalised(values: Mapping[str, float]) -> dict[str, float]:
    """``values`` divided by their sum."""
    total = sum(values.values())
    return {k: v / total for k, v in values.items()}


def balanced_weights_of(
    model: VGG19Features, img: torch.Tensor, style_grams: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """{layer: w_l}, w_l ∝ 1 / ‖∂L_l/∂img‖ summing to 1: every layer pulls the pixels as hard."""
    return _normalised({k: 1 / v for k, v in gradient_norms(model, img, style_grams).items()})


def _weight_mistakes(
    norms: Mapping[str, float], losses: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """{the sentence: the weights} of the usual wrong weightings."""
    return {
        "grow with the gradient's norm: weight each layer by 1 / norm, so that the layer that "
        "pulls hardest gets the least weight": _normalised(dict(norms)),
        "are 1 / loss: weight by 1 / the norm of each layer's gradient with respect to the image, "
        "not by the loss's value": _normalised({k: 1 / v for k, v in losses.items()}),
        "are equal: take each layer's own loss's gradient, not the gradient of their sum": {
            k: 1 / len(norms) for k in norms
        },
    }


def judge_layer_weights(
    got: Any, norms: Mapping[str, float], losses: Mapping[str, float], case: str
) -> None:
    """Raise CheckError unless ``got`` is {layer: w} ∝ 1/norm summing to 1."""
    if not isinstance(got, Mapping) or sorted(got) != sorted(norms):
        keys = sorted(got) if isinstance(got, Mapping) else type(got).__name__
        raise CheckError(
            f"balanced_layer_weights returned {keys} for {case}; return a dict with one "
            f"float per layer of style_grams: {sorted(norms)}."
        )
    values = {k: float(v) for k, v in got.items()}
    want = _normalised({k: 1 / v for k, v in norms.items()})
    if all(abs(values[k] - want[k]) <= 1e-3 * want[k] + 1e-7 for k in want):
        return
    ratios = [values[k] / want[k] for k in want]
    if max(ratios) - min(ratios) <= 1e-3 * abs(ratios[0]):  # proportional, but another sum
        raise CheckError(
            f"balanced_layer_weights' weights for {case} add up to {sum(values.values()):.4g}: "
            "divide them by their sum, so that they add up to 1."
        )
    for sentence, wrong in _weight_mistakes(norms, losses).items():
        if all(abs(values[k] - wrong[k]) <= 1e-3 * abs(wrong[k]) + 1e-7 for k in wrong):
            raise CheckError(f"balanced_layer_weights' weights for {case} {sentence}.")
    worst = max(want, key=lambda k: abs(values[k] / want[k] - 1))
    raise CheckError(
        f"balanced_layer_weights gave {worst} the weight {values[worst]:.4g} for {case}, "
        f"expected {want[worst]:.4g}: check the gradient's norm (the whole gradient, L2)."
    )


def layer_losses(
    model: VGG19Features, img: torch.Tensor, style_grams: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """{layer: L_l} of each layer's Gram loss at ``img``, without a graph."""
    with torch.no_grad():
        feats = extract_features(model, img, list(style_grams))
        return {k: gram_loss(feats[k], a).item() for k, a in style_grams.items()}


def balance_inputs(
    model: VGG19Features, img: torch.Tensor, painting: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The painting's Gram matrices {layer: (1, C, C)}, on the model's device, without a graph."""
    with torch.no_grad():
        feats = extract_features(model, painting.to(img.device), list(layers))
        return {k: gram_matrix(f) for k, f in feats.items()}


def check_balanced_layer_weights(fn: Callable[..., dict[str, float]], model: VGG19Features) -> None:
    """Check fn(model, img, style_grams) on a random 32 x 40 image against a random painting."""
    name = function_name(fn)
    device = next(model.parameters()).device
    img = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(3)).to(device)
    painting = torch.rand(1, 3, 40, 32, generator=torch.Generator().manual_seed(4))
    grams = balance_inputs(model, img, painting, ["relu1_1", "relu3_1", "relu5_1"])
    got = call_on_copies(fn, name, model, img, grams)
    norms, losses = gradient_norms(model, img, grams), layer_losses(model, img, grams)
    judge_layer_weights(got, norms, losses, "a random 32 x 40 image")
    print(f"✓ {name} balances relu1_1, relu3_1 and relu5_1 on a random 32 x 40 image (rtol 1e-3)")


# --- A2, exercise 2: the results that no other result beats on both distances -------------------


def _beats(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on both distances and better on one."""
    at_least = a["content"] <= b["content"] and a["style"] <= b["style"]
    return at_least and (a["content"] < b["content"] or a["style"] < b["style"])


def pareto_names(results: Distances) -> list[str]:
    """The names of ``results`` that no other result beats (lesson 06's rule), in their order."""
    return [n for n, r in results.items() if not any(_beats(o, r) for o in results.values())]


def _front_mistake(got: list[str], results: Distances) -> str:
    """The likely mistake behind a wrong front ``got`` (a list of names)."""
    want = pareto_names(results)
    strict = [
        n
        for n, r in results.items()
        if not any(
            o["content"] < r["content"] and o["style"] < r["style"] for o in results.values()
        )
    ]
    if got == strict:
        return "a result that equals another on one distance and is worse on the other is beaten"
    best = min(results, key=lambda n: results[n]["content"] + results[n]["style"])
    if got == [best]:
        return "do not add the distances: keep every result that no other beats on both"
    if set(got) < set(want) and len(
        {(results[n]["content"], results[n]["style"]) for n in want}
    ) < len(want):
        return "two results with the same distances do not beat each other: keep both"
    if sorted(got) == sorted(want):
        return "list the names in the order of results"
    return f"expected {want}"


def judge_front(got: Any, results: Distances, case: str) -> None:
    """Raise CheckError unless ``got`` is the list of ``results``' names on the front."""
    if not isinstance(got, (list, tuple)):  # as the hidden test: a set or a string has no order
        raise CheckError(f"pareto_front returned a {type(got).__name__}; return a list of names.")
    names = [str(n) for n in got]
    if names != pareto_names(results):
        raise CheckError(f"pareto_front gave {names} for {case}: {_front_mistake(names, results)}.")


PUBLIC_RESULTS = {  # {name: distances}: c beaten by a and b, e by b (equal style), a and d tie
    "a": {"content": 0.5, "style": 0.30},
    "b": {"content": 0.6, "style": 0.25},
    "c": {"content": 0.6, "style": 0.30},
    "d": {"content": 0.5, "style": 0.30},
    "e": {"content": 0.7, "style": 0.25},
    "f": {"content": 0.9, "style": 0.10},
}


def check_pareto_front(fn: Callable[[Distances], list[str]]) -> None:
    """Check fn(results) -> the names no other result beats, on six results with ties."""
    name = function_name(fn)
    results = {k: dict(v) for k, v in PUBLIC_RESULTS.items()}
    got = call_on_copies(fn, name, results)
    if results != PUBLIC_RESULTS:
        raise CheckError(f"{name} changed results; read it, do not change it.")
    judge_front(got, results, "six results with ties")
    one = {"only": {"content": 1.0, "style": 1.0}}
    judge_front(call_on_copies(fn, name, one), one, "a single result")
    print(
        f"✓ {name} keeps {pareto_names(PUBLIC_RESULTS)} of six results with ties, and a single one"
    )
