"""Write the students' assignments (assignments/release/) from the instructors' nbgrader sources.

The sources, assignments/source/<A>/<A>_*.ipynb, hold the solutions between the lines
``### BEGIN SOLUTION`` and ``### END SOLUTION``, and the hidden tests between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``. For each assignment this script

1. runs ``nbgrader generate_assignment <A> --force --no-db`` in a temporary copy of the course (so
   the repository gets no gradebook.db or log), with assignments/nbgrader_config.py;
2. names each exercise in its stub: the first line of every solution cell is a marker comment
   ``# Exercise N: <what to write>``, and the stub's ``raise NotImplementedError("Exercise")``
   becomes ``raise NotImplementedError("Exercise N: <what to write>")``;
3. puts the Open-in-Colab badge and the Colab set-up cell (tools/colab_cells.py) first, the set-up
   cell moving into assignments/release/<A>/ of the clone, and removes every output;
4. writes assignments/release/<A>/, removing files that are no longer generated.

    python tools/make_assignments.py            # regenerate every assignment
    python tools/make_assignments.py A2         # only these
    python tools/make_assignments.py --check    # change nothing; exit 1 if release/ is out of date
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_cells import badge_cell, colab_url, repo_url, setup_cell  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "assignments"
CONFIG = "nbgrader_config.py"
STUB = 'raise NotImplementedError("Exercise")'  # the end of ClearSolutions.code_stub in CONFIG
MARKER = re.compile(r"^#\s*(Exercise \d+: .+?)\s*$")  # first line of a solution cell


def assignment_names(course: Path = COURSE) -> list[str]:
    """The assignments: the folders of <course>/source/, in order."""
    return sorted(p.name for p in (course / "source").iterdir() if p.is_dir())


def run_nbgrader(assignment: str, course: Path, workdir: Path) -> Path:
    """Run nbgrader generate_assignment on a copy of the course in ``workdir``; its release/<A>."""
    shutil.copy(course / CONFIG, workdir / CONFIG)  # its root is the folder it sits in: workdir
    shutil.copytree(
        course / "source" / assignment,
        workdir / "source" / assignment,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "hidden_tests.py"),
    )
    command = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment]
    command += ["--force", "--no-db", f"--CourseDirectory.root={workdir}"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"nbgrader generate_assignment {assignment} failed:\n{done.stderr[-3000:]}"
        )
    return workdir / "release" / assignment


def _quoted(text: str) -> str:
    """``text`` as a double-quoted Python string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def name_stubs(nb: nbformat.NotebookNode, where: str) -> None:
    """Replace each solution cell's generic stub with one naming its exercise (from the marker)."""
    from nbgrader.utils import compute_checksum, is_solution

    for cell in nb.cells:
        if cell.cell_type != "code" or not is_solution(cell):
            continue
        first = cell.source.split("\n", 1)[0]
        marker = MARKER.match(first)
        if not marker or STUB not in cell.source:
            grade_id = cell.metadata["nbgrader"].get("grade_id")
            raise SystemExit(
                f"{where}: solution cell {grade_id!r} needs a first line '# Exercise N: ...' "
                "and a ### BEGIN SOLUTION / ### END SOLUTION region"
            )
        named = f"raise NotImplementedError({_quoted(marker.group(1))})"
        cell.source = cell.source.replace(STUB, named)
        cell.metadata["nbgrader"]["checksum"] = compute_checksum(cell)


def assignment_setup_cell(url: str, assignment: str) -> nbformat.NotebookNode:
    """The lessons' Colab set-up cell, but moving into assignments/release/<A>/, not notebooks/."""
    cell = setup_cell(url)
    lessons, here = '"/content/nst/notebooks"', f'"/content/nst/assignments/release/{assignment}"'
    if lessons not in cell.source:
        raise SystemExit("tools/colab_cells.py's set-up cell no longer moves into notebooks/")
    cell.source = cell.source.replace(lessons, here)
    return cell


def assignment_badge_cell(url: str, assignment: str, filename: str) -> nbformat.NotebookNode:
    """The Open-in-Colab badge for assignments/release/<A>/<filename>."""
    cell = badge_cell(url, filename)
    lesson_url = colab_url(url, filename)
    release_url = lesson_url.replace(
        f"/notebooks/{filename}", f"/assignments/release/{assignment}/{filename}"
    )
    cell.source = cell.source.replace(lesson_url, release_url)
    return cell


def student_version(
    nb: nbformat.NotebookNode, url: str, assignment: str, filename: str
) -> nbformat.NotebookNode:
    """nbgrader's release notebook with named stubs, the Colab cells first and no outputs."""
    name_stubs(nb, f"{assignment}/{filename}")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    setup = assignment_setup_cell(url, assignment)
    nb.cells = [assignment_badge_cell(url, assignment, filename), setup, *nb.cells]
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The notebook as Jupyter writes it: JSON indented by 1, sorted keys, a trailing newline."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def generate(assignment: str, course: Path = COURSE, url: str | None = None) -> dict[str, bytes]:
    """The files of release/<assignment>/ as they should be: {relative path: content}."""
    url = url or repo_url()
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        release = run_nbgrader(assignment, course, Path(tmp))
        for path in sorted(p for p in release.rglob("*") if p.is_file()):
            relative = path.relative_to(release).as_posix()
            if path.suffix == ".ipynb":
                nb = nbformat.read(path, as_version=4)
                nb = student_version(nb, url, assignment, path.name)
                files[relative] = notebook_text(nb).encode("utf-8")
            else:
                files[relative] = path.read_bytes()
    return files


def current(assignment: str, course: Path = COURSE) -> dict[str, bytes]:
    """The files now in release/<assignment>/: {relative path: content}."""
    folder = course / "release" / assignment
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".ipynb_checkpoints" not in p.parts
    }


def write(assignment: str, files: dict[str, bytes], course: Path = COURSE) -> None:
    """Make release/<assignment>/ hold exactly ``files``."""
    folder = course / "release" / assignment
    for relative in set(current(assignment, course)) - set(files):
        (folder / relative).unlink()
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignments", nargs="*", help="e.g. A1 (default: all of source/)")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if release/ is out of date"
    )
    args = parser.parse_args(argv)
    names = args.assignments or assignment_names()
    unknown = sorted(set(names) - set(assignment_names()))
    if unknown:
        print(f"no such assignment in {COURSE / 'source'}: {', '.join(unknown)}")
        return 1
    url = repo_url()
    stale = []
    for name in names:
        files = generate(name, url=url)
        if files == current(name):
            print(f"up to date  release/{name}")
        elif args.check:
            stale.append(name)
            print(f"OUT OF DATE release/{name}")
        else:
            write(name, files)
            print(f"written     release/{name} ({', '.join(sorted(files))})")
    if stale:
        print("run `python tools/make_assignments.py` to regenerate")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
