"""What grading writes: the feedback page and autograded notebook of each student, grades.csv."""

from __future__ import annotations

import copy
import csv
import functools
import html
import os
import sys
import threading
import uuid
from pathlib import Path

import nbformat

from tools.common import ROOT
from tools.grading.model import Reference, Submission, nbgrader_meta

RECORD_CELL_TEXT = "# Hidden tests: run on inputs made for you and judged outside your code."


def host_paths(work: Path) -> list[tuple[str, str]]:
    """This machine's absolute paths that feedback must not show, longest first, and their names."""
    pairs = [
        (str(work), "<grading>"),
        (str(ROOT / ".venv"), "<venv>"),
        (sys.prefix, "<venv>"),
        (str(ROOT), "<nst>"),
        (sys.base_prefix, "<python>"),
        (str(Path.home()), "~"),
    ]
    return sorted({(a, b) for a, b in pairs if len(a) > 1}, key=lambda p: -len(p[0]))


def without_host_paths(text: str, work: Path) -> str:
    """``text`` with this machine's absolute paths replaced by neutral names."""
    for path, name in host_paths(work):
        text = text.replace(path, name)
    return text


def verdict_line(column: str, got: float, most: float, problem: str | None) -> str:
    """The line printed under a graded cell: ✓ or ✗, the points, and what went wrong."""
    mark = "✗" if problem else "✓"
    return f"{mark} {column}: {got:g} / {most:g}" + (f": {problem}" if problem else "")


def feedback_notebook(
    executed: nbformat.NotebookNode,
    ref: Reference,
    notebook: str,
    sub: Submission,
    verdicts: dict[str, str | None],
) -> nbformat.NotebookNode:
    """The executed notebook for the student: record cells show their verdicts, not their code."""
    nb = copy.deepcopy(executed)
    nb.metadata.pop("nst_grading", None)
    maxima = {ref.column(c.notebook, c.grade_id): c.points for c in ref.cells}
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        column = ref.column(notebook, grade_id) if grade_id else None
        if cell.get("metadata", {}).get("nst_record"):
            cell.source = RECORD_CELL_TEXT
            cell.outputs = []
        if column in verdicts:
            got, problem = sub.scores.get(column, 0.0), verdicts[column]
            line = verdict_line(column, got, maxima[column], problem)
            cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=line + "\n"))
    return nb


@functools.lru_cache(maxsize=1)
def html_exporter():
    """One nbconvert HTML exporter (its templates load once) and a lock to share it."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="classic"), threading.Lock()


def notebook_html(nb: nbformat.NotebookNode) -> str:
    """A notebook as a whole HTML page."""
    exporter, lock = html_exporter()
    with lock:
        page, _ = exporter.from_notebook_node(nb)
    return page


def summary_html(sub: Submission, ref: Reference) -> str:
    """The top of the feedback page: who, the score, the status and the notes."""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in sub.notes)
    notes = f'<div style="border:1px solid #c00;padding:8px"><ul>{items}</ul></div>'
    return (
        f"<h1>{html.escape(ref.assignment)}: {html.escape(sub.student)}</h1>"
        f"<p><b>Score: {sub.total:g} / {ref.max_points:g}</b> ({html.escape(sub.status.value)})</p>"
        + (notes if items else "")
    )


def feedback_page(
    sub: Submission, ref: Reference, executed: dict[str, nbformat.NotebookNode], work: Path
) -> str:
    """The feedback HTML: score, notes, then each executed notebook (if any came back)."""
    head = summary_html(sub, ref)
    bodies = [notebook_html(nb) for nb in executed.values()]
    if not bodies:
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(ref.assignment)} feedback</title></head>"
            f"<body>{head}</body></html>\n"
        )
    page = bodies[0].replace("<body>", "<body>" + head, 1)
    for extra in bodies[1:]:  # the next notebooks' bodies go before the first one's end
        page = page.replace("</body>", extra[extra.find("<body>") + len("<body>") :], 1)
    return without_host_paths(page, work)


def write_feedback(
    sub: Submission,
    ref: Reference,
    executed: dict[str, nbformat.NotebookNode],
    work: Path,
    out: Path,
) -> None:
    """OUT/feedback/<student>.html and OUT/autograded/<student>[/<notebook>].ipynb."""
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    page = feedback_page(sub, ref, executed, work)
    (out / "feedback" / f"{sub.student}.html").write_text(page, encoding="utf-8")
    for name, nb in executed.items():
        suffix = "" if len(ref.notebooks) == 1 else f"/{name}"
        dest = out / "autograded" / f"{sub.student}{suffix}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(without_host_paths(nbformat.writes(nb), work), encoding="utf-8")


def write_csv(subs: list[Submission], ref: Reference, path: Path) -> None:
    """grades.csv, written whole and then renamed into place (never half-written)."""
    columns = ref.columns
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "original", "total", "max", *columns, "status", "note"])
        for sub in sorted(subs, key=lambda sub: sub.student):
            scores = [sub.scores.get(column, 0.0) for column in columns]
            writer.writerow(
                [sub.student, sub.original, f"{sub.total:g}", f"{ref.max_points:g}"]
                + [f"{x:g}" for x in scores]
                + [sub.status.value, "; ".join(sub.notes)]
            )
    os.replace(tmp, path)
