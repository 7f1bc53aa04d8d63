"""Stamp every lesson notebook with its "Open in Colab" badge and its Colab setup cell.

Each ``notebooks/NN_*.ipynb`` gets, as
  cell 0: a markdown cell holding only the badge, linking to this very notebook on Colab;
  cell 1: a code cell tagged ``colab-setup`` that, on Colab only, clones the repository,
          installs it and moves into its notebooks/ folder (elsewhere it does nothing).

The repository URL comes from pyproject.toml ([project.urls] Repository), the one place it
is set. Existing badge/setup cells are replaced, others are left alone, and outputs are kept.

    python tools/colab_cells.py            # stamp all notebooks (what `make colab` runs)
    python tools/colab_cells.py --check    # exit 1, listing the notebooks not up to date
    python tools/colab_cells.py notebooks/01_vgg19_activations.ipynb   # only these
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PYPROJECT = ROOT / "pyproject.toml"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
BRANCH = "main"
SETUP_TAG = "colab-setup"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_ID = "colab-badge"
SETUP_ID = "colab-setup"

SETUP_SOURCE = (
    (
        "# Colab only: fetch the lessons' code, images and weights, and install them."
        " Elsewhere this does nothing.\n"
    )
    + """\
import sys

if "google.colab" in sys.modules:
    import os, subprocess
    if not os.path.isdir("/content/nst"):
        subprocess.run(["git", "clone", "--depth", "1", "{url}", "/content/nst"], check=True)
        # students' files only: no solutions, no hidden tests
        keep = {keep}
        sparse = ["git", "-C", "/content/nst", "sparse-checkout", "set", "--no-cone"]
        subprocess.run(sparse + keep, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/nst"], check=True)
    os.chdir("/content/nst/notebooks")
    sys.path.insert(0, "/content/nst")"""
)


def repo_url(pyproject: Path = PYPROJECT) -> str:
    """The repository URL from pyproject.toml's [project.urls] Repository."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Python 3.9/3.10: a regex over the [project.urls] table
        table = re.search(r"^\[project\.urls\][ \t]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        found = table and re.search(
            r"""^\s*"?Repository"?\s*=\s*["']([^"']+)["']""", table.group(1), re.M
        )
        if not found:
            raise SystemExit(f"{pyproject}: no Repository in [project.urls]") from None
        return found.group(1).strip()
    try:
        return tomllib.loads(text)["project"]["urls"]["Repository"].strip()
    except KeyError:
        raise SystemExit(f"{pyproject}: no Repository in [project.urls]") from None


def colab_url(url: str, filename: str) -> str:
    """Colab's address for notebooks/<filename> of the GitHub repository at ``url``."""
    match = re.match(r"^(?:https?://)?(?:www\.)?github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", url)
    if not match:
        raise SystemExit(f"not a GitHub repository URL: {url!r} (set it in pyproject.toml)")
    owner, repo = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/{BRANCH}/notebooks/{filename}"


def badge_markdown(url: str, filename: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(url, filename)})"


def badge_cell(url: str, filename: str) -> nbformat.NotebookNode:
    """The markdown cell holding only the Open-in-Colab badge for notebooks/<filename>."""
    cell = nbformat.v4.new_markdown_cell(badge_markdown(url, filename))
    cell["id"] = BADGE_ID
    return cell


def sparse_patterns() -> list[str]:
    """git sparse-checkout patterns (--no-cone): everything but course_kit.INSTRUCTOR_ONLY."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from course_kit import INSTRUCTOR_ONLY

    return ["/*"] + [
        "!" + p.removeprefix("**/") if p.startswith("**/") else "!/" + p for p in INSTRUCTOR_ONLY
    ]


def setup_cell(url: str) -> nbformat.NotebookNode:
    """The code cell (tagged colab-setup) that installs the repository at ``url`` on Colab."""
    keep = json.dumps(sparse_patterns())
    cell = nbformat.v4.new_code_cell(SETUP_SOURCE.format(url=url, keep=keep))
    cell["metadata"]["tags"] = [SETUP_TAG]
    cell["id"] = SETUP_ID
    return cell


def is_badge_cell(cell) -> bool:
    return cell.get("cell_type") == "markdown" and BADGE_IMAGE in cell.get("source", "")


def is_setup_cell(cell) -> bool:
    return cell.get("cell_type") == "code" and SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def _strip_badge(cell) -> str:
    """A markdown cell's text without the lines that hold a Colab badge."""
    lines = cell["source"].splitlines()
    kept = [line for line in lines if BADGE_IMAGE not in line]
    return "\n".join(kept).strip("\n")


def stamped(nb, url: str, filename: str):
    """A copy of notebook ``nb`` with the badge as cell 0 and the setup cell as cell 1."""
    nb = copy.deepcopy(nb)
    has_ids = (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5)
    old_setup = next((c for c in nb.cells if is_setup_cell(c)), None)

    cells = []
    for index, cell in enumerate(nb.cells):
        if is_setup_cell(cell):
            continue
        if index < 3 and is_badge_cell(cell):
            rest = _strip_badge(cell)
            if not rest.strip():
                continue  # a badge-only cell: replaced below
            cell["source"] = rest  # a title cell that also held the badge: keep the title
        cells.append(cell)

    badge = badge_cell(url, filename)
    setup = setup_cell(url)
    if old_setup is not None:  # keep what it printed and its place in the execution order
        setup["execution_count"] = old_setup.get("execution_count")
        setup["outputs"] = old_setup.get("outputs", [])
        metadata = dict(old_setup.get("metadata", {}))
        metadata["tags"] = [SETUP_TAG] + [t for t in metadata.get("tags", []) if t != SETUP_TAG]
        setup["metadata"] = nbformat.from_dict(metadata)
    for new in (badge, setup):
        taken = {c.get("id") for c in cells}
        if not has_ids:
            new.pop("id", None)
        elif new["id"] in taken:
            new["id"] = nbformat.v4.new_code_cell()["id"]  # a fresh random id
    nb.cells = [badge, setup, *cells]
    return nb


def notebook_paths(args: list[str] | None = None) -> list[Path]:
    if args:
        return [Path(a).resolve() for a in args]
    return sorted(NOTEBOOKS.glob(NOTEBOOK_GLOB))


def write_notebook(nb, path: Path) -> None:
    """Write as Jupyter does: JSON indented by 1, sorted keys, a trailing newline."""
    text = nbformat.writes(nb)  # indent=1, sort_keys=True, as Jupyter writes it
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text, encoding="utf-8")


def stamp(path: Path | str, url: str | None = None, *, write: bool = True) -> bool:
    """Stamp one notebook in place; True if it changed (or, with write=False, would change)."""
    path = Path(path)
    url = url or repo_url()
    nb = nbformat.read(path, as_version=4)
    new = stamped(nb, url, path.name)
    if new == nb:
        return False
    if write:
        write_notebook(new, path)
    return True


def check(paths: list[Path], url: str) -> list[Path]:
    """The notebooks among ``paths`` whose badge or setup cell is missing or out of date."""
    return [p for p in paths if stamp(p, url, write=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to stamp (default: all lessons)")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if any notebook needs stamping"
    )
    args = parser.parse_args(argv)
    url = repo_url()
    paths = notebook_paths(args.notebooks)
    if not paths:
        print(f"no notebooks matching {NOTEBOOK_GLOB} in {NOTEBOOKS}")
        return 0
    if args.check:
        stale = check(paths, url)
        for p in stale:
            print(f"not up to date: {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")
        if stale:
            print("run `make colab` (python tools/colab_cells.py) to fix")
            return 1
        print(f"{len(paths)} notebook(s) up to date ({url})")
        return 0
    for p in paths:
        print(f"{'stamped   ' if stamp(p, url) else 'up to date'} {p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
