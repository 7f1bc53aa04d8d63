"""Tests for nst.losses: the Gram matrix, the three losses and make_loss_fn, by numbers."""

from __future__ import annotations

import pytest
import torch

from nst.data import content_path, style_path
from nst.errors import NSTError
from nst.images import load_image, noise_like
from nst.losses import (
    content_loss,
    gram_matrix,
    make_loss_fn,
    style_loss,
    tv_loss,
)

LAYERS = ["relu1_1", "relu3_1"]  # two cheap style layers for the loss-function tests


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------
# gram_matrix
# ---------------------------------------------------------------------------


def test_gram_matrix_by_hand() -> None:
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]]])  # (1,2,2,2)
    # G[i][j] = sum over the 4 positions of F_i * F_j, divided by 4:
    # G00 = (1+4+9+16)/4, G01 = (0+2-3+8)/4, G11 = (0+1+1+4)/4.
    expected = torch.tensor([[[7.5, 1.75], [1.75, 1.5]]])
    torch.testing.assert_close(gram_matrix(feats), expected)


def test_gram_matrix_batched_has_no_mixing() -> None:
    a, b = _rand(1, 4, 5, 6, seed=1), _rand(1, 4, 5, 6, seed=2) * 3
    grams = gram_matrix(torch.cat([a, b]))  # (2,4,4)
    assert grams.shape == (2, 4, 4)
    torch.testing.assert_close(grams[0], gram_matrix(a)[0])
    torch.testing.assert_close(grams[1], gram_matrix(b)[0])
    assert not torch.allclose(grams[0], grams[1])


def test_gram_matrix_symmetric_and_size_independent() -> None:
    feats = _rand(1, 8, 6, 7, seed=3) - 0.5
    gram = gram_matrix(feats)
    assert gram.shape == (1, 8, 8)
    torch.testing.assert_close(gram, gram.transpose(1, 2))
    # Tiling the map 2x2 quadruples the positions but leaves every average product unchanged.
    torch.testing.assert_close(gram_matrix(feats.repeat(1, 1, 2, 2)), gram)


def test_gram_matrix_ignores_where_things_are() -> None:
    feats = _rand(1, 5, 4, 6, seed=4)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(5))
    shuffled = feats.reshape(1, 5, 24)[:, :, perm].reshape(1, 5, 4, 6)  # same perm, all channels
    assert not torch.equal(shuffled, feats)
    torch.testing.assert_close(gram_matrix(shuffled), gram_matrix(feats))


@pytest.mark.parametrize("shape", [(4, 5, 6), (2, 1, 3, 4, 5), (7,)])
def test_gram_matrix_rejects_non_4d(shape: tuple[int, ...]) -> None:
    with pytest.raises(NSTError, match=r"\(B, C, H, W\)"):
        gram_matrix(torch.rand(shape))


def test_gram_matrix_rejects_non_tensor() -> None:
    with pytest.raises(NSTError, match="list"):
        gram_matrix([[1.0]])


# ---------------------------------------------------------------------------
# content_loss, style_loss, tv_loss
# ---------------------------------------------------------------------------


def test_content_loss_values() -> None:
    p = _rand(1, 8, 4, 4, seed=6)
    f = _rand(1, 8, 4, 4, seed=7)
    assert content_loss(p, p) == 0
    assert content_loss(f, p) > 0
    # Relative: mean((F - P)^2) / mean(P^2).
    expected = ((f - p) ** 2).mean() / (p**2).mean()
    torch.testing.assert_close(content_loss(f, p), expected)
    torch.testing.assert_close(
        content_loss(torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)), torch.tensor(1.0)
    )
    torch.testing.assert_close(content_loss(10 * f, 10 * p), content_loss(f, p))
    assert content_loss(f, p).dim() == 0


def test_content_loss_shape_mismatch() -> None:
    with pytest.raises(NSTError, match="one shape") as err:
        content_loss(torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 5))
    assert "\n" not in str(err.value)
    with pytest.raises(NSTError):
        content_loss(torch.rand(8, 4, 4), torch.rand(8, 4, 4))


def _style_setup() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Generated features for two layers, and targets equal on 'a' but different on 'b'."""
    gen = {"a": _rand(1, 3, 4, 4, seed=8), "b": _rand(1, 5, 2, 3, seed=9)}
    targets = {"a": gram_matrix(gen["a"]), "b": gram_matrix(_rand(1, 5, 2, 3, seed=10))}
    return gen, targets


def test_style_loss_zero_for_matching_grams() -> None:
    gen, _ = _style_setup()
    assert style_loss(gen, {name: gram_matrix(f) for name, f in gen.items()}) == 0


def test_style_loss_values_and_default_weights() -> None:
    gen, targets = _style_setup()
    per_layer = {
        name: ((gram_matrix(gen[name]) - targets[name]) ** 2).mean() / (targets[name] ** 2).mean()
        for name in targets
    }
    assert per_layer["a"] == 0 and per_layer["b"] > 0
    loss = style_loss(gen, targets)
    assert loss > 0
    torch.testing.assert_close(loss, (per_layer["a"] + per_layer["b"]) / 2)  # default 1/L
    torch.testing.assert_close(loss, style_loss(gen, targets, {"a": 0.5, "b": 0.5}))
    torch.testing.assert_close(style_loss(gen, targets, {"a": 1.0, "b": 3.0}), 3 * per_layer["b"])


def test_style_loss_layer_weights_respected() -> None:
    gen, targets = _style_setup()
    assert style_loss(gen, targets, {"a": 1.0, "b": 0.0}) == 0  # 'b' is the only difference
    assert style_loss(gen, targets, {"a": 0.0, "b": 1.0}) > 0


def test_tv_loss_values() -> None:
    assert tv_loss(torch.full((1, 3, 5, 4), 0.3)) == 0
    img = torch.tensor(
        [[[[0.0, 1.0], [0.5, 0.5]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.3]]]]
    )  # (1,3,2,2)
    # Vertical differences: 0.5, -0.5 | 0, 0 | 0, 0.3 -> squares sum 0.59 over 6.
    # Horizontal differences: 1, 0 | 0, 0 | 0, 0.3 -> squares sum 1.09 over 6.
    torch.testing.assert_close(tv_loss(img), torch.tensor((0.59 + 1.09) / 6))
    noise = _rand(1, 3, 16, 16, seed=11)
    assert tv_loss(noise) > 0.1  # neighbouring uniform pixels: E[(u - v)^2] = 1/6 per direction
    assert tv_loss(noise) > 10 * tv_loss(torch.linspace(0, 1, 16).expand(1, 3, 16, 16))


# ---------------------------------------------------------------------------
# make_loss_fn
# ---------------------------------------------------------------------------


def test_make_loss_fn_total_is_the_weighted_sum(model, content64, style64) -> None:
    loss_fn = make_loss_fn(
        model,
        content64,
        style64,
        style_layers=LAYERS,
        content_weight=2.0,
        style_weight=3.0,
        tv_weight=5.0,
    )
    out = loss_fn(noise_like(content64))
    assert set(out) == {"total", "content", "style", "tv"}
    assert all(v.dim() == 0 for v in out.values())
    assert out["content"] > 0 and out["style"] > 0 and out["tv"] > 0
    expected = 2.0 * out["content"] + 3.0 * out["style"] + 5.0 * out["tv"]
    torch.testing.assert_close(out["total"], expected)


def test_make_loss_fn_content_only(model, content64) -> None:
    loss_fn = make_loss_fn(model, content64, None, style_weight=10.0)
    assert loss_fn(content64)["total"] == 0  # the content image against itself
    out = loss_fn(noise_like(content64))
    assert out["style"] == 0 and out["tv"] == 0
    assert out["content"] > 0
    torch.testing.assert_close(out["total"], out["content"])


def test_make_loss_fn_style_only(model, content64, style64) -> None:
    loss_fn = make_loss_fn(model, None, style64, style_layers=LAYERS, style_weight=4.0)
    out = loss_fn(noise_like(content64))  # the style target need not have gen_img's size
    assert out["content"] == 0 and out["tv"] == 0
    assert out["style"] > 0
    torch.testing.assert_close(out["total"], 4.0 * out["style"])


def test_make_loss_fn_matches_the_loss_functions(model, content64, style64) -> None:
    from nst.vgg import extract_features

    loss_fn = make_loss_fn(model, content64, style64, style_layers=LAYERS)
    gen = noise_like(content64, seed=3)
    out = loss_fn(gen)
    feats = extract_features(model, gen, ["relu4_2", *LAYERS])
    target = extract_features(model, content64, ["relu4_2"])["relu4_2"]
    grams = {k: gram_matrix(v) for k, v in extract_features(model, style64, LAYERS).items()}
    torch.testing.assert_close(out["content"], content_loss(feats["relu4_2"], target))
    torch.testing.assert_close(out["style"], style_loss(feats, grams))


def test_make_loss_fn_gradient_reaches_gen_img(model, content64, style64) -> None:
    loss_fn = make_loss_fn(model, content64, style64, style_layers=LAYERS)
    gen = noise_like(content64).requires_grad_(True)
    loss_fn(gen)["total"].backward()
    assert gen.grad is not None and gen.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_make_loss_fn_errors(model, content64, style64) -> None:
    with pytest.raises(NSTError, match="content_img, a style_img, or both"):
        make_loss_fn(model, None, None)
    with pytest.raises(NSTError, match="layer_weights"):
        make_loss_fn(model, content64, style64, style_layers=LAYERS, layer_weights={"relu5_1": 1})
    loss_fn = make_loss_fn(model, content64, style64, style_layers=LAYERS)
    with pytest.raises(NSTError, match="content image's size"):
        loss_fn(torch.rand(1, 3, 32, 32))


def test_same_weights_work_at_two_sizes(model) -> None:
    losses = {}
    for px in (64, 96):
        content = load_image(content_path("chelsea"), long_side=px)
        style = load_image(style_path("starry_night"), long_side=px)
        out = make_loss_fn(model, content, style)(noise_like(content))
        losses[px] = {key: float(out[key]) for key in ("content", "style")}
    for key in ("content", "style"):
        ratio = losses[96][key] / losses[64][key]
        assert 1 / 3 < ratio < 3, (key, losses)
        assert 0.1 < losses[64][key] < 10, (key, losses)  # "about 1 for an image matching nothing"


def test_style_loss_rejects_unknown_layer_weights() -> None:
    grams = {"relu1_1": gram_matrix(_rand(1, 4, 3, 3))}
    with pytest.raises(NSTError, match="relu9_9"):
        style_loss({"relu1_1": _rand(1, 4, 3, 3)}, grams, {"relu9_9": 1.0})


def test_style_loss_needs_a_layer() -> None:
    with pytest.raises(NSTError, match="at least one"):
        style_loss({}, {})


def test_tv_loss_of_a_one_pixel_high_image_is_finite() -> None:
    img = torch.tensor([[[[0.0, 1.0, 0.0]]]]).expand(1, 3, 1, 3)  # (1,3,1,3): one row
    # Only horizontal neighbours: differences 1 and -1 -> mean square 1.
    assert tv_loss(img).item() == pytest.approx(1.0)
    assert tv_loss(torch.zeros(1, 3, 1, 1)).item() == 0.0
