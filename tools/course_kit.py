"""Split the repository for a course: a student tree without solutions, a kit for instructors.

This repository is public and its CI grades the reference solutions, so the solutions and hidden
tests of assignments/source/ are public too. A course that wants them private keeps them apart:

    python -m tools.course_kit student-repo DEST     # make student-repo: the tree students clone
    python -m tools.course_kit instructor-kit DEST   # make instructor-kit: sources + hidden tests

``student-repo`` copies every file git tracks except INSTRUCTOR_ONLY (assignments/source/, every
hidden_tests.py, the grading tests that hold a tiny assignment's solutions), then checks that no
solution or hidden-test marker is left. ``instructor-kit`` copies assignments/source/ and
assignments/nbgrader_config.py; put it in a private repository and grade with
``make grade A=A1 GRADE_ARGS="--course DEST/assignments"``.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

from tools.common import ROOT

INSTRUCTOR_ONLY = [  # git-style paths: what students never receive (the Colab cell skips them too)
    "assignments/source/",
    "**/hidden_tests.py",
    "tests/test_grading.py",
    "tests/test_assignments.py",
    "tests/test_course_kit.py",
    "tools/make_assignments.py",
]
# Built from pieces so that this file, which students get, does not hold them itself.
MARKERS = tuple("### BEGIN " + what for what in ("SOLUTION", "HIDDEN TESTS")) + (
    "hidden_tests" + ".run(",
)


def instructor_only(path: str) -> bool:
    """Whether a repository path (posix, relative) is for instructors only."""
    for pattern in INSTRUCTOR_ONLY:
        if pattern.endswith("/") and path.startswith(pattern):
            return True
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.removeprefix("**/")):
            return True
    return False


def tracked_files(root: Path = ROOT) -> list[str]:
    """The files git tracks, as posix paths relative to ``root``."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and (root / p).is_file()]


def leftover_markers(dest: Path) -> list[str]:
    """Files under ``dest`` holding a solution or hidden-test marker."""
    found = []
    for path in sorted(p for p in dest.rglob("*") if p.is_file() and ".git" not in p.parts):
        text = path.read_bytes().decode("utf-8", errors="ignore")
        if any(marker in text for marker in MARKERS):
            found.append(str(path.relative_to(dest)))
    return found


def student_repo(dest: Path, root: Path = ROOT) -> int:
    """Copy the student-facing files to ``dest``; how many."""
    files = [p for p in tracked_files(root) if not instructor_only(p)]
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    left = leftover_markers(dest)
    if left:
        raise SystemExit(f"solution or hidden-test markers left in {dest}: {', '.join(left)}")
    return len(files)


def instructor_kit(dest: Path, root: Path = ROOT) -> int:
    """Copy assignments/source/ and nbgrader_config.py to ``dest``/assignments; how many files."""
    files = [p for p in tracked_files(root) if p.startswith("assignments/source/")]
    files.append("assignments/nbgrader_config.py")
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.course_kit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("what", choices=["student-repo", "instructor-kit"])
    parser.add_argument("dest", type=Path, help="a folder that does not exist yet, or is empty")
    args = parser.parse_args(argv)
    if args.dest.exists() and any(args.dest.iterdir()):
        print(f"error: {args.dest} is not empty; give a new folder.", file=sys.stderr)
        return 1
    make = student_repo if args.what == "student-repo" else instructor_kit
    n = make(args.dest)
    print(f"{args.what}: {n} files -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
