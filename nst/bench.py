"""``python -m nst.bench``: the classic recipe against ``nst.stylize`` at 512 px, by nst.metrics.

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
import os
import platform
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
from nst.losses import LossFn
from nst.metrics import Snapshots
from nst.recipe import autocast_dtype, stylize, upsample_with_detail

CLASSIC_STEPS = 300
RESTART_STEPS = 60  # about 100 s of bf16 steps at 512 px on 2 CPU cores: past a tenth of classic
RESTART_SHRINK = 0.75  # the restart's start: the classic's result at 3/4 of the size
RECIPES = ("classic", "stylize", "restart")  # restart needs classic's result: keep this order
SNAPSHOT_EVERY = {"classic": 5, "stylize": 1, "restart": 2}  # steps between snapshots


def seconds_per_step(loss_fn: LossFn, img: torch.Tensor, repeats: int = 3) -> float:
    """Mean seconds of one loss-and-gradient evaluation of ``loss_fn`` at ``img`` (1,3,H,W)."""
    x = img.detach().clone().requires_grad_(True)
    loss_fn(x)["total"].backward()  # a warm-up call: the first one allocates memory
    start = time.perf_counter()
    for _ in range(repeats):
        x.grad = None
        loss_fn(x)["total"].backward()
    return (time.perf_counter() - start) / repeats


def _cpu_name() -> str:
    """The CPU's model name where the system tells it (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def restart_image(result8: torch.Tensor, content_img: torch.Tensor) -> torch.Tensor:
    """The restart's start: an 8-bit result (1,3,H,W) at 3/4 size, enlarged with photo detail."""
    small = resize(result8.float() / 255, round(max(content_img.shape[-2:]) * RESTART_SHRINK))
    return upsample_with_detail(small, content_img)  # (1,3,H,W) like content_img


def run_recipe(recipe: str, args: argparse.Namespace, out: Path) -> None:
    """In a child process: run one recipe and save its time, peak RSS and snapshots to ``out``."""
    torch.manual_seed(0)
    model = nst.load_vgg19(device="cpu")
    content_img = nst.load_image(content_path(args.content), long_side=args.size)  # (1,3,H,W)
    style_img = nst.load_image(style_path(args.style), long_side=args.size)
    snaps = Snapshots(every=SNAPSHOT_EVERY[recipe])
    if recipe == "restart":  # not timed: it stands for a coarse stage that costs nothing
        classic_final = torch.load(out.with_name("classic.pt"), weights_only=False)["snaps"][-1][1]
        start_img = restart_image(classic_final, content_img)
    start = time.perf_counter()
    if recipe == "classic":
        loss_fn = nst.make_loss_fn(model, content_img, style_img, tv_weight=10.0)
        img, history = nst.optimize(content_img, loss_fn, args.classic_steps, callback=snaps,
                                    progress=False)  # fmt: skip
    elif recipe == "restart":  # stylize's last size: the same losses, weights and precision
        amp = autocast_dtype("auto", torch.device("cpu"))
        loss_fn = nst.make_loss_fn(model, content_img, style_img, tv_weight=10.0,
                                   autocast_dtype=amp, hand_gradient=True)  # fmt: skip
        img, history = nst.optimize(start_img, loss_fn, args.restart_steps, callback=snaps,
                                    progress=False)  # fmt: skip
    else:
        options = {} if args.steps is None else {"steps": args.steps}  # else its default
        img, history = stylize(content_img, style_img, size=args.size, model=model,
                               callback=snaps, progress=False, **options)  # fmt: skip
    seconds = time.perf_counter() - start
    snaps.add({**history[-1], "step": len(history), "seconds": seconds}, img)  # the result
    torch.save({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "steps": len(history),
                "snaps": snaps.items}, out)  # fmt: skip


def _child(recipe: str, args: argparse.Namespace, out: Path) -> dict:
    """Run ``recipe`` in a fresh interpreter and load what it saved."""
    cmd = [sys.executable, "-m", "nst.bench", "--child", recipe, "--child-out", str(out),
           "--content", args.content, "--style", args.style, "--size", str(args.size),
           "--classic-steps", str(args.classic_steps),
           "--restart-steps", str(args.restart_steps)]  # fmt: skip
    cmd += [] if args.steps is None else ["--steps", str(args.steps)]
    print(f"running {recipe} ...", flush=True)
    subprocess.run(cmd, check=True)
    return torch.load(out, weights_only=False)


def _evaluate(results: dict[str, dict], args: argparse.Namespace) -> list[dict]:
    """One row per snapshot: recipe, step, seconds, size and the distances at the full size."""
    model = nst.load_vgg19(device="cpu")
    content_img = nst.load_image(content_path(args.content), long_side=args.size)
    style_img = nst.load_image(style_path(args.style), long_side=args.size)
    machine = f"{_cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    date = datetime.date.today().isoformat()
    rows = []
    for recipe, res in results.items():
        snaps = Snapshots()
        snaps.items = [({"size": img8.shape[-1], **row}, img8) for row, img8 in res["snaps"]]
        for row in snaps.distance_history(content_img, style_img, model):
            rows.append({"recipe": recipe, **{k: round(v, 5) for k, v in row.items()},
                         "machine": machine, "date": date})  # fmt: skip
    return rows


def first_match(rows: list[dict], target: dict) -> float | None:
    """Seconds of the first row at least as good as ``target`` on both distances, or None."""
    return next(
        (r["seconds"] for r in rows if r["content"] <= target["content"]
         and r["style"] <= target["style"]),
        None,
    )  # fmt: skip


def row_at(rows: list[dict], seconds: float) -> dict:
    """The last of ``rows`` (sorted by time) recorded at or before ``seconds``, else the first."""
    return max((r for r in rows if r["seconds"] <= seconds), key=lambda r: r["seconds"],
               default=rows[0])  # fmt: skip


def summarize(rows: list[dict], results: dict[str, dict]) -> dict[str, float | None]:
    """When each recipe first matched the classic's final result on both distances, and ratios.

    ``speedup``: the classic's time over the time ``stylize`` needed to match the classic's
    final result (the benchmark's goal); ``equal_quality_speedup``: the time the classic needed
    to match ``stylize``'s final result over ``stylize``'s time; ``restart_seconds_to_beat``: the
    time the best-case restart needed to match the classic (None: never, within its steps).
    """
    by_recipe = {r: sorted((row for row in rows if row["recipe"] == r), key=lambda x: x["step"])
                 for r in results}  # fmt: skip
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
    """Content and style distance against seconds for both recipes, saved to ``path``."""
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
    end = restart[-1]["seconds"]
    print(f"Best case for any coarse-to-fine start (the classic's own result at 3/4 size): after "
          f"{at_tenth['seconds']:.0f} s (a tenth of the classic: {tenth:.0f} s) content "
          f"{at_tenth['content']:.4f}, style {at_tenth['style']:.4f}; "
          + (f"it matched the classic after {beat:.0f} s." if beat is not None
             else f"it did not match the classic within {end:.0f} s."))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the recipes in child processes, print and save the report."""
    parser = argparse.ArgumentParser(prog="python -m nst.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--content", default="astronaut", help="bundled photo (default astronaut)")
    parser.add_argument("--style", default="starry_night", help="bundled painting")
    parser.add_argument("--size", type=int, default=512, help="long side in px (default 512)")
    parser.add_argument(
        "--classic-steps",
        type=int,
        default=CLASSIC_STEPS,
        help=f"the classic recipe's steps (default {CLASSIC_STEPS})",
    )
    parser.add_argument("--steps", type=int, help="stylize's steps (default: its own default)")
    parser.add_argument(
        "--restart-steps",
        type=int,
        default=RESTART_STEPS,
        help=f"the best-case restart's steps (default {RESTART_STEPS}; 0 leaves it out)",
    )
    parser.add_argument("--out", type=Path, help="folder for bench.csv, bench.png and images")
    parser.add_argument("--child", choices=RECIPES, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_recipe(args.child, args, args.child_out)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        recipes = RECIPES if args.restart_steps > 0 else RECIPES[:2]
        results = {r: _child(r, args, Path(tmp) / f"{r}.pt") for r in recipes}
    rows = _evaluate(results, args)
    summary = summarize(rows, results)
    print(
        f"\n{args.content} in the style of {args.style}, {args.size} px long side, "
        f"{rows[0]['machine']}, {rows[0]['date']}"
    )
    print(f"{'recipe':<10}{'steps':>7}{'seconds':>10}{'peak RSS':>11}{'content':>10}{'style':>9}")
    for recipe, res in results.items():
        last = max((row for row in rows if row["recipe"] == recipe), key=lambda row: row["step"])
        print(
            f"{recipe:<10}{res['steps']:>7}{res['seconds']:>10.1f}{res['peak_rss_mb']:>8.0f} MB"
            f"{last['content']:>10.4f}{last['style']:>9.4f}"
        )
    if summary["seconds_to_beat"] is None:
        print("stylize did not match the classic's final result on both distances.")
    else:
        print(f"stylize matched the classic's final result on both distances after "
              f"{summary['seconds_to_beat']:.1f} s: {summary['speedup']:.1f}x sooner "
              f"than the classic's {summary['classic_seconds']:.0f} s.")  # fmt: skip
    if summary["classic_seconds_to_match_stylize"] is not None:
        matched = summary["classic_seconds_to_match_stylize"]
        print(f"At equal quality: the classic needed {matched:.0f} s "
              f"to match stylize's final result, which took {summary['stylize_seconds']:.1f} s: "
              f"{summary['equal_quality_speedup']:.1f}x.")  # fmt: skip
    if "restart" in results:
        _print_restart(rows, summary)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "bench.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        summary_rows = {
            r: {k: round(res[k], 2) for k in ("steps", "seconds", "peak_rss_mb")}
            for r, res in results.items()
        }
        used = [content_path(args.content), style_path(args.style)]
        files = provenance.imported_nst_files() + [
            p.relative_to(provenance.ROOT).as_posix() for p in used
        ]
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "child", "child_out")}
        about = {"machine": rows[0]["machine"], "date": rows[0]["date"], "settings": settings}
        record = {"executed_from": provenance.record(files)}
        text = json.dumps({**summary_rows, **summary, **about, **record}, indent=2)
        (args.out / "bench_summary.json").write_text(text + "\n")
        _plot(rows, args.out / "bench.png")
        for recipe, res in results.items():
            save_image(res["snaps"][-1][1].float() / 255, args.out / f"bench_{recipe}.jpg")
        print(f"wrote {args.out}/bench.csv, bench_summary.json, bench.png and the final images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
