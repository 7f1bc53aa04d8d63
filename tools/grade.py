"""Grade a folder of submitted notebooks, each in a sandbox; points come from verdicts made outside.

    python -m tools.grade A1 submissions/A1 --out grades/A1            # what `make grade` runs
    python -m tools.grade A1 submissions/A1 --out grades/A1 --jobs 2 --timeout 120

ASSIGNMENT is a folder name under ``<course>/source/`` (``--course``, default ``assignments/``) or
a path to such a folder. SUBMISSIONS holds one notebook per student, ``alice.ipynb``, or one
folder per student, ``alice/<any name>.ipynb``. Every entry gets a row in grades.csv; the student
id is the name made ASCII-safe plus 6 hex digits of its SHA-256 (``alice-2bd806``), the name
itself is in the ``original`` column. Of several downloads of one notebook (``A1.ipynb``,
``A1 (1).ipynb``, ``A1 (2).ipynb``) the highest ``(n)`` is graded, then the newest.

For each submission (the steps are the modules of tools/grading/):

1. its cells are matched to the release's: by nbgrader id, or, where the id is gone, a solution
   cell by the function it defines and a read-only cell by its source. Cells are put back in the
   release's order (deleted ones restored, duplicates graded from the last copy, cells the
   student added travel with the cell above them), every matched cell gets the release's
   metadata and every read-only cell the release's source. Each hidden-test cell becomes a cell
   that records the student's function's outputs on inputs made from this student's seed,
   HMAC-SHA256(course secret, student id) (``nst.grading``, ``source/<A>/hidden_tests.py``);
2. the notebook runs in a sandbox (tools/sandbox.py: bubblewrap, memory and pids cgroups, no
   network, nothing of the course but ``nst/``, ``data/`` and ``hidden_tests.py``, read-only), one
   cell after another (a cell past ``--timeout`` is interrupted, the rest still runs) with a
   wall-clock limit for the whole submission, on the CPU;
3. after the sandbox is gone, the recorded outputs (``.npz``, data only) are judged here by
   ``hidden_tests.py`` against ``nst``'s reference: a hidden test's points come only from that
   verdict; a visible check's points need that verdict on the public inputs and the check cell to
   have run without an error. Nothing else read back from the sandbox counts: stderr, the kernel's
   replies and the executed notebook only make feedback.

Outputs in OUT: ``grades.csv`` (student, original, total, max, one column per graded cell, status,
note: one sentence per problem), ``feedback/<student>.html`` and ``autograded/<student>.ipynb``.
The course secret is ``$NST_COURSE_SECRET`` or the file ``~/.config/nst/course_secret``, made on
first use. Without a sandbox (tools/sandbox.py says why) grading refuses unless ``--unsafe``.
Exit status: 0 graded, 1 bad input or no sandbox, 3 files outside the grading copies changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.common import ROOT
from tools.grading.batch import grade_all, say
from tools.grading.model import CELL_TIMEOUT_S, MEMORY_MB, WALL_LIMIT_S, GradingLimits, InputError


def _parser() -> argparse.ArgumentParser:
    """The command line's arguments and options."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.grade",
        description="Grade a folder of submitted notebooks, each in a sandbox.",
    )
    add = parser.add_argument
    add("assignment", help="assignment name under COURSE/source (A1) or its folder")
    add("submissions", type=Path, help="folder of <student>.ipynb or <student>/*.ipynb")
    add("--out", type=Path, required=True, help="folder for grades.csv and feedback/")
    add("--course", type=Path, default=ROOT / "assignments", help="nbgrader course folder")
    add("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    add("--wall", type=int, default=WALL_LIMIT_S, help="seconds per submission")
    add("--memory-mb", type=int, default=MEMORY_MB, help="data memory per process (MB), 0: none")
    add("--jobs", type=int, default=1, help="submissions graded side by side")
    add(
        "--unsafe",
        action="store_true",
        help="grade without a sandbox: student code runs as you (only for code you trust)",
    )
    add("--quiet", action="store_true", help="only the summary")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options, checked."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("timeout", "wall", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1.")
    if args.memory_mb < 0:
        parser.error("--memory-mb must be 0 (no limit) or more.")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    limits = GradingLimits(
        cell_s=args.timeout, wall_s=args.wall, memory_mb=args.memory_mb, jobs=args.jobs
    )
    try:
        return grade_all(
            args.assignment,
            args.submissions,
            args.out,
            args.course,
            limits,
            unsafe=args.unsafe,
            log=(lambda text: None) if args.quiet else say,
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
