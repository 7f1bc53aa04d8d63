"""The notes on how a notebook's run went: time limits, memory, a dead kernel, a lost notebook."""

from __future__ import annotations

from datetime import datetime

import nbformat

from tools import sandbox
from tools.grading.model import GradingLimits


def cell_seconds(cell: nbformat.NotebookNode) -> float | None:
    """How long a cell ran, from nbclient's timing metadata (None if unknown)."""
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError, AttributeError, TypeError):
        return None
    return (end - start).total_seconds()


def limit_notes(outcome: sandbox.Outcome, limits: GradingLimits) -> list[str]:
    """The limits of the whole submission that it reached: wall-clock time, memory."""
    notes = []
    if outcome.wall_exceeded:
        notes.append(
            f"stopped after the {limits.wall_s} s limit for a whole submission; "
            "the exercises recorded before it keep their points"
        )
    if outcome.out_of_memory:
        notes.append(f"ran out of memory (the limit is {limits.sandbox().memory_mb} MB in all)")
    return notes


def error_note(cell: nbformat.NotebookNode, output: dict, cell_s: int) -> tuple[str, str] | None:
    """(kind, sentence) for an error output that a limit explains; None for other errors."""
    ename, took = output.get("ename", ""), cell_seconds(cell)
    if ename == "KeyboardInterrupt" and took is not None and took >= cell_s - 1:
        return "timeout", f"a cell ran past the {cell_s} s limit and was interrupted"
    if ename == "KeyboardInterrupt":
        return "interrupt", "a cell raised KeyboardInterrupt (not a time limit)"
    if ename == "MemoryError":
        return "memory", "a cell ran out of memory (MemoryError)"
    return None


def cell_error_notes(executed: nbformat.NotebookNode, cell_s: int) -> list[str]:
    """One sentence for each kind of limit the cells ran into, in the order first met."""
    said: dict[str, str] = {}
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                kind, text = error_note(cell, output, cell_s) or (None, "")
                if kind is not None:
                    said.setdefault(kind, text)
    return list(said.values())


def run_notes(
    executed: nbformat.NotebookNode | None, outcome: sandbox.Outcome, limits: GradingLimits
) -> list[str]:
    """What happened while the notebook ran: time limits, memory, a dead kernel, a lost notebook."""
    notes = limit_notes(outcome, limits)
    if executed is None:
        if not outcome.wall_exceeded:
            notes.append("the notebook could not be run to the end (nothing came back from it)")
        return notes
    ended = executed.metadata.get("nst_grading", {}).get("ended", "")
    if ended and ended != "complete":  # run_submission.py's words: "the kernel died", ...
        notes.append(
            f"{ended} while running the notebook; the exercises recorded before keep their points"
        )
    return notes + cell_error_notes(executed, limits.cell_s)
