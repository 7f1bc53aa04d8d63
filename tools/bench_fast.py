"""How fast and how good the committed fast networks are (``make bench-fast``).

For each network in ``data/fast/``: the seconds of one forward pass on a 512×384 photo (network
loaded, ``torch.inference_mode``, median of 3 after one warm-up), and on the bundled photos that
no network was trained on, lesson 06's distances of three images to the photo and the painting:
the photo itself, the network's result and ``nst.stylize``'s at its defaults (512 px, 80 steps).
Writes ``data/fast/bench.json``, ``docs/fast/<photo>_<painting>.jpg`` (photo, network, ``stylize``,
side by side) and README.md's section between ``<!-- fast:start -->`` and ``<!-- fast:end -->``;
prints a table. About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import datetime
import json
import statistics
import sys
import time

import torch

import nst
from nst import fast, metrics, provenance
from tools.common import README, ROOT, machine_description

PHOTOS = ("astronaut", "chelsea", "grace_hopper")  # none of them is in data/train/
SIZE = 512
OUT = ROOT / "docs" / "fast"
SUMMARY = fast.FAST_DIR / "bench.json"
SECTION_START, SECTION_END = "<!-- fast:start -->", "<!-- fast:end -->"
TITLES = {"starry_night": "The Starry Night", "great_wave": "The Great Wave"}


def seconds_per_pass(net: fast.TransformerNet, size: tuple[int, int] = (384, 512)) -> float:
    """Median seconds of 3 forward passes on a (1,3,384,512) photo, after one warm-up."""
    photo = nst.images.resize_to(nst.load_image(nst.data.content_path("chelsea")), size)
    fast.stylize(photo, net)  # warm-up: the first pass allocates its buffers
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fast.stylize(photo, net)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(
    photo: str, painting: str, net: fast.TransformerNet, model: nst.vgg.VGG19Features
) -> dict:
    """The photo, the network's result and stylize's: each one's distances; the three saved."""
    content_img = nst.load_image(nst.data.content_path(photo), long_side=SIZE)
    style_img = nst.load_image(nst.data.style_path(painting), long_side=SIZE)
    fast_img = fast.stylize(content_img, net)
    start = time.perf_counter()
    slow_img, _ = nst.stylize(content_img, style_img, model=model, size=SIZE, progress=False)
    slow_seconds = time.perf_counter() - start
    row = {"photo": photo, "painting": painting, "stylize_seconds": round(slow_seconds, 1)}
    for label, img in [("photo", content_img), ("fast", fast_img), ("stylize", slow_img)]:
        d = metrics.evaluate(img, content_img, style_img, model)
        row |= {f"{label}_{k}": round(d[k], 4) for k in ("content", "style", "ssim")}
    side_by_side = torch.cat([content_img, fast_img, slow_img], dim=-1)  # (1,3,H,3W)
    nst.save_image(side_by_side, OUT / f"{photo}_{painting}.jpg")
    return row


def report(summary: dict) -> str:
    """The table ``main`` prints: per network its speed, per photo the three distances."""
    lines = []
    for painting, result in summary["networks"].items():
        lines.append(f"{painting}: {result['seconds_512x384']:.3f} s per 512x384 photo")
        for r in result["photos"]:
            lines.append(
                f"  {r['photo']:<13} style: photo {r['photo_style']:.3f}, fast "
                f"{r['fast_style']:.3f}, stylize {r['stylize_style']:.3f}; ssim: fast "
                f"{r['fast_ssim']:.2f}, stylize {r['stylize_ssim']:.2f}"
            )
    return "\n".join(lines)


def readme_section(summary: dict) -> str:
    """README's figures: per network its speed and the three distances per photo, and one image."""
    lines = [
        "| network | one 512 × 384 photo | photo | style: photo → network (`stylize`) | "
        "content: network (`stylize`) | SSIM: network (`stylize`) |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    for painting, result in summary["networks"].items():
        for i, r in enumerate(result["photos"]):
            first = [TITLES.get(painting, painting), f"{result['seconds_512x384']:.2f} s"]
            lines.append(
                "| " + " | ".join(first if i == 0 else ["", ""]) + f" | {r['photo']} | "
                f"{r['photo_style']:.2f} → **{r['fast_style']:.2f}** ({r['stylize_style']:.2f}) | "
                f"{r['fast_content']:.2f} ({r['stylize_content']:.2f}) | "
                f"{r['fast_ssim']:.2f} ({r['stylize_ssim']:.2f}) |"
            )
    images = [
        f"![{r['photo']}: the photo, then painted by the network for {TITLES.get(p, p)}, "
        "then by nst.stylize]"
        f"(docs/fast/{r['photo']}_{p}.jpg)"
        for p, result in summary["networks"].items()
        for r in result["photos"][:1]
    ]
    footer = (
        f"Made by `make bench-fast` on {summary['date']}, {summary['machine']}: photos no network "
        "was trained on, at 512 px; `stylize` at its defaults (80 steps) took "
        f"{summary['stylize_seconds']:.0f} s per photo on average. Each image: the photo, the "
        "network's painting, `stylize`'s."
    )
    return "\n".join(lines) + "\n\n" + "\n".join(images) + "\n\n" + footer


def rewrite_readme(summary: dict) -> None:
    """Put ``readme_section(summary)`` between README's markers (which must be there)."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index(SECTION_START), text.index(SECTION_END)
    middle = "\n\n" + readme_section(summary) + "\n\n"
    README.write_text(text[: start + len(SECTION_START)] + middle + text[end:], encoding="utf-8")


def main() -> int:
    """Measure every committed network; write the summary and the images; print the table."""
    names = fast.available()
    if not names:
        sys.exit("make bench-fast: no networks in data/fast/; train one with make train STYLE=...")
    OUT.mkdir(parents=True, exist_ok=True)
    model = nst.load_vgg19(device="cpu")
    networks = {}
    for name in names:
        net = fast.load(name)
        rows = [compare(photo, name, net, model) for photo in PHOTOS]
        networks[name] = {"seconds_512x384": round(seconds_per_pass(net), 4), "photos": rows}
    used = [nst.data.content_path(p) for p in PHOTOS] + [nst.data.style_path(n) for n in names]
    used += [fast.FAST_DIR / f"{n}.pt" for n in names]
    summary = {
        "networks": networks,
        "machine": machine_description(),
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "executed_from": provenance.run_record(used),
    }
    slow = [r["stylize_seconds"] for n in networks.values() for r in n["photos"]]
    summary["stylize_seconds"] = round(statistics.mean(slow), 1)
    SUMMARY.write_text(json.dumps(summary, indent=1) + "\n")
    rewrite_readme(summary)
    print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
