"""The data the grading steps pass between them: a submission, the reference, limits, statuses."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import nbformat

from tools import sandbox

CELL_TIMEOUT_S = 300  # optimisation cells run for minutes on a laptop CPU
WALL_LIMIT_S = 900
# `import torch` reserves much more address space than it uses, so the limit is on private data
# memory (RLIMIT_DATA) with room for torch, nst and the VGG19 plus the student's tensors; the
# cgroup, which counts everything (shared memory too), allows 1 GB more for the page cache.
MEMORY_MB = 3000
CGROUP_EXTRA_MB = 1024
NO_MEMORY_LIMIT_MB = 16384  # the cgroup's cap when --memory-mb 0 asks for no data limit


class InputError(Exception):
    """Bad command-line input, or no sandbox: reported as one sentence."""


class Status(enum.Enum):
    """How grading a submission ended: the ``status`` column of grades.csv."""

    GRADED = "graded"
    SKIPPED = "skipped"  # not a notebook: a row, no run
    INVALID = "invalid"  # no readable notebook
    TIMEOUT = "timeout"  # stopped at the wall-clock limit of a whole submission
    FAILED = "failed"  # the grader itself failed on it
    TAMPERED = "tampered"  # files outside its grading copy changed while it ran


@dataclass(frozen=True)
class GradingLimits:
    """What each submission may use, and how many are graded side by side."""

    cell_s: int = CELL_TIMEOUT_S  # one cell, then it is interrupted and the next one runs
    wall_s: int = WALL_LIMIT_S  # the whole submission, then its sandbox is killed
    memory_mb: int = MEMORY_MB  # private data memory per process; 0: no limit
    jobs: int = 1

    @property
    def threads(self) -> int:
        """The CPU threads each submission gets: the cores shared among the jobs."""
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def sandbox(self) -> sandbox.Limits:
        """The sandbox's limits for one submission."""
        total = self.memory_mb + CGROUP_EXTRA_MB if self.memory_mb else NO_MEMORY_LIMIT_MB
        return sandbox.Limits(memory_mb=total, data_mb=self.memory_mb, cpus=float(self.threads))


@dataclass
class Submission:
    """One entry of the submissions folder: who, which files, and what grading found."""

    student: str
    original: str
    files: list[Path]
    scores: dict[str, float] = field(default_factory=dict)
    status: Status = Status.GRADED
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> float:
        """The points it has so far."""
        return sum(self.scores.values())


class GradedCell(NamedTuple):
    """A cell of the assignment that gives points."""

    notebook: str
    grade_id: str
    points: float
    manual: bool  # a written answer: graded by hand, 0 here


@dataclass
class Reference:
    """The assignment as generated once: release and source notebooks, graded cells, verdicts."""

    assignment: str
    notebooks: list[str]
    release: dict[str, nbformat.NotebookNode]
    source: dict[str, nbformat.NotebookNode]
    cells: list[GradedCell]  # in notebook order
    hidden_file: Path | None  # source/<A>/hidden_tests.py
    exercises: dict[str, Any]  # function name -> nst.grading.Exercise
    grading_cells: dict[str, str] = field(default_factory=dict)  # grade id -> source run instead

    def column(self, notebook: str, grade_id: str) -> str:
        """The CSV column of a graded cell: its grade id, prefixed by the notebook if several."""
        return grade_id if len(self.notebooks) == 1 else f"{notebook}:{grade_id}"

    @property
    def columns(self) -> list[str]:
        """The CSV columns of every graded cell, in order."""
        return [self.column(c.notebook, c.grade_id) for c in self.cells]

    @property
    def max_points(self) -> float:
        """The points of the whole assignment."""
        return sum(c.points for c in self.cells)


@dataclass(frozen=True)
class Batch:
    """What every submission of one grading run shares."""

    ref: Reference
    limits: GradingLimits
    how: str  # "cgroup1", "systemd" (tools/sandbox.py) or "unsafe": no sandbox
    secret: bytes
    work: Path  # the throwaway folder of the grading copies
    out: Path  # where grades.csv and the feedback go


def nbgrader_meta(cell: dict) -> dict:
    """A cell's nbgrader metadata, or {} (also when a student replaced it by something else)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}
