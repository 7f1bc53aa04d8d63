"""Stamp every lesson notebook with its "Open in Colab" badge and its Colab setup cell.

Each ``notebooks/NN_*.ipynb`` gets, as
  cell 0: a markdown cell holding only the badge, linking to this very notebook on Colab;
  cell 1: a code cell tagged ``colab-setup`` that, on Colab only, clones the repository,
          installs it and moves into its notebooks/ folder (elsewhere it does nothing).

The repository URL comes from pyproject.toml ([project.urls] Repository), the one place it
is set. Existing badge/setup cells are replaced, others are left alone, and outputs are kept.

    python -m tools.colab_cells            # stamp all notebooks (what `make colab` runs)
    python -m tools.colab_cells --check    # exit 1, listing the notebooks not up to date
    python -m tools.colab_cells notebooks/01_vgg19_activations.ipynb   # only these

tools/make_assignments.py gives the assignments the same cells, for their own folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import nbformat

from tools.common import NOTEBOOKS, ROOT, relative_to_root, write_notebook
from tools.course_kit import INSTRUCTOR_ONLY

PYPROJECT = ROOT / "pyproject.toml"
LESSONS = "notebooks"  # the lessons' folder in the repository, where Colab opens them
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
BRANCH = "main"
SETUP_TAG = "colab-setup"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_ID = "colab-badge"
SETUP_ID = "colab-setup"

SETUP_COMMENT = (
    "# Colab only: fetch the lessons' code, images and weights, and install them."
    " Elsewhere this does nothing.\n"
)
SETUP_CODE = """\
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
    os.chdir("/content/nst/{folder}")
    sys.path.insert(0, "/content/nst")"""


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


def colab_url(url: str, filename: str, folder: str = LESSONS) -> str:
    """Colab's address for <folder>/<filename> of the GitHub repository at ``url``."""
    match = re.match(r"^(?:https?://)?(?:www\.)?github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", url)
    if not match:
        raise SystemExit(f"not a GitHub repository URL: {url!r} (set it in pyproject.toml)")
    owner, repo = match.groups()
    colab = "https://colab.research.google.com/github"
    return f"{colab}/{owner}/{repo}/blob/{BRANCH}/{folder}/{filename}"


def badge_markdown(url: str, filename: str, folder: str = LESSONS) -> str:
    """The Open-in-Colab badge, as markdown, for <folder>/<filename>."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(url, filename, folder)})"


def badge_cell(url: str, filename: str, folder: str = LESSONS) -> nbformat.NotebookNode:
    """The markdown cell holding only the Open-in-Colab badge for <folder>/<filename>."""
    cell = nbformat.v4.new_markdown_cell(badge_markdown(url, filename, folder))
    cell["id"] = BADGE_ID
    return cell


def sparse_patterns() -> list[str]:
    """git sparse-checkout patterns (--no-cone): everything but course_kit.INSTRUCTOR_ONLY."""
    return ["/*"] + [
        "!" + p.removeprefix("**/") if p.startswith("**/") else "!/" + p for p in INSTRUCTOR_ONLY
    ]


def setup_cell(url: str, folder: str = LESSONS) -> nbformat.NotebookNode:
    """The set-up cell: on Colab it installs the repository at ``url`` and moves into ``folder``."""
    code = SETUP_CODE.format(url=url, keep=json.dumps(sparse_patterns()), folder=folder)
    cell = nbformat.v4.new_code_cell(SETUP_COMMENT + code)
    cell["metadata"]["tags"] = [SETUP_TAG]
    cell["id"] = SETUP_ID
    return cell


def is_badge_cell(cell: dict) -> bool:
    """Whether ``cell`` is a markdown cell holding a Colab badge."""
    return cell.get("cell_type") == "markdown" and BADGE_IMAGE in cell.get("source", "")


def is_setup_cell(cell: dict) -> bool:
    """Whether ``cell`` is the Colab set-up cell (by its tag)."""
    return cell.get("cell_type") == "code" and SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def _strip_badge(cell: dict) -> str:
    """A markdown cell's text without the lines that hold a Colab badge."""
    lines = cell["source"].splitlines()
    kept = [line for line in lines if BADGE_IMAGE not in line]
    return "\n".join(kept).strip("\n")


def _other_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The cells that are not Colab cells; a title cell that also held the badge keeps its title."""
    cells = []
    for index, cell in enumerate(nb.cells):
        if is_setup_cell(cell):
            continue
        if index < 3 and is_badge_cell(cell):
            rest = _strip_badge(cell)
            if not rest.strip():
                continue  # a badge-only cell: replaced
            cell["source"] = rest
        cells.append(cell)
    return cells


def _carry_over(setup: nbformat.NotebookNode, old: nbformat.NotebookNode) -> None:
    """Give the new set-up cell the old one's outputs, execution count and other tags."""
    setup["execution_count"] = old.get("execution_count")
    setup["outputs"] = old.get("outputs", [])
    metadata = dict(old.get("metadata", {}))
    metadata["tags"] = [SETUP_TAG] + [t for t in metadata.get("tags", []) if t != SETUP_TAG]
    setup["metadata"] = nbformat.from_dict(metadata)


def with_colab_cells(
    nb: nbformat.NotebookNode, url: str, filename: str, folder: str = LESSONS
) -> nbformat.NotebookNode:
    """A copy of notebook ``nb`` with the badge as cell 0 and the set-up cell as cell 1."""
    nb = copy.deepcopy(nb)
    has_ids = (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5)  # nbformat 4.5+
    old_setup = next((c for c in nb.cells if is_setup_cell(c)), None)
    cells = _other_cells(nb)
    badge, setup = badge_cell(url, filename, folder), setup_cell(url, folder)
    if old_setup is not None:  # keep what it printed and its place in the execution order
        _carry_over(setup, old_setup)
    for new in (badge, setup):
        if not has_ids:
            new.pop("id", None)
        elif new["id"] in {c.get("id") for c in cells}:
            new["id"] = nbformat.v4.new_code_cell()["id"]  # a fresh random id
    nb.cells = [badge, setup, *cells]
    return nb


def notebook_paths(args: list[str] | None = None) -> list[Path]:
    """The notebooks named on the command line, else every lesson."""
    if args:
        return [Path(a).resolve() for a in args]
    return sorted(NOTEBOOKS.glob(NOTEBOOK_GLOB))


def stamp(path: Path | str, url: str | None = None, *, write: bool = True) -> bool:
    """Stamp one notebook in place; True if it changed (or, with write=False, would change)."""
    path = Path(path)
    url = url or repo_url()
    nb = nbformat.read(path, as_version=4)
    new = with_colab_cells(nb, url, path.name)
    if new == nb:
        return False
    if write:
        write_notebook(new, path)
    return True


def report_stale(paths: list[Path], url: str) -> int:
    """Print which notebooks need stamping; the exit status (1 if any)."""
    stale = [p for p in paths if stamp(p, url, write=False)]
    for path in stale:
        print(f"not up to date: {relative_to_root(path)}")
    if stale:
        print("run `make colab` (python -m tools.colab_cells) to fix")
        return 1
    print(f"{len(paths)} notebook(s) up to date ({url})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.colab_cells", description=__doc__.split("\n\n")[0]
    )
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
        return report_stale(paths, url)
    for path in paths:
        print(f"{'stamped   ' if stamp(path, url) else 'up to date'} {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
