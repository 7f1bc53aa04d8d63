"""Write the students' assignments (assignments/release/) from the instructors' nbgrader sources.

The sources, assignments/source/<A>/<A>_*.ipynb, hold the solutions between the lines
``### BEGIN SOLUTION`` and ``### END SOLUTION``, and the hidden tests between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``. For each assignment this script

1. runs ``nbgrader generate_assignment <A> --force --no-db`` in a temporary copy of the course (so
   the repository gets no gradebook.db or log), with assignments/nbgrader_config.py;
2. names each exercise in its stub: the first line of every solution cell is a marker comment
   ``# Exercise N: <what to write>``, and the stub's ``raise NotImplementedError("Exercise")``
   becomes ``raise NotImplementedError("Exercise N: <what to write>")``;
3. puts the Open-in-Colab badge and the Colab set-up cell (tools/colab_cells.py) first, both for
   the folder assignments/release/<A>/, and removes every output;
4. writes assignments/release/<A>/, removing files that are no longer generated.

    python -m tools.make_assignments            # regenerate every assignment
    python -m tools.make_assignments A2         # only these
    python -m tools.make_assignments --check    # change nothing; exit 1 if release/ is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import nbformat

from tools.colab_cells import badge_cell, repo_url, setup_cell
from tools.common import ROOT, files_under, notebook_text
from tools.grading.model import InputError
from tools.grading.reference import generate_release

COURSE = ROOT / "assignments"
# The end of ClearSolutions.code_stub in assignments/nbgrader_config.py.
STUB = 'raise NotImplementedError("Exercise")'
MARKER = re.compile(r"^#\s*(Exercise \d+: .+?)\s*$")  # first line of a solution cell


def assignment_names(course: Path = COURSE) -> list[str]:
    """The assignments: the folders of <course>/source/, in order."""
    return sorted(p.name for p in (course / "source").iterdir() if p.is_dir())


def run_nbgrader(assignment: str, course: Path, workdir: Path) -> Path:
    """nbgrader's release/<assignment> made in ``workdir`` (the grader's way: tools/grading)."""
    try:
        return generate_release(course / "source" / assignment, assignment, course, workdir / "c")
    except InputError as err:
        raise SystemExit(str(err)) from None


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


def release_folder(assignment: str) -> str:
    """Where an assignment's student notebooks are in the repository (and in a Colab clone)."""
    return f"assignments/release/{assignment}"


def student_version(
    nb: nbformat.NotebookNode, url: str, assignment: str, filename: str
) -> nbformat.NotebookNode:
    """nbgrader's release notebook with named stubs, the Colab cells first and no outputs."""
    name_stubs(nb, f"{assignment}/{filename}")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    folder = release_folder(assignment)
    nb.cells = [badge_cell(url, filename, folder), setup_cell(url, folder), *nb.cells]
    return nb


def release_files(
    assignment: str, course: Path = COURSE, url: str | None = None
) -> dict[str, bytes]:
    """The files release/<assignment>/ should hold: {relative path: content}."""
    url = url or repo_url()
    with tempfile.TemporaryDirectory() as tmp:
        files = files_under(run_nbgrader(assignment, course, Path(tmp)))
    for relative, content in files.items():
        if relative.endswith(".ipynb"):  # nbgrader's student notebook, given the Colab cells
            nb = nbformat.reads(content.decode("utf-8"), as_version=4)
            nb = student_version(nb, url, assignment, Path(relative).name)
            files[relative] = notebook_text(nb).encode("utf-8")
    return files


def write_release(assignment: str, files: dict[str, bytes], course: Path = COURSE) -> None:
    """Make release/<assignment>/ hold exactly ``files``, removing the files no longer made."""
    folder = course / "release" / assignment
    for relative in set(files_under(folder)) - set(files):
        (folder / relative).unlink()
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)


def update(names: list[str], *, check: bool) -> list[str]:
    """Regenerate each assignment's release (or, with ``check``, only compare); the stale ones."""
    url = repo_url()
    stale = []
    for name in names:
        files = release_files(name, url=url)
        if files == files_under(COURSE / "release" / name):
            print(f"up to date  release/{name}")
        elif check:
            stale.append(name)
            print(f"OUT OF DATE release/{name}")
        else:
            write_release(name, files)
            print(f"written     release/{name} ({', '.join(sorted(files))})")
    return stale


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.make_assignments", description=__doc__.split("\n\n")[0]
    )
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
    if update(names, check=args.check):
        print("run `python -m tools.make_assignments` to regenerate")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
