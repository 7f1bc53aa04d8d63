"""The capstone's checks (assignment A4): style transfer written from scratch, in four parts.

``check_extractor``, ``check_gram`` and ``check_losses`` compare a learner's function with ``nst``
on random inputs; ``check_transfer`` runs a learner's whole method on a photo and a painting at
128 px and measures its results with lesson 06's distances against the reference solution's.
A4's hidden tests judge by the same ``compare_*`` functions, on inputs made from other seeds.
Not imported by ``import nst``: ``import nst.checks.capstone``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nst import data, metrics, vgg
from nst.checks._core import CheckError, call_reporting_errors, function_name, passed, require_close
from nst.images import load_image, resize
from nst.losses import content_loss, gram_matrix, style_loss, tv_loss

PAPER = {"content": "relu4_2", "style": ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]}
TUTORIAL = {"content": "conv2_2", "style": ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]}
WEIGHTS = {"content": 1.0, "style": 10.0, "tv": 10.0}
ADAM_LR = 0.02
RUNS = {  # the runs check_transfer makes, by name: (layers, optimizer)
    "lbfgs_paper": (PAPER, "lbfgs"),
    "lbfgs_tutorial": (TUTORIAL, "lbfgs"),
    "adam_paper": (PAPER, "adam"),
}
CHECK_SIZE = 128  # px, long side: the size the checks and the grader run transfer at
VISIBLE_PAIR, VISIBLE_STEPS = ("chelsea", "starry_night"), 40
MARGIN = 0.10  # a distance may differ from the reference's by this fraction of it
# The reference solution's (content, style) distances for VISIBLE_PAIR at CHECK_SIZE after
# VISIBLE_STEPS steps (A4's source notebook; tests/test_capstone.py keeps them current).
VISIBLE_DISTANCES = {
    "lbfgs_paper": (0.8335, 0.2478),
    "lbfgs_tutorial": (0.8702, 0.3505),
    "adam_paper": (0.8302, 0.4011),
}
HINTS = {  # what to look at when a result's distance is off
    "content": "start from the photo, let the optimiser move gen_img; check the content target",
    "style": "check the style layers, the Gram targets (the painting at `size`) and the weights",
}
COLUMNS = ("step", "total", "content", "style", "tv")  # a history row, as an array's columns
# VGG19's conv and relu layers by name, in order: conv1_1, relu1_1, conv1_2, ..., relu5_1
NAMES = [n for i, n, _, _ in vgg.LAYER_TABLE if i <= vgg.LAYER_INDEX["relu5_1"] and "_" in n]


@functools.lru_cache(maxsize=1)
def _model() -> vgg.VGG19Features:
    """nst's VGG19 on the CPU: the reference the checks compare with."""
    return vgg.load_vgg19(device="cpu")


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Equal up to float rounding (sums in another order), relative to the largest value."""
    atol = 1e-5 * float(want.abs().max())
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-4, atol=atol))


def _tensor(value: Any) -> torch.Tensor:
    """A learner's value (a tensor, or an array read back by the grader) as a float tensor."""
    return torch.as_tensor(np.asarray(value.detach().cpu() if torch.is_tensor(value) else value))


# --- exercise 1: the feature extractor --------------------------------------------------------


def extractor_case(seed: int) -> tuple[list[str], torch.Tensor]:
    """Two to four layer names (conv and relu) and a (1,3,H,W) image, H and W in {32, 48}."""
    g = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(NAMES), generator=g)[:2].tolist()
    names = sorted({"conv2_2", "relu4_2", *(NAMES[i] for i in picks)}, key=NAMES.index)
    h, w = (16 * int(s) for s in torch.randint(2, 4, (2,), generator=g))  # multiples of 16
    return names, torch.rand(1, 3, h, w, generator=g)


def run_extractor(fn: Callable[..., Any], names: list[str], img: torch.Tensor) -> dict[str, Any]:
    """The learner's features of ``img`` and the gradient of the first name's features' sum."""
    extractor = fn(list(names))
    x = img.clone().requires_grad_(True)
    feats = extractor(x)
    first = feats.get(names[0]) if isinstance(feats, dict) else None
    if torch.is_tensor(first) and first.requires_grad:
        first.sum().backward()
    keys = sorted(feats) if isinstance(feats, dict) else []
    got = {f"feat_{k}": feats[k] for k in keys if torch.is_tensor(feats[k])}
    grad = x.grad if x.grad is not None else torch.zeros(0)
    return {"keys": np.array(keys, dtype=str), "grad": grad, **got}


def compare_extractor(name: str, got: dict[str, Any], names: list[str], img: torch.Tensor) -> None:
    """Raise CheckError unless ``got`` (run_extractor's) holds nst's features and gradient."""
    keys = [str(k) for k in np.asarray(got["keys"]).tolist()]
    if sorted(keys) != sorted(names):
        raise CheckError(
            f"{name}({names}) returned {keys}: return a dict with exactly those names."
        )
    x = img.clone().requires_grad_(True)
    want = _model()(x, names)
    want[names[0]].sum().backward()
    for layer in names:
        feats = _tensor(got.get(f"feat_{layer}", np.zeros(0))).float()  # absent: not a tensor
        if not _close(feats, want[layer].detach()):
            raise CheckError(_feature_hint(name, layer, feats, want[layer].detach(), img))
    if not _close(_tensor(got["grad"]).float(), x.grad):
        raise CheckError(
            f"{name}'s features carry no gradient (or a wrong one) back to the image: remove any "
            ".detach() or torch.no_grad() from the extractor."
        )


def _feature_hint(
    name: str, layer: str, got: torch.Tensor, want: torch.Tensor, img: torch.Tensor
) -> str:
    """The likely mistake behind features that differ from nst's."""
    if layer.startswith("conv") and _close(got, want.clamp_min(0)):
        return (
            f"{name}'s {layer} has no negative values: torchvision's ReLU(inplace=True) overwrote "
            "the conv output; set each ReLU's inplace to False."
        )
    mean, im_mean, im_std = (
        torch.tensor(v).view(1, 3, 1, 1)
        for v in (vgg.CAFFE_MEAN_BGR, vgg.IMAGENET_MEAN, vgg.IMAGENET_STD)
    )
    imagenet = (img - im_mean) / im_std
    raw = vgg.VGG19Features(nn.Identity(), _model().features)  # the same layers, fed as given
    for label, x in (
        ("no preprocessing", img),
        ("RGB instead of BGR", img * 255 - mean),
        ("pixels in 0-1 instead of 0-255", img.flip(1) - mean / 255),
        ("torchvision's ImageNet normalisation", imagenet),
    ):
        if _close(got, raw(x, [layer])[layer]):
            return (
                f"{name}'s {layer} is what {label} gives: flip RGB to BGR, scale to 0-255 and "
                "subtract CAFFE_MEAN_BGR before the first layer."
            )
    return (
        f"{name}'s {layer} differs from VGG19's {layer}: check your name-to-index table "
        "(convB_N, reluB_N, poolB) and that the Oxford weights are loaded."
    )


def check_extractor(fn: Callable[..., Any]) -> None:
    """Check a make_extractor(names) against nst's VGG19 on a random image."""
    names, img = extractor_case(seed=0)
    got = call_reporting_errors(run_extractor, function_name(fn), fn, names, img)
    compare_extractor(function_name(fn), got, names, img)
    case = f"{names} of a random {img.shape[2]} x {img.shape[3]} image, and their gradient"
    passed(function_name(fn), case, reference="nst's VGG19", tolerance="rtol 1e-4")


# --- exercise 2: the Gram matrix --------------------------------------------------------------


def gram_case(seed: int) -> torch.Tensor:
    """Random (B,C,H,W) features, B in 1-2, C in 3-6, H and W in 2-7, some negative."""
    g = torch.Generator().manual_seed(seed)
    ranges = ((1, 3), (3, 7), (2, 8), (2, 8))  # B, C, H, W
    return torch.randn(*(int(torch.randint(*r, (), generator=g)) for r in ranges), generator=g)


def run_gram(fn: Callable[..., Any], feats: torch.Tensor) -> dict[str, Any]:
    """The learner's Gram matrices of ``feats`` and the gradient of their sum."""
    x = feats.clone().requires_grad_(True)
    out = fn(x)
    if torch.is_tensor(out) and out.requires_grad:
        out.sum().backward()
    grad = x.grad if x.grad is not None else torch.zeros(0)
    return {"gram": out if torch.is_tensor(out) else torch.zeros(0), "grad": grad}


def compare_gram(name: str, got: dict[str, Any], feats: torch.Tensor) -> None:
    """Raise CheckError unless ``got`` (run_gram's) is nst's Gram matrix and its gradient."""
    x = feats.clone().requires_grad_(True)
    want = gram_matrix(x)
    want.sum().backward()
    b, c, h, w = feats.shape
    factors = {"H·W": h * w, "C": c, "C·H·W": c * h * w, "B·C·H·W": b * c * h * w}
    require_close(name, _tensor(got["gram"]).float(), want.detach(), factors)
    if not _close(_tensor(got["grad"]).float(), x.grad):
        raise CheckError(f"{name}'s result carries no gradient to feats: remove any .detach().")


def check_gram(fn: Callable[..., Any]) -> None:
    """Check a gram(feats) against nst.gram_matrix on random features."""
    feats = gram_case(seed=0)
    got = call_reporting_errors(run_gram, function_name(fn), fn, feats)
    compare_gram(function_name(fn), got, feats)
    passed(function_name(fn), f"random features of shape {tuple(feats.shape)}", "nst.gram_matrix")


# --- exercise 3: the losses -------------------------------------------------------------------


def losses_case(seed: int) -> dict[str, Any]:
    """Random small features, targets, a (1,3,H,W) image and weights for losses(...)."""
    g = torch.Generator().manual_seed(seed)
    layers = (PAPER, TUTORIAL)[seed % 2]  # TUTORIAL's conv2_2 is a content and a style layer
    names = [layers["content"], *layers["style"]]
    shapes = {n: (1, 3 + i, 6 - i // 2, 5) for i, n in enumerate(names)}  # (1,C,H,W)
    gen_feats = {n: torch.randn(*shapes[n], generator=g) for n in names}
    flat = {n: torch.randn(1, shapes[n][1], 30, generator=g) for n in layers["style"]}  # (1,C,M)
    grams = {
        n: x @ x.transpose(1, 2) / 30 for n, x in flat.items()
    }  # (1,C,C), as Gram matrices are
    targets = {"content": torch.randn(*shapes[layers["content"]], generator=g), "style": grams}
    weights = {k: float(v) for k, v in zip(WEIGHTS, 0.5 + torch.rand(3, generator=g))}
    img = torch.rand(1, 3, 7, 9, generator=g)
    return dict(gen_feats=gen_feats, targets=targets, gen_img=img, layers=layers, weights=weights)


def _losses_reference(case: dict[str, Any]) -> dict[str, torch.Tensor]:
    """nst's losses for a losses_case, with gradients in its gen_img and gen_feats."""
    layers, feats = case["layers"], case["gen_feats"]
    content = content_loss(feats[layers["content"]], case["targets"]["content"])
    style = style_loss({n: feats[n] for n in layers["style"]}, case["targets"]["style"])
    tv = tv_loss(case["gen_img"])
    w = case["weights"]
    total = w["content"] * content + w["style"] * style + w["tv"] * tv
    return {"total": total, "content": content, "style": style, "tv": tv}


def run_losses(fn: Callable[..., Any], case: dict[str, Any]) -> dict[str, Any]:
    """The learner's four losses on ``case`` and the gradients of the total."""
    case = _with_gradients(case)
    args = (case["gen_feats"], case["targets"], case["gen_img"], case["layers"], case["weights"])
    out = fn(*args)
    out = out if isinstance(out, dict) else {}  # compare_losses names what is missing
    got = {k: out[k] for k in ("total", "content", "style", "tv") if torch.is_tensor(out.get(k))}
    if "total" in got and got["total"].requires_grad:
        got["total"].backward()
    for label, x in (("img", case["gen_img"]), *case["gen_feats"].items()):
        got[f"grad_{label}"] = x.grad if x.grad is not None else torch.zeros(0)
    return got


def _with_gradients(case: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``case`` whose gen_img and gen_feats collect gradients."""
    feats = {n: f.clone().requires_grad_(True) for n, f in case["gen_feats"].items()}
    return {**case, "gen_feats": feats, "gen_img": case["gen_img"].clone().requires_grad_(True)}


def compare_losses(name: str, got: dict[str, Any], case: dict[str, Any]) -> None:
    """Raise CheckError unless ``got`` (run_losses's) holds nst's four losses and gradients."""
    case = _with_gradients(case)
    want = _losses_reference(case)
    want["total"].backward()
    factors = {  # constant factors a common mistake multiplies a loss by, named for the hint
        "style": {"L (the number of style layers)": len(case["layers"]["style"])},
        "tv": {"2 (the two mean terms are added, not averaged)": 2.0},
    }
    for key in ("content", "style", "tv", "total"):
        if key not in got:
            raise CheckError(
                f"{name} returned no tensor {key!r}: return a dict of all four losses."
            )
        value = _tensor(got[key]).float()
        require_close(f"{name}(...)[{key!r}]", value, want[key].detach(), factors.get(key, {}))
    for label, x in (("img", case["gen_img"]), *case["gen_feats"].items()):
        if not _close(_tensor(got[f"grad_{label}"]).float(), x.grad):
            raise CheckError(
                f"{name}'s total carries no gradient (or a wrong one) to gen_"
                f"{'img' if label == 'img' else 'feats'}: remove any .detach() or .item()."
            )


def check_losses(fn: Callable[..., Any]) -> None:
    """Check a losses(gen_feats, targets, gen_img, layers, weights) against nst's losses."""
    for seed in (0, 1):  # PAPER's layers, then TUTORIAL's (one layer for content and style)
        case = losses_case(seed)
        got = call_reporting_errors(run_losses, function_name(fn), fn, case)
        compare_losses(function_name(fn), got, case)
    passed(
        function_name(fn),
        "random features for PAPER's and TUTORIAL's layers, and gradients",
        "nst's content_loss, style_loss and tv_loss",
    )


# --- exercise 4: the whole method -------------------------------------------------------------


def history_array(history: Any) -> np.ndarray:
    """A history (a list of row dicts) as an (n, 5) array of COLUMNS; NaN for a missing number."""
    rows = history if isinstance(history, list) else []
    table = np.full((len(rows), len(COLUMNS)), np.nan)  # (n, 5)
    for i, row in enumerate(rows):
        for j, key in enumerate(COLUMNS):
            value = row.get(key) if isinstance(row, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):  # not a tensor
                table[i, j] = value
    return table


def run_transfer(
    fn: Callable[..., Any], content_img: torch.Tensor, style_img: torch.Tensor, steps: int
) -> dict[str, Any]:
    """The learner's result image and history for each of RUNS at CHECK_SIZE px, ``steps`` steps."""
    got = {}
    for run, (layers, optimizer) in RUNS.items():
        kwargs = {"layers": layers, "optimizer": optimizer, "steps": steps, "size": CHECK_SIZE}
        out = fn(content_img.clone(), style_img.clone(), **kwargs)
        pair = isinstance(out, tuple) and len(out) == 2 and torch.is_tensor(out[0])
        got[f"{run}_img"] = out[0].detach().cpu().float() if pair else torch.zeros(0)
        got[f"{run}_rows"] = history_array(out[1] if pair else None)
    return got


def _label(name: str, run: str) -> str:
    """How a message names one of RUNS: transfer(layers=PAPER, optimizer='lbfgs')."""
    layers, optimizer = RUNS[run]
    return f"{name}(layers={'PAPER' if layers is PAPER else 'TUTORIAL'}, optimizer={optimizer!r})"


def _compare_image(label: str, img: torch.Tensor, photo: torch.Tensor) -> None:
    """Raise CheckError unless ``img`` is (1,3,h,w) in [0, 1], the resized photo's size."""
    if img.numel() == 0:
        raise CheckError(f"{label} must return a pair (img, history), img a (1, 3, h, w) tensor.")
    if img.shape != photo.shape:
        raise CheckError(
            f"{label} returned an image of shape {tuple(img.shape)}, not {tuple(photo.shape)}: "
            "the photo resized to long side `size`."
        )
    if not torch.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise CheckError(f"{label}'s image has values outside [0, 1]: clamp it once, at the end.")


def _compare_history(label: str, rows: np.ndarray, steps: int, optimizer: str) -> None:
    """Raise CheckError unless ``rows`` holds one row of numbers per step, numbered 1, 2, ..."""
    n, lbfgs = len(rows), optimizer == "lbfgs"  # L-BFGS: fewer if it converges; its last line
    if not (1 if lbfgs else steps) <= n <= steps + lbfgs:  # search may evaluate once more
        raise CheckError(
            f"{label} with steps={steps} left {n} history rows: one row per loss evaluation (Adam: "
            "`steps`; L-BFGS with max_iter=steps, max_eval=steps: at most steps + 1; more means "
            "a torch whose line search ignores max_eval: update torch)."
        )
    if np.isnan(rows).any():
        raise CheckError(f"{label}'s history rows need {COLUMNS} as Python floats (float(value)).")
    if not np.array_equal(rows[:, 0], np.arange(1, n + 1)):
        raise CheckError(f"{label}'s history must number its steps 1, 2, 3, ...")


def _compare_distances(label: str, got: tuple[float, float], want: tuple[float, float]) -> None:
    """Raise CheckError unless each distance is within MARGIN of the reference's."""
    for which, g, w in zip(("content", "style"), got, want):
        if abs(g - w) > MARGIN * w:
            raise CheckError(
                f"{label} ends at {which} distance {g:.3f}, the reference solution at {w:.3f} "
                f"(±{MARGIN:.0%}): {HINTS[which]}."
            )


def measure(img: torch.Tensor, photo: torch.Tensor, painting: torch.Tensor) -> tuple[float, float]:
    """Lesson 06's (content, style) distances of a result, against the photo and the painting."""
    d = metrics.evaluate(img, photo, painting, _model())
    return d["content"], d["style"]


def compare_transfer(
    name: str,
    got: dict[str, Any],
    images: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    want: dict[str, tuple[float, float]],
) -> dict[str, tuple[float, float]]:
    """Raise CheckError unless each run's result is within MARGIN of ``want``; the distances."""
    photo, painting = (resize(img, CHECK_SIZE) for img in images)  # (1,3,h,w) each
    found = {}
    for run, (_, optimizer) in RUNS.items():
        img = _tensor(got[f"{run}_img"]).float()
        _compare_image(_label(name, run), img, photo)
        _compare_history(_label(name, run), np.asarray(got[f"{run}_rows"]), steps, optimizer)
        found[run] = measure(img, photo, painting)
        _compare_distances(_label(name, run), found[run], want[run])
    return found


def check_transfer(fn: Callable[..., Any]) -> None:
    """Check a transfer(...) by its results' distances: 3 runs at 128 px, ±10 % of the reference."""
    images = (
        load_image(data.content_path(VISIBLE_PAIR[0])),
        load_image(data.style_path(VISIBLE_PAIR[1])),
    )
    got = call_reporting_errors(run_transfer, function_name(fn), fn, *images, VISIBLE_STEPS)
    found = compare_transfer(function_name(fn), got, images, VISIBLE_STEPS, VISIBLE_DISTANCES)
    table = "; ".join(f"{run} {c:.3f} / {s:.3f}" for run, (c, s) in found.items())
    case = f"{' and '.join(VISIBLE_PAIR)} at {CHECK_SIZE} px, {VISIBLE_STEPS} steps per run"
    passed(
        function_name(fn),
        f"{case}; content / style distance: {table}",
        reference="the reference solution's distances",
        tolerance=f"each within {MARGIN:.0%}",
    )
