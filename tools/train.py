"""Train a fast network for a bundled painting (``make train STYLE=<painting>``).

Writes ``data/fast/<painting>.pt`` (the weights only), ``<painting>.json`` (architecture, settings,
photos, seconds, machine, the ``nst`` commit, sha256) and ``<painting>.log.csv`` (the losses of
every step). The defaults are ``nst.perceptual.TrainOptions``'s, the settings of the committed
networks. Photos: ``data/train/`` (bundled, public domain/CC0/CC-BY), plus any folder of your own:

    python -m tools.train --style starry_night
    python -m tools.train --style great_wave --photos ~/Pictures --steps 3000
    python -m tools.train --style starry_night --steps 3 --crop 64 --out /tmp/fast   # smoke test

Photos from Debian's wallpaper packages (copyleft, so never copied into this repository) can be
read where the package put them: ``sudo apt-get install desktop-base`` and then
``--photos /usr/share/desktop-base``; this script never installs anything itself.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import torch

import nst
from nst import fast, perceptual
from nst.errors import NSTError
from tools.common import ROOT, machine_description, relative_to_root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--style, --photos, --out, --norm, --name, and one flag per TrainOptions field."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--style", required=True, choices=nst.data.STYLE_IMAGES)
    parser.add_argument("--photos", type=Path, help="a folder of more photos to train on")
    parser.add_argument("--out", type=Path, default=fast.FAST_DIR, help="where the files go")
    parser.add_argument("--norm", choices=fast.NORMS, default="instance")
    parser.add_argument("--name", help="the files' name (default: the painting's)")
    for field in fields(perceptual.TrainOptions):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    return parser.parse_args(argv)


def photo_paths(extra: Path | None) -> list[Path]:
    """data/train/'s photos, then those of ``extra`` (a folder), if given."""
    paths = perceptual.training_photos()
    return paths + perceptual.training_photos(extra) if extra else paths


def nst_commit() -> str:
    """The repository's commit, with "+changes" when the working tree differs from it."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return run.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "nst") else "")


def write_log(history: list[dict], path: Path) -> None:
    """The losses of every step as CSV: step, seconds, total, content, style, tv."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["step", "seconds", "total", "content", "style", "tv"])
        writer.writeheader()
        for row in history:
            writer.writerow({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})


def main(argv: list[str] | None = None) -> int:
    """Train, save the network, its JSON and its loss log; print where they went."""
    args = parse_args(argv)
    options = perceptual.TrainOptions(
        **{f.name: getattr(args, f.name) for f in fields(perceptual.TrainOptions)}
    )
    paths = photo_paths(args.photos)
    commit = nst_commit()  # now: the code this run imports, not what the tree holds at its end
    torch.manual_seed(options.seed)  # the same first weights on every run
    device = nst.vgg.default_device()  # CUDA, MPS or the CPU, as the lessons
    net = fast.TransformerNet(norm=args.norm).to(device)
    model = nst.load_vgg19(device=device)
    style_img = nst.load_image(nst.data.style_path(args.style), long_side=options.photo_side)
    style_img = style_img.to(device)
    loss_fn = perceptual.PerceptualLoss(model, style_img, options)
    photos = perceptual.load_photos(paths, options.photo_side)
    print(f"Training on {len(photos)} photos for {options.steps} steps of {options.batch} crops.")
    history = perceptual.train(net, photos, loss_fn, options)
    name = args.name or args.style
    record = {
        "painting": args.style,
        "settings": options.record(),
        "photos": [relative_to_root(p) if p.is_relative_to(ROOT) else str(p) for p in paths],
        "seconds": round(history[-1]["seconds"], 1),
        "final_losses": {k: round(history[-1][k], 4) for k in ("content", "style", "tv")},
        "machine": machine_description(),
        "device": str(device),
        "torch": torch.__version__,
        "nst_commit": commit,
        "date": datetime.date.today().isoformat(),
    }
    path = fast.save(net.eval().cpu(), name, record, args.out)
    write_log(history, path.with_suffix(".log.csv"))
    print(f"Wrote {path} and its .json and .log.csv ({record['seconds']:.0f} s).")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NSTError as error:
        sys.exit(f"make train: {error}")
