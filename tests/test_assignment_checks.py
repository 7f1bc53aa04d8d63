"""A1-A3's visible checks (nst.checks.assignment_checks, nst.checks.schedule_checks): each passes a
right answer, and fails the usual wrong ones with the sentence that names the mistake."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import nst
import nst.checks.assignment_checks as checks
import nst.checks.schedule_checks as schedules
from nst.checks import CheckError

# --- receptive_field -----------------------------------------------------------------------------


def _field(layers, *, stride_first=False, flat=False, whole_kernel=False):
    """(field, stride) of a stack, right or with one of the usual mistakes."""
    field, stride = 1, 1
    for layer in layers:
        if not hasattr(layer, "kernel_size"):
            continue
        k, s = (v[0] if isinstance(v, tuple) else v for v in (layer.kernel_size, layer.stride))
        if stride_first:
            stride *= s
        field += (k if whole_kernel else k - 1) * (1 if flat else stride)
        if not stride_first:
            stride *= s
    return field, stride


def test_receptive_field_right(capsys) -> None:
    checks.check_receptive_field(_field)
    assert capsys.readouterr().out.startswith("✓ _field gives the right (field, stride)")


@pytest.mark.parametrize(
    "mistake, sentence",
    [
        ("flat", "widen it by (k - 1) times the stride so far"),
        ("stride_first", "a layer's own stride was applied before its kernel"),
        ("whole_kernel", "adds k - 1 positions to the field"),
    ],
)
def test_receptive_field_mistakes(mistake, sentence) -> None:
    with pytest.raises(CheckError, match=re.escape(sentence)):
        checks.check_receptive_field(lambda layers: _field(layers, **{mistake: True}))


def test_receptive_field_not_a_pair() -> None:
    with pytest.raises(CheckError, match=r"return \(field, stride\)"):
        checks.check_receptive_field(lambda layers: _field(layers)[0])


def test_receptive_field_reference_agrees_with_nst_on_every_layer() -> None:
    vgg = nst.vgg.vgg19_features()
    for _, name, _, _ in nst.vgg.LAYER_TABLE:
        layers = list(vgg[: nst.vgg.LAYER_INDEX[name] + 1])
        assert checks.receptive_field_of(layers) == nst.vgg.receptive_field(name), name


def test_receptive_field_reference_measured_by_backprop() -> None:
    """The formula is what backpropagation from one position reaches (average pooling)."""
    torch.manual_seed(0)
    stack = nn.Sequential(
        nn.Conv2d(3, 2, 5, stride=2, padding=2), nn.AvgPool2d(3), nn.Conv2d(2, 2, 3)
    )
    x = torch.rand(1, 3, 96, 96, requires_grad=True)
    stack(x)[0, :, 3, 3].sum().backward()
    reached = x.grad[0].abs().sum(dim=0) > 0  # (96, 96)
    rows = reached.any(dim=1).nonzero()
    assert int(rows.max() - rows.min()) + 1 == checks.receptive_field_of(list(stack))[0]


# --- channel_covariance --------------------------------------------------------------------------


def _covariance(feats: torch.Tensor) -> torch.Tensor:
    b, c, h, w = feats.shape
    flat = feats.reshape(b, c, h * w)
    centred = flat - flat.mean(dim=2, keepdim=True)
    return torch.einsum("bim,bjm->bij", centred, centred) / (h * w)


def test_covariance_right(capsys) -> None:
    checks.check_channel_covariance(_covariance)
    assert capsys.readouterr().out.startswith("✓ _covariance matches")


def _gram(feats):
    flat = feats.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


def _across_channels(feats):
    flat = feats.flatten(2)
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


@pytest.mark.parametrize(
    "fn, sentence",
    [
        (_gram, "is the Gram matrix"),
        (lambda f: _covariance(f) * 24 / 23, "divided by H*W - 1"),
        (_across_channels, "subtracted the mean over the channels"),
        (lambda f: _covariance(f).detach(), "carries no gradient"),
        (lambda f: _covariance(f).sub_(0) if f.sub_(1) is not None else None, "in place"),
        (lambda f: _covariance(f)[0], "returned shape (5, 5)"),
    ],
)
def test_covariance_mistakes(fn, sentence) -> None:
    with pytest.raises(CheckError, match=re.escape(sentence)):
        checks.check_channel_covariance(fn)


def test_covariance_reference_is_gram_minus_means() -> None:
    feats = checks.covariance_inputs(1, (2, 4, 3, 5))
    mu = feats.mean(dim=(2, 3))
    gram = nst.gram_matrix(feats)
    assert torch.allclose(checks.covariance_of(feats) + mu[:, :, None] * mu[:, None, :], gram)


# --- balanced_layer_weights ----------------------------------------------------------------------


def _balanced(model, img, grams):
    norms = {}
    for layer, target in grams.items():
        x = img.detach().clone().requires_grad_(True)
        nst.losses.gram_loss(nst.extract_features(model, x, [layer])[layer], target).backward()
        norms[layer] = x.grad.norm().item()
    total = sum(1 / g for g in norms.values())
    return {layer: (1 / g) / total for layer, g in norms.items()}


def test_balanced_weights_right(model, capsys) -> None:
    checks.check_balanced_layer_weights(_balanced, model)
    assert capsys.readouterr().out.startswith("✓ _balanced balances")


def _proportional(model, img, grams):
    inverse = {k: 1 / w for k, w in _balanced(model, img, grams).items()}
    return {k: v / sum(inverse.values()) for k, v in inverse.items()}


def _by_loss(model, img, grams):
    inverse = {k: 1 / v for k, v in checks.layer_losses(model, img, grams).items()}
    return {k: v / sum(inverse.values()) for k, v in inverse.items()}


@pytest.mark.parametrize(
    "fn, sentence",
    [
        (_proportional, "grow with the gradient's norm"),
        (lambda m, i, g: {k: 3 * w for k, w in _balanced(m, i, g).items()}, "add up to 1"),
        (lambda m, i, g: {k: 1 / len(g) for k in g}, "are equal"),
        (_by_loss, "are 1 / loss"),
        (lambda m, i, g: dict(list(_balanced(m, i, g).items())[:2]), "one float per layer"),
    ],
)
def test_balanced_weights_mistakes(model, fn, sentence) -> None:
    with pytest.raises(CheckError, match=re.escape(sentence)):
        checks.check_balanced_layer_weights(fn, model)


def test_balanced_weights_make_every_layer_pull_as_hard(model, content64, style64) -> None:
    grams = checks.balance_inputs(model, content64, style64, nst.STYLE_LAYERS)
    weights = checks.balanced_weights_of(model, content64, grams)
    norms = checks.gradient_norms(model, content64, grams)
    pulls = [weights[k] * norms[k] for k in grams]
    assert abs(sum(weights.values()) - 1) < 1e-9
    assert max(pulls) / min(pulls) < 1 + 1e-9


# --- pareto_front --------------------------------------------------------------------------------


def test_front_right(capsys) -> None:
    checks.check_pareto_front(checks.pareto_names)
    assert "keeps ['a', 'b', 'd', 'f']" in capsys.readouterr().out


def _strict(results):
    return [
        n
        for n, r in results.items()
        if not any(
            o["content"] < r["content"] and o["style"] < r["style"] for o in results.values()
        )
    ]


def _no_ties(results):
    return [
        n
        for n, r in results.items()
        if not any(
            o is not r and o["content"] <= r["content"] and o["style"] <= r["style"]
            for o in results.values()
        )
    ]


def _by_sum(results):
    return [min(results, key=lambda n: results[n]["content"] + results[n]["style"])]


@pytest.mark.parametrize(
    "fn, sentence",
    [
        (_strict, "equals another on one distance and is worse on the other is beaten"),
        (_no_ties, "keep both"),
        (lambda r: checks.pareto_names(r)[::-1], "in the order of results"),
        (_by_sum, "do not add the distances"),
        (lambda r: set(checks.pareto_names(r)), "returned a set; return a list of names"),
        (lambda r: ",".join(checks.pareto_names(r)), "return a list of names"),
    ],
)
def test_front_mistakes(fn, sentence) -> None:
    with pytest.raises(CheckError, match=re.escape(sentence)):
        checks.check_pareto_front(fn)


# --- my_schedule ---------------------------------------------------------------------------------


def _schedule(budget, size):
    half = size // 2
    return [(half, budget), (size, int(budget - budget * (half / size) ** 2))]


def test_schedule_right(model, capsys) -> None:
    schedules.check_schedule(_schedule, model)
    assert "one size does not beat it" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, sentence",
    [
        (lambda b, s: [(s, b)], "at least two sizes"),
        (lambda b, s: [(s, 2), (s // 2, b)], "must grow, smallest first"),
        (lambda b, s: [(8, 4), (s, b - 1)], "start at 16 px or more"),
        (lambda b, s: [(s // 2, 4), (2 * s, 1)], "end at the result's 64 px"),
        (lambda b, s: [(s // 2, 0), (s, b)], "at least one step"),
        (lambda b, s: [(s // 2, b), (s, b)], "over the budget 24"),
        (lambda b, s: [(s // 2, 2.5), (s, b - 1)], "pairs of whole numbers"),
        (lambda b, s: [(s // 2, 4 * b - 8), (s, 2)], "one size beats your schedule"),
    ],
)
def test_schedule_mistakes(model, fn, sentence) -> None:
    with pytest.raises(CheckError, match=re.escape(sentence)):
        schedules.check_schedule(fn, model)


def test_schedule_cost_counts_pixels() -> None:
    assert schedules.schedule_cost([(32, 8), (64, 10)], 64) == 12.0
