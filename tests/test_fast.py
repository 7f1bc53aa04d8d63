"""Lesson 09: the fast network (nst.fast), its training (nst.perceptual, make train), its checks.

The committed networks are judged by ``make bench-fast`` (speed and distances at 512 px, printed
figures); here they are checked for what must always hold: their records, any input size, a
photo they never saw moved towards the painting, one sentence for a bad name or image.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F

import nst
from nst import fast, metrics, perceptual
from nst.checks._core import CheckError
from nst.checks.fast import check_instance_norm, check_overlap_counts, transposed_overlaps
from nst.errors import ImageError, NSTError
from nst.losses import gram_loss
from nst.speedups import gram_loss_by_hand
from nst.vgg import sha256_of
from tools import train

COMMITTED = ("great_wave", "starry_night")


@pytest.fixture(scope="module")
def untrained() -> fast.TransformerNet:
    """A fresh network with fixed random weights, in eval mode."""
    torch.manual_seed(0)
    return fast.TransformerNet().eval()


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (50, 64), (97, 130)])
def test_output_has_the_input_size_and_range(untrained, size) -> None:
    photo = torch.rand(1, 3, *size)
    out = fast.stylize(photo, untrained)
    assert out.shape == photo.shape
    assert 0 < out.min() and out.max() < 1


def test_a_bad_name_or_image_gets_one_sentence(untrained) -> None:
    with pytest.raises(NSTError, match=r"No trained network for 'mona_lisa'; choose one of") as e:
        fast.stylize(torch.rand(1, 3, 64, 64), "mona_lisa")
    assert all(name in str(e.value) for name in COMMITTED)
    with pytest.raises(ImageError, match=r"shape \(1, 3, H, W\)"):
        fast.stylize(torch.rand(3, 64, 64), untrained)
    with pytest.raises(ImageError, match="at least 32 px"):
        fast.stylize(torch.rand(1, 3, 20, 64), untrained)
    with pytest.raises(NSTError, match="norm must be one of instance, batch"):
        fast.TransformerNet(norm="layer")


def test_instance_norm_ignores_contrast_batch_norm_does_not() -> None:
    """The first convolution and its normalisation, on a photo and on it at 50 % contrast."""
    photo = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    dull = 0.5 * photo + 0.25
    torch.manual_seed(0)
    change = {}
    for norm in fast.NORMS:
        first = torch.nn.Sequential(*fast.TransformerNet(norm=norm).eval().net[:2])
        with torch.no_grad():
            change[norm] = (first(photo) - first(dull)).abs().max().item()
    assert change["instance"] < 0.01  # not 0: the eps under the square root
    assert change["batch"] > 0.1


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_network_and_its_record(name) -> None:
    info = fast.info(name)
    path = fast.FAST_DIR / f"{name}.pt"
    assert info["sha256"] == sha256_of(path)
    assert info["architecture"] == {"widths": [16, 32, 64], "n_residual": 5, "norm": "instance"}
    assert info["painting"] == name and info["seconds"] <= 45 * 60
    assert {"machine", "nst_commit", "date", "torch", "final_losses"} <= set(info)
    assert set(info["settings"]) == set(perceptual.TrainOptions().record())
    trained_on = {p.rsplit("/", 1)[-1].split(".")[0] for p in info["photos"]}
    assert not trained_on & set(nst.data.CONTENT_IMAGES), "a lesson photo was used in training"
    log = fast.training_log(name)
    assert len(log) == info["settings"]["steps"]
    assert torch.load(path, weights_only=True).keys() == fast.TransformerNet().state_dict().keys()


def test_make_train_defaults_are_the_starry_night_settings() -> None:
    assert fast.info("starry_night")["settings"] == perceptual.TrainOptions().record()


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_network_paints_a_photo_it_never_saw(model, name) -> None:
    photo = nst.load_image(nst.data.content_path("astronaut"), long_side=128)
    painting = nst.load_image(nst.data.style_path(name), long_side=128)
    out = fast.stylize(photo, fast.load(name))
    assert out.shape == photo.shape
    before = metrics.style_distance(photo, painting, model)
    assert metrics.style_distance(out, painting, model) < 0.7 * before
    assert metrics.ssim(out, photo) > 0.1  # the photo is still there


def test_random_crops_are_reproducible_and_fit_thin_photos() -> None:
    photos = [torch.rand(1, 3, 40, 200), torch.rand(1, 3, 90, 60)]
    a = perceptual.random_crops(photos, 48, 6, torch.Generator().manual_seed(3))
    b = perceptual.random_crops(photos, 48, 6, torch.Generator().manual_seed(3))
    assert a.shape == (6, 3, 48, 48) and torch.equal(a, b)


def test_hand_gradient_broadcasts_one_target_over_a_batch() -> None:
    feats = torch.randn(3, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    target = torch.rand(1, 5, 9, generator=torch.Generator().manual_seed(1))
    target = target @ target.transpose(1, 2) / 9  # (1,5,5): a Gram matrix, symmetric
    grads = []
    for loss in (gram_loss, gram_loss_by_hand):
        x = feats.clone().requires_grad_(True)
        value = loss(x, target)
        value.backward()
        grads.append((value.detach(), x.grad))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-7)


def test_perceptual_loss_is_nsts_loss_on_each_photo(model, content64, style64) -> None:
    loss_fn = perceptual.PerceptualLoss(model, style64)
    gen = nst.images.noise_like(content64)
    got = loss_fn(gen, content64)
    want = nst.make_loss_fn(model, content64, style64, style_weight=5.0, tv_weight=10.0)(gen)
    for key in ("content", "style", "tv"):  # the network runs in bfloat16: a few % apart
        assert got[key].item() == pytest.approx(want[key].item(), rel=0.05), key


def test_training_steps_lower_the_loss_on_a_batch(model, style64) -> None:
    torch.manual_seed(0)
    net = fast.TransformerNet()
    loss_fn = perceptual.PerceptualLoss(model, style64)
    batch = nst.load_image(nst.data.content_path("coffee"), long_side=48)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    rows = [perceptual.train_step(net, loss_fn, batch, optimizer) for _ in range(12)]
    assert rows[-1]["total"] < 0.6 * rows[0]["total"]


def test_make_train_smoke(tmp_path) -> None:
    """What `make train` runs, at 3 steps of 64 px crops: the files, the record, the log."""
    start = time.perf_counter()
    argv = ["--style", "great_wave", "--steps", "3", "--crop", "64", "--out", str(tmp_path)]
    assert train.main(argv) == 0
    seconds = time.perf_counter() - start
    info = json.loads((tmp_path / "great_wave.json").read_text())
    assert info["settings"]["steps"] == 3 and info["settings"]["crop"] == 64
    assert info["sha256"] == sha256_of(tmp_path / "great_wave.pt")
    assert len((tmp_path / "great_wave.log.csv").read_text().splitlines()) == 1 + 3
    net = fast.TransformerNet()
    net.load_state_dict(torch.load(tmp_path / "great_wave.pt", weights_only=True))
    print(f"make train, 3 steps at 64 px: {seconds:.1f} s")


def test_make_train_refuses_an_empty_photo_folder(tmp_path) -> None:
    with pytest.raises(NSTError, match="No .jpg or .png photos in"):
        train.main(["--style", "great_wave", "--steps", "1", "--photos", str(tmp_path)])


# --- lesson 09's checks ------------------------------------------------------------------------


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean) / (x.var((2, 3), keepdim=True, correction=0) + 1e-5).sqrt()


def test_check_instance_norm_passes_a_correct_one_and_names_mistakes(capsys) -> None:
    check_instance_norm(_instance_norm)
    assert "✓ _instance_norm matches nn.InstanceNorm2d" in capsys.readouterr().out
    wrong = {
        "divides by zero": lambda x: (
            (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True, correction=0)
        ),
        "batch normalisation": lambda x: F.batch_norm(x, None, None, training=True),
        "layer normalisation": lambda x: F.layer_norm(x, x.shape[1:]),
        "unbiased variance": lambda x: (
            (x - x.mean((2, 3), keepdim=True)) / (x.var((2, 3), keepdim=True) + 1e-5).sqrt()
        ),
        "does not divide": lambda x: x - x.mean((2, 3), keepdim=True),
        "carries no gradient": lambda x: _instance_norm(x).detach(),
    }
    for words, fn in wrong.items():
        with pytest.raises(CheckError, match=words):
            check_instance_norm(fn)


def test_check_overlap_counts() -> None:
    def by_loop(length: int, kernel: int, stride: int) -> list[int]:
        out = [0] * ((length - 1) * stride + kernel)
        for i in range(length):
            for k in range(kernel):
                out[i * stride + k] += 1
        return out

    check_overlap_counts(by_loop)
    assert transposed_overlaps(6, 3, 2).tolist() == [1, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 1]
    with pytest.raises(CheckError, match=r"\(6, 3, 2\) returned .* expected \[1, 1, 2"):
        check_overlap_counts(lambda n, k, s: torch.ones((n - 1) * s + k))
