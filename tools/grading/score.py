"""Points for each graded cell, from the verdicts on the outputs recorded in the sandbox."""

from __future__ import annotations

from pathlib import Path

import nbformat

from nst.grading import MAX_OUTPUT_BYTES, VISIBLE_SEED, judge, load_outputs, read_regular_file
from tools.grading.model import GradedCell, Reference, Submission, nbgrader_meta
from tools.grading.reference import verdict_for

NO_VERDICT = "no verdict for this cell in hidden_tests.py: 0 points"


def cell_errors(executed: nbformat.NotebookNode | None) -> dict[str, str]:
    """{grade_id: "Name: message"} for each nbgrader cell of the executed notebook with an error."""
    out = {}
    for cell in executed.cells if executed else []:
        grade_id = nbgrader_meta(cell).get("grade_id")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if grade_id and errors:
            evalue = str(errors[0].get("evalue", "")).strip().splitlines()
            text = f"{errors[0].get('ename', 'Error')}: {evalue[0] if evalue else ''}"
            out[grade_id] = text[:160]
    return out


def recorded_outputs(folder: Path, name: str, part: str) -> dict | None:
    """The outputs ``name``'s record cell saved for ``part``; None if it never ran."""
    path = folder / "outputs" / f"{name}.npz"
    try:
        return load_outputs(read_regular_file(path, MAX_OUTPUT_BYTES)).get(part)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # a symlink, a device, too large, not an .npz
        return {"error": f"{name}'s recorded outputs could not be read ({err})"}


def problem_with(
    cell: GradedCell, ref: Reference, folder: Path, seed: int, errors: dict[str, str]
) -> str | None:
    """Why an automatically graded cell with a verdict loses its points, or None."""
    name, part = verdict_for(cell.grade_id, ref)
    recorded = recorded_outputs(folder, name, part)
    hidden = part == "hidden"
    problem = judge(ref.exercises[name], name, seed if hidden else VISIBLE_SEED, recorded, hidden)
    if problem is None and not hidden and cell.grade_id in errors:  # the check must run, too
        problem = f"the check cell failed ({errors[cell.grade_id]})"
    return problem


def score(
    sub: Submission,
    ref: Reference,
    notebook: str,
    folder: Path,
    executed: nbformat.NotebookNode | None,
    seed: int,
) -> dict[str, str | None]:
    """Give ``sub`` the points of each graded cell of ``notebook``; {column: problem or None}."""
    errors = cell_errors(executed)
    verdicts: dict[str, str | None] = {}
    failed: dict[str, list[str]] = {}  # problem -> the columns it cost
    for cell in ref.cells:
        if cell.notebook != notebook:
            continue
        column = ref.column(notebook, cell.grade_id)
        sub.scores[column] = 0.0
        if cell.manual:
            sub.notes.append(f"{column} needs manual grading")
        elif verdict_for(cell.grade_id, ref) is None:
            verdicts[column] = NO_VERDICT
            sub.notes.append(f"{column}: {NO_VERDICT}")
        else:
            verdicts[column] = problem = problem_with(cell, ref, folder, seed, errors)
            if problem:
                failed.setdefault(problem, []).append(column)
            else:
                sub.scores[column] = cell.points
    for problem, columns in failed.items():  # a visible and a hidden test failing alike: one note
        sub.notes.append(f"{' and '.join(columns)} failed ({problem})")
    return verdicts
