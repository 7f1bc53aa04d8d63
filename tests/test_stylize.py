"""nst.metrics, nst.color, nst.stylize and tools.bench: numbers and behaviour, on small images."""

from __future__ import annotations

import json

import cv2
import pytest
import torch

import nst
from nst import color, metrics
from nst.images import resize, shuffle_tiles
from nst.losses import gram_matrix, make_loss_fn, style_targets
from nst.metrics import row_at, seconds_per_step
from nst.recipe import (
    scale_sizes,
    split_steps,
    stylize,
    upsample_with_detail,
)
from tools.bench import restart_image, summarize

# ---------------------------------------------------------------------------- metrics


def test_distances_are_zero_for_the_targets_themselves(model, content64, style64):
    assert metrics.content_distance(content64, content64, model) == pytest.approx(0, abs=1e-6)
    assert metrics.style_distance(style64, style64, model) == pytest.approx(0, abs=1e-6)
    assert metrics.ssim(content64, content64) == pytest.approx(1, abs=1e-6)


def test_content_distance_is_the_square_root_of_the_content_loss(model, content64, style64):
    gen = content64.flip(-1)  # the mirrored photo: another image of the same size
    loss = make_loss_fn(model, content64, None)(gen)["content"]
    assert metrics.content_distance(gen, content64, model) == pytest.approx(
        float(loss) ** 0.5, rel=1e-4
    )


def test_style_distance_averages_relative_gram_errors(model, content64, style64):
    per_layer = metrics.style_distances(content64, style64, model)
    assert list(per_layer) == list(nst.STYLE_LAYERS)
    feats = nst.extract_features(model, content64, ["relu3_1"])["relu3_1"]
    target = nst.extract_features(model, style64, ["relu3_1"])["relu3_1"]
    g, a = gram_matrix(feats), gram_matrix(target)
    assert per_layer["relu3_1"] == pytest.approx(float((g - a).norm() / a.norm()), rel=1e-4)
    assert metrics.style_distance(content64, style64, model) == pytest.approx(
        sum(per_layer.values()) / 5
    )


def test_style_distance_ignores_layout_but_content_distance_does_not(model, style64):
    shuffled = shuffle_tiles(style64, tiles=2)
    img = style64[..., : shuffled.shape[-2], : shuffled.shape[-1]]
    assert metrics.style_distance(shuffled, img, model) < 0.3
    assert metrics.content_distance(shuffled, img, model) > 0.5


def test_ssim_drops_with_noise_and_needs_one_size(content64):
    noisy = (content64 + 0.2 * torch.randn_like(content64)).clamp(0, 1)
    assert 0 < metrics.ssim(noisy, content64) < 0.8
    with pytest.raises(nst.NSTError, match="one size"):
        metrics.ssim(content64, content64[..., :32, :])


def test_evaluate_is_fp32_even_under_autocast(model, content64, style64):
    plain = metrics.evaluate(content64, content64, style64, model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = metrics.evaluate(content64, content64, style64, model)
    assert under_autocast == pytest.approx(plain, rel=1e-5)
    assert set(plain) == {"content", "style", "ssim"} | {f"style_{n}" for n in nst.STYLE_LAYERS}
    gen = content64.flip(-1)  # one forward pass in evaluate gives what the separate functions give
    both = metrics.evaluate(gen, content64, style64, model)
    content = metrics.content_distance(gen, content64, model)
    assert both["content"] == pytest.approx(content, rel=1e-5)
    assert both["style"] == pytest.approx(metrics.style_distance(gen, style64, model), rel=1e-5)
    per_layer = metrics.style_distances(gen, style64, model)
    assert all(both[f"style_{k}"] == pytest.approx(v, rel=1e-5) for k, v in per_layer.items())


# ---------------------------------------------------------------------------- colour


def test_luma_only_is_grey_and_combine_luma_restores_the_photo(content64):
    grey = color.luma_only(content64)
    assert grey.shape == content64.shape
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    assert torch.allclose(color.combine_luma(content64, content64), content64, atol=2e-3)
    # The luma comes from the first image, the colour from the second.
    recombined = color.combine_luma(grey, content64)
    assert torch.allclose(recombined, content64, atol=2e-3)


@pytest.mark.parametrize("method", ["eig", "chol"])
def test_match_color_gives_the_photos_mean_and_covariance(method):
    style = nst.load_image(nst.data.style_path("starry_night"), long_side=128)
    photo = nst.load_image(nst.data.content_path("astronaut"), long_side=128)
    recoloured = color.match_color(style, photo, method=method, clamp=False)
    mean, cov = color._rgb_stats(recoloured)
    want_mean, want_cov = color._rgb_stats(photo)
    assert torch.allclose(mean, want_mean, atol=1e-3) and torch.allclose(cov, want_cov, atol=1e-3)
    # The map is one 3x3 matrix for every pixel: the painting's layout and strokes stay.
    assert metrics.ssim(color.luma_only(style), color.luma_only(recoloured)) > 0.5
    clamped = color.match_color(style, photo, method=method, clamp=True)  # to show or save
    assert torch.equal(clamped, recoloured.clamp(0, 1))


def test_match_color_rejects_an_unknown_method(content64, style64):
    with pytest.raises(nst.NSTError, match="'eig' or 'chol'"):
        color.match_color(style64, content64, method="lab")


def test_match_luma_matches_mean_and_spread(content64, style64):
    y = color.match_luma(style64, content64)
    y_ref = color.luma_only(content64)
    assert float(y.mean()) == pytest.approx(float(y_ref.mean()), abs=0.02)
    assert float(y.std()) == pytest.approx(float(y_ref.std()), abs=0.02)


# ---------------------------------------------------------------------------- blend targets


def test_style_targets_blend_is_the_weighted_gram_average(model, content64, style64):
    one = style_targets(model, style64, ["relu2_1"])
    two = style_targets(model, content64, ["relu2_1"])
    mixed = style_targets(model, [style64, content64], ["relu2_1"], style_blend=[3, 1])
    expected = 0.75 * one["relu2_1"] + 0.25 * two["relu2_1"]
    assert torch.allclose(mixed["relu2_1"], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(nst.NSTError, match="one weight"):
        style_targets(model, [style64, content64], ["relu2_1"], style_blend=[1])


def test_zero_weight_layers_are_skipped_and_autocast_keeps_fp32_losses(model, content64, style64):
    weights = {"relu1_1": 1.0, "relu2_1": 0.0}
    fn = make_loss_fn(
        model, content64, style64, style_layers=["relu1_1", "relu2_1"], layer_weights=weights
    )
    only = make_loss_fn(model, content64, style64, style_layers=["relu1_1"])
    assert float(fn(content64)["style"]) == pytest.approx(float(only(content64)["style"]))
    low = make_loss_fn(model, content64, style64, autocast_dtype=torch.bfloat16)(content64)
    full = make_loss_fn(model, content64, style64)(content64)
    assert low["style"].dtype == torch.float32
    assert float(low["style"]) == pytest.approx(float(full["style"]), rel=0.2)


# ---------------------------------------------------------------------------- stylize


def test_scale_sizes_and_split_steps():
    assert scale_sizes(512) == [128, 256, 512]
    assert scale_sizes(200) == [200]  # 100 would be below the smallest size
    assert scale_sizes(256) == [128, 256]
    assert split_steps(100, 3) == [30, 30, 40]
    assert split_steps(80, 3) == [24, 24, 32]
    assert split_steps(7, 2) == [3, 4]
    assert sum(split_steps(33, 3)) == 33
    with pytest.raises(nst.NSTError, match="at least 3 \\(one per size"):
        split_steps(2, 3)


def test_upsample_with_detail_restores_the_photos_fine_detail(content64):
    small = resize(content64, 32)  # (1,3,22,32): what a smaller size could hold
    plain = torch.nn.functional.interpolate(small, size=content64.shape[-2:], mode="bilinear")
    restored = upsample_with_detail(small, content64)
    assert restored.shape == content64.shape
    assert float((restored - content64).abs().mean()) < 0.3 * float(
        (plain - content64).abs().mean()
    )
    assert upsample_with_detail(content64, content64) is content64
    blurry = upsample_with_detail(small, content64, detail=False)  # the last size: no photo detail
    assert torch.allclose(blurry, plain.clamp(0, 1))


def test_stylize_goes_coarse_to_fine_and_lowers_the_style_distance(model, content64, style64):
    img, history = stylize(
        content64, style64, size=64, sizes=[32, 64], steps=20, model=model, progress=False
    )
    assert img.shape == content64.shape and 0 <= float(img.min()) and float(img.max()) <= 1
    assert [row["step"] for row in history] == list(range(1, 21))
    assert [row["size"] for row in history] == [32] * 9 + [64] * 11
    assert all(b["seconds"] >= a["seconds"] for a, b in zip(history, history[1:]))
    before = metrics.style_distance(content64, style64, model)
    assert metrics.style_distance(img, style64, model) < 0.8 * before


def test_stylize_options_run(model, content64, style64):
    grey_style = color.luma_only(style64)
    common = dict(size=64, sizes=[64], steps=4, model=model, progress=False)
    luma, _ = stylize(content64, style64, preserve_color="luma", **common)
    # Luma transfer keeps the photo's chroma: its colour differences stay near the photo's.
    chroma = lambda img: cv2.cvtColor(color.to_hwc(img), cv2.COLOR_RGB2YCrCb)[..., 1:]  # noqa: E731
    inside = ((luma > 0.01) & (luma < 0.99)).all(dim=1)[0].numpy()  # pixels the clamp kept
    assert abs(chroma(luma) - chroma(content64))[inside].max() < 2e-3  # the photo's, exactly
    blend, _ = stylize(content64, [style64, grey_style], style_blend=[1, 1], **common)
    scaled, _ = stylize(content64, style64, style_scale=0.5, **common)
    linear, _ = stylize(content64, style64, preserve_color="linear", **common)
    for img in (blend, scaled, linear):
        assert img.shape == content64.shape


def test_stylize_callback_can_stop_the_run(model, content64, style64):
    seen = []

    def stop_after_three(row, img):
        seen.append(row)
        return len(seen) == 3

    img, history = stylize(
        content64,
        style64,
        size=64,
        sizes=[32, 64],
        steps=20,
        model=model,
        progress=False,
        callback=stop_after_three,
    )
    assert len(history) == 3 and img.shape[-1] == 32  # stopped at the first size


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(preserve_color="sepia"), "preserve_color"),
        (dict(style_scale=10), "style_scale"),
        (dict(sizes=[64, 32]), "sizes must grow"),
        (dict(steps=2.5), "whole number"),
        (dict(precision="fp8"), "precision"),
    ],
)
def test_stylize_bad_arguments_get_one_sentence(model, content64, style64, kwargs, match):
    with pytest.raises(nst.NSTError, match=match):
        stylize(content64, style64, size=64, model=model, progress=False, **kwargs)


# ---------------------------------------------------------------------------- bench


def test_bench_summary_finds_the_first_snapshot_better_on_both():
    rows = [
        {"recipe": "classic", "step": 300, "seconds": 600.0, "content": 0.5, "style": 0.1},
        {"recipe": "stylize", "step": 10, "seconds": 20.0, "content": 0.4, "style": 0.2},
        {"recipe": "stylize", "step": 20, "seconds": 40.0, "content": 0.5, "style": 0.1},
        {"recipe": "stylize", "step": 30, "seconds": 60.0, "content": 0.3, "style": 0.05},
    ]
    results = {"classic": {"seconds": 600.0}, "stylize": {"seconds": 60.0}}
    summary = summarize(rows, results)
    assert summary["seconds_to_beat"] == 40.0 and summary["speedup"] == 15.0
    assert summary["classic_seconds_to_match_stylize"] is None  # stylize ended better than it
    rows[2]["style"] = 0.11
    rows[3]["content"] = 0.6
    missed = summarize(rows, results)
    assert missed["speedup"] is None
    rows.insert(
        0, {"recipe": "classic", "step": 100, "seconds": 200.0, "content": 0.6, "style": 0.05}
    )
    assert summarize(rows, results)["equal_quality_speedup"] == pytest.approx(200 / 60)
    assert "restart_seconds_to_beat" not in summarize(rows, results)  # run without a restart


def test_bench_summary_reports_when_the_restart_matched_the_classic():
    rows = [
        {"recipe": "classic", "step": 300, "seconds": 600.0, "content": 0.5, "style": 0.1},
        {"recipe": "stylize", "step": 80, "seconds": 40.0, "content": 0.7, "style": 0.2},
        {"recipe": "restart", "step": 2, "seconds": 30.0, "content": 0.49, "style": 0.12},
        {"recipe": "restart", "step": 4, "seconds": 70.0, "content": 0.5, "style": 0.1},
    ]
    results = {
        r: {"seconds": s} for r, s in (("classic", 600.0), ("stylize", 40.0), ("restart", 70.0))
    }
    assert summarize(rows, results)["restart_seconds_to_beat"] == 70.0
    rows[-1]["style"] = 0.101  # a hair worse: never matched
    assert summarize(rows, results)["restart_seconds_to_beat"] is None


def test_row_at_gives_the_last_row_within_the_time():
    rows = [{"seconds": 1.0, "x": "a"}, {"seconds": 5.0, "x": "b"}, {"seconds": 9.0, "x": "c"}]
    assert row_at(rows, 6.0)["x"] == "b" and row_at(rows, 9.0)["x"] == "c"
    assert row_at(rows, 0.5)["x"] == "a"  # nothing that early: the first row


def test_snapshots_keep_every_nth_image_and_give_distances(model, content64, style64):
    snaps = metrics.Snapshots(every=3)
    loss_fn = make_loss_fn(model, content64, style64)
    nst.optimize(content64, loss_fn, 7, callback=snaps, progress=False)
    assert [row["step"] for row, _ in snaps.items] == [3, 6]
    assert snaps.items[0][1].dtype == torch.uint8
    rows = snaps.distance_history(content64, style64, model)
    assert [r["step"] for r in rows] == [3, 6] and rows[0]["content"] > 0
    small = metrics.Snapshots()
    small.add({"step": 1, "seconds": 0.0, "size": 32}, resize(content64, 32))
    (row,) = small.distance_history(content64, style64, model)  # upsampled to the photo's size
    assert row["size"] == 32 and row["content"] < 0.5


def test_stop_early_and_seconds_per_step(model, content64):
    assert model.stop_early
    whole = nst.load_vgg19(last_layer="pool5", device="cpu")
    whole.stop_early = False
    feats = whole(content64, ["relu1_1"])
    assert torch.allclose(feats["relu1_1"], model(content64, ["relu1_1"])["relu1_1"])
    loss_fn = make_loss_fn(model, content64, None)
    assert 0 < seconds_per_step(loss_fn, content64, repeats=2) < 60


def test_show_tradeoff_draws_labelled_points():
    fig = nst.plot.show_tradeoff({"a": (0.2, 0.5), "b": (0.4, 0.3)})
    (ax,) = fig.axes
    assert list(ax.lines[0].get_xdata()) == [0.2, 0.4]
    assert [t.get_text() for t in ax.texts] == ["a", "b"]


def test_bench_runs_end_to_end(tmp_path, run_python):
    out = tmp_path / "bench"
    args = [
        "--size",
        "32",
        "--classic-steps",
        "6",
        "--steps",
        "4",
        "--restart-steps",
        "4",
        "--out",
        str(out),
    ]
    code = f"import sys; from tools.bench import main; sys.exit(main({args!r}))"
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "peak RSS" in result.stdout and "classic" in result.stdout
    assert "Best case for any coarse-to-fine start" in result.stdout
    with open(out / "bench.csv") as f:
        header = f.readline().strip().split(",")
        lines = f.readlines()
    assert header[:5] == ["recipe", "step", "seconds", "size", "content"]
    assert "machine" in header and len(lines) >= 3
    assert {line.split(",")[0] for line in lines} == {"classic", "stylize", "restart"}
    summary = json.loads((out / "bench_summary.json").read_text())
    assert "restart_seconds_to_beat" in summary
    for name in ("bench.png", "bench_classic.jpg", "bench_stylize.jpg", "bench_summary.json"):
        assert (out / name).stat().st_size > 0


def test_restart_image_is_the_result_shrunk_and_enlarged_with_the_photos_detail(content64):
    result8 = (content64.flip(-1) * 255).round().byte()  # any 8-bit result (1,3,64,64)
    start = restart_image(result8, content64)
    assert start.shape == content64.shape and 0 <= start.min() and start.max() <= 1
    small = nst.images.resize(result8.float() / 255, 48)  # 3/4 of 64 px
    expected = upsample_with_detail(small, content64)
    assert torch.allclose(start, expected)
    # Close to the result (its coarse part), but not equal: the finest detail is the photo's.
    plain = result8.float() / 255
    assert 0 < (start - plain).abs().mean() < (content64 - plain).abs().mean()


def test_stylize_starts_from_init_resized_to_the_photo(model, content64, style64):
    start = torch.full((1, 3, 20, 30), 0.5)  # another size and shape than the photo
    seen = []

    def first_image(row, img):
        seen.append(img.clone())
        return True  # stop after the first step

    img, history = stylize(
        content64,
        style64,
        sizes=[64],
        steps=3,
        model=model,
        init=start,
        progress=False,
        callback=first_image,
        optimizer="adam",
    )
    assert img.shape == content64.shape and len(history) == 1
    # the first evaluation sees the start image itself, not the photo
    assert (seen[0] - 0.5).abs().max() < 1e-6
    with pytest.raises(nst.NSTError, match="init"):
        stylize(content64, style64, sizes=[64], steps=2, model=model, init=torch.rand(3, 8, 8))
