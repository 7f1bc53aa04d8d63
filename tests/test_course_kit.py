"""tools/course_kit.py and the Colab set-up cell: students get no solution and no hidden test."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tools import colab_cells, course_kit

ROOT = Path(__file__).resolve().parent.parent


def test_student_repo_holds_no_solution_or_hidden_test(tmp_path):
    dest = tmp_path / "student"
    n = course_kit.student_repo(dest)
    assert n > 50
    assert not (dest / "assignments" / "source").exists()
    assert not list(dest.rglob("hidden_tests.py"))
    assert course_kit.leftover_markers(dest) == []
    assert (dest / "assignments" / "release" / "A1" / "A1_features_and_gram.ipynb").is_file()
    assert (dest / "notebooks").is_dir() and (dest / "nst" / "losses.py").is_file()


def test_the_marker_scan_finds_a_solution(tmp_path):
    (tmp_path / "x.py").write_text("def f():\n    ### BEGIN SOLUTION\n    return 1\n")
    assert course_kit.leftover_markers(tmp_path) == ["x.py"]


def test_instructor_kit_holds_the_sources_and_hidden_tests(tmp_path):
    course_kit.instructor_kit(tmp_path / "kit")
    source = tmp_path / "kit" / "assignments" / "source"
    assert sorted(p.name for p in source.iterdir()) == ["A1", "A2", "A3", "A4"]
    for a in ("A1", "A2", "A3"):
        assert (source / a / "hidden_tests.py").is_file() and list((source / a).glob("*.ipynb"))
    assert (tmp_path / "kit" / "assignments" / "nbgrader_config.py").is_file()


def test_colab_cell_checks_out_only_student_paths(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(clone)], check=True)
    patterns = colab_cells.sparse_patterns()
    assert f"keep = {patterns}".replace("'", '"') in colab_cells.setup_cell("https://x/y").source
    subprocess.run(
        ["git", "-C", str(clone), "sparse-checkout", "set", "--no-cone", *patterns], check=True
    )
    assert (clone / "notebooks").is_dir() and (clone / "assignments" / "release").is_dir()
    assert not (clone / "assignments" / "source").exists()
    assert not list(clone.rglob("hidden_tests.py"))
