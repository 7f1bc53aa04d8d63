"""tools/grade.py: exact scores for a corpus of broken submissions on a tiny nbgrader assignment."""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytest.importorskip("nbgrader", reason="nbgrader is an instructor tool: pip install nbgrader")

ROOT = Path(__file__).resolve().parent.parent
GRADE = ROOT / "tools" / "grade.py"
COLUMNS = ["square_visible", "square_hidden", "mean_visible", "mean_hidden"]


def _load_grade():
    spec = importlib.util.spec_from_file_location("grade", GRADE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["grade"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


grade = _load_grade()


# --- a tiny assignment: two exercises, each a solution, a visible and a hidden test cell -------


def _cell(src, gid=None, *, solution=False, points=None, locked=False, md=False):
    """A notebook cell with nbgrader metadata when ``gid`` is given."""
    cell = new_markdown_cell(src) if md else new_code_cell(src)
    if gid:
        meta = {
            "grade": points is not None,
            "grade_id": gid,
            "locked": locked or points is not None,
        }
        meta.update({"schema_version": 3, "solution": solution})
        if points is not None:
            meta["points"] = points
        cell.metadata["nbgrader"] = meta
    return cell


def _solved(name: str, body: str) -> str:
    """A function whose body is between nbgrader's solution markers."""
    return f"def {name}(x):\n    ### BEGIN SOLUTION\n    return {body}\n    ### END SOLUTION"


def source_notebook() -> nbformat.NotebookNode:
    """The instructor's version: solutions and hidden tests included (6 points)."""
    hidden_mean = (
        "from unittest import mock\n"
        'with mock.patch.object(statistics, "mean", side_effect=AssertionError("no reference")):\n'
        "    assert mean([2, 4]) == 3"
    )
    nb = new_notebook(
        cells=[
            _cell("# T1: a tiny assignment", md=True),
            _cell("import statistics", "setup", locked=True),
            _cell(_solved("square", "x * x"), "square", solution=True),
            _cell("assert square(3) == 9", "square_visible", points=1),
            _cell(
                _hidden("assert square(-2) == 4\nassert square(0.5) == 0.25"),
                "square_hidden",
                points=2,
            ),
            _cell(_solved("mean", "sum(x) / len(x)"), "mean", solution=True),
            _cell("assert mean([1, 2, 3]) == 2", "mean_visible", points=1),
            _cell(_hidden(hidden_mean), "mean_hidden", points=2),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def _hidden(code: str) -> str:
    """Test code that only the instructor's version shows."""
    return f"### BEGIN HIDDEN TESTS\n{code}\n### END HIDDEN TESTS"


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course folder with source/T1/T1.ipynb and the release nbgrader generates from it."""
    root = tmp_path_factory.mktemp("course")
    (root / "source" / "T1").mkdir(parents=True)
    nbformat.write(source_notebook(), root / "source" / "T1" / "T1.ipynb")
    ref = grade.build_reference(root / "source" / "T1", "T1", root, 30, root / "gen")
    (root / "release" / "T1").mkdir(parents=True)
    (root / "release" / "T1" / "T1.ipynb").write_bytes(ref.files["release/T1/T1.ipynb"])
    return root


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _index(nb, gid: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if grade.nb_meta(c).get("grade_id") == gid)


def _set(nb, gid: str, source: str):
    nb.cells[_index(nb, gid)].source = source
    return nb


# --- the corpus: name -> (notebook or text, total expected, status, note fragment) ---------


def corpus(course: Path) -> dict[str, tuple[object, float, str, str]]:
    """Broken submissions, each made from the solution or the release by editing cells."""
    sol = _read(course / "source" / "T1" / "T1.ipynb")
    rel = _read(course / "release" / "T1" / "T1.ipynb")
    mean_src = sol.cells[_index(sol, "mean")].source
    square_src = sol.cells[_index(sol, "square")].source
    out = {}
    out["solution"] = (sol, 6, "graded", "")
    out["release"] = (rel, 0, "graded", "square_visible failed (NotImplementedError")
    out["raises"] = (
        _set(copy.deepcopy(sol), "mean", 'raise ValueError("student bug")\n' + mean_src),
        3,
        "graded",
        "mean_visible failed (NameError",
    )
    out["hangs"] = (
        _set(copy.deepcopy(sol), "mean", "while True:\n    pass\n" + mean_src),
        3,
        "graded",
        "ran past the time limit",
    )
    out["memory"] = (
        _set(copy.deepcopy(sol), "square", "data = bytearray(50 * 2**30)\n" + square_src),
        3,
        "graded",
        "out of memory",
    )
    out["memory_touched"] = (  # 2 GiB really written: refused by the 1000 MB limit, not by luck
        _set(copy.deepcopy(sol), "mean", 'data = b"x" * (2 * 2**30)\n' + mean_src),
        3,
        "graded",
        "out of memory",
    )
    deleted = copy.deepcopy(sol)
    del deleted.cells[_index(deleted, "square_hidden")]
    out["deleted_test"] = (deleted, 6, "graded", "deleted cells restored")
    no_solution = copy.deepcopy(sol)
    del no_solution.cells[_index(no_solution, "mean")]
    out["deleted_solution"] = (no_solution, 3, "graded", "mean_visible failed (NotImplementedError")
    moved = copy.deepcopy(sol)
    moved.cells.insert(_index(moved, "mean"), moved.cells.pop(_index(moved, "mean_visible")))
    out["reordered"] = (moved, 6, "graded", "put back in the assignment's order")
    dup = copy.deepcopy(sol)
    stub = copy.deepcopy(rel.cells[_index(rel, "square")])
    stub.id = "duplicate"
    dup.cells.insert(_index(dup, "square"), stub)
    out["duplicated"] = (dup, 6, "graded", "duplicated cells graded from their last copy: square")
    out["renamed"] = (
        _set(copy.deepcopy(sol), "square", square_src.replace("def square", "def sqr")),
        3,
        "graded",
        "square_visible failed (NameError",
    )
    edited = _set(copy.deepcopy(sol), "square", square_src.replace("x * x", "x + x"))
    _set(edited, "square_visible", "pass")
    out["edited_test"] = (edited, 3, "graded", "edited read-only cells graded as the originals")
    writes = copy.deepcopy(sol)
    writes.cells.append(
        new_code_cell(
            "import os\n"
            "for p in ['../../../source/T1/T1.ipynb', '../../source/T1.ipynb', 'scratch.txt']:\n"
            "    os.makedirs(os.path.dirname(p) or '.', exist_ok=True)\n"
            "    open(p, 'w').write('overwritten by a student')"
        )
    )
    out["writes_relative"] = (writes, 6, "graded", "")
    out["invalid_json"] = ('{"cells": [', 0, "invalid", "not a readable notebook")
    out["calls_reference"] = (
        _set(copy.deepcopy(sol), "mean", "def mean(x):\n    return statistics.mean(x)"),
        4,
        "graded",
        "mean_hidden failed (AssertionError: no reference",
    )
    return out


def _write(folder: Path, name: str, content) -> Path:
    path = folder / f"{name}.ipynb"
    if isinstance(content, str):
        path.write_text(content)
    else:
        nbformat.write(content, path)
    return path


def _sha(paths) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _grade(course: Path, subs: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(GRADE), "T1", str(subs), "--out", str(out), "--course", str(course)]
    return subprocess.run(cmd + list(extra), capture_output=True, text=True, cwd=ROOT)


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


# --- tests ---------------------------------------------------------------------------------


def test_corpus_scores_exactly(course, tmp_path):
    cases = corpus(course)
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, (content, *_) in cases.items():
        if name == "solution":  # the <student>/<any name>.ipynb layout
            (subs / name).mkdir()
            _write(subs / name, "Copy of T1", content)
        else:
            _write(subs, name, content)
    references = list((course / "source").rglob("*.ipynb")) + list(
        (course / "release").rglob("*.ipynb")
    )
    before = _sha(references + sorted(subs.rglob("*.ipynb")))
    out = tmp_path / "out"
    run = _grade(course, subs, out, "--timeout", "3", "--memory-mb", "1000", "--jobs", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "unchanged" in run.stdout
    assert _sha(before) == before, "reference notebooks or submissions changed"
    rows = _rows(out)
    assert sorted(rows) == sorted(cases)
    wrong = []
    for name, (_, total, status, note) in cases.items():
        row = rows[name]
        if (float(row["total"]), row["status"]) != (total, status) or note not in row["note"]:
            wrong.append(f"{name}: {row['total']} {row['status']} {row['note']!r}")
        assert row["max"] == "6"
        assert float(row["total"]) == sum(float(row[c]) for c in COLUMNS)
        assert (out / "feedback" / f"{name}.html").is_file()
    assert not wrong, "\n".join(wrong)
    assert rows["solution"]["note"] == ""
    assert rows["calls_reference"]["mean_visible"] == "1"
    assert rows["calls_reference"]["mean_hidden"] == "0"


def test_absolute_write_into_reference_is_restored_and_reported(course, tmp_path):
    target = course / "source" / "T1" / "T1.ipynb"
    before = _sha([target, course / "release" / "T1" / "T1.ipynb"])
    sol = _read(target)
    bad = copy.deepcopy(sol)
    bad.cells.append(new_code_cell(f"open({str(target)!r}, 'w').write('gone')"))
    subs = tmp_path / "subs"
    subs.mkdir()
    _write(subs, "good", sol)
    _write(subs, "mallory", bad)
    out = tmp_path / "out"
    run = _grade(course, subs, out, "--timeout", "10")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "WARNING" in run.stderr and str(target) in run.stderr
    assert _sha(before) == before, "the reference was not restored"
    rows = _rows(out)
    assert (rows["good"]["total"], rows["good"]["status"]) == ("6", "graded")
    assert (rows["mallory"]["total"], rows["mallory"]["status"]) == ("6", "tampered")
    assert str(target) in rows["mallory"]["note"]


def test_wall_limit_kills_a_submission_that_ignores_interrupts(course, tmp_path):
    sol = _read(course / "source" / "T1" / "T1.ipynb")
    stubborn = _set(
        copy.deepcopy(sol),
        "mean",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    )
    subs = tmp_path / "subs"
    subs.mkdir()
    _write(subs, "stubborn", stubborn)
    _write(subs, "good", sol)
    out = tmp_path / "out"
    run = _grade(course, subs, out, "--timeout", "2", "--wall", "12")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(out)
    assert rows["good"]["total"] == "6"
    assert rows["stubborn"]["status"] in ("timeout", "failed"), rows["stubborn"]
    assert rows["stubborn"]["note"]
    assert (out / "feedback" / "stubborn.html").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["T9", "{subs}"], "unknown assignment 'T9'"),
        (["T1", "{missing}"], "does not exist"),
    ],
)
def test_bad_input_gives_one_sentence(course, tmp_path, args, message):
    subs = tmp_path / "subs"
    subs.mkdir()
    _write(subs, "a", _read(course / "source" / "T1" / "T1.ipynb"))
    args = [a.format(subs=subs, missing=tmp_path / "nope") for a in args]
    cmd = [sys.executable, str(GRADE), *args, "--out", str(tmp_path / "o"), "--course", str(course)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 1
    assert message in run.stderr and run.stderr.count("\n") == 1, run.stderr


# --- the real assignments (assignments/source/<A>/), once they exist ------------------------

ASSIGNMENTS = ROOT / "assignments"
REAL = sorted(p.name for p in (ASSIGNMENTS / "source").glob("*") if any(p.glob("*.ipynb")))


def _release_of(name: str, tmp_path: Path) -> dict[str, nbformat.NotebookNode]:
    """The student notebooks of assignment ``name``: the committed release, else generated."""
    released = sorted((ASSIGNMENTS / "release" / name).glob("*.ipynb"))
    if released:
        return {p.stem: _read(p) for p in released}
    ref = grade.build_reference(ASSIGNMENTS / "source" / name, name, ASSIGNMENTS, 30, tmp_path)
    return ref.release


def _submit(folder: Path, student: str, notebooks: dict[str, nbformat.NotebookNode]) -> None:
    """Write one student's notebooks as ``folder/student/<notebook>.ipynb``."""
    (folder / student).mkdir(parents=True)
    for stem, nb in notebooks.items():
        _write(folder / student, stem, nb)


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL or [pytest.param("A1", marks=pytest.mark.skip("no A1 yet"))])
def test_real_assignment_solution_full_marks_release_zero(name, tmp_path):
    source = {p.stem: _read(p) for p in sorted((ASSIGNMENTS / "source" / name).glob("*.ipynb"))}
    subs = tmp_path / "subs"
    _submit(subs, "solution", source)
    _submit(subs, "release", _release_of(name, tmp_path / "gen"))
    penalty = None
    if name == "A1":  # a Gram matrix that merely calls nst's: the author's hidden-test penalty
        (stem, nb), gid = next(iter(source.items())), "gram_matrix"
        calls = _set(
            copy.deepcopy(nb), gid, "def gram_matrix(feats):\n    return nst.gram_matrix(feats)"
        )
        _submit(subs, "calls_reference", {stem: calls})
        penalty = grade.nb_meta(nb.cells[_index(nb, "hidden_gram_matrix")])["points"]
    out = tmp_path / "out"
    cmd = [sys.executable, str(GRADE), name, str(subs), "--out", str(out), "--jobs", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(out)
    assert float(rows["solution"]["max"]) > 0
    manual = sum(  # answers a person grades: the autograder gives them 0 and a note
        grade.nb_meta(c)["points"]
        for nb in source.values()
        for c in nb.cells
        if grade.nb_meta(c).get("grade") and grade.nb_meta(c).get("solution")
    )
    assert float(rows["solution"]["total"]) == float(rows["solution"]["max"]) - manual, rows
    if manual:
        assert "needs manual grading" in rows["solution"]["note"], rows["solution"]
    else:
        assert rows["solution"]["note"] == "", rows["solution"]
    assert (rows["release"]["total"], rows["release"]["status"]) == ("0", "graded"), rows["release"]
    if penalty is not None:
        row = rows["calls_reference"]
        assert float(row["total"]) == float(row["max"]) - penalty, row
        assert "hidden_gram_matrix failed (AssertionError: gram_matrix calls nst" in row["note"]


# --- make bench-grading: 30 generated submissions of A1 (skipped unless NST_BENCH=1) ----------


def generic_corpus(source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> dict:
    """Correct and broken versions of any nbgrader notebook, made by editing its cells."""

    def ids(nb, key):
        return [grade.nb_meta(c)["grade_id"] for c in nb.cells if grade.nb_meta(c).get(key)]

    solutions = [g for g in ids(source, "solution") if g not in ids(source, "grade")]
    tests = ids(source, "grade")

    def edit(base, fn):
        nb = copy.deepcopy(base)
        fn(nb)
        return nb

    def prefix(gid, code):
        return lambda nb: _set(nb, gid, code + nb.cells[_index(nb, gid)].source)

    def rename(nb):
        cell = nb.cells[_index(nb, solutions[0])]
        cell.source = cell.source.replace("def ", "def renamed_", 1)

    def move(nb):
        nb.cells.insert(0, nb.cells.pop(_index(nb, tests[0])))

    def delete(nb):
        del nb.cells[_index(nb, tests[-1])]

    def duplicate(nb):
        stub = copy.deepcopy(release.cells[_index(release, solutions[0])])
        stub.id = "duplicate"
        nb.cells.insert(_index(nb, solutions[0]), stub)

    def neuter(nb):
        for gid in tests:
            _set(nb, gid, "pass")

    return {
        "correct": source,
        "untouched": release,
        "raises": edit(source, prefix(solutions[0], "raise RuntimeError('bug')\n")),
        "hangs": edit(source, prefix(solutions[-1], "while True:\n    pass\n")),
        "memory": edit(source, prefix(solutions[0], "data = bytearray(50 * 2**30)\n")),
        "renamed": edit(source, rename),
        "reordered": edit(source, move),
        "deleted_test": edit(source, delete),
        "duplicated": edit(source, duplicate),
        "edited_tests": edit(release, neuter),
        "invalid_json": '{"cells": [',
    }


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NST_BENCH"), reason="a benchmark: make bench-grading")
def test_bench_grading(tmp_path, course):
    name = "A1" if "A1" in REAL else None
    if name:
        source = _read(sorted((ASSIGNMENTS / "source" / "A1").glob("*.ipynb"))[0])
        release = next(iter(_release_of("A1", tmp_path / "gen").values()))
        extra = ["--jobs", "2", "--timeout", os.environ.get("NST_BENCH_TIMEOUT", "60")]
    else:  # until assignments/source/A1 exists, bench the tiny T1
        print("\nno assignments/source/A1 yet: benchmarking the tiny test assignment T1")
        source = _read(course / "source" / "T1" / "T1.ipynb")
        release = _read(course / "release" / "T1" / "T1.ipynb")
        extra = ["--course", str(course), "--jobs", "2", "--timeout", "5"]
    kinds = generic_corpus(source, release)
    order = ["correct"] * 10 + [k for k in kinds if k != "correct"] * 2
    subs = tmp_path / "subs"
    subs.mkdir()
    for i, kind in enumerate(order[:30]):
        _write(subs, f"s{i:02d}_{kind}", kinds[kind])
    out = tmp_path / "out"
    cmd = [sys.executable, str(GRADE), name or "T1", str(subs), "--out", str(out), *extra]
    start = time.monotonic()
    run = subprocess.run(cmd, text=True, cwd=ROOT)
    total = time.monotonic() - start
    assert run.returncode == 0
    rows = _rows(out)
    assert len(rows) == 30
    print(f"bench: 30 submissions in {total:.1f} s, {total / 30:.1f} s per submission")
