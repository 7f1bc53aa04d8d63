"""A4, the capstone: its checks (nst.checks.capstone) pass the reference, name common mistakes and
fail wrong answers; its stored distances are the reference's; graded, crafted submissions score as
they should (create_feature_extractor instead of hooks, the photo returned, and, under make
grade-corpus, an unnormalised Gram matrix, wrong layers, no TV term, a detached image, noise)."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
from pathlib import Path

import nbformat
import pytest

import nst
import nst.checks.capstone as capstone
from nst.checks import CheckError

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "assignments" / "source" / "A4"  # absent from the students' repository
RELEASE = ROOT / "assignments" / "release" / "A4" / "A4_from_scratch.ipynb"
needs_source = pytest.mark.skipif(not SOURCE.is_dir(), reason="the instructors' sources only")
# nbgrader's marker, built from pieces: the students' repository, which gets this file, holds none.
BEGIN = "    ### " + "BEGIN SOLUTION\n"


def _cells(path: Path) -> dict[str, str]:
    """{grade id: source} of a notebook's nbgrader cells."""
    nb = nbformat.read(path, as_version=4)
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if "nbgrader" in c.metadata
    }


def _hidden_tests():
    spec = importlib.util.spec_from_file_location("a4_hidden_tests", SOURCE / "hidden_tests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _solution(**edits: str) -> dict:
    """The reference solution's namespace, with some of its cells' sources replaced."""
    return _hidden_tests().solution_namespace(**edits)


def _edit(grade_id: str, old: str, new: str) -> dict[str, str]:
    """{grade_id: the reference's cell with ``old`` replaced by ``new``}; ``old`` must be there."""
    source = _cells(next(SOURCE.glob("A4_*.ipynb")))[grade_id]
    assert old in source, old
    return {grade_id: source.replace(old, new)}


def test_notebook_constants_are_the_checks() -> None:
    """The constants students read are the ones the checks and the grader use."""
    namespace: dict = {}
    exec(_cells(RELEASE)["a4_constants"], namespace)
    assert namespace["PAPER"] == capstone.PAPER and namespace["TUTORIAL"] == capstone.TUTORIAL
    assert namespace["WEIGHTS"] == capstone.WEIGHTS and namespace["ADAM_LR"] == capstone.ADAM_LR
    assert namespace["CAFFE_MEAN_BGR"] == nst.vgg.CAFFE_MEAN_BGR
    # the tutorial's conv_4 and conv_1..conv_5, in the course's names
    assert capstone.TUTORIAL["content"] == nst.vgg.TUTORIAL_TO_NAME["conv_4"]
    assert capstone.TUTORIAL["style"] == [
        nst.vgg.TUTORIAL_TO_NAME[f"conv_{i}"] for i in range(1, 6)
    ]


@needs_source
def test_checks_pass_the_reference_solution(capsys) -> None:
    ns = _solution()
    capstone.check_extractor(ns["make_extractor"])
    capstone.check_gram(ns["gram"])
    capstone.check_losses(ns["losses"])
    assert capsys.readouterr().out.count("✓") == 3


MISTAKES = {  # (cell, old, new): a common mistake, and what the check must say about it
    "conv overwritten by an in-place ReLU": (
        ("make_extractor", "layer.inplace = False", "pass"),
        "ReLU(inplace=True) overwrote",
    ),
    "no preprocessing": (
        ("make_extractor", "img.flip(1) * 255 - mean.to(img.device)", "img"),
        "no preprocessing",
    ),
    "RGB kept": (("make_extractor", "img.flip(1) * 255", "img * 255"), "RGB instead of BGR"),
    "detached extractor": (
        ("make_extractor", "network(img.flip(1)", "network(img.detach().flip(1)"),
        "no gradient",
    ),
    "Gram not divided": (("gram", " / (height * width)", ""), "too large by a factor of H·W"),
    "style summed over layers": (
        ("losses", "torch.stack(per_layer).mean()", "sum(per_layer)"),
        "factor of L",
    ),
    "TV averaged": (
        (
            "losses",
            "(down**2).mean() + (right**2).mean()",
            "((down**2).mean() + (right**2).mean()) / 2",
        ),
        "factor of 2",
    ),
    "content detached": (
        (
            "losses",
            'relative(gen_feats[layers["content"]]',
            'relative(gen_feats[layers["content"]].detach()',
        ),
        "no gradient",
    ),
}


@needs_source
@pytest.mark.parametrize("mistake", MISTAKES)
def test_checks_name_the_mistake(mistake: str) -> None:
    (cell, old, new), says = MISTAKES[mistake]
    ns = _solution(**_edit(cell, old, new))
    check = {"make_extractor": capstone.check_extractor, "gram": capstone.check_gram}.get(
        cell, capstone.check_losses
    )
    with pytest.raises(CheckError, match=says.replace("(", r"\(").replace(")", r"\)")):
        check(ns[cell])


@needs_source
@pytest.mark.slow
def test_visible_distances_are_the_reference_solutions() -> None:
    """capstone.VISIBLE_DISTANCES, what the visible check compares with: a fresh run's, ±2 %."""
    fresh = _hidden_tests()._reference_distances(capstone.VISIBLE_PAIR, capstone.VISIBLE_STEPS)
    for run, want in capstone.VISIBLE_DISTANCES.items():
        assert fresh[run] == pytest.approx(want, rel=0.02), (run, fresh[run])


FAKE_TRANSFER = """
def transfer(content_img, style_img, *, layers, optimizer, steps, size):
    \"\"\"No optimisation at all: the resized photo (or noise), with a made-up history.\"\"\"
    scale = size / max(content_img.shape[-2:])
    hw = [round(side * scale) for side in content_img.shape[-2:]]
    photo = F.interpolate(content_img, size=hw, mode="bilinear", antialias=True)
    rows = [dict(step=n, total=1.0, content=0.0, style=1.0, tv=0.0) for n in range(1, steps + 1)]
    return RESULT, rows
"""
PHOTO = {"transfer": FAKE_TRANSFER.replace("RESULT", "photo.clamp(0, 1)")}


@needs_source
@pytest.mark.slow
@pytest.mark.parametrize(
    "edits, says",
    [
        (PHOTO, "content distance 0.000"),
        (
            _edit(
                "transfer",
                BEGIN,
                BEGIN + "    layers = PAPER\n",
            )
            if SOURCE.is_dir()
            else {},
            "TUTORIAL, optimizer='lbfgs'.* style distance",
        ),
    ],
    ids=["photo", "wrong_layers"],
)
def test_check_transfer_fails_a_wrong_method(edits, says) -> None:
    with pytest.raises(CheckError, match=says):
        capstone.check_transfer(_solution(**edits)["transfer"])


# --- graded in the sandbox: crafted submissions ------------------------------------------------

EXERCISES = ("make_extractor", "gram", "losses", "transfer")


def _crafted() -> dict[str, tuple[dict[str, str], set[str], set[str]]]:
    """{case: (edited cells, exercises that must score 0, exercises that must score in full)}."""
    noise = {"transfer": FAKE_TRANSFER.replace("RESULT", "torch.rand_like(photo)")}
    begin = BEGIN
    return {  # each graded in the sandbox; make test grades the first two
        "create_feature_extractor": (  # a correct answer written another way: instructors only
            _hidden_tests().CORRECT_ANOTHER_WAY,
            set(),
            set(EXERCISES),
        ),
        "photo": (PHOTO, {"transfer"}, {"make_extractor", "gram", "losses"}),
        "noise": (noise, {"transfer"}, {"make_extractor", "gram", "losses"}),
        "unnormalised_gram": (
            _edit("gram", " / (height * width)", ""),
            {"gram", "losses"},
            {"make_extractor"},
        ),
        "wrong_layers": (
            _edit("transfer", begin, begin + "    layers = PAPER\n"),
            {"transfer"},
            {"gram", "losses"},
        ),
        "no_tv": (
            _edit("losses", "tv = (down**2).mean() + (right**2).mean()", "tv = torch.zeros(())"),
            {"losses"},
            {"gram"},
        ),
        "detached_image": (
            _edit(
                "transfer",
                "losses(extractor(gen_img), targets",
                "losses(extractor(gen_img.detach()), targets",
            ),
            {"transfer"},
            {"make_extractor", "gram", "losses"},
        ),
    }


def _grade_crafted(cases: list[str], tmp_path: Path) -> Path:
    """Grade each crafted case in the sandbox; check its zero and full exercises and its note."""
    from test_grading import GRADE, _rows, _sandbox_or_skip, _submit  # the grading tests' helpers

    _sandbox_or_skip()
    source = nbformat.read(next(SOURCE.glob("A4_*.ipynb")), as_version=4)
    crafted = _crafted()
    for case in cases:
        nb = copy.deepcopy(source)
        for cell in nb.cells:
            edit = crafted[case][0].get(cell.metadata["nbgrader"]["grade_id"])
            cell.source = edit if edit is not None else cell.source
        _submit(tmp_path / "subs", case, nb)
    out = tmp_path / "out"
    cmd = [*GRADE, "A4", str(tmp_path / "subs"), "--out", str(out), "--jobs", "2"]
    env = {**os.environ, "NST_COURSE_SECRET": "x"}
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    rows, points = _rows(out), _points()
    for case in cases:
        _, zero, full = crafted[case]
        row = rows[case]
        for column, most in points.items():
            exercise = column.split("_", 1)[1]
            want = 0.0 if exercise in zero else most if exercise in full else None
            assert want is None or float(row[column]) == want, (case, column, row)
        assert all(f"{e}" in row["note"] for e in zero), (case, row["note"])
    return out


def _points() -> dict[str, float]:
    """{check_<f> or hidden_<f>: points} of A4's automatically graded cells."""
    nb = nbformat.read(next(SOURCE.glob("A4_*.ipynb")), as_version=4)
    metas = [c.metadata["nbgrader"] for c in nb.cells]
    return {m["grade_id"]: m["points"] for m in metas if m.get("points") and not m["solution"]}


@needs_source
@pytest.mark.slow
def test_graded_variants(tmp_path: Path) -> None:
    """Full marks written another way (create_feature_extractor, bmm); 0 for returning the photo."""
    out = _grade_crafted(["create_feature_extractor", "photo"], tmp_path)
    (graded,) = (out / "autograded").glob("photo-*.ipynb")  # as it ran: the grader's settings
    settings = _cells(graded)["a4_settings"]
    assert (
        settings
        == _hidden_tests().GRADING_CELLS["a4_settings"]
        == "SIZE, STEPS = 128, 60" + ("  # the grader's settings: the experiments need only run")
    )


@needs_source
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NST_GRADE_CORPUS"), reason="make grade-corpus (minutes)")
def test_capstone_corpus(tmp_path: Path) -> None:
    """The other crafted wrong answers, graded: each scores 0 where it is wrong."""
    _grade_crafted(
        [c for c in _crafted() if c not in ("create_feature_extractor", "photo")], tmp_path
    )
