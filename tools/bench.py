"""``make bench``: the classic recipe against ``nst.stylize`` at 512 px, measured by nst.metrics.

Each recipe runs in its own child process (so its peak memory is its own) on one fixed bundled
pair, starting from the photo with the same losses and weights:

- classic: Gatys et al.'s single-size L-BFGS, fp32, 300 steps at the full size;
- stylize: ``nst.stylize`` with its defaults;
- restart: a best case for any coarse-to-fine recipe. Its last size starts from the classic's own
  final result, shrunk to 3/4 of the size and enlarged again with the photo's detail (what a
  perfect coarse stage could hand over), then runs L-BFGS as ``stylize``'s last size does (bf16
  autocast on a CPU). If even this start cannot reach the classic's result within a tenth of the
  classic's time, no better coarse stage can: the steps at the full size are the bottleneck.

A run keeps snapshots of its image (8-bit copies, taken inside the timed run, which costs
microseconds); the distances are computed afterwards, in this parent process, in fp32. The report
gives each recipe's wall time, peak RSS and distances, and the moment the fast run first equals or
beats the classic result on *both* distances. ``--out DIR`` also writes ``bench.csv`` (every
snapshot, labelled with the machine and date), ``bench.png`` and the two final images.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import nst
from nst import provenance
from nst.data import content_path, style_path
from nst.images import resize, save_image
from nst.metrics import Snapshots, first_match, row_at
from nst.recipe import stylize, upsample_with_detail
from nst.speedups import autocast_dtype, gram_loss_by_hand
from tools.common import ROOT, cpu_count, cpu_name

CLASSIC_STEPS = 300
RESTART_STEPS = 60  # about 100 s of bf16 steps at 512 px on 2 CPU cores: past a tenth of classic
RESTART_SHRINK = 0.75  # the restart's start: the classic's result at 3/4 of the size
RECIPES = ("classic", "stylize", "restart")  # restart needs classic's result: keep this order
SNAPSHOT_EVERY = {"classic": 5, "stylize": 1, "restart": 2}  # steps between snapshots


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def restart_image(result8: torch.Tensor, content_img: torch.Tensor) -> torch.Tensor:
    """The restart's start: an 8-bit result (1,3,H,W) at 3/4 size, enlarged with photo detail."""
    small = resize(result8.float() / 255, round(max(content_img.shape[-2:]) * RESTART_SHRINK))
    return upsample_with_detail(small, content_img)  # (1,3,H,W) like content_img


def _pair(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The benchmark's photo and painting (1,3,H,W), both at ``args.size`` px long side."""
    content_img = nst.load_image(content_path(args.content), long_side=args.size)
    return content_img, nst.load_image(style_path(args.style), long_side=args.size)


def _run(
    recipe: str, args: argparse.Namespace, start_img: torch.Tensor | None, snaps: Snapshots
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Run one recipe on the pair -> (img, history); ``start_img`` is the restart's start."""
    model = nst.load_vgg19(device="cpu")
    content_img, style_img = _pair(args)
    if recipe == "stylize":
        steps = {} if args.steps is None else {"steps": args.steps}  # None: stylize's default
        return stylize(
            content_img,
            style_img,
            size=args.size,
            model=model,
            callback=snaps,
            progress=False,
            **steps,
        )
    if recipe == "classic":
        loss_fn = nst.make_loss_fn(model, content_img, style_img, tv_weight=10.0)
        return nst.optimize(
            content_img, loss_fn, args.classic_steps, callback=snaps, progress=False
        )
    # restart: stylize's last size, with the same losses, weights and speed-ups
    amp = autocast_dtype("auto", torch.device("cpu"))
    loss_fn = nst.make_loss_fn(
        model,
        content_img,
        style_img,
        tv_weight=10.0,
        autocast_dtype=amp,
        style_layer_loss=gram_loss_by_hand,
    )
    return nst.optimize(start_img, loss_fn, args.restart_steps, callback=snaps, progress=False)


def run_recipe(recipe: str, args: argparse.Namespace, out: Path) -> None:
    """In a child process: run one recipe and save its time, peak RSS and snapshots to ``out``."""
    torch.manual_seed(0)
    snaps = Snapshots(every=SNAPSHOT_EVERY[recipe])
    start_img = None
    if recipe == "restart":  # not timed: it stands for a coarse stage that costs nothing
        classic_final = torch.load(out.with_name("classic.pt"), weights_only=False)["snaps"][-1][1]
        start_img = restart_image(classic_final, _pair(args)[0])
    start = time.perf_counter()
    img, history = _run(recipe, args, start_img, snaps)
    seconds = time.perf_counter() - start
    snaps.add({**history[-1], "step": len(history), "seconds": seconds}, img)  # the result
    saved = {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "steps": len(history)}
    torch.save({**saved, "snaps": snaps.items}, out)


def _child(recipe: str, args: argparse.Namespace, out: Path) -> dict:
    """Run ``recipe`` in a fresh interpreter and load what it saved."""
    cmd = [sys.executable, "-m", "tools.bench", "--child", recipe, "--child-out", str(out)]
    cmd += ["--content", args.content, "--style", args.style, "--size", str(args.size)]
    cmd += ["--classic-steps", str(args.classic_steps), "--restart-steps", str(args.restart_steps)]
    cmd += [] if args.steps is None else ["--steps", str(args.steps)]
    print(f"running {recipe} ...", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return torch.load(out, weights_only=False)


def _evaluate(results: dict[str, dict], args: argparse.Namespace) -> list[dict]:
    """One row per snapshot: recipe, step, seconds, size and the distances at the full size."""
    model = nst.load_vgg19(device="cpu")
    content_img, style_img = _pair(args)
    about = {
        "machine": f"{cpu_name()}, {cpu_count()} CPUs, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
    }
    rows = []
    for recipe, result in results.items():
        snapshots = Snapshots()
        for row, img8 in result["snaps"]:
            snapshots.add({"size": max(img8.shape[-2:]), **row}, img8.float() / 255)
        for row in snapshots.distance_history(content_img, style_img, model):
            rows.append({"recipe": recipe, **{k: round(v, 5) for k, v in row.items()}, **about})
    return rows


def summarize(rows: list[dict], results: dict[str, dict]) -> dict[str, float | None]:
    """When each recipe first matched the classic's final result on both distances, and ratios.

    ``speedup``: the classic's time over the time ``stylize`` needed to match the classic's
    final result (the benchmark's goal); ``equal_quality_speedup``: the time the classic needed
    to match ``stylize``'s final result over ``stylize``'s time; ``restart_seconds_to_beat``: the
    time the best-case restart needed to match the classic (None: never, within its steps).
    """
    by_recipe = {
        recipe: sorted((row for row in rows if row["recipe"] == recipe), key=lambda x: x["step"])
        for recipe in results
    }
    classic, fast = by_recipe["classic"], by_recipe["stylize"]
    to_beat = first_match(fast, classic[-1])
    classic_to_match = first_match(classic, fast[-1])
    summary = {
        "classic_seconds": results["classic"]["seconds"],
        "stylize_seconds": results["stylize"]["seconds"],
        "seconds_to_beat": to_beat,
        "speedup": results["classic"]["seconds"] / to_beat if to_beat else None,
        "classic_seconds_to_match_stylize": classic_to_match,
        "equal_quality_speedup": (
            classic_to_match / results["stylize"]["seconds"] if classic_to_match else None
        ),
    }
    if "restart" in by_recipe:
        summary["restart_seconds_to_beat"] = first_match(by_recipe["restart"], classic[-1])
    return summary


def _plot(rows: list[dict], path: Path) -> None:
    """Content and style distance against seconds for every recipe run, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from nst.plot import plot_losses

    histories = {r: [row for row in rows if row["recipe"] == r] for r in RECIPES}
    histories = {r: h for r, h in histories.items() if h}  # restart may be left out
    fig = plot_losses(
        histories, keys=("content", "style"), x="seconds", ylabel="distance", log_x=True
    )
    fig.savefig(path, dpi=100)


def _print_restart(rows: list[dict], summary: dict[str, float | None]) -> None:
    """Say whether even the best-case restart matched the classic within a tenth of its time."""
    tenth = summary["classic_seconds"] / 10
    restart = [r for r in rows if r["recipe"] == "restart"]
    at_tenth = row_at(restart, tenth)
    beat = summary["restart_seconds_to_beat"]
    if beat is not None:
        verdict = f"it matched the classic after {beat:.0f} s."
    else:
        verdict = f"it did not match the classic within {restart[-1]['seconds']:.0f} s."
    print(
        "Best case for any coarse-to-fine start (the classic's own result at 3/4 size): after "
        f"{at_tenth['seconds']:.0f} s (a tenth of the classic: {tenth:.0f} s) content "
        f"{at_tenth['content']:.4f}, style {at_tenth['style']:.4f}; {verdict}"
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: the pair, the size, each recipe's steps, where to write."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--content", default="astronaut", help="bundled photo (default astronaut)")
    add("--style", default="starry_night", help="bundled painting")
    add("--size", type=int, default=512, help="long side in px (default 512)")
    add("--classic-steps", type=int, default=CLASSIC_STEPS, help="the classic recipe's steps")
    add("--steps", type=int, help="stylize's steps (default: its own default)")
    add("--restart-steps", type=int, default=RESTART_STEPS, help="the restart's steps; 0: none")
    add("--out", type=Path, help="folder for bench.csv, bench.png and images")
    add("--child", choices=RECIPES, help=argparse.SUPPRESS)
    add("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _print_report(
    args: argparse.Namespace, results: dict[str, dict], rows: list[dict], summary: dict
) -> None:
    """Each recipe's steps, seconds, peak memory and distances, then when stylize matched."""
    print(f"\n{args.content} in the style of {args.style}, {args.size} px long side, ", end="")
    print(f"{rows[0]['machine']}, {rows[0]['date']}")
    print(f"{'recipe':<10}{'steps':>7}{'seconds':>10}{'peak RSS':>11}{'content':>10}{'style':>9}")
    for recipe, result in results.items():
        last = max((row for row in rows if row["recipe"] == recipe), key=lambda row: row["step"])
        print(
            f"{recipe:<10}{result['steps']:>7}{result['seconds']:>10.1f}"
            f"{result['peak_rss_mb']:>8.0f} MB{last['content']:>10.4f}{last['style']:>9.4f}"
        )
    if summary["seconds_to_beat"] is None:
        print("stylize did not match the classic's final result on both distances.")
    else:
        print(
            "stylize matched the classic's final result on both distances after "
            f"{summary['seconds_to_beat']:.1f} s: {summary['speedup']:.1f}x sooner "
            f"than the classic's {summary['classic_seconds']:.0f} s."
        )
    if summary["classic_seconds_to_match_stylize"] is not None:
        matched = summary["classic_seconds_to_match_stylize"]
        print(
            f"At equal quality: the classic needed {matched:.0f} s to match stylize's final "
            f"result, which took {summary['stylize_seconds']:.1f} s: "
            f"{summary['equal_quality_speedup']:.1f}x."
        )
    if "restart" in results:
        _print_restart(rows, summary)


def _write_outputs(
    args: argparse.Namespace, results: dict[str, dict], rows: list[dict], summary: dict
) -> None:
    """bench.csv (every snapshot), bench_summary.json (with its record), bench.png, the images."""
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    per_recipe = {
        recipe: {k: round(result[k], 2) for k in ("steps", "seconds", "peak_rss_mb")}
        for recipe, result in results.items()
    }
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "child", "child_out")}
    about = {"machine": rows[0]["machine"], "date": rows[0]["date"], "settings": settings}
    used = [content_path(args.content), style_path(args.style)]
    record = {"executed_from": provenance.run_record(used)}
    text = json.dumps({**per_recipe, **summary, **about, **record}, indent=2)
    (args.out / "bench_summary.json").write_text(text + "\n")
    _plot(rows, args.out / "bench.png")
    for recipe, result in results.items():
        save_image(result["snaps"][-1][1].float() / 255, args.out / f"bench_{recipe}.jpg")
    print(f"wrote {args.out}/bench.csv, bench_summary.json, bench.png and the final images")


def main(argv: list[str] | None = None) -> int:
    """Run the recipes in child processes, measure them here, print and save the report."""
    args = _parse_args(argv)
    if args.child:
        run_recipe(args.child, args, args.child_out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        recipes = RECIPES if args.restart_steps > 0 else RECIPES[:2]
        results = {r: _child(r, args, Path(tmp) / f"{r}.pt") for r in recipes}
    rows = _evaluate(results, args)
    summary = summarize(rows, results)
    _print_report(args, results, rows, summary)
    if args.out:
        _write_outputs(args, results, rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
