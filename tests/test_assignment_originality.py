"""Graded work is the student's own: no graded solution is code a lesson already shows.

A lesson displays code in two ways: its own code cells, and the listings of ``nst``'s functions
that ``nst.plot.show_source`` stores as outputs. A graded exercise whose solution is (nearly) one of
those grades copying, not understanding. Each graded solution cell of the assignments' sources,
whole and its solution part alone (between nbgrader's markers), must have a difflib similarity
ratio below ``MAX_RATIO`` to every such cell and listing.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "assignments" / "source").glob("A*/A*_*.ipynb"))
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_RATIO = 0.6
# nbgrader's markers, built from pieces: students get this file (without assignments/source/, so
# it has nothing to check there), and the student repository must hold no marker itself.
BEGIN, END = ("### " + word + " SOLUTION" for word in ("BEGIN", "END"))


def _lesson_code() -> list[tuple[str, str]]:
    """(where, text) for every lesson code cell and every listing its show_source calls stored."""
    shown = []
    for path in LESSONS:
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type != "code":
                continue
            shown.append((f"{path.name} cell {index}", cell.source))
            if "show_source(" in cell.source:
                for out in cell.get("outputs", []):
                    listing = out.get("data", {}).get("text/plain", "")
                    if listing:
                        shown.append((f"{path.name} cell {index}'s listing", listing))
    return shown


def _solution_part(source: str) -> str:
    """The lines between nbgrader's begin- and end-of-solution markers (all, if none)."""
    if BEGIN not in source:
        return source
    return source.split(BEGIN, 1)[1].split(END, 1)[0]


def _graded_solutions(path: Path) -> list[tuple[str, str]]:
    """(grade_id, code) of each code cell a student writes and a test grades."""
    cells = nbformat.read(path, as_version=4).cells
    return [
        (cell.metadata["nbgrader"]["grade_id"], cell.source)
        for cell in cells
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")
    ]


@pytest.fixture(scope="module")
def lesson_code() -> list[tuple[str, str]]:
    shown = _lesson_code()
    assert len(shown) > 100, "the lessons' code cells were not found"
    return shown


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.parent.name)
def test_no_graded_solution_is_code_a_lesson_shows(source: Path, lesson_code) -> None:
    solutions = _graded_solutions(source)
    assert solutions, f"{source.name} has no graded solution cells"
    too_close = []
    for grade_id, code in solutions:
        for text in (code, _solution_part(code)):
            for where, shown in lesson_code:
                matcher = difflib.SequenceMatcher(None, text, shown, autojunk=False)
                if matcher.real_quick_ratio() >= MAX_RATIO and matcher.ratio() >= MAX_RATIO:
                    too_close.append(f"{grade_id} ~ {where} ({matcher.ratio():.2f})")
    assert not too_close, f"graded solutions that a lesson shows: {', '.join(too_close)}"


def test_the_ratio_catches_a_copied_listing(lesson_code) -> None:
    """The test above can fail: a lesson's own listing, lightly edited, is caught."""
    where, listing = next((w, t) for w, t in lesson_code if "listing" in w)
    edited = listing.replace("return", "return  ").replace('"""', "'''")
    assert difflib.SequenceMatcher(None, edited, listing).ratio() >= MAX_RATIO, where
