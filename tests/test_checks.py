"""The exercise self-checks: the reference passes, and each common mistake gets its sentence."""

from __future__ import annotations

import pytest
import torch

from nst import checks
from nst.checks import CheckError
from nst.losses import content_loss, gram_matrix, style_loss, tv_loss


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
