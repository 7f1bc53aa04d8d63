"""A submitted notebook's cells matched to the release's and put back in the release's order.

Students delete, move, duplicate and edit cells, and some editors drop nbgrader's metadata. Each
graded or read-only cell of the release is found again (by its nbgrader id, else an answer cell
by the function it defines and a read-only cell by its source), read-only cells are replaced by
the release's, and the cells a student added travel with the cell above them.
"""

from __future__ import annotations

import ast
import copy
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools.grading.collect import choose_notebooks
from tools.grading.model import Reference, Submission, nbgrader_meta

Cell = nbformat.NotebookNode


def defined_functions(source: str) -> set[str]:
    """The names of the functions a cell defines at its top level (none if it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _lookalikes(nb: nbformat.NotebookNode, ref_cell: Cell) -> list[Cell]:
    """The cells without nbgrader metadata that may be ``ref_cell``, in notebook order."""
    meta = nbgrader_meta(ref_cell)
    free = [
        c for c in nb.cells if not nbgrader_meta(c) and c.get("cell_type") == ref_cell.cell_type
    ]
    if meta.get("solution") and ref_cell.cell_type == "code":  # an answer: the function it defines
        names = defined_functions(ref_cell.source)
        return [c for c in free if names and names <= defined_functions(c.get("source", ""))]
    if meta.get("locked"):  # read-only: the same text
        return [c for c in free if c.get("source", "").strip() == ref_cell.source.strip()]
    return []


def match_cells(
    nb: nbformat.NotebookNode, release: nbformat.NotebookNode, notebook: str
) -> list[str]:
    """Give cells that lost their nbgrader metadata the release's, where they match; notes."""
    known = {nbgrader_meta(c).get("grade_id") for c in nb.cells} - {None}
    found_answers, ambiguous = [], []
    for ref_cell in release.cells:
        meta = nbgrader_meta(ref_cell)
        grade_id = meta.get("grade_id")
        if not grade_id or grade_id in known:
            continue
        found = _lookalikes(nb, ref_cell)
        if meta.get("solution") and ref_cell.cell_type == "code" and len(found) > 1:
            ambiguous.append(grade_id)
        if found:  # the last one, as Python keeps the last definition of a function
            found[-1].setdefault("metadata", {})["nbgrader"] = copy.deepcopy(meta)
            known.add(grade_id)
            if meta.get("solution"):
                found_answers.append(grade_id)
    notes = []
    if found_answers:
        notes.append(
            f"{notebook}: answer cells without nbgrader metadata found by the function they "
            f"define: {', '.join(found_answers)}"
        )
    if ambiguous:
        notes.append(
            f"{notebook}: {', '.join(ambiguous)} defined in several cells; graded the last one"
        )
    return notes


@dataclass
class _Sorted:
    """A submission's cells sorted against the release, before they are put back together."""

    head: list[Cell] = field(default_factory=list)  # the student's cells before any release cell
    kept: dict[str, Cell] = field(default_factory=dict)  # grade id -> the copy that is graded
    attached: dict[str, list[Cell]] = field(default_factory=dict)  # grade id -> cells after it
    duplicated: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # nbgrader ids the release does not have
    edited: list[str] = field(default_factory=list)  # read-only cells whose text was changed
    last: dict[str, int] = field(default_factory=dict)  # grade id -> where its graded copy was


def _last_copies(nb: nbformat.NotebookNode, grade_ids: set[str]) -> dict[str, int]:
    """The index of the last cell carrying each release grade id: the copy that is graded."""
    last = {}
    for i, cell in enumerate(nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in grade_ids:
            last[grade_id] = i
    return last


def _graded_copy(cell: Cell, ref_cell: Cell, original: str | None) -> tuple[Cell, bool]:
    """The cell to grade for a release cell, and whether a read-only one had been edited."""
    if nbgrader_meta(ref_cell).get("locked"):  # read-only: exactly the release's cell
        edited = cell.get("source") not in (ref_cell.source, original)
        return copy.deepcopy(ref_cell), edited
    cell = copy.deepcopy(
        cell
    )  # the student's answer, with the release's metadata (flags, checksums)
    cell.metadata = copy.deepcopy(ref_cell.metadata)
    return cell, False


def _sort_cells(
    nb: nbformat.NotebookNode, ref_cells: dict[str, Cell], originals: dict[str, str]
) -> _Sorted:
    """Sort the cells into the graded copies and the cells that follow each of them."""
    last = _last_copies(nb, set(ref_cells))
    found = _Sorted(attached={grade_id: [] for grade_id in ref_cells}, last=last)
    current = None  # the grade id of the last graded copy seen
    for i, cell in enumerate(nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in ref_cells and last[grade_id] == i:
            found.kept[grade_id], edited = _graded_copy(
                cell, ref_cells[grade_id], originals.get(grade_id)
            )
            if edited:
                found.edited.append(grade_id)
            current = grade_id
            continue
        if grade_id is not None:  # an earlier copy, or an id of nobody's: graded as a plain cell
            cell = copy.deepcopy(cell)
            del cell.metadata["nbgrader"]
            (found.duplicated if grade_id in ref_cells else found.unknown).append(grade_id)
        (found.attached[current] if current else found.head).append(cell)
    return found


def _repair_notes(order: list[str], found: _Sorted, notebook: str) -> list[str]:
    """One sentence for each kind of repair made."""
    present = sorted(found.kept, key=lambda grade_id: found.last[grade_id])
    missing = [grade_id for grade_id in order if grade_id not in found.kept]
    notes = []
    if present != [grade_id for grade_id in order if grade_id in found.kept]:
        notes.append("moved cells were put back in the assignment's order")
    if missing:
        notes.append(f"deleted cells restored from the assignment: {', '.join(missing)}")
    if found.duplicated:
        notes.append(
            "duplicated cells graded from their last copy: "
            + ", ".join(sorted(set(found.duplicated)))
        )
    if found.unknown:
        notes.append("cells with unknown nbgrader ids graded as plain cells")
    if found.edited:
        notes.append(f"edited read-only cells graded as the originals: {', '.join(found.edited)}")
    return [f"{notebook}: {note}" for note in notes]


def _give_fresh_ids(cells: list[Cell]) -> None:
    """Give repeated cell ids new ones: copied cells may share an id, which nbformat rejects."""
    ids = set()
    for cell in cells:
        if "id" in cell and cell["id"] in ids:
            cell["id"] = uuid.uuid4().hex[:8]
        ids.add(cell.get("id"))


def repair(
    nb: nbformat.NotebookNode,
    release: nbformat.NotebookNode,
    source: nbformat.NotebookNode,
    notebook: str,
) -> tuple[nbformat.NotebookNode, list[str]]:
    """Put nbgrader cells back in the release's order, restoring deleted ones; list the fixes."""
    ref_cells = {
        nbgrader_meta(c)["grade_id"]: c for c in release.cells if nbgrader_meta(c).get("grade_id")
    }
    originals = {nbgrader_meta(c).get("grade_id"): c.source for c in source.cells}
    found = _sort_cells(nb, ref_cells, originals)
    cells = list(found.head)
    for grade_id, ref_cell in ref_cells.items():
        cells.append(found.kept[grade_id] if grade_id in found.kept else copy.deepcopy(ref_cell))
        cells.extend(found.attached[grade_id])
    _give_fresh_ids(cells)
    fixed = copy.deepcopy(nb)
    fixed.metadata = copy.deepcopy(release.metadata)  # kernel and language: the release's
    fixed.cells = cells
    return fixed, _repair_notes(list(ref_cells), found, notebook)


def read_notebook(path: Path, sub: Submission) -> nbformat.NotebookNode | None:
    """The notebook at ``path``, or None with a note saying why it cannot be read."""
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no list of cells")
    except Exception as err:  # any unreadable file: JSON, encoding, nbformat
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        sub.notes.append(f"{path.name} is not a readable notebook ({reason}); 0 points")
        return None
    return nb


def read_submission(sub: Submission, ref: Reference) -> dict[str, nbformat.NotebookNode] | None:
    """The submission's notebooks by the assignment's notebook names, repaired; None if none."""
    if not sub.files:
        sub.notes.append("no .ipynb file was submitted; 0 points")
        return None
    notebooks = {}
    for name, path in choose_notebooks(sub, ref.notebooks).items():
        nb = read_notebook(path, sub)
        if nb is None:
            continue
        sub.notes.extend(match_cells(nb, ref.release[name], name))
        notebooks[name], notes = repair(nb, ref.release[name], ref.source[name], name)
        sub.notes.extend(notes)
    return notebooks or None
