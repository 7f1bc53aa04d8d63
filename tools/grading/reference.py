"""The course: its secret, and the assignment's release, generated once by nbgrader."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import nbformat

from tools.grading.model import GradedCell, InputError, Reference, nbgrader_meta

SECRET_VAR = "NST_COURSE_SECRET"
SECRET_FILE = Path("~/.config/nst/course_secret")
# What never goes into the release: editor copies, caches, and the verdicts themselves.
NOT_RELEASED = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "hidden_tests.py")


def course_secret() -> bytes:
    """$NST_COURSE_SECRET, else ~/.config/nst/course_secret (made, and named, on first use)."""
    if os.environ.get(SECRET_VAR):
        return os.environ[SECRET_VAR].encode()
    path = SECRET_FILE.expanduser()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        print(
            f"made the course secret {path}: the hidden tests' inputs of each student come from it."
            " Keep it (the same file gives the same inputs) and never commit it.",
            file=sys.stderr,
        )
    return path.read_text().strip().encode()


def find_source(assignment: str, course: Path) -> tuple[Path, str]:
    """The source folder of ``assignment`` and its name; InputError if there is none."""
    given = Path(assignment)
    if given.is_dir() and given.parent.name == "source":
        return given.resolve(), given.resolve().name
    folder = course / "source" / assignment
    if not (course / "source").is_dir():
        raise InputError(f"no nbgrader course at {course}: {course / 'source'} does not exist.")
    if not folder.is_dir() or not any(folder.glob("*.ipynb")):
        known = sorted(p.name for p in (course / "source").iterdir() if any(p.glob("*.ipynb")))
        raise InputError(
            f"unknown assignment {assignment!r}: no notebooks in {folder} "
            f"(known: {', '.join(known) or 'none'})."
        )
    return folder.resolve(), assignment


def load_hidden_tests(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """An assignment's hidden_tests.py, imported here: its EXERCISES and GRADING_CELLS ({} if none).

    GRADING_CELLS maps the grade id of a read-only cell to the source the grader runs instead (a
    settings cell made smaller, so the experiments take seconds when a submission is graded).
    """
    if not path.is_file():
        return {}, {}
    spec = importlib.util.spec_from_file_location(f"hidden_tests_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(getattr(module, "EXERCISES", {})), dict(getattr(module, "GRADING_CELLS", {}))


def generate_release(source: Path, assignment: str, course: Path, work: Path) -> Path:
    """Run nbgrader's generate_assignment on a copy of the course in ``work``; its release."""
    work.mkdir(parents=True)
    shutil.copytree(source, work / "source" / assignment, ignore=NOT_RELEASED)
    config = course / "nbgrader_config.py"
    if config.is_file():
        shutil.copy(config, work / "nbgrader_config.py")
    command = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment]
    command += ["--force", "--no-db", f"--CourseDirectory.root={work}"]
    run = subprocess.run(command, cwd=work, capture_output=True, text=True)
    release = work / "release" / assignment
    if run.returncode != 0 or not any(release.glob("*.ipynb")):
        detail = (run.stdout + run.stderr).strip()[-2000:]
        raise InputError(
            f"nbgrader could not generate assignment {assignment} from {source}:\n{detail}"
        )
    return release


def graded_cells(notebooks: dict[str, nbformat.NotebookNode]) -> list[GradedCell]:
    """The cells that give points, in order, from the source notebooks' nbgrader metadata."""
    return [
        GradedCell(name, meta["grade_id"], float(meta.get("points", 0)), bool(meta.get("solution")))
        for name, nb in notebooks.items()
        for meta in map(nbgrader_meta, nb.cells)
        if meta.get("grade")
    ]


def build_reference(source: Path, assignment: str, course: Path, work: Path) -> Reference:
    """Generate the release once in ``work``; the release, source, graded cells and hidden tests."""
    release = generate_release(source, assignment, course, work)
    names = sorted(p.stem for p in release.glob("*.ipynb"))
    release_nbs = {nb: nbformat.read(release / f"{nb}.ipynb", as_version=4) for nb in names}
    source_nbs = {nb: nbformat.read(source / f"{nb}.ipynb", as_version=4) for nb in names}
    hidden_file = source / "hidden_tests.py"
    exercises, grading_cells = load_hidden_tests(hidden_file)
    return Reference(
        assignment=assignment,
        notebooks=names,
        release=release_nbs,
        source=source_nbs,
        cells=graded_cells(source_nbs),
        hidden_file=hidden_file if hidden_file.is_file() else None,
        exercises=exercises,
        grading_cells=grading_cells,
    )


def verdict_for(grade_id: str, ref: Reference) -> tuple[str, str] | None:
    """(exercise, "visible" or "hidden") a graded cell's points come from, or None."""
    for part, prefix in (("visible", "check_"), ("hidden", "hidden_")):
        name = grade_id.removeprefix(prefix)
        if grade_id.startswith(prefix) and name in ref.exercises:
            return name, part
    return None


def cells_without_verdict(ref: Reference) -> list[str]:
    """The automatically graded cells that hidden_tests.py has no verdict for: they score 0."""
    return [c.grade_id for c in ref.cells if not c.manual and not verdict_for(c.grade_id, ref)]
