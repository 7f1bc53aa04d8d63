"""Grade a folder of submitted notebooks, each in a sandbox; points come from verdicts made outside.

    python tools/grade.py A1 submissions/A1 --out grades/A1            # what `make grade` runs
    python tools/grade.py A1 submissions/A1 --out grades/A1 --jobs 2 --timeout 120

ASSIGNMENT is a folder name under ``<course>/source/`` (``--course``, default ``assignments/``) or
a path to such a folder. SUBMISSIONS holds one notebook per student, ``alice.ipynb``, or one
folder per student, ``alice/<any name>.ipynb``. Every entry gets a row in grades.csv; the student
id is the name made ASCII-safe plus 6 hex digits of its SHA-256 (``alice-2bd806``), the name
itself is in the ``original`` column. Of several downloads of one notebook (``A1.ipynb``,
``A1 (1).ipynb``, ``A1 (2).ipynb``) the highest ``(n)`` is graded, then the newest.

For each submission:

1. its cells are matched to the release's: by nbgrader id, or, where the id is gone, a solution
   cell by the function it defines and a read-only cell by its source. Cells are put back in the
   release's order (deleted ones restored, duplicates graded from the last copy, cells the
   student added travel with the cell above them), every matched cell gets the release's
   metadata and every read-only cell the release's source. Each hidden-test cell becomes a cell
   that records the student's function's outputs on inputs made from this student's seed,
   HMAC-SHA256(course secret, student id) (``nst.grading``, ``source/<A>/hidden_tests.py``);
2. the notebook runs in a sandbox (tools/sandbox.py: bubblewrap, memory and pids cgroups, no
   network, nothing of the course but ``nst/``, ``data/`` and ``hidden_tests.py``, read-only), one
   cell after another (a cell past ``--timeout`` is interrupted, the rest still runs) with a
   wall-clock limit for the whole submission, on the CPU;
3. after the sandbox is gone, the recorded outputs (``.npz``, data only) are judged here by
   ``hidden_tests.py`` against ``nst``'s reference: a hidden test's points come only from that
   verdict; a visible check's points need that verdict on the public inputs and the check cell to
   have run without an error. Nothing else read back from the sandbox counts: stderr, the kernel's
   replies and the executed notebook only make feedback.

Outputs in OUT: ``grades.csv`` (student, original, total, max, one column per graded cell, status,
note: one sentence per problem), ``feedback/<student>.html`` and ``autograded/<student>.ipynb``.
The course secret is ``$NST_COURSE_SECRET`` or the file ``~/.config/nst/course_secret``, made on
first use. Without a sandbox (tools/sandbox.py says why) grading refuses unless ``--unsafe``.
Exit status: 0 graded, 1 bad input or no sandbox, 3 files outside the grading copies changed.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import copy
import csv
import functools
import hashlib
import html
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COURSE = ROOT / "assignments"
CELL_TIMEOUT_S = 300  # optimisation cells run for minutes on a laptop CPU
WALL_LIMIT_S = 900
# `import torch` reserves ~3.2 GB of address space but uses ~0.8 GB of private data memory,
# nst + the VGG19 ~1.0 GB: 3000 MB of RLIMIT_DATA leaves ~2 GB for the student's tensors, and the
# cgroup (everything, shared memory included) allows 1 GB more for the page cache and the executor.
MEMORY_MB = 3000
SECRET_VAR = "NST_COURSE_SECRET"
SECRET_FILE = Path("~/.config/nst/course_secret")
RUNNER = Path(__file__).resolve().with_name("run_submission.py")  # what the sandbox runs
MAX_NOTEBOOK_BYTES = 100 * 2**20  # an executed notebook read back from a sandbox, at most
COPY = re.compile(r"^(?:Copy of )?(?P<stem>.*?)(?: \((?P<n>\d+)\))?$")  # "A1 (2)", "Copy of A1"


class InputError(Exception):
    """Bad command-line input, or no sandbox: reported as one sentence."""


@dataclass
class Submission:
    """One entry of the submissions folder: who, which files, and what grading found."""

    student: str
    original: str
    files: list[Path]
    scores: dict[str, float] = field(default_factory=dict)
    status: str = "graded"
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Reference:
    """The assignment as generated once: release and source notebooks, maxima, hidden tests."""

    assignment: str
    notebooks: list[str]
    release: dict[str, nbformat.NotebookNode]
    source: dict[str, nbformat.NotebookNode]
    cells: list[tuple[str, str, float]]  # (notebook, grade_id, max points), in notebook order
    hidden_file: Path | None  # source/<A>/hidden_tests.py
    exercises: dict  # function name -> nst.grading.Exercise

    def column(self, notebook: str, grade_id: str) -> str:
        """The CSV column of a graded cell: its grade id, prefixed by the notebook if several."""
        return grade_id if len(self.notebooks) == 1 else f"{notebook}:{grade_id}"


# --- command line, secret, sandbox ---------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description="Grade a folder of submitted notebooks, each in a sandbox."
    )
    p.add_argument("assignment", help="assignment name under COURSE/source (A1) or its folder")
    p.add_argument("submissions", type=Path, help="folder of <student>.ipynb or <student>/*.ipynb")
    p.add_argument("--out", type=Path, required=True, help="folder for grades.csv and feedback/")
    p.add_argument("--course", type=Path, default=DEFAULT_COURSE, help="nbgrader course folder")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    p.add_argument("--wall", type=int, default=WALL_LIMIT_S, help="seconds per submission")
    p.add_argument(
        "--memory-mb", type=int, default=MEMORY_MB, help="data memory per process (MB), 0: none"
    )
    p.add_argument("--jobs", type=int, default=1, help="submissions graded side by side")
    p.add_argument(
        "--unsafe",
        action="store_true",
        help="grade without a sandbox: student code runs as you (only for code you trust)",
    )
    p.add_argument("--quiet", action="store_true", help="only the summary")
    args = p.parse_args(argv)
    for name in ("timeout", "wall", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1.")
    if args.memory_mb < 0:
        p.error("--memory-mb must be 0 (no limit) or more.")
    return args


def course_secret() -> bytes:
    """$NST_COURSE_SECRET, else ~/.config/nst/course_secret (made, and named, on first use)."""
    if os.environ.get(SECRET_VAR):
        return os.environ[SECRET_VAR].encode()
    path = SECRET_FILE.expanduser()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        print(
            f"made the course secret {path}: the hidden tests' inputs of each student come from it."
            " Keep it (the same file gives the same inputs) and never commit it.",
            file=sys.stderr,
        )
    return path.read_text().strip().encode()


def sandbox_mode(unsafe: bool) -> str:
    """ "cgroup1" or "systemd" (tools/sandbox.py), or "unsafe" when asked for; else InputError."""
    try:
        return sandbox.mode()
    except sandbox.SandboxUnavailable as err:
        if unsafe:
            return "unsafe"
        raise InputError(
            f"cannot sandbox the students' code: {err} (or pass --unsafe to run it as you)"
        ) from None


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


def safe_id(name: str) -> str:
    """A distinct, traceable id: the name in ASCII-safe letters, "-", 6 hex of its SHA-256."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9_.@-]+", "_", ascii_name).strip("._-")[:40] or "student"
    return f"{base}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:6]}"


def latest_download(files: list[Path]) -> tuple[Path, str]:
    """Of several downloads the highest " (n)", then the newest; and why, if there was a choice."""

    def key(p: Path) -> tuple[int, float]:
        n = COPY.match(p.stem).group("n")
        return (int(n) if n else 0, p.stat().st_mtime)

    best = max(files, key=key)
    if len(files) == 1:
        return best, ""
    n = COPY.match(best.stem).group("n")
    others = ", ".join(sorted(p.name for p in files if p != best))
    why = f"the highest download number ({n})" if n else "the newest"
    if n and sum(1 for p in files if key(p)[0] == int(n)) > 1:
        why += ", then the newest"
    return best, f"graded {best.name}, {why}, of {len(files)} notebooks (also: {others})"


def collect(folder: Path) -> list[Submission]:
    """Every entry of ``folder``: <student>.ipynb files and <student>/ folders; others skipped."""
    if not folder.is_dir():
        raise InputError(f"the submissions folder {folder} does not exist.")
    groups: dict[str, list[Path]] = {}
    subs = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and path.name != ".ipynb_checkpoints":
            files = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            subs.append(Submission(safe_id(path.name), path.name, files))
        elif path.is_file() and path.suffix == ".ipynb":
            groups.setdefault(COPY.match(path.stem).group("stem"), []).append(path)
        elif path.name != ".ipynb_checkpoints":
            sub = Submission(safe_id(path.name), path.name, [], status="skipped")
            sub.notes.append(f"{path.name} is not a notebook (.ipynb): not graded")
            subs.append(sub)
    for name, files in groups.items():
        subs.append(Submission(safe_id(name), name, files))
    seen: dict[str, int] = {}
    for sub in subs:  # a file alice.ipynb beside a folder alice/: both get a row
        seen[sub.student] = seen.get(sub.student, 0) + 1
        if seen[sub.student] > 1:
            sub.student += f"-{seen[sub.student]}"
    if not any(s.files for s in subs):
        raise InputError(f"no .ipynb submissions in {folder}.")
    return sorted(subs, key=lambda s: s.student)


# --- the reference, generated once ---------------------------------------------------------


def load_hidden_tests(path: Path) -> dict:
    """The EXERCISES of an assignment's hidden_tests.py ({} if it has none), imported here."""
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location(f"hidden_tests_{uuid.uuid4().hex}", path)
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(getattr(module, "EXERCISES", {}))


def build_reference(source: Path, assignment: str, course: Path, work: Path) -> Reference:
    """Run nbgrader's generate_assignment once in ``work``; the release, source and hidden tests."""
    work.mkdir(parents=True)
    shutil.copytree(
        source,
        work / "source" / assignment,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "hidden_tests.py"),
    )
    config = course / "nbgrader_config.py"
    if config.is_file():
        shutil.copy(config, work / "nbgrader_config.py")
    command = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment]
    command += ["--force", "--no-db", f"--CourseDirectory.root={work}"]
    run = subprocess.run(command, cwd=work, capture_output=True, text=True)
    release_dir = work / "release" / assignment
    if run.returncode != 0 or not any(release_dir.glob("*.ipynb")):
        detail = (run.stdout + run.stderr).strip()[-2000:]
        raise InputError(
            f"nbgrader could not generate assignment {assignment} from {source}:\n{detail}"
        )
    notebooks = sorted(p.stem for p in release_dir.glob("*.ipynb"))
    release = {nb: nbformat.read(release_dir / f"{nb}.ipynb", as_version=4) for nb in notebooks}
    source_nbs = {nb: nbformat.read(source / f"{nb}.ipynb", as_version=4) for nb in notebooks}
    cells = [
        (nb, nb_meta(c)["grade_id"], float(nb_meta(c).get("points", 0)))
        for nb in notebooks
        for c in source_nbs[nb].cells
        if nb_meta(c).get("grade")
    ]
    hidden_file = source / "hidden_tests.py"
    exercises = load_hidden_tests(hidden_file)
    return Reference(
        assignment, notebooks, release, source_nbs, cells,
        hidden_file if hidden_file.is_file() else None, exercises,
    )  # fmt: skip


def verdict_for(grade_id: str, ref: Reference) -> tuple[str, str] | None:
    """(exercise, "visible" or "hidden") a graded cell's points come from, or None."""
    for part, prefix in (("visible", "check_"), ("hidden", "hidden_")):
        name = grade_id.removeprefix(prefix)
        if grade_id.startswith(prefix) and name in ref.exercises:
            return name, part
    return None


# --- matching a submission's cells to the release ------------------------------------------


def nb_meta(cell) -> dict:
    """A cell's nbgrader metadata, or {}."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def defined_functions(source: str) -> set[str]:
    """The names of the functions a cell defines at its top level (none if it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def match_cells(nb, release, notebook: str) -> list[str]:
    """Give cells that lost their nbgrader metadata the release's, where they match; notes."""
    known = {nb_meta(c).get("grade_id") for c in nb.cells} - {None}
    notes, ambiguous = [], []
    for ref_cell in release.cells:
        meta = nb_meta(ref_cell)
        gid = meta.get("grade_id")
        if not gid or gid in known:
            continue
        free = [c for c in nb.cells if not nb_meta(c) and c.get("cell_type") == ref_cell.cell_type]
        if meta.get("solution") and ref_cell.cell_type == "code":
            names = defined_functions(ref_cell.source)
            found = [c for c in free if names and names <= defined_functions(c.get("source", ""))]
            if len(found) > 1:
                ambiguous.append(gid)
        elif meta.get("locked"):
            found = [c for c in free if c.get("source", "").strip() == ref_cell.source.strip()]
        else:
            found = []
        if found:
            found[-1].setdefault("metadata", {})["nbgrader"] = copy.deepcopy(meta)
            known.add(gid)
            if meta.get("solution"):
                notes.append(gid)
    if notes:
        notes = [f"{notebook}: answer cells without nbgrader metadata found by the function they "
                 f"define: {', '.join(notes)}"]  # fmt: skip
    if ambiguous:
        notes.append(
            f"{notebook}: {', '.join(ambiguous)} defined in several cells; graded the last one"
        )
    return notes


def repair(nb, release, source, notebook: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """Put nbgrader cells back in the release's order, restoring deleted ones; list the fixes."""
    ref_cells = {nb_meta(c)["grade_id"]: c for c in release.cells if nb_meta(c).get("grade_id")}
    originals = {nb_meta(c).get("grade_id"): c.source for c in source.cells}
    order = list(ref_cells)
    last = {}
    for i, cell in enumerate(nb.cells):
        gid = nb_meta(cell).get("grade_id")
        if gid in ref_cells:
            last[gid] = i
    head, kept, attached = [], {}, {gid: [] for gid in order}
    current, notes, dups, unknown, edited = None, [], [], [], []
    for i, cell in enumerate(nb.cells):
        gid = nb_meta(cell).get("grade_id")
        if gid in ref_cells and last[gid] == i:
            ref = ref_cells[gid]
            if nb_meta(ref).get("locked"):  # read-only: exactly the release's cell
                if cell.get("source") not in (ref.source, originals.get(gid)):
                    edited.append(gid)
                cell = copy.deepcopy(ref)
            else:  # the student's answer, with the release's metadata (flags, checksums)
                cell = copy.deepcopy(cell)
                cell.metadata = copy.deepcopy(ref.metadata)
            kept[gid], current = cell, gid
            continue
        if gid is not None:
            cell = copy.deepcopy(cell)
            del cell.metadata["nbgrader"]
            (dups if gid in ref_cells else unknown).append(gid)
        (attached[current] if current else head).append(cell)
    missing = [gid for gid in order if gid not in kept]
    present = [gid for gid in sorted(kept, key=lambda g: last[g])]
    if present != [gid for gid in order if gid in kept]:
        notes.append(f"{notebook}: moved cells were put back in the assignment's order")
    if missing:
        notes.append(
            f"{notebook}: deleted cells restored from the assignment: {', '.join(missing)}"
        )
    if dups:
        dups = ", ".join(sorted(set(dups)))
        notes.append(f"{notebook}: duplicated cells graded from their last copy: {dups}")
    if unknown:
        notes.append(f"{notebook}: cells with unknown nbgrader ids graded as plain cells")
    if edited:
        notes.append(
            f"{notebook}: edited read-only cells graded as the originals: {', '.join(edited)}"
        )
    cells = list(head)
    for gid in order:
        cells.append(kept.get(gid) or copy.deepcopy(ref_cells[gid]))
        cells.extend(attached[gid])
    ids = set()
    for cell in cells:  # copied cells may share an id, which nbformat rejects
        if "id" in cell and cell["id"] in ids:
            cell["id"] = uuid.uuid4().hex[:8]
        ids.add(cell.get("id"))
    fixed = copy.deepcopy(nb)
    fixed.metadata = copy.deepcopy(release.metadata)  # kernel and language: the release's
    fixed.cells = cells
    return fixed, notes


def read_submission(sub: Submission, ref: Reference) -> dict[str, nbformat.NotebookNode] | None:
    """The submission's notebooks by the assignment's notebook names, repaired; None if none."""
    if not sub.files:
        sub.notes.append("no .ipynb file was submitted; 0 points")
        return None
    chosen: dict[str, Path] = {}
    if len(ref.notebooks) == 1:
        chosen[ref.notebooks[0]], why = latest_download(sub.files)
        if why:
            sub.notes.append(why)
    else:
        for name in ref.notebooks:
            match = [p for p in sub.files if COPY.match(p.stem).group("stem") == name]
            if match:
                chosen[name], why = latest_download(match)
                if why:
                    sub.notes.append(why)
            else:
                sub.notes.append(f"{name}.ipynb was not submitted; its cells get 0 points")
    notebooks = {}
    for name, path in chosen.items():
        try:
            nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
            if not isinstance(nb.get("cells"), list):
                raise ValueError("it has no list of cells")
        except Exception as err:  # any unreadable file: JSON, encoding, nbformat
            reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
            sub.notes.append(f"{path.name} is not a readable notebook ({reason}); 0 points")
            continue
        sub.notes.extend(match_cells(nb, ref.release[name], name))
        notebooks[name], notes = repair(nb, ref.release[name], ref.source[name], name)
        sub.notes.extend(notes)
    return notebooks or None


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


def with_record_cells(nb, ref: Reference, seed: int, grader: str, outputs: str):
    """``nb`` with each hidden-test cell replaced by a record cell; the grade ids replaced."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        test = verdict_for(nb_meta(cell).get("grade_id", ""), ref)
        if test and test[1] == "hidden":
            new = record_cell(test[0], seed, grader, outputs)
            new.metadata = copy.deepcopy(cell.metadata)
            new.metadata["nst_record"] = test[0]
            new.id = cell.get("id", new.id)
            nb.cells[i] = new
    return nb


# --- running it in the sandbox -------------------------------------------------------------


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


def read_only_mounts(ref: Reference) -> dict[str, str]:
    """{host path: sandbox path}: Python, the venv, nst and data, the hidden tests."""
    mounts = {sys.base_prefix: sys.base_prefix, sys.prefix: sys.prefix}
    mounts[str(ROOT / "nst")] = "/opt/nst/nst"
    mounts[str(ROOT / "data")] = "/opt/nst/data"
    mounts[str(RUNNER)] = "/grader/run_submission.py"
    if ref.hidden_file:
        mounts[str(ref.hidden_file)] = "/grader/hidden_tests.py"
    return mounts


def run_notebook(nb, folder: Path, ref: Reference, args, how: str) -> sandbox.Outcome:
    """Run ``folder``/run.ipynb in the sandbox; it leaves executed.ipynb and outputs/ there."""
    nbformat.write(nb, folder / "run.ipynb")
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    limits = sandbox.Limits(
        memory_mb=(args.memory_mb + 1024) if args.memory_mb else 16384,
        data_mb=args.memory_mb,
        cpus=float(threads),
    )
    runner = str(RUNNER) if how == "unsafe" else "/grader/run_submission.py"
    inner = [sys.executable, runner, "run.ipynb", "executed.ipynb", str(args.timeout)]
    if how == "unsafe":
        env = sandbox_env(threads) | {"PYTHONPATH": str(ROOT), "HOME": str(folder)}
        for key in ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
            env[key] = str(folder / ".tmp" / key.lower())
        argv = ["env", "-i", *[f"{k}={v}" for k, v in env.items()], *inner]
        return sandbox.run(
            argv, limits, args.wall, folder.parent / f"{folder.name}.log", how, cwd=folder
        )
    argv = sandbox.bwrap_argv(inner, folder, read_only_mounts(ref), sandbox_env(threads), limits)
    return sandbox.run(argv, limits, args.wall, folder.parent / f"{folder.name}.log", how)


def read_back(path: Path, limit: int) -> bytes | None:
    """A file the sandbox wrote, if it is a regular file (no symlink) of at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not (0 < info.st_size <= limit) or not os.path.isfile(f"/proc/self/fd/{fd}"):
            return None
        return f.read(limit + 1)[:limit]


# --- verdicts and notes --------------------------------------------------------------------


def cell_errors(executed) -> dict[str, str]:
    """{grade_id: "Name: message"} for each nbgrader cell of the executed notebook with an error."""
    out = {}
    for cell in executed.cells if executed else []:
        gid = nb_meta(cell).get("grade_id")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if gid and errors:
            evalue = str(errors[0].get("evalue", "")).strip().splitlines()
            out[gid] = f"{errors[0].get('ename', 'Error')}: {evalue[0] if evalue else ''}"[:160]
    return out


def run_notes(executed, timeout: int, outcome: sandbox.Outcome, args) -> list[str]:
    """What happened while the notebook ran: time limits, memory, a dead kernel, a lost notebook."""
    notes = []
    if outcome.wall_exceeded:
        notes.append(
            f"stopped after the {args.wall} s limit for a whole submission; "
            "the exercises recorded before it keep their points"
        )
    if outcome.out_of_memory:
        notes.append(f"ran out of memory (the limit is {args.memory_mb + 1024} MB in all)")
    if executed is None:
        if not outcome.wall_exceeded:
            notes.append("the notebook could not be run to the end (nothing came back from it)")
        return notes
    ended = executed.metadata.get("nst_grading", {}).get("ended", "")
    if ended and ended != "complete":
        notes.append(f"{ended} while running the notebook; the exercises recorded before keep "
                     "their points")  # fmt: skip
    said = set()
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            ename, took = out.get("ename", ""), cell_seconds(cell)
            if ename == "KeyboardInterrupt" and took is not None and took >= timeout - 1:
                key, text = "timeout", f"a cell ran past the {timeout} s limit and was interrupted"
            elif ename == "KeyboardInterrupt":
                key, text = "interrupt", "a cell raised KeyboardInterrupt (not a time limit)"
            elif ename == "MemoryError":
                key, text = "memory", "a cell ran out of memory (MemoryError)"
            else:
                continue
            if key not in said:
                said.add(key)
                notes.append(text)
    return notes


def cell_seconds(cell) -> float | None:
    """How long a cell ran, from nbclient's timing metadata (None if unknown)."""
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError, AttributeError, TypeError):
        return None
    return (end - start).total_seconds()


def score(
    sub: Submission, ref: Reference, notebook: str, folder: Path, executed, seed: int
) -> dict:
    """Points per graded cell of ``notebook`` from verdicts on the recorded outputs; verdicts."""
    from nst.grading import VISIBLE_SEED, judge, load_outputs

    errors = cell_errors(executed)
    verdicts: dict[str, str | None] = {}
    failed: dict[str, list[str]] = {}  # problem -> the columns it cost
    for nb, gid, points in ref.cells:
        if nb != notebook:
            continue
        column = ref.column(nb, gid)
        meta = next(
            (nb_meta(c) for c in ref.source[nb].cells if nb_meta(c).get("grade_id") == gid), {}
        )
        test = verdict_for(gid, ref)
        if meta.get("solution"):
            sub.scores[column] = 0.0
            sub.notes.append(f"{column} needs manual grading")
            continue
        if test is None:
            sub.scores[column] = 0.0
            verdicts[column] = "no verdict for this cell in hidden_tests.py: 0 points"
            sub.notes.append(f"{column}: {verdicts[column]}")
            continue
        name, part = test
        path = folder / "outputs" / f"{name}.npz"
        try:
            recorded = load_outputs(path).get(part) if path.exists() or path.is_symlink() else None
        except (OSError, ValueError) as err:
            recorded = {"error": f"{name}'s recorded outputs could not be read ({err})"}
        seed_used = VISIBLE_SEED if part == "visible" else seed
        problem = judge(ref.exercises[name], name, seed_used, recorded, hidden=part == "hidden")
        if problem is None and part == "visible" and gid in errors:
            problem = f"the check cell failed ({errors[gid]})"
        verdicts[column] = problem
        sub.scores[column] = 0.0 if problem else points
        if problem:
            failed.setdefault(problem, []).append(column)
    for problem, columns in failed.items():  # a visible and a hidden test failing alike: one note
        sub.notes.append(f"{' and '.join(columns)} failed ({problem})")
    return verdicts


# --- feedback ------------------------------------------------------------------------------


def host_paths(work: Path) -> list[tuple[str, str]]:
    """Absolute paths of this machine that feedback must not show, and what replaces each."""
    pairs = [
        (str(work), "<grading>"), (str(ROOT / ".venv"), "<venv>"), (sys.prefix, "<venv>"),
        (str(ROOT), "<nst>"), (sys.base_prefix, "<python>"), (str(Path.home()), "~"),
    ]  # fmt: skip
    return sorted({(a, b) for a, b in pairs if len(a) > 1}, key=lambda p: -len(p[0]))


def without_host_paths(text: str, work: Path) -> str:
    """``text`` with this machine's absolute paths replaced by neutral names."""
    for path, name in host_paths(work):
        text = text.replace(path, name)
    return text


def feedback_notebook(executed, ref: Reference, notebook: str, sub: Submission, verdicts: dict):
    """The executed notebook for the student: record cells show their verdicts, not their code."""
    nb = copy.deepcopy(executed)
    nb.metadata.pop("nst_grading", None)
    maxima = {ref.column(n, g): p for n, g, p in ref.cells if n == notebook}

    def line(column: str) -> str:
        got, problem = sub.scores.get(column, 0.0), verdicts.get(column)
        mark = "✗" if problem else "✓"
        return f"{mark} {column}: {got:g} / {maxima[column]:g}" + (
            f": {problem}" if problem else ""
        )

    for cell in nb.cells:
        name = cell.get("metadata", {}).get("nst_record")
        gid = nb_meta(cell).get("grade_id")
        column = ref.column(notebook, gid) if gid else None
        if name:
            cell.source = "# Hidden tests: run on inputs made for you and judged outside your code."
            cell.outputs = []
        if column in verdicts:
            cell.outputs.append(
                nbformat.v4.new_output("stream", name="stdout", text=line(column) + "\n")
            )
    return nb


@functools.lru_cache(maxsize=1)
def html_exporter():
    """One nbconvert HTML exporter (its templates load once) and a lock to share it."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="classic"), threading.Lock()


def feedback_page(sub: Submission, ref: Reference, executed: dict, work: Path) -> str:
    """The feedback HTML: score, notes, then each executed notebook (if any came back)."""
    total = sum(p for _, _, p in ref.cells)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in sub.notes)
    head = (
        f"<h1>{html.escape(ref.assignment)}: {html.escape(sub.student)}</h1>"
        f"<p><b>Score: {sum(sub.scores.values()):g} / {total:g}</b> ({html.escape(sub.status)})</p>"
        + (
            f'<div style="border:1px solid #c00;padding:8px"><ul>{items}</ul></div>'
            if items
            else ""
        )
    )
    bodies = []
    for nb in executed.values():
        exporter, lock = html_exporter()
        with lock:
            page, _ = exporter.from_notebook_node(nb)
        bodies.append(page)
    if not bodies:
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(ref.assignment)} feedback</title></head>"
            f"<body>{head}</body></html>\n"
        )
    page = bodies[0].replace("<body>", "<body>" + head, 1)
    for extra in bodies[1:]:
        page = page.replace("</body>", extra[extra.find("<body>") + 6 :], 1)
    return without_host_paths(page, work)


# --- grading one submission ----------------------------------------------------------------


def grade_one(
    sub: Submission, ref: Reference, args, how: str, secret: bytes, work: Path, out: Path
):
    """Grade one submission: run each notebook in a sandbox, score from verdicts, write feedback."""
    from nst.grading import seed_for

    start = time.monotonic()
    notebooks = read_submission(sub, ref)
    if notebooks is None:
        sub.status = "invalid"
    seed = seed_for(secret, sub.student)
    executed_nbs = {}
    for name, nb in (notebooks or {}).items():
        folder = work / sub.student / name
        (folder / "outputs").mkdir(parents=True)
        if how == "unsafe":
            grader = str(ref.hidden_file.parent) if ref.hidden_file else "."
            prepared = with_record_cells(nb, ref, seed, grader, str(folder / "outputs"))
        else:
            prepared = with_record_cells(nb, ref, seed, "/grader", "/course/outputs")
        outcome = run_notebook(prepared, folder, ref, args, how)
        raw = read_back(folder / "executed.ipynb", MAX_NOTEBOOK_BYTES)
        try:
            executed = nbformat.reads(raw.decode("utf-8"), as_version=4) if raw else None
        except Exception:  # whatever the sandbox left there
            executed = None
        notes = run_notes(executed, args.timeout, outcome, args)
        if executed is None and not outcome.wall_exceeded:  # say why, from the sandbox's log
            tail = (read_back(folder.parent / f"{folder.name}.log", 2**20) or b"").decode(
                errors="replace"
            )
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
            notes.append(f"its last output: {without_host_paths(last.strip(), work)[:160]}")
        if outcome.wall_exceeded:
            sub.status = "timeout"
        sub.notes.extend(f"{name}: {n}" if len(ref.notebooks) > 1 else n for n in notes)
        verdicts = score(sub, ref, name, folder, executed, seed)
        if executed is not None:
            executed_nbs[name] = feedback_notebook(executed, ref, name, sub, verdicts)
    for nb_name, gid, _ in ref.cells:  # notebooks not submitted or unreadable: 0
        sub.scores.setdefault(ref.column(nb_name, gid), 0.0)
    sub.seconds = time.monotonic() - start
    write_feedback(sub, ref, executed_nbs, work, out)
    shutil.rmtree(work / sub.student, ignore_errors=True)
    return sub


def write_feedback(sub: Submission, ref: Reference, executed: dict, work: Path, out: Path) -> None:
    """OUT/feedback/<student>.html and OUT/autograded/<student>[/<notebook>].ipynb."""
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    page = feedback_page(sub, ref, executed, work)
    (out / "feedback" / f"{sub.student}.html").write_text(page, encoding="utf-8")
    for name, nb in executed.items():
        suffix = "" if len(ref.notebooks) == 1 else f"/{name}"
        dest = out / "autograded" / f"{sub.student}{suffix}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(without_host_paths(nbformat.writes(nb), work), encoding="utf-8")


# --- checksums and the CSV -----------------------------------------------------------------


def verify(backup: dict[Path, bytes]) -> list[str]:
    """Files whose bytes changed or that vanished; each is restored from ``backup``."""
    changed = []
    for path, data in backup.items():
        try:
            same = path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            changed.append(str(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return changed


def write_csv(subs: list[Submission], ref: Reference, path: Path) -> None:
    """grades.csv, written whole and then renamed into place."""
    columns = [ref.column(nb, gid) for nb, gid, _ in ref.cells]
    total_max = sum(p for _, _, p in ref.cells)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "original", "total", "max", *columns, "status", "note"])
        for s in sorted(subs, key=lambda s: s.student):
            scores = [s.scores.get(c, 0.0) for c in columns]
            w.writerow(
                [s.student, s.original, f"{sum(scores):g}", f"{total_max:g}"]
                + [f"{x:g}" for x in scores]
                + [s.status, "; ".join(s.notes)]
            )
    os.replace(tmp, path)


# --- main ----------------------------------------------------------------------------------


def grade_all(args) -> int:
    """Grade every submission; write the outputs; the exit status."""
    source, assignment = find_source(args.assignment, args.course.resolve())
    how = sandbox_mode(args.unsafe)
    subs = collect(args.submissions)
    secret = course_secret()
    course_root = source.parent.parent
    references = [p for p in sorted(source.rglob("*")) if p.is_file()]
    release_dir = course_root / "release" / assignment
    if release_dir.is_dir():
        references += [p for p in sorted(release_dir.rglob("*")) if p.is_file()]
    references += [f for s in subs for f in s.files]
    references += [p for p in sorted((ROOT / "nst").rglob("*.py"))]
    backup = {p: p.read_bytes() for p in references}
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    tampered: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nst-grade-") as tmp:
        work = Path(tmp)
        log(f"{assignment}: generating the reference from {source}")
        ref = build_reference(source, assignment, args.course.resolve(), work / "ref")
        shutil.rmtree(work / "ref")
        unverified = [g for _, g, _ in ref.cells if not verdict_for(g, ref)]
        unverified = [g for g in unverified if not any(
            nb_meta(c).get("solution") for nb in ref.source.values() for c in nb.cells
            if nb_meta(c).get("grade_id") == g)]  # fmt: skip
        if unverified:
            log(f"warning: no verdict in hidden_tests.py for {', '.join(unverified)}: they score 0")
        sandboxed = "in a sandbox" if how != "unsafe" else "WITHOUT a sandbox (--unsafe)"
        todo = [s for s in subs if s.status != "skipped"]
        log(f"{assignment}: grading {len(todo)} submissions {sandboxed} ({args.jobs} at a time)")
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {
                pool.submit(grade_one, s, ref, args, how, secret, work, out): s for s in todo
            }
            for fut in concurrent.futures.as_completed(futures):
                sub = futures[fut]
                try:
                    fut.result()
                except Exception as err:  # a bug of ours must not stop the batch
                    sub.status = "failed"
                    sub.notes.append(f"the grader failed on it ({type(err).__name__}: {err})")
                changed = verify(backup)
                if changed:
                    tampered += changed
                    if args.jobs == 1:  # only this one ran: it did it
                        sub.status = "tampered"
                        sub.notes.append(
                            "changed files outside its grading copy (restored): "
                            + ", ".join(changed)
                        )
                total = sum(sub.scores.values())
                log(
                    f"  {sub.student:<24} {total:6g} / {sum(p for *_, p in ref.cells):g}"
                    f"  {sub.status:<8} {sub.seconds:6.1f} s  {'; '.join(sub.notes)[:150]}"
                )
    for sub in subs:
        if sub.status == "skipped":
            log(f"  {sub.student:<24} skipped: {'; '.join(sub.notes)}")
    write_csv(subs, ref, out / "grades.csv")
    tampered += verify(backup)
    elapsed = time.monotonic() - t0
    print(
        f"{assignment}: {len(subs)} submissions graded in {elapsed:.1f} s -> {out / 'grades.csv'}"
    )
    if tampered:
        lines = [
            "!" * 78,
            "WARNING: files outside the grading copies changed during grading; each was restored",
            "from the copy taken before grading:",
            *(f"  {path}" for path in sorted(set(tampered))),
            "!" * 78,
        ]
        print("\n".join(lines), file=sys.stderr)
        return 3
    print(f"checksums: {len(backup)} course, package and submission files unchanged")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return grade_all(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
