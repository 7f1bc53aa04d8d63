"""The nbgrader assignments: sources well formed and passing, release generated, nothing leaked."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import make_assignments

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "assignments"
SOURCES = sorted((COURSE / "source").glob("A*/A*_*.ipynb"))
TOTAL = re.compile(r"\*\*total (\d+)\*\*")


def _release(source: Path) -> Path:
    return COURSE / "release" / source.parent.name / source.name


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _solution_lines(source: Path, begin: str, end: str) -> list[tuple[str, str]]:
    """(cell type, stripped line) for lines over 20 characters between ``begin`` and ``end``."""
    lines, inside = [], False
    for cell in nbformat.read(source, as_version=4).cells:
        for line in cell.source.splitlines():
            if begin in line:
                inside = True
            elif end in line:
                inside = False
            elif inside and len(line.strip()) > 20:
                lines.append((cell.cell_type, line.strip()))
    return lines


def test_four_assignments() -> None:
    assert [p.parent.name for p in SOURCES] == ["A1", "A2", "A3", "A4"]
    assert (COURSE / "nbgrader_config.py").is_file()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.parent.name)
def test_source_metadata(source: Path) -> None:
    """Every cell has nbgrader metadata with a unique grade_id; the table's total is the points'."""
    nb = nbformat.read(source, as_version=4)
    ids = [_nbgrader(c).get("grade_id") for c in nb.cells]
    assert None not in ids and len(set(ids)) == len(ids)
    for cell in nb.cells:
        meta = _nbgrader(cell)
        assert meta["schema_version"] == 3
        assert meta["grade"] == ("points" in meta)
        if not meta["solution"]:
            assert meta["locked"], f"{meta['grade_id']}: instructions and tests are read-only"
        if meta["solution"] and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and not meta["grade"]
            assert make_assignments.MARKER.match(cell.source.splitlines()[0]), meta["grade_id"]
        if meta["grade_id"].startswith("hidden_"):
            assert "### BEGIN HIDDEN TESTS" in cell.source and meta["grade"]
    points = sum(_nbgrader(c).get("points", 0) for c in nb.cells)
    assert int(TOTAL.search(nb.cells[0].source).group(1)) == points


def test_release_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.make_assignments", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.parent.name)
def test_release_has_no_solutions_or_hidden_tests(source: Path) -> None:
    text = _release(source).read_text(encoding="utf-8")
    for word in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert word not in text
    release = nbformat.read(_release(source), as_version=4)
    # Instructions quote calls (`optimizer.zero_grad()`): compare code with code, prose with prose.
    released = {
        kind: "\n".join(c.source for c in release.cells if c.cell_type == kind)
        for kind in ("code", "markdown")
    }
    for kind, line in _solution_lines(source, "BEGIN SOLUTION", "END SOLUTION"):
        assert line not in released[kind], f"solution leaked into the release: {line!r}"
    for kind, line in _solution_lines(source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert line not in released[kind], f"hidden test leaked into the release: {line!r}"
    assert all(not c.get("outputs") for c in release.cells if c.cell_type == "code")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.parent.name)
def test_every_graded_test_has_a_verdict_and_hidden_tests_stay_out_of_the_release(
    source: Path,
) -> None:
    """Each check_<f>/hidden_<f> cell is judged by hidden_tests.py's EXERCISES[f] (nst.grading)."""
    spec = importlib.util.spec_from_file_location(
        f"hidden_{source.parent.name}", source.parent / "hidden_tests.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graded = [
        _nbgrader(c) for c in nbformat.read(source, as_version=4).cells if _nbgrader(c).get("grade")
    ]
    tests = [m["grade_id"] for m in graded if not m.get("solution")]
    assert tests and all(g.split("_", 1)[0] in ("check", "hidden") for g in tests)
    assert sorted({g.split("_", 1)[1] for g in tests}) == sorted(module.EXERCISES)
    assert not list((COURSE / "release" / source.parent.name).rglob("hidden_tests.py"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.parent.name)
def test_release_keeps_visible_checks_and_colab_cells(source: Path) -> None:
    src = {_nbgrader(c)["grade_id"]: c for c in nbformat.read(source, as_version=4).cells}
    release = nbformat.read(_release(source), as_version=4)
    assignment = source.parent.name
    assert f"assignments/release/{assignment}/{source.name})" in release.cells[0].source
    assert f'os.chdir("/content/nst/assignments/release/{assignment}")' in release.cells[1].source
    checks = [c for c in release.cells if _nbgrader(c).get("grade_id", "").startswith("check_")]
    assert checks, "no visible checks"
    for cell in checks:
        assert cell.source == src[_nbgrader(cell)["grade_id"]].source
        assert re.search(r"nst\.checks\.(\w+\.)?check_\w+\(", cell.source), cell.source
    assert {_nbgrader(c).get("grade_id") for c in release.cells} - {None} == set(src)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.parent.name)
def test_every_stub_names_its_exercise(source: Path) -> None:
    """Each stub raises NotImplementedError("Exercise N: ..."), N = 1, 2, ... in order."""
    release = nbformat.read(_release(source), as_version=4)
    stubs = [c for c in release.cells if c.cell_type == "code" and _nbgrader(c).get("solution")]
    assert stubs
    for number, cell in enumerate(stubs, start=1):
        namespace: dict = {}
        exec(cell.source, namespace)  # defines the student's function, nothing else
        fn = next(v for k, v in namespace.items() if callable(v) and not k.startswith("__"))
        with pytest.raises(NotImplementedError, match=rf"^Exercise {number}: \w+"):
            code = fn.__code__  # every argument None, keyword-only ones too (A4's transfer)
            keywords = code.co_varnames[
                code.co_argcount : code.co_argcount + code.co_kwonlyargcount
            ]
            fn(*[None] * code.co_argcount, **dict.fromkeys(keywords))


def _execute(path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.parent.name == "A4" else p
        for p in SOURCES  # A4's experiments take minutes on a 2-core CPU
    ],
    ids=lambda p: p.parent.name,
)
def test_source_runs_and_passes_its_checks(source: Path) -> None:
    """The solutions pass every visible check and hidden test, top to bottom."""
    _execute(source)
