"""The exercise self-checks: the reference passes, and each common mistake gets its sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nst import checks
from nst.checks import CheckError
from nst.images import load_image
from nst.losses import content_loss, gram_matrix, style_loss, tv_loss
from nst.masks import masked_gram
from nst.style_stats import mean_std, mean_std_loss
from nst.vgg import LAYER_INDEX, extract_features


def _msg(check, fn) -> str:
    with pytest.raises(CheckError) as info:
        check(fn)
    message = str(info.value)
    assert "\n" not in message  # one sentence, one line
    return message


# --- the references pass ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check, fn",
    [
        (checks.check_gram_matrix, gram_matrix),
        (checks.check_content_loss, content_loss),
        (checks.check_style_loss, style_loss),
        (checks.check_tv_loss, tv_loss),
        (checks.check_masked_gram, masked_gram),
        (checks.check_mean_std_loss, mean_std_loss),
    ],
)
def test_reference_passes(check, fn, capsys: pytest.CaptureFixture[str]) -> None:
    check(fn)
    assert capsys.readouterr().out.startswith("✓")


def test_einsum_gram_passes() -> None:
    def my_gram(f):
        return torch.einsum("bchw,bdhw->bcd", f, f) / (f.shape[2] * f.shape[3])

    checks.check_gram_matrix(my_gram)


# --- Gram matrix mistakes -----------------------------------------------------------------------


def test_gram_not_written() -> None:
    def gram(f):
        raise NotImplementedError("Exercise 1")

    assert "not written yet" in _msg(checks.check_gram_matrix, gram)


def test_gram_missing_normalisation() -> None:
    def gram(f):
        b, c, h, w = f.shape
        flat = f.reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2)

    assert "too large by a factor of H*W" in _msg(checks.check_gram_matrix, gram)


def test_gram_divided_by_chw() -> None:
    def gram(f):
        b, c, h, w = f.shape
        flat = f.reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2) / (c * h * w)

    assert "too small by a factor of C" in _msg(checks.check_gram_matrix, gram)


def test_gram_transposed_product() -> None:
    def gram(f):
        b, c, h, w = f.shape
        flat = f.reshape(b, c, h * w)
        return flat.transpose(1, 2) @ flat / (h * w)

    assert "not Fᵀ F" in _msg(checks.check_gram_matrix, gram)


def test_gram_batch_flattened_into_channels() -> None:
    def gram(f):
        b, c, h, w = f.shape
        flat = f.reshape(b * c, h * w)
        return flat @ flat.T / (h * w)

    assert "mixes the images of a batch" in _msg(checks.check_gram_matrix, gram)


def test_gram_batch_mixed_by_a_wrong_reshape() -> None:
    def gram(f):
        b, c, h, w = f.shape
        flat = f.reshape(c, b, h * w).transpose(0, 1)  # wrong: interleaves images and channels
        return flat @ flat.transpose(1, 2) / (h * w)

    assert "batch" in _msg(checks.check_gram_matrix, gram)


def test_gram_detached() -> None:
    def gram(f):
        b, c, h, w = f.shape
        flat = f.detach().reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2) / (h * w)

    assert ".detach()" in _msg(checks.check_gram_matrix, gram)


def test_gram_in_place() -> None:
    def gram(f):
        b, c, h, w = f.shape
        f /= 1.0 + 0 * f.sum()  # harmless value, but in place
        f.add_(1.0)
        flat = (f - 1.0).reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2) / (h * w)

    assert "in place" in _msg(checks.check_gram_matrix, gram)


def test_gram_python_loop() -> None:
    def gram(f):
        b, c, h, w = f.shape
        out = torch.zeros(b, c, c)
        for i in range(c):
            for j in range(c):
                out[:, i, j] = (f[:, i] * f[:, j]).sum(dim=(1, 2)) / (h * w)
        return out

    assert "Python loop" in _msg(checks.check_gram_matrix, gram)


def test_gram_nan() -> None:
    def gram(f):
        return gram_matrix(f) * float("nan")

    assert "NaN" in _msg(checks.check_gram_matrix, gram)


def test_gram_returns_numpy() -> None:
    def gram(f):
        return gram_matrix(f).numpy()

    assert "return a torch tensor" in _msg(checks.check_gram_matrix, gram)


# --- losses -------------------------------------------------------------------------------------


def test_content_loss_plain_mse() -> None:
    def loss(gen, target):
        return ((gen - target) ** 2).mean()

    assert "plain MSE" in _msg(checks.check_content_loss, loss)


def test_content_loss_item_breaks_gradient() -> None:
    def loss(gen, target):
        return torch.tensor(content_loss(gen, target).item())

    assert "no gradient" in _msg(checks.check_content_loss, loss)


def test_style_loss_summed_not_averaged() -> None:
    def loss(gen_feats, grams):
        return style_loss(gen_feats, grams) * len(grams)

    assert "factor of L" in _msg(checks.check_style_loss, loss)


def test_style_loss_wrong_shape() -> None:
    def loss(gen_feats, grams):
        return torch.stack([style_loss(gen_feats, {k: g}) for k, g in grams.items()])

    assert "shape (2,)" in _msg(checks.check_style_loss, loss)


def test_tv_loss_not_zero_on_constant() -> None:
    def loss(img):
        return (img**2).mean()

    assert "constant image" in _msg(checks.check_tv_loss, loss)


def test_tv_loss_summed_over_directions_twice() -> None:
    def loss(img):
        return 2 * tv_loss(img)

    assert "factor of 2" in _msg(checks.check_tv_loss, loss)


def test_raising_function_is_one_sentence() -> None:
    def loss(img):
        return img.reshape(7, -1)  # a shape error inside the learner's code

    assert "raised RuntimeError" in _msg(checks.check_tv_loss, loss)


def test_style_loss_changing_the_features_in_place() -> None:
    def loss(gen_feats, grams):
        gen_feats["relu1_1"].mul_(1.0).add_(0.5)
        return style_loss(gen_feats, grams)

    assert "in place" in _msg(checks.check_style_loss, loss)


# --- lesson 08: the masked Gram matrix and the mean-std loss ------------------------------------


def test_einsum_masked_gram_passes() -> None:
    def my_masked_gram(f, m):
        fm = f * m
        return torch.einsum("bchw,bdhw->bcd", fm, fm) / m.sum()

    checks.check_masked_gram(my_masked_gram)


def _flat_masked(f, m):
    b, c, h, w = f.shape
    return f.reshape(b, c, h * w), (f * m).reshape(b, c, h * w)


@pytest.mark.parametrize(
    "mistake, words",
    [
        (
            lambda f, m: (lambda x, fm: fm @ fm.transpose(1, 2) / (f.shape[2] * f.shape[3]))(
                *_flat_masked(f, m)
            ),
            "divide by mask.sum()",
        ),
        (
            lambda f, m: (lambda x, fm: fm @ x.transpose(1, 2) / m.sum())(*_flat_masked(f, m)),
            "masks only one side",
        ),
        (lambda f, m: gram_matrix(f), "ignores the mask"),
        (lambda f, m: masked_gram(f, m) / f.shape[1], "too small by a factor of C"),
        (lambda f, m: masked_gram(f, m)[0], "mixes the images of a batch"),
        (lambda f, m: masked_gram(f, m).sum(), "returned shape ()"),
        (lambda f, m: masked_gram(f, m) + 0.01, "differs from the reference"),
        (lambda f, m: masked_gram(f.detach(), m), "no gradient"),
    ],
    ids=["by-hw", "one-side", "no-mask", "by-c", "batch", "scalar", "wrong", "detached"],
)
def test_check_masked_gram_mistakes(mistake, words) -> None:
    assert words in _msg(checks.check_masked_gram, mistake)


def test_masked_gram_not_divided_gets_the_factor_hint() -> None:
    def masked(f, m):
        return masked_gram(f, m) * m.sum()

    assert "too large by a factor of Σm" in _msg(checks.check_masked_gram, masked)


def test_masked_gram_divided_by_hw_and_by_c_gets_the_factor_hint() -> None:
    def masked(f, m):
        return masked_gram(f, m) * m.sum() / (f.shape[1] * f.shape[2] * f.shape[3])

    assert "check the normalisation" in _msg(checks.check_masked_gram, masked)


def _unbiased_mean_std(feats):
    flat = feats.flatten(2)
    return torch.stack([flat.mean(dim=2), flat.std(dim=2)], dim=1)  # torch's default: / (M - 1)


@pytest.mark.parametrize(
    "mistake, words",
    [
        (lambda g, t: ((mean_std(g) - t) ** 2).mean(), "plain MSE"),
        (
            lambda g, t: ((_unbiased_mean_std(g) - t) ** 2).mean() / (t**2).mean(),
            "correction=0",
        ),
        (lambda g, t: ((_unbiased_mean_std(g) - t) ** 2).mean(), "correction=0"),
        (
            lambda g, t: (
                (
                    (torch.stack([g.flatten(2).mean(2), g.flatten(2).var(2, correction=0)], 1) - t)
                    ** 2
                ).mean()
                / (t**2).mean()
            ),
            "square root",
        ),
        (lambda g, t: mean_std_loss(g, t) * 2 * g.shape[0] * g.shape[1], "factor of 2*B*C"),
        (lambda g, t: ((mean_std(g) - t) ** 2).mean(dim=(1, 2)), "shape (2,)"),
        (lambda g, t: mean_std_loss(g.detach(), t), "no gradient"),
    ],
    ids=["plain-mse", "unbiased", "unbiased-plain", "variance", "summed", "per-image", "detached"],
)
def test_check_mean_std_loss_mistakes(mistake, words) -> None:
    assert words in _msg(checks.check_mean_std_loss, mistake)


# --- loading (assignment A1) --------------------------------------------------------------------


def _pil_loader(path, long_side):
    """A correct loader written with PIL and NumPy, as a student would (bicubic resampling)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = long_side / max(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    pixels = torch.from_numpy(np.array(img))  # (H, W, 3) uint8
    return pixels.permute(2, 0, 1).unsqueeze(0).float() / 255


@pytest.mark.parametrize("fn", [load_image, _pil_loader], ids=["nst", "pil"])
def test_check_load_passes(fn, capsys: pytest.CaptureFixture[str]) -> None:
    def load_and_preprocess(path, long_side):
        return fn(path, long_side=long_side)

    checks.check_load(load_and_preprocess)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "mistake, words",
    [
        (lambda p, n: _pil_loader(p, n).flip(1), "BGR"),
        (lambda p, n: _pil_loader(p, n) * 255, "divide by 255"),
        (lambda p, n: (_pil_loader(p, n) * 255).to(torch.uint8), "float"),
        (lambda p, n: _pil_loader(p, n)[0], "batch dimension"),
        (lambda p, n: _pil_loader(p, n)[0].permute(1, 2, 0), "channels come first"),
        (lambda p, n: load_image(p), "long_side"),
        (lambda p, n: load_image(p, long_side=n)[..., : n // 3, :], "aspect ratio"),
        (lambda p, n: torch.rand(1, 3, n // 2, n), "differs from nst.load_image"),
        (lambda p, n: torch.from_numpy(np.array(Image.open(p))), "RGB"),
    ],
    ids=[
        "bgr",
        "0-255",
        "uint8",
        "no-batch",
        "channels-last",
        "no-resize",
        "aspect",
        "wrong",
        "mode",
    ],
)
def test_check_load_mistakes(mistake, words) -> None:
    assert words in _msg(checks.check_load, mistake)


def test_check_load_not_written() -> None:
    def load_and_preprocess(path, long_side):
        raise NotImplementedError("Exercise 1: write load_and_preprocess")

    assert "not written yet" in _msg(checks.check_load, load_and_preprocess)


# --- feature extraction (assignment A1) ---------------------------------------------------------


def _extractor(offset: int = 0, preprocess: bool = True, detach: bool = False):
    """A loop over model.features like a student's, with an index offset or a missing step."""

    def extract_named_features(model, img, layers):
        wanted = {LAYER_INDEX[name] + offset: name for name in layers}
        x = model.preprocess(img) if preprocess else img
        out = {}
        for index, layer in enumerate(model.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x.detach() if detach else x
            if index == max(wanted):
                break
        return out

    return extract_named_features


def test_check_extract_features_passes(model, capsys: pytest.CaptureFixture[str]) -> None:
    checks.check_extract_features(extract_features, model)
    checks.check_extract_features(_extractor(), model)
    assert capsys.readouterr().out.count("✓") == 2


def test_check_extract_features_pre_relu(model) -> None:
    assert "before the ReLU" in _msg(
        lambda fn: checks.check_extract_features(fn, model), _extractor(-1)
    )


def test_check_extract_features_post_relu(model) -> None:
    def relu_for_conv(m, img, layers):
        feats = extract_features(m, img, [n.replace("conv", "relu") for n in layers])
        return {n: feats[n.replace("conv", "relu")] for n in layers}

    message = _msg(lambda fn: checks.check_extract_features(fn, model), relu_for_conv)
    assert "after its ReLU" in message


def test_check_extract_features_wrong_layer(model) -> None:
    message = _msg(
        lambda fn: checks.check_extract_features(fn, model), _extractor(+3)
    )  # relu1_1 -> pool1
    assert "shape" in message


def test_check_extract_features_no_preprocessing(model) -> None:
    message = _msg(
        lambda fn: checks.check_extract_features(fn, model), _extractor(preprocess=False)
    )
    assert "model.preprocess" in message


def test_check_extract_features_detached(model) -> None:
    message = _msg(lambda fn: checks.check_extract_features(fn, model), _extractor(detach=True))
    assert "no gradient" in message


def test_check_extract_features_missing_layers(model) -> None:
    def only_first(m, img, layers):
        return extract_features(m, img, layers[:1])

    assert "exactly the layers" in _msg(
        lambda fn: checks.check_extract_features(fn, model), only_first
    )


# --- the L-BFGS closure (assignment A3) ---------------------------------------------------------


def _closure_maker(zero=True, backward=True, clamp=False, item=False, rows=1, tensors=False):
    """make_closure as in assignment A3, with one of the usual mistakes switched on."""

    def make_closure(optimizer, gen_img, loss_fn, history):
        def closure():
            if zero:
                optimizer.zero_grad()
            if clamp:
                with torch.no_grad():
                    gen_img.clamp_(0, 1)
            losses = loss_fn(gen_img)
            if backward:
                losses["total"].backward()
            for _ in range(rows):
                values = {k: v if tensors else float(v.detach()) for k, v in losses.items()}
                history.append({"step": len(history) + 1, **values})
            return losses["total"].item() if item else losses["total"]

        return closure

    return make_closure


def test_check_closure_passes(capsys: pytest.CaptureFixture[str]) -> None:
    checks.check_closure(_closure_maker())
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"zero": False}, "zero_grad"),
        ({"backward": False}, "backward"),
        ({"clamp": True}, "clamp"),
        ({"item": True}, "not .item()"),
        ({"rows": 0}, "exactly one row"),
        ({"rows": 2}, "exactly one row"),
        ({"tensors": True}, "float(value)"),
    ],
    ids=["no-zero-grad", "no-backward", "clamp", "item", "no-row", "two-rows", "tensor-rows"],
)
def test_check_closure_mistakes(kwargs, words) -> None:
    assert words in _msg(checks.check_closure, _closure_maker(**kwargs))


def test_check_closure_evaluating_too_early() -> None:
    def make_closure(optimizer, gen_img, loss_fn, history):
        inner = _closure_maker()(optimizer, gen_img, loss_fn, history)
        inner()  # evaluates once while building: history is no longer empty
        return inner

    assert "only define and return" in _msg(checks.check_closure, make_closure)


def test_check_closure_not_written() -> None:
    def make_closure(optimizer, gen_img, loss_fn, history):
        raise NotImplementedError("Exercise 1: write make_closure")

    assert "not written yet" in _msg(checks.check_closure, make_closure)


# --- the public names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "CheckError",
        "check_gram_matrix",
        "check_content_loss",
        "check_style_loss",
        "check_tv_loss",
        "check_load",
        "check_extract_features",
        "check_closure",
    ],
)
def test_released_names_stay_in_nst_checks(name: str) -> None:
    """Released notebooks call ``nst.checks.<name>``: the package must keep every one of them."""
    assert name in checks.__all__
    assert callable(getattr(checks, name))
