"""python -m tools.grade: exact scores for a corpus of honest, broken and hostile submissions.

A tiny nbgrader assignment T1 (two exercises, ``gram`` and ``tv``, each with a visible check worth
1 point and a hidden test worth 2, judged by T1's hidden_tests.py) is graded in the sandbox. Each
case has its exact expected score, status and a fragment of its note. With CI=true these tests fail,
not skip, when the sandbox (bubblewrap + cgroups) is unavailable.
"""

from __future__ import annotations

import copy
import csv
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tools import sandbox
from tools.grading import collect, reference, worker
from tools.grading.model import InputError, nbgrader_meta
from tools.grading.repair import defined_functions

pytest.importorskip("nbgrader", reason="nbgrader is an instructor tool: pip install nbgrader")

ROOT = Path(__file__).resolve().parent.parent
GRADE = [sys.executable, "-m", "tools.grade"]  # run from ROOT
COLUMNS = ["check_gram", "hidden_gram", "check_tv", "hidden_tv"]


def _sandbox_or_skip() -> None:
    """Skip without a sandbox, except under CI, where that is a failure."""
    try:
        sandbox.mode()
    except sandbox.SandboxUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must grade in the sandbox: {err}")
        pytest.skip(f"no sandbox here: {err}")


# --- the tiny assignment T1 ----------------------------------------------------------------


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


GRAM = """\
def gram(feats):
    ### BEGIN SOLUTION
    b, c, h, w = feats.shape
    flat = feats.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)
    ### END SOLUTION"""

TV = """\
def tv(img):
    ### BEGIN SOLUTION
    dy = img[:, :, 1:, :] - img[:, :, :-1, :]
    dx = img[:, :, :, 1:] - img[:, :, :, :-1]
    return (dy**2).mean() + (dx**2).mean()
    ### END SOLUTION"""

HIDDEN_TESTS = '''\
"""T1's hidden tests: outputs beside the student's code, verdicts in the grader."""
import numpy as np
import torch

import nst
from nst.grading import Exercise, generator


def gram_outputs(fn, seed):
    return {"out": fn(torch.randn(2, 3, 4, 5, generator=generator(seed)))}


def gram_verdict(seed, out, hidden):
    want = nst.gram_matrix(torch.randn(2, 3, 4, 5, generator=generator(seed))).numpy()
    assert out["out"].shape == want.shape, f"gram: shape {out['out'].shape}, expected {want.shape}"
    assert np.allclose(out["out"], want, rtol=1e-4, atol=1e-6), "gram gives wrong values"


def tv_outputs(fn, seed):
    return {"out": fn(torch.rand(1, 3, 5, 6, generator=generator(seed)))}


def tv_verdict(seed, out, hidden):
    want = nst.tv_loss(torch.rand(1, 3, 5, 6, generator=generator(seed))).item()
    assert np.isclose(out["out"], want, rtol=1e-4), f"tv is {out['out']}, expected {want:.6g}"


EXERCISES = {
    "gram": Exercise(gram_outputs, gram_verdict, ("nst.losses.gram_matrix",)),
    "tv": Exercise(tv_outputs, tv_verdict, ("nst.losses.tv_loss",)),
}


def run(name, fn):
    nst.grading.preview(EXERCISES, name, fn)
'''


# The per-cell limit the tests grade with. The setup cell imports torch and nst: about 2 s on
# an idle 2-core machine and more with two submissions graded at once, so a tighter limit
# interrupts the honest setup cell instead of the hang it is there to catch.
CELL_S = 10


def source_notebook() -> nbformat.NotebookNode:
    """The instructor's version: solutions and hidden tests included (6 points)."""

    def hidden(name):
        run = f"import hidden_tests\nhidden_tests.run({name!r}, {name})"
        return f"### BEGIN HIDDEN TESTS\n{run}\n### END HIDDEN TESTS"

    nb = new_notebook(
        cells=[
            _cell("# T1: a tiny assignment", md=True),
            _cell("import torch\n\nimport nst", "setup", locked=True),
            _cell(GRAM, "gram", solution=True),
            _cell(
                "assert torch.allclose(gram(torch.ones(1, 2, 2, 2)), torch.ones(1, 2, 2))",
                "check_gram",
                points=1,
            ),
            _cell("# Hidden tests (2 points)\n" + hidden("gram"), "hidden_gram", points=2),
            _cell(TV, "tv", solution=True),
            _cell("assert tv(torch.ones(1, 3, 4, 4)) == 0", "check_tv", points=1),
            _cell("# Hidden tests (2 points)\n" + hidden("tv"), "hidden_tv", points=2),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course folder: source/T1/T1.ipynb, its hidden_tests.py and the release nbgrader makes."""
    root = tmp_path_factory.mktemp("course")
    (root / "source" / "T1").mkdir(parents=True)
    nbformat.write(source_notebook(), root / "source" / "T1" / "T1.ipynb")
    (root / "source" / "T1" / "hidden_tests.py").write_text(HIDDEN_TESTS)
    ref = reference.build_reference(root / "source" / "T1", "T1", root, root / "gen")
    (root / "release" / "T1").mkdir(parents=True)
    nbformat.write(ref.release["T1"], root / "release" / "T1" / "T1.ipynb")
    return root


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _index(nb, gid: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == gid)


def _set(nb, gid: str, source: str):
    nb = copy.deepcopy(nb)
    nb.cells[_index(nb, gid)].source = source
    return nb


def _append(nb, *sources: str, after: str | None = None):
    """``nb`` with code cells added at the end (or after the cell ``after``)."""
    nb = copy.deepcopy(nb)
    at = _index(nb, after) + 1 if after else len(nb.cells)
    for i, src in enumerate(sources):
        nb.cells.insert(at + i, new_code_cell(textwrap.dedent(src)))
    return nb


def _write(folder: Path, name: str, content) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        nbformat.write(content, path)
    return path


def _grade(course: Path, subs: Path, out: Path, *extra: str, **env) -> subprocess.CompletedProcess:
    cmd = [*GRADE, "T1", str(subs), "--out", str(out), "--course", str(course)]
    environ = {**os.environ, "NST_COURSE_SECRET": "test-secret", **env}
    return subprocess.run(cmd + list(extra), capture_output=True, text=True, cwd=ROOT, env=environ)


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {row["original"]: row for row in csv.DictReader(f)}


MARK = "nst-grading-test-marker"  # in the command line of every process a hostile case starts


def _alive(marker: str) -> list[int]:
    """Processes whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


# --- the corpus: original name -> (notebook, text or {file: content}, score, status, note) --


Cases = dict[str, tuple[object, float, str, str]]


def _sources(sol: nbformat.NotebookNode) -> tuple[str, str]:
    """The solution's two answer cells: gram's and tv's."""
    return sol.cells[_index(sol, "gram")].source, sol.cells[_index(sol, "tv")].source


def _broken(sol: nbformat.NotebookNode, rel: nbformat.NotebookNode) -> Cases:
    """Honest submissions, some broken, some with cells deleted, moved or edited."""
    gram_src, tv_src = _sources(sol)
    c = {}
    c["solution"] = ({"Copy of T1.ipynb": sol}, 6, "graded", "")
    c["release"] = (rel, 0, "graded", "check_gram and hidden_gram failed (gram is not written yet")
    c["raises"] = (
        _set(sol, "tv", 'raise ValueError("bug")\n' + tv_src),
        3,
        "graded",
        "tv is not defined",
    )
    c["hangs"] = (
        _set(sol, "tv", "while True:\n    pass\n" + tv_src),
        3,
        "graded",
        f"ran past the {CELL_S} s limit",
    )
    c["memory"] = (
        _set(sol, "gram", "data = bytearray(50 * 2**30)\n" + gram_src),
        3,
        "graded",
        "MemoryError",
    )
    c["memory_touched"] = (
        _set(sol, "tv", 'data = b"x" * (2 * 2**30)\n' + tv_src),
        3,
        "graded",
        "MemoryError",
    )
    deleted = copy.deepcopy(sol)
    del deleted.cells[_index(deleted, "hidden_tv")]
    c["deleted_test"] = (
        deleted,
        6,
        "graded",
        "deleted cells restored from the assignment: hidden_tv",
    )
    no_solution = copy.deepcopy(sol)
    del no_solution.cells[_index(no_solution, "tv")]
    c["deleted_solution"] = (
        no_solution,
        3,
        "graded",
        "check_tv and hidden_tv failed (tv is not written yet",
    )
    moved = copy.deepcopy(sol)
    moved.cells.insert(_index(moved, "tv"), moved.cells.pop(_index(moved, "check_tv")))
    c["reordered"] = (moved, 6, "graded", "put back in the assignment's order")
    dup = copy.deepcopy(sol)
    stub = copy.deepcopy(rel.cells[_index(rel, "gram")])
    stub.id = "duplicate"
    dup.cells.insert(_index(dup, "gram"), stub)
    c["duplicated"] = (dup, 6, "graded", "duplicated cells graded from their last copy: gram")
    c["renamed"] = (
        _set(sol, "tv", tv_src.replace("def tv", "def tv2")),
        3,
        "graded",
        "tv is not defined",
    )
    wrong_gram = gram_src.replace("/ (h * w)", "/ (c * h * w)")
    edited = _set(_set(sol, "gram", wrong_gram), "check_gram", "pass")
    c["edited_test"] = (
        edited,
        3,
        "graded",
        "edited read-only cells graded as the originals: check_gram",
    )
    return c


def _odd(sol: nbformat.NotebookNode, rel: nbformat.NotebookNode) -> Cases:
    """Odd but honest submissions: noisy, unreadable, without metadata, several downloads."""
    gram_src, tv_src = _sources(sol)
    c = {}
    c["invalid_json"] = ('{"cells": [', 0, "invalid", "not a readable notebook")
    loud = "import logging, sys, warnings\nprint('to stderr', file=sys.stderr)\n"
    loud += "warnings.warn('a UserWarning')\nlogging.warning('a log line')\n"
    c["stderr"] = (_set(sol, "gram", loud + gram_src), 6, "graded", "")
    commented = gram_src.replace(
        "b, c, h, w", "# like nst.gram_matrix and losses.gram_matrix\n    b, c, h, w"
    )
    c["comments"] = (
        _set(sol, "gram", commented.replace("flat", "nst_gram_matrix")),
        6,
        "graded",
        "",
    )
    bare = _set(_set(rel, "gram", gram_src), "tv", tv_src)  # a student's copy, answered
    for cell in bare.cells:
        cell.metadata.pop("nbgrader", None)
    c["no_metadata"] = (bare, 6, "graded", "found by the function they define: gram, tv")
    flags = copy.deepcopy(sol)
    for cell in flags.cells:
        meta = cell.metadata.get("nbgrader", {})
        meta.update(
            {"points": 100, "checksum": "forged", "locked": False} if meta.get("grade") else {}
        )
    flags.metadata["kernelspec"] = {
        "name": "nonexistent",
        "display_name": "x",
        "language": "python",
    }
    c["metadata_edited"] = (flags, 6, "graded", "")
    c["keyboard_interrupt"] = (
        _set(sol, "tv", "raise KeyboardInterrupt\n" + tv_src),
        3,
        "graded",
        "raised KeyboardInterrupt (not a time limit)",
    )
    c["exits"] = (
        _append(sol, "import os\nos._exit(1)", after="hidden_gram"),
        3,
        "graded",
        "the kernel died",
    )
    c["张伟"] = (sol, 6, "graded", "")
    c["李娜"] = (sol, 6, "graded", "")
    c["carol.ipynb.txt"] = ("not a notebook", 0, "skipped", "carol.ipynb.txt is not a notebook")
    c["dave"] = (
        {"T1.ipynb": rel, "T1 (1).ipynb": sol},
        6,
        "graded",
        "graded T1 (1).ipynb, the highest",
    )
    c["erin"] = (
        {"T1.ipynb": rel, "Copy of T1.ipynb": sol},
        6,
        "graded",
        "graded Copy of T1.ipynb, the newest",
    )
    return c


def _hostile(rel: nbformat.NotebookNode, course: Path, out: Path) -> Cases:
    """Each is the release plus an attack on the grader, so the fair score is 0."""
    c = {}

    def attack(*cells: str) -> nbformat.NotebookNode:
        return _append(rel, *cells, after="setup")

    grades_csv = str(out / "grades.csv")
    c["forger"] = (
        attack(f"""\
        import subprocess, sys
        code = "import time, pathlib; time.sleep(6); "
        code += "pathlib.Path({grades_csv!r}).write_text('forged')"
        subprocess.Popen([sys.executable, "-c", code, "{MARK}"], start_new_session=True, env={{}},
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        """),
        0,
        "graded",
        "",
    )
    targets = [
        str(ROOT / "nst" / "__init__.py"),
        str(course / "source" / "T1" / "T1_zz_bonus.ipynb"),
        str(course / "source" / "T1" / "hidden_tests.py"),
        "/opt/nst/nst/__init__.py",
        "/grader/hidden_tests.py",
        str(ROOT / "assignments" / "nbgrader_config.py"),
    ]
    c["backdoor"] = (
        attack(f"""\
        import nst
        for path in {targets!r} + [nst.__file__]:
            try:
                open(path, "a").write("\\nraise SystemExit('backdoor')\\n")
                print("wrote", path)
            except OSError as err:
                print("refused:", type(err).__name__)
        """),
        0,
        "graded",
        "",
    )
    c["hides_errors"] = (
        attack("get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"),
        0,
        "graded",
        "",
    )
    c["showtraceback"] = (
        attack("""\
        import sys
        ip = get_ipython()
        ip.showtraceback = lambda *a, **k: None
        ip._showtraceback = lambda *a, **k: None
        sys.excepthook = lambda *a: None
        """),
        0,
        "graded",
        "",
    )
    c["edits_reply"] = (
        attack("""\
        import inspect
        kernel = get_ipython().kernel
        original = kernel.do_execute
        async def do_execute(*args, **kwargs):
            reply = original(*args, **kwargs)
            reply = await reply if inspect.isawaitable(reply) else reply
            reply["status"] = "ok"
            return reply
        kernel.do_execute = do_execute
        """),
        0,
        "graded",
        "",
    )
    patched = attack(
        "import numpy, torch\nfor m in (torch, numpy):\n    m.allclose = lambda *a, **k: True\n"
        "torch.isclose = lambda *a, **k: torch.tensor(True)"
    )
    patched = _set(
        _set(patched, "gram", "def gram(feats):\n    return feats"),
        "tv",
        "def tv(img):\n    return img.sum() * 0",
    )
    c["patches_allclose"] = (
        patched,
        0,
        "graded",
        "check_gram and hidden_gram failed (gram: shape (2, 3, 4, 5)",
    )
    c["reads_solutions"] = (
        attack(f"""\
        import glob, json
        found = glob.glob("/course/**/source/**/*.ipynb", recursive=True)
        found += glob.glob({str(course)!r} + "/**/*.ipynb", recursive=True)
        for path in found:
            exec("\\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                           for c in json.load(open(path))["cells"] if c["cell_type"] == "code"))
        print(len(found), "notebooks found")
        """),
        0,
        "graded",
        "",
    )
    return c


def _disguised(sol: nbformat.NotebookNode) -> Cases:
    """The solution with gram calling nst's own gram_matrix in disguise: gram's tests score 0."""
    disguises = {
        "alias": "from nst.losses import gram_matrix as _g\ndef gram(feats):\n    return _g(feats)",
        "module_alias": (
            "from nst import losses as L\ndef gram(feats):\n    return L.gram_matrix(feats)"
        ),
        "getattr": (
            "import nst\ndef gram(feats):\n    return getattr(nst, 'gram_' + 'matrix')(feats)"
        ),
        "importlib": (
            "import importlib\ndef gram(feats):\n"
            "    return importlib.import_module('nst.losses').gram_matrix(feats)"
        ),
        "file_copy": (
            "import importlib.util, nst\n"
            "spec = importlib.util.spec_from_file_location('copy', nst.losses.__file__)\n"
            "mod = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(mod)\n"
            "def gram(feats):\n    return mod.gram_matrix(feats)"
        ),
        "exec_file": (
            "import nst\nns = {}\nexec(open(nst.losses.__file__).read(), ns)\n"
            "def gram(feats):\n    return ns['gram_matrix'](feats)"
        ),
        "getsource": (
            "import inspect, nst\nsource = inspect.getsource(nst.losses.gram_matrix)\n"
            "exec(source.replace('def gram_matrix', 'def gram'))"
        ),
        "wrapped": (
            "import functools, nst\n@functools.wraps(nst.gram_matrix)\ndef gram(feats):\n"
            "    return gram.__wrapped__(feats)"
        ),
        "code_copy": (
            "import types, nst\n"
            "gram = types.FunctionType(nst.gram_matrix.__code__, nst.losses.__dict__)"
        ),
    }
    return {
        f"calls_reference_{label}": (
            _set(sol, "gram", code),
            3,
            "graded",
            "calls nst's losses.gram_matrix",
        )
        for label, code in disguises.items()
    }


def _against_the_machine(sol: nbformat.NotebookNode, sock: str) -> Cases:
    """Attacks on the machine after both exercises are recorded, so the fair score is 6."""
    c = {}

    def after(*cells: str) -> nbformat.NotebookNode:
        return _append(sol, *cells)

    c["shm"] = (
        after("""\
        try:
            with open("/dev/shm/fill", "wb") as f:
                for _ in range(40):
                    f.write(b"x" * 100 * 2**20)
            print("wrote 4 GB to /dev/shm")
        except OSError as err:
            print("refused:", type(err).__name__)
        """),
        6,
        "graded",
        "",
    )
    c["memfd"] = (
        after("""\
        import os
        block, kept = b"x" * (400 * 2**20), []
        for _ in range(13):  # 13 x 400 MB: each file under the 512 MB file-size limit
            kept.append(os.memfd_create("fill"))
            os.write(kept[-1], block)
        print("wrote 5 GB to memfds")
        """),
        6,
        "graded",
        "ran out of memory",
    )
    c["fork_bomb"] = (
        after(f"""\
        import subprocess, sys, time
        bomb = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n"
        bomb += "    except OSError:\\n        pass"
        subprocess.Popen([sys.executable, "-c", bomb, "{MARK}"])
        time.sleep(1)
        """),
        6,
        "graded",
        "",
    )
    c["sleeper"] = (
        after(f"""\
        import subprocess, sys
        for session in (False, True):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{MARK}"],
                             start_new_session=session)
        """),
        6,
        "graded",
        "",
    )
    c["network"] = (
        after(f"""\
        import socket
        for target in (("1.1.1.1", 53), ("10.0.0.1", 80)):
            try:
                socket.create_connection(target, timeout=2)
                print("connected to", target)
            except OSError as err:
                print("no network:", type(err).__name__)
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect({sock!r})
            s.sendall(b"{MARK}")
            print("connected to the host socket")
        except OSError as err:
            print("no host socket:", type(err).__name__)
        """),
        6,
        "graded",
        "",
    )
    c["environment"] = (after("import os\nprint(dict(os.environ))"), 6, "graded", "")
    c["ptrace"] = (
        after(f"""\
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        for pid in (1, {os.getpid()}, os.getppid()):
            print(pid, libc.ptrace(16, pid, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
        """),
        6,
        "graded",
        "",
    )
    return c


def corpus(course: Path, out: Path, sock: str) -> Cases:
    """Honest, odd, broken and hostile submissions, each with the score a fair instructor gives."""
    sol = _read(course / "source" / "T1" / "T1.ipynb")
    rel = _read(course / "release" / "T1" / "T1.ipynb")
    return {
        **_broken(sol, rel),
        **_odd(sol, rel),
        **_hostile(rel, course, out),
        **_disguised(sol),
        **_against_the_machine(sol, sock),
    }


def _submit(subs: Path, name: str, content) -> None:
    """One entry of the submissions folder: a notebook, a text file, or a folder of files."""
    if isinstance(content, dict) and not isinstance(content, nbformat.NotebookNode):
        for i, (file, nb) in enumerate(content.items()):
            path = _write(subs / name, file, nb)
            os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))  # later files are newer
    elif name.endswith(".txt"):
        _write(subs, name, content)
    else:
        _write(subs, f"{name}.ipynb", content)


# --- tests ---------------------------------------------------------------------------------


HOST_SECRET = "host-only-value-5d41402abc"  # in the grader's environment, never in feedback


def _host_socket(path: Path) -> socket.socket:
    """A Unix socket of the host's, listening, that no submission may reach."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(5)
    server.setblocking(False)
    return server


def _assert_scores(cases: Cases, rows: dict[str, dict[str, str]], out: Path) -> None:
    """Each case has its exact score, status and note, and its feedback page."""
    assert sorted(rows) == sorted(cases)
    wrong = []
    for name, (_, total, status, note) in cases.items():
        row = rows[name]
        if (float(row["total"]), row["status"]) != (total, status) or note not in row["note"]:
            wrong.append(f"{name}: {row['total']} {row['status']} {row['note']!r}")
        if status != "skipped":
            assert row["max"] == "6"
            assert float(row["total"]) == sum(float(row[c]) for c in COLUMNS)
            assert (out / "feedback" / f"{row['student']}.html").is_file()
    assert not wrong, "\n".join(wrong)
    assert rows["solution"]["note"] == "" and rows["stderr"]["note"] == ""
    # identity: distinct, traceable ids; the original name in its own column
    ids = [row["student"] for row in rows.values()]
    assert len(set(ids)) == len(ids)
    assert rows["张伟"]["student"] != rows["李娜"]["student"]
    assert all(i.isascii() and i.rsplit("-", 1)[1].isalnum() for i in ids)


def _assert_nothing_leaked(cases: Cases, rows: dict, course: Path, out: Path) -> None:
    """No feedback shows the grader's environment, its paths or the hidden tests."""
    own = {r["student"] for n, r in rows.items() if str(course) in str(cases[n][0])}  # its own text
    files = [*(out / "autograded").glob("*.ipynb"), *(out / "feedback").glob("*.html")]
    text = "".join(p.read_text(encoding="utf-8") for p in files if p.stem not in own)
    assert HOST_SECRET not in text and "test-secret" not in text, "the environment leaked"
    assert str(ROOT) not in text and str(course) not in text, "an absolute host path leaked"
    assert "BEGIN HIDDEN TESTS" not in text and "hidden_tests.run" not in text


def _assert_attacks_refused(rows: dict, out: Path) -> None:
    """What the hostile cells printed shows that each attack was refused."""
    backdoor = _printed(out, rows["backdoor"])
    assert "wrote" not in backdoor and backdoor.count("refused") == 7, backdoor
    network = _printed(out, rows["network"])
    assert network.count("no network") == 2 and "no host socket" in network, network
    assert "connected" not in network, network
    ptrace = _printed(out, rows["ptrace"])
    assert [line.split()[1] for line in ptrace.splitlines()] == ["-1"] * 3, ptrace  # all refused
    assert "refused: OSError" in _printed(out, rows["shm"])  # /dev/shm is a small tmpfs


@pytest.mark.slow
def test_corpus_scores_exactly(course, tmp_path):
    _sandbox_or_skip()
    server = _host_socket(tmp_path / "host.sock")
    out = tmp_path / "out"
    cases = corpus(course, out, str(tmp_path / "host.sock"))
    subs = tmp_path / "subs"
    for name, (content, *_) in cases.items():
        _submit(subs, name, content)
    guarded = sorted((ROOT / "nst").rglob("*.py")) + sorted(course.rglob("*"))
    before = {p: p.read_bytes() for p in guarded if p.is_file()}
    limits = ["--timeout", str(CELL_S), "--wall", "120", "--memory-mb", "1000", "--jobs", "2"]
    run = _grade(course, subs, out, *limits, NST_HOST_ONLY=HOST_SECRET)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "unchanged" in run.stdout
    rows = _rows(out)
    _assert_scores(cases, rows, out)

    # nothing changed, nothing survived, nothing reached the host
    time.sleep(7)  # the forger's detached process would write grades.csv after 6 s
    assert _rows(out) == rows, "grades.csv changed after grading"
    assert {p: p.read_bytes() for p in before} == before, "nst/ or the course changed"
    assert not (course / "source" / "T1" / "T1_zz_bonus.ipynb").exists()
    assert _alive(MARK) == [], "a process a submission started is still alive"
    with pytest.raises(BlockingIOError):
        server.accept()  # nobody connected to the host's Unix socket
    server.close()
    _assert_nothing_leaked(cases, rows, course, out)
    _assert_attacks_refused(rows, out)


def _printed(out: Path, row: dict) -> str:
    """What the cells of a graded notebook printed (stdout)."""
    nb = _read(out / "autograded" / f"{row['student']}.ipynb")
    text = "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("name") == "stdout"
    )
    return "".join(
        line for line in text.splitlines(True) if not line.startswith(("✓ ", "✗ "))
    )  # ours


def test_seed_is_an_hmac_of_the_student_id():
    from nst.grading import seed_for

    assert seed_for(b"secret", "alice-2bd806") == seed_for(b"secret", "alice-2bd806")
    assert seed_for(b"secret", "alice-2bd806") != seed_for(b"other", "alice-2bd806")
    assert seed_for(b"secret", "alice-2bd806") != seed_for(b"secret", "bob-81b637")
    assert 0 <= seed_for(b"secret", "x") < 2**31


def test_outputs_are_read_back_as_data_only(tmp_path):
    import zipfile

    import numpy as np

    from nst.grading import MAX_OUTPUT_BYTES, load_outputs, read_regular_file

    def load(name: str) -> dict:
        return load_outputs(read_regular_file(tmp_path / name, MAX_OUTPUT_BYTES))

    np.savez(tmp_path / "ok.npz", **{"visible.out": np.ones(3), "hidden.error": np.array("bug")})
    assert load("ok.npz")["hidden"]["error"] == "bug"
    np.savez(tmp_path / "obj.npz", **{"visible.out": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="pickle"):  # an object array needs pickle: refused
        load("obj.npz")
    (tmp_path / "link.npz").symlink_to(tmp_path / "ok.npz")
    with pytest.raises(OSError):  # a symlink planted in the sandbox is not followed
        load("link.npz")
    os.mkfifo(tmp_path / "fifo.npz")
    with pytest.raises(ValueError, match="not a regular file"):  # and a FIFO does not block us
        load("fifo.npz")
    with pytest.raises(ValueError, match="not a regular file"):
        read_regular_file(tmp_path / "ok.npz", 10)  # larger than the limit
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("visible.out.npy", b"\0" * (4 * MAX_OUTPUT_BYTES + 1))  # 256 MB of zeros
    assert (tmp_path / "bomb.npz").stat().st_size < 2**20
    with pytest.raises(ValueError, match="more than 256 MB"):
        load("bomb.npz")


def test_student_ids_are_distinct_ascii_and_traceable():
    assert (
        collect.safe_id("alice")
        == "alice-" + __import__("hashlib").sha256(b"alice").hexdigest()[:6]
    )
    assert collect.safe_id("张伟") != collect.safe_id("李娜")
    assert collect.safe_id("Zoë Müller").startswith("Zoe_Muller-")
    assert collect.safe_id("../../etc").startswith("etc-")


def test_latest_download_prefers_the_highest_number_then_the_newest(tmp_path):
    paths = []
    for i, name in enumerate(["A1.ipynb", "A1 (2).ipynb", "A1 (10).ipynb", "Copy of A1.ipynb"]):
        paths.append(tmp_path / name)
        paths[-1].write_text("{}")
        os.utime(paths[-1], (1e9 - i, 1e9 - i))  # the first is the newest
    best, why = collect.latest_download(paths)
    assert best.name == "A1 (10).ipynb" and "highest download number (10)" in why
    best, why = collect.latest_download([paths[0], paths[3]])
    assert best.name == "A1.ipynb" and "the newest" in why


def test_sandbox_command_lines():
    limits = sandbox.Limits(memory_mb=2048, tasks=64, shm_mb=16)
    argv = sandbox.bwrap_argv(
        ["python", "x.py"], Path("/w/alice"), {"/venv": "/venv"}, {"A": "1"}, limits
    )
    joined = " ".join(argv)
    assert "--ro-bind / /" not in joined and "--bind / " not in joined
    for flag in (
        "--unshare-all",
        "--disable-userns",
        "--new-session",
        "--die-with-parent",
        "--clearenv",
    ):
        assert flag in argv
    assert "--bind /w/alice /course" in joined and "--ro-bind /venv /venv" in joined
    assert f"--size {16 * 2**20} --tmpfs /dev/shm" in joined and argv[-3:] == [
        "--",
        "python",
        "x.py",
    ]
    assert "--setenv A 1" in joined
    # tmpfs /tmp first: a virtual environment under /tmp (a CI clone) must stay visible
    assert joined.index("--tmpfs /tmp") < joined.index("--ro-bind /venv /venv")
    unit = sandbox.systemd_argv(limits, "nst-grade-x")
    assert unit[:4] == ["systemd-run", "--user", "--scope", "--quiet"]
    assert "MemoryMax=2048M" in unit and "MemorySwapMax=0" in unit and "TasksMax=64" in unit


def test_without_a_sandbox_grading_refuses_in_one_sentence(course, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(
        InputError, match="bubblewrap is not installed: run `sudo apt-get install bubblewrap`"
    ):
        worker.sandbox_mode(unsafe=False)
    assert worker.sandbox_mode(unsafe=True) == "unsafe"


def test_wall_limit_kills_a_submission_that_ignores_interrupts(course, tmp_path):
    _sandbox_or_skip()
    sol = _read(course / "source" / "T1" / "T1.ipynb")
    stubborn = _append(
        sol,
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        after="hidden_gram",
    )
    subs = tmp_path / "subs"
    _submit(subs, "stubborn", stubborn)
    _submit(subs, "good", sol)
    out = tmp_path / "out"
    run = _grade(course, subs, out, "--timeout", str(CELL_S), "--wall", str(3 * CELL_S))
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(out)
    assert rows["good"]["total"] == "6"
    assert (rows["stubborn"]["total"], rows["stubborn"]["status"]) == ("3", "timeout"), rows[
        "stubborn"
    ]
    assert "the exercises recorded before it keep their points" in rows["stubborn"]["note"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["T9", "{subs}"], "unknown assignment 'T9'"),
        (["T1", "{missing}"], "does not exist"),
    ],
)
def test_bad_input_gives_one_sentence(course, tmp_path, args, message):
    subs = tmp_path / "subs"
    _submit(subs, "a", _read(course / "source" / "T1" / "T1.ipynb"))
    args = [a.format(subs=subs, missing=tmp_path / "nope") for a in args]
    cmd = [*GRADE, *args, "--out", str(tmp_path / "o"), "--course", str(course)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1
    assert message in run.stderr and run.stderr.count("\n") == 1, run.stderr


# --- the real assignments (assignments/source/<A>/) ----------------------------------------

ASSIGNMENTS = ROOT / "assignments"
REAL = sorted(p.name for p in (ASSIGNMENTS / "source").glob("*") if any(p.glob("*.ipynb")))


def _release_of(name: str) -> dict[str, nbformat.NotebookNode]:
    """The student notebooks of assignment ``name``, as committed."""
    return {p.stem: _read(p) for p in sorted((ASSIGNMENTS / "release" / name).glob("*.ipynb"))}


def _submit_all(folder: Path, student: str, notebooks: dict[str, nbformat.NotebookNode]) -> None:
    for stem, nb in notebooks.items():
        _write(folder / student, f"{stem}.ipynb", nb)


FIRST_ANSWER_CALLS = {  # each assignment's first exercise answered by calling what its test blocks
    "load_and_preprocess": "nst.load_image(path, long_side=long_side)",
    "balanced_layer_weights": (
        "__import__('nst.checks.assignment_checks').checks.assignment_checks"
        ".balanced_weights_of(model, img, style_grams)"
    ),
    "my_schedule": (
        "list(zip(nst.recipe.scale_sizes(size, 2, 16), nst.recipe.split_steps(budget, 2)))"
    ),
    "make_extractor": "lambda img: nst.extract_features(nst.load_vgg19(), img, names)",
}


def _first_answer_calling_nst(nb: nbformat.NotebookNode) -> tuple[str, nbformat.NotebookNode]:
    """The first exercise's function, and ``nb`` with it answered by calling nst's own."""
    answer = next(c for c in nb.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code")
    function = sorted(defined_functions(answer.source))[0]
    reference = FIRST_ANSWER_CALLS.get(function)
    calls = copy.deepcopy(nb)
    args = ", ".join(a.arg for a in __import__("ast").parse(answer.source).body[-1].args.args)
    body = reference or f"nst.{function}({args})"
    calls.cells[
        calls.cells.index(answer)
    ].source = f"import nst as _n\nnst = _n\ndef {function}({args}):\n    return {body}"
    return function, calls


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_real_assignment_solution_full_marks_release_zero(name, tmp_path):
    _sandbox_or_skip()
    source = {p.stem: _read(p) for p in sorted((ASSIGNMENTS / "source" / name).glob("*.ipynb"))}
    subs = tmp_path / "subs"
    _submit_all(subs, "solution", source)
    _submit_all(subs, "release", _release_of(name))
    ((stem, nb),) = source.items()
    function, calls = _first_answer_calling_nst(nb)
    _submit_all(subs, "calls_reference", {stem: calls})
    out = tmp_path / "out"
    cmd = [*GRADE, name, str(subs), "--out", str(out), "--jobs", "2"]
    run = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NST_COURSE_SECRET": "x"}
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(out)
    manual = sum(
        nbgrader_meta(c)["points"]
        for nb in source.values()
        for c in nb.cells
        if nbgrader_meta(c).get("grade") and nbgrader_meta(c).get("solution")
    )
    assert float(rows["solution"]["total"]) == float(rows["solution"]["max"]) - manual, rows[
        "solution"
    ]
    note = rows["solution"]["note"]
    by_hand = [
        nbgrader_meta(c)["grade_id"]
        for nb in source.values()
        for c in nb.cells
        if nbgrader_meta(c).get("grade") and nbgrader_meta(c).get("solution")
    ]
    assert note == "; ".join(f"{g} needs manual grading" for g in by_hand)
    assert (rows["release"]["total"], rows["release"]["status"]) == ("0", "graded"), rows["release"]
    row = rows["calls_reference"]
    metas = [nbgrader_meta(c) for c in nb.cells]
    lost = sum(m.get("points", 0) for m in metas if m.get("grade_id") in _tests_of(function))
    assert float(row["total"]) == float(rows["solution"]["total"]) - lost, row
    assert f"{function} calls nst's" in row["note"], row


# A4's functions call one another: a blocked call in one costs the exercises that use it too.
USED_BY = {"make_extractor": ("transfer",), "gram": ("losses", "transfer"), "losses": ("transfer",)}


def _tests_of(function: str) -> set[str]:
    """The graded cells a wrong ``function`` scores 0 in: its own and those of its users."""
    return {f"{p}_{f}" for f in (function, *USED_BY.get(function, ())) for p in ("check", "hidden")}


REFERENCE_CALLS = {  # each exercise answered by nst's own function under another name
    "load_and_preprocess": "from nst import images as R\n    return R.load_image(path, long_side)",
    "receptive_field": (
        "from nst.vgg import receptive_field as R, LAYER_TABLE\n"
        "    return R(LAYER_TABLE[len(layers) - 1][1])"
    ),
    "channel_covariance": (
        "import nst.checks.assignment_checks as R\n    return R.covariance_of(feats)"
    ),
    "balanced_layer_weights": (
        "import importlib\n    R = importlib.import_module('nst.checks.assignment_checks')\n"
        "    return R.balanced_weights_of(model, img, style_grams)"
    ),
    "pareto_front": (
        "from nst.checks.assignment_checks import pareto_names as R\n    return R(results)"
    ),
    "my_schedule": (
        "import nst.recipe as R\n"
        "    return list(zip(R.scale_sizes(size, 2, 16), R.split_steps(budget, 2)))"
    ),
    "make_extractor": (
        "import nst.vgg as R\n    return lambda img: R.extract_features(R.load_vgg19(), img, names)"
    ),
    "gram": "from nst.losses import gram_matrix as R\n    return R(feats)",
    "losses": (
        "import nst as R\n"
        "    content = R.content_loss(gen_feats[layers['content']], targets['content'])\n"
        "    style = R.style_loss({n: gen_feats[n] for n in layers['style']}, targets['style'])\n"
        "    tv = R.tv_loss(gen_img)\n"
        "    total = weights['content'] * content + weights['style'] * style + weights['tv'] * tv\n"
        "    return {'total': total, 'content': content, 'style': style, 'tv': tv}"
    ),
    "transfer": (
        "import nst as R\n"
        "    return R.stylize(content_img, style_img, size=size, steps=steps, sizes=[size]), []"
    ),
}


CORE_CALLS = {  # answered by the nst helper that does the exercise's work, not its whole function
    "channel_covariance": (
        "import nst\n    mu = feats.mean(dim=(2, 3))\n"
        "    return nst.gram_matrix(feats) - mu[:, :, None] * mu[:, None, :]"
    ),
    "balanced_layer_weights": (
        "from nst.checks.assignment_checks import gradient_norms as R\n"
        "    inverse = {k: 1 / g for k, g in R(model, img, style_grams).items()}\n"
        "    return {k: v / sum(inverse.values()) for k, v in inverse.items()}"
    ),
    "my_schedule": (
        "from nst.recipe import split_steps as R\n"
        "    return list(zip((size // 2, size), R(budget, 2)))"
    ),
}


def real_corpus(name: str) -> dict[str, tuple[object, float, str]]:
    """Honest and hostile submissions of a real assignment: {name: (notebook, score, note)}."""
    (source,) = [_read(p) for p in sorted((ASSIGNMENTS / "source" / name).glob("*.ipynb"))]
    (release,) = _release_of(name).values()
    metas = [nbgrader_meta(c) for c in source.cells]
    manual = sum(m["points"] for m in metas if m.get("grade") and m.get("solution"))
    full = sum(m.get("points", 0) for m in metas if m.get("grade")) - manual
    answers = {
        m["grade_id"]: c
        for m, c in zip(metas, source.cells)
        if m.get("solution") and c.cell_type == "code"
    }
    first = next(m["grade_id"] for m in metas if m.get("locked") and not m.get("grade"))

    def attack(*cells: str) -> nbformat.NotebookNode:
        return _append(release, *cells, after=first)

    filled = copy.deepcopy(release)
    for gid, cell in answers.items():
        filled.cells[_index(filled, gid)].source = cell.source
    bare = copy.deepcopy(filled)
    for cell in bare.cells:
        cell.metadata.pop("nbgrader", None)
    cases = {
        "correct": (source, full, ""),
        "release": (release, 0, "is not written yet"),
        "answered_copy": (filled, full, ""),
        "no_metadata": (bare, full, "found by the function they define"),
        "stderr": (
            _append(
                filled,
                "import sys, warnings\nprint('x', file=sys.stderr)\nwarnings.warn('w')",
                after=first,
            ),
            full,
            "",
        ),
        "hides_errors": (
            attack("get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"),
            0,
            "",
        ),
        "patches_allclose": (attack("import torch\ntorch.allclose = lambda *a, **k: True"), 0, ""),
        "forger": (
            attack(
                "import subprocess, sys\nsleep = 'import time; time.sleep(600)'\n"
                "subprocess.Popen([sys.executable, '-c', sleep], start_new_session=True)"
            ),
            0,
            "",
        ),
    }
    for gid, cell in answers.items():
        (function,) = defined_functions(cell.source)
        header = cell.source[cell.source.index(f"def {function}(") :].split("\n", 1)[0]
        cheat = _set(filled, gid, f"{header}\n    {REFERENCE_CALLS[function]}")
        lost = sum(m.get("points", 0) for m in metas if m.get("grade_id") in _tests_of(function))
        cases[f"calls_{function}"] = (cheat, full - lost, f"{function} calls nst's")
        if function in CORE_CALLS:
            core = _set(filled, gid, f"{header}\n    {CORE_CALLS[function]}")
            cases[f"calls_core_{function}"] = (core, full - lost, f"{function} calls nst's")
    return cases


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NST_GRADE_CORPUS"), reason="make grade-corpus (minutes)")
@pytest.mark.parametrize("name", REAL)
def test_real_assignment_corpus(name, tmp_path):
    _sandbox_or_skip()
    cases = real_corpus(name)
    subs = tmp_path / "subs"
    for case, (nb, *_) in cases.items():
        _submit(subs, case, nb)
    out = tmp_path / "out"
    cmd = [*GRADE, name, str(subs), "--out", str(out), "--jobs", "2"]
    run = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NST_COURSE_SECRET": "x"}
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(out)
    wrong = [
        f"{case}: {rows[case]['total']} (expected {score:g}) {rows[case]['note']!r}"
        for case, (_, score, note) in cases.items()
        if float(rows[case]["total"]) != score or note not in rows[case]["note"]
    ]
    assert not wrong, "\n".join(wrong)
    assert _alive("time.sleep(600)") == []


# --- make bench-grading: 30 generated submissions of A1 (skipped unless NST_BENCH=1) ----------


def generic_corpus(source: nbformat.NotebookNode, release: nbformat.NotebookNode) -> dict:
    """Correct and broken versions of any nbgrader notebook, made by editing its cells."""

    def ids(nb, key):
        return [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c).get(key)]

    solutions = [g for g in ids(source, "solution") if g not in ids(source, "grade")]
    tests = ids(source, "grade")

    def edit(base, fn):
        nb = copy.deepcopy(base)
        fn(nb)
        return nb

    def prefix(gid, code):
        return lambda nb: nb.cells[_index(nb, gid)].__setitem__(
            "source", code + nb.cells[_index(nb, gid)].source
        )

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
            nb.cells[_index(nb, gid)].source = "pass"

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
def test_bench_grading(tmp_path):
    source = _read(sorted((ASSIGNMENTS / "source" / "A1").glob("*.ipynb"))[0])
    release = next(iter(_release_of("A1").values()))
    kinds = generic_corpus(source, release)
    order = ["correct"] * 10 + [k for k in kinds if k != "correct"] * 2
    subs = tmp_path / "subs"
    for i, kind in enumerate(order[:30]):
        _submit(subs, f"s{i:02d}_{kind}", kinds[kind])
    out = tmp_path / "out"
    timeout = os.environ.get("NST_BENCH_TIMEOUT", "60")
    cmd = [
        *GRADE,
        "A1",
        str(subs),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--timeout",
        timeout,
    ]
    start = time.monotonic()
    run = subprocess.run(cmd, text=True, cwd=ROOT, capture_output=True)
    total = time.monotonic() - start
    print(run.stdout)
    assert run.returncode == 0, run.stderr
    rows = _rows(out)
    assert len(rows) == 30
    seconds = sorted(
        float(line.split(" s ")[0].split()[-1])
        for line in run.stdout.splitlines()
        if "_correct-" in line
    )
    median = seconds[len(seconds) // 2]
    print(f"bench: 30 submissions in {total:.1f} s, {total / 30:.1f} s per submission")
    print(f"bench: median per correct submission {median:.1f} s (of {len(seconds)})")
