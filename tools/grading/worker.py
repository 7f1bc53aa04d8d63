"""One notebook run in the sandbox: hidden tests swapped for cells that record outputs, then run.

Nothing read back from the sandbox gives points: the executed notebook and the log only make
feedback and notes (score.py gives the points, from the recorded outputs).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from nst.grading import read_regular_file
from tools import sandbox
from tools.common import ROOT
from tools.grading.model import Batch, InputError, Reference, Status, nbgrader_meta
from tools.grading.reference import verdict_for
from tools.grading.report import without_host_paths
from tools.grading.run_notes import run_notes

UNSAFE = "unsafe"  # sandbox.run's mode without a sandbox: resource limits only
RUNNER = ROOT / "tools" / "run_submission.py"  # what the sandbox runs; it imports no tools.*
GRADER_INSIDE = "/grader"  # run_submission.py and hidden_tests.py, read-only
OUTPUTS_INSIDE = "/course/outputs"  # the submission's folder is /course
MAX_NOTEBOOK_BYTES = 100 * 2**20  # an executed notebook read back from a sandbox, at most
MAX_LOG_BYTES = 2**20


def sandbox_mode(unsafe: bool) -> str:
    """ "cgroup1" or "systemd" (tools/sandbox.py), or "unsafe" when asked for; else InputError."""
    try:
        return sandbox.mode()
    except sandbox.SandboxUnavailable as err:
        if unsafe:
            return UNSAFE
        raise InputError(
            f"cannot sandbox the students' code: {err} (or pass --unsafe to run it as you)"
        ) from None


def record_cell(name: str, seed: int, grader: str, outputs: str) -> nbformat.NotebookNode:
    """The cell that replaces a hidden test: it records ``name``'s outputs for the verdict."""
    seeds = {"visible": 0, "hidden": seed}
    return nbformat.v4.new_code_cell(
        "# Hidden tests: your function's outputs on inputs made for you, judged outside your code\n"
        f"import sys as _sys\n_sys.path.insert(0, {grader!r})\n"
        "import hidden_tests as _hidden_tests\nimport nst.grading as _grading\n\n"
        f"_grading.record(_hidden_tests.EXERCISES, {name!r}, globals().get({name!r}), {seeds!r}, "
        f"{outputs!r})"
    )


def with_record_cells(
    nb: nbformat.NotebookNode, ref: Reference, seed: int, grader: str, outputs: str
) -> nbformat.NotebookNode:
    """``nb`` with each hidden-test cell replaced by a record cell that keeps its grade id, and
    each of the hidden tests' GRADING_CELLS (a settings cell) given the grader's source."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id", "")
        if grade_id in ref.grading_cells:
            cell.source = ref.grading_cells[grade_id]
        test = verdict_for(grade_id, ref)
        if test and test[1] == "hidden":
            new = record_cell(test[0], seed, grader, outputs)
            new.metadata = copy.deepcopy(cell.metadata)
            new.metadata["nst_record"] = test[0]
            new.id = cell.get("id", new.id)
            nb.cells[i] = new
    return nb


def sandbox_env(threads: int) -> dict[str, str]:
    """The whole environment inside the sandbox: no variable of the instructor's."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp/home",
        "LANG": "C.UTF-8",
        "PYTHONPATH": "/opt/nst",  # nst and data at a neutral path (before the editable finder)
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "IPYTHONDIR": "/tmp/ipython",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
        "JUPYTER_PLATFORM_DIRS": "1",
        "XDG_CACHE_HOME": "/tmp/cache",
        "CUDA_VISIBLE_DEVICES": "",  # the CPU: the same scores and limits everywhere
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }


def unsafe_env(threads: int, folder: Path) -> dict[str, str]:
    """The environment without a sandbox: the sandbox's, with its private folders in ``folder``."""
    env = sandbox_env(threads) | {"PYTHONPATH": str(ROOT), "HOME": str(folder)}
    for key in ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        env[key] = str(folder / ".tmp" / key.lower())
    return env


def read_only_mounts(ref: Reference) -> dict[str, str]:
    """{host path: sandbox path}: Python, the venv, nst and data, the runner, the hidden tests."""
    mounts = {sys.base_prefix: sys.base_prefix, sys.prefix: sys.prefix}
    mounts[str(ROOT / "nst")] = "/opt/nst/nst"
    mounts[str(ROOT / "data")] = "/opt/nst/data"
    mounts[str(RUNNER)] = f"{GRADER_INSIDE}/run_submission.py"
    if ref.hidden_file:
        mounts[str(ref.hidden_file)] = f"{GRADER_INSIDE}/hidden_tests.py"
    return mounts


def execute(nb: nbformat.NotebookNode, folder: Path, batch: Batch) -> sandbox.Outcome:
    """Run ``nb`` as ``folder``/run.ipynb in the sandbox; it leaves executed.ipynb and outputs/."""
    nbformat.write(nb, folder / "run.ipynb")
    limits, threads, wall = batch.limits.sandbox(), batch.limits.threads, batch.limits.wall_s
    log = folder.parent / f"{folder.name}.log"
    runner = str(RUNNER) if batch.how == UNSAFE else f"{GRADER_INSIDE}/run_submission.py"
    inner = [sys.executable, runner, "run.ipynb", "executed.ipynb", str(batch.limits.cell_s)]
    if batch.how == UNSAFE:  # no sandbox: an environment of our own and resource limits only
        env = unsafe_env(threads, folder)
        argv = ["env", "-i", *[f"{k}={v}" for k, v in env.items()], *inner]
        return sandbox.run(argv, limits, wall, log, batch.how, cwd=folder)
    mounts, env = read_only_mounts(batch.ref), sandbox_env(threads)
    argv = sandbox.bwrap_argv(inner, folder, mounts, env, limits)
    return sandbox.run(argv, limits, wall, log, batch.how)


def read_back(path: Path, limit: int) -> bytes | None:
    """A file the sandbox wrote, if it is a regular file (no symlink) of 1 to ``limit`` bytes."""
    try:
        return read_regular_file(path, limit) or None
    except (OSError, ValueError):
        return None


def read_executed(folder: Path) -> nbformat.NotebookNode | None:
    """The executed notebook the sandbox left in ``folder``, or None if there is no good one."""
    raw = read_back(folder / "executed.ipynb", MAX_NOTEBOOK_BYTES)
    try:
        return nbformat.reads(raw.decode("utf-8"), as_version=4) if raw else None
    except Exception:  # whatever the sandbox left there
        return None


def last_output(folder: Path, work: Path) -> str:
    """The last line the run printed (from the sandbox's log), without this machine's paths."""
    log = read_back(folder.parent / f"{folder.name}.log", MAX_LOG_BYTES) or b""
    tail = log.decode(errors="replace")
    last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
    return without_host_paths(last.strip(), work)[:160]


@dataclass
class NotebookRun:
    """What came back from running one notebook: the executed notebook, a status, notes."""

    executed: nbformat.NotebookNode | None  # for feedback only: it gives no points
    status: Status  # TIMEOUT if the wall-clock limit stopped it, else GRADED
    notes: list[str]


def run_notebook(nb: nbformat.NotebookNode, folder: Path, batch: Batch, seed: int) -> NotebookRun:
    """Run one repaired notebook in ``folder`` with its hidden tests recording outputs."""
    (folder / "outputs").mkdir(parents=True)
    if batch.how == UNSAFE:  # the paths as they are on this machine
        ref = batch.ref
        grader = str(ref.hidden_file.parent) if ref.hidden_file else "."
        prepared = with_record_cells(nb, ref, seed, grader, str(folder / "outputs"))
    else:
        prepared = with_record_cells(nb, batch.ref, seed, GRADER_INSIDE, OUTPUTS_INSIDE)
    outcome = execute(prepared, folder, batch)
    executed = read_executed(folder)
    notes = run_notes(executed, outcome, batch.limits)
    if executed is None and not outcome.wall_exceeded:  # say why, from the sandbox's log
        notes.append(f"its last output: {last_output(folder, batch.work)}")
    status = Status.TIMEOUT if outcome.wall_exceeded else Status.GRADED
    return NotebookRun(executed, status, notes)
