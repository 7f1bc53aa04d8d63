"""Render the README's opening images with ``nst.stylize`` at 512 px (``make heroes``).

For each bundled pair below: ``docs/heroes/<photo>_<painting>.jpg`` and, beside it, a JSON with
the settings, the seconds, lesson 06's two distances (content and style, at the result's size)
and ``executed_from`` (``nst.provenance.record``: the ``nst`` modules and data files that made
it; tests/test_freshness.py fails when they change). Then README.md's table of them, between
``<!-- heroes:start -->`` and ``<!-- heroes:end -->``, is rewritten from the JSON files. About 10
minutes on 2 CPU cores.

    python -m tools.heroes                      # all of them
    python -m tools.heroes chelsea_great_wave   # only these
    python -m tools.heroes --table-only         # only rewrite README's table
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import torch

import nst
from nst import metrics, provenance
from tools.common import README, ROOT, machine_description

OUT = ROOT / "docs" / "heroes"
SIZE = 512
STEPS = 150
# (photo, painting, stylize options): two of the first write-ups' paintings on one photo, then
# pairs a learner would want to share. The style weights suit each painting's texture.
PAIRS = [
    ("chelsea", "starry_night", {}),
    ("chelsea", "great_wave", {"style_weight": 30.0}),
    ("astronaut", "starry_night", {}),
    ("coffee", "composition_viii", {"style_weight": 30.0}),
    ("grace_hopper", "village_street_auvers", {"style_weight": 100.0, "preserve_color": "linear"}),
]


def render(photo: str, painting: str, options: dict, model: nst.vgg.VGG19Features) -> dict:
    """Stylize one pair at SIZE px; save the image; return its JSON record."""
    content_img = nst.load_image(nst.data.content_path(photo), long_side=SIZE)
    style_img = nst.load_image(nst.data.style_path(painting), long_side=SIZE)
    torch.manual_seed(0)
    start = time.perf_counter()
    options = {"size": SIZE, "steps": STEPS, **options}
    img, _ = nst.stylize(content_img, style_img, model=model, progress=False, **options)
    seconds = time.perf_counter() - start
    name = f"{photo}_{painting}"
    nst.save_image(img, OUT / f"{name}.jpg")
    distances = metrics.evaluate(img, content_img, style_img, model)
    return {
        "photo": photo,
        "painting": painting,
        "settings": options,
        "seconds": round(seconds, 1),
        "content_distance": round(distances["content"], 4),
        "style_distance": round(distances["style"], 4),
        "machine": machine_description(),
        "date": datetime.date.today().isoformat(),
    }


TITLES = {
    "chelsea": "Chelsea",
    "astronaut": "Eileen Collins",
    "coffee": "a cup of coffee",
    "grace_hopper": "Grace Hopper",
    "starry_night": "The Starry Night",
    "great_wave": "The Great Wave",
    "composition_viii": "Composition VIII",
    "village_street_auvers": "Village Street in Auvers",
}
TABLE_START, TABLE_END = "<!-- heroes:start -->", "<!-- heroes:end -->"


def caption(info: dict) -> str:
    """A result's caption: the pair, the options beyond stylize's defaults, the numbers."""
    options = [f"`{k}={v!r}`" for k, v in info["settings"].items() if k not in ("size", "steps")]
    return (
        f"*{TITLES[info['photo']]} × {TITLES[info['painting']]}*: {info['settings']['steps']} steps"
        + "".join(f", {o}" for o in options)
        + f"; {info['seconds']:.0f} s; content {info['content_distance']:.2f}, "
        f"style {info['style_distance']:.2f}"
    )


def readme_table() -> str:
    """README's table of the committed results: two images per row, each with its caption."""
    paths = [OUT / f"{photo}_{painting}.json" for photo, painting, _ in PAIRS]
    infos = [json.loads(path.read_text()) for path in paths if path.is_file()]
    rows = ["| | |", "| --- | --- |"]
    for left, right in zip(infos[::2], infos[1::2] + [None]):
        pair = [i for i in (left, right) if i]
        images = [
            f"![{TITLES[i['photo']]} as {TITLES[i['painting']]}](docs/heroes/"
            f"{i['photo']}_{i['painting']}.jpg)"
            for i in pair
        ]
        rows.append("| " + " | ".join(images + [""] * (2 - len(pair))) + " |")
        rows.append("| " + " | ".join([caption(i) for i in pair] + [""] * (2 - len(pair))) + " |")
    first = infos[0] if infos else {"machine": "-", "date": "-"}
    footer = (
        f"Each is one call of `nst.stylize` at 512 px, made by `make heroes` on {first['date']}, "
        f"{first['machine']}; the distances are lesson 06's (0: a perfect match; the style "
        "distance compares with the painting's own colours, which `preserve_color` does not copy)."
    )
    return "\n".join(rows) + "\n\n" + footer


def rewrite_readme() -> None:
    """Put ``readme_table()`` between README's markers (which must be there)."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    new = text[: start + len(TABLE_START)] + "\n\n" + readme_table() + "\n\n" + text[end:]
    README.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Render the pairs asked for (default: all) and write an image and a JSON for each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="photo_painting names (default: all)")
    parser.add_argument("--table-only", action="store_true", help="only rewrite README's table")
    args = parser.parse_args(argv)
    if args.table_only:
        rewrite_readme()
        return 0
    pairs = [p for p in PAIRS if not args.names or f"{p[0]}_{p[1]}" in args.names]
    if not pairs:
        parser.error(f"no such pair; choose from {', '.join(f'{p}_{s}' for p, s, _ in PAIRS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    model = nst.load_vgg19(device=nst.vgg.default_device())
    for photo, painting, options in pairs:
        info = render(photo, painting, options, model)
        used = [nst.data.content_path(photo), nst.data.style_path(painting)]
        info["executed_from"] = provenance.run_record(used)
        path = OUT / f"{photo}_{painting}.json"
        path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        print(
            f"{path.name}: {info['seconds']} s, content {info['content_distance']}, style "
            f"{info['style_distance']}",
            flush=True,
        )
    rewrite_readme()
    print(f"updated the table of results in {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
