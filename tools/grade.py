"""Grade a folder of submitted notebooks with nbgrader, each one in a throwaway course directory.

    python tools/grade.py A1 submissions/A1 --out grades/A1            # what `make grade` runs
    python tools/grade.py A1 submissions/A1 --out grades/A1 --jobs 2 --timeout 120

ASSIGNMENT is a folder name under ``<course>/source/`` (``--course``, default ``assignments/``) or
a path to such a folder. SUBMISSIONS holds one notebook per student, ``alice.ipynb``, or one
folder per student, ``alice/<any name>.ipynb``; the student id is the file or folder name.

For each submission, in a fresh temporary nbgrader course built from the reference notebooks:

1. the notebook is read and its nbgrader cells are put back into the assignment's order: a deleted
   graded or read-only cell is restored from the release, a duplicated one is graded from its last
   copy (nbgrader's own rule; the other copies run as plain cells), cells the student added travel
   with the cell above them. nbgrader then overwrites every read-only cell (visible and hidden
   tests) with the source version, so edited tests grade as the originals;
2. ``nbgrader autograde`` and ``generate_feedback`` run in a child process with a memory limit
   (RLIMIT_DATA: private writable memory, which torch's 3 GB of reserved-but-unused address space
   does not count against, unlike RLIMIT_AS), a per-cell timeout (nbgrader interrupts the cell and
   runs the rest of the notebook) and a wall-clock limit for the whole submission (the child, its
   kernel and everything they started are killed). The kernel runs on the CPU
   (CUDA_VISIBLE_DEVICES is emptied) so scores and limits are the same on every machine;
3. the points per graded cell come from the gradebook, capped at the reference maxima.

Outputs in OUT: ``grades.csv`` (student, total, max, one column per graded cell, status, note:
one line per problem found), ``feedback/<student>.html`` and ``autograded/<student>.ipynb``.

The reference files (source and release notebooks), the submissions and the results already
written are checked by SHA-256 after every submission and at the end. A change is reported
loudly, restored from the copy taken before grading, noted against the submission(s) graded
meanwhile, and the exit status is 3. This is a throwaway copy, not a security sandbox: the
student's code runs as you. Exit status: 0 graded, 1 bad input, 3 files changed during grading.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import csv
import hashlib
import html
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COURSE = ROOT / "assignments"
CELL_TIMEOUT_S = 300  # optimisation cells run for minutes on a laptop CPU
WALL_LIMIT_S = 900
# `import torch` (CUDA build) reserves ~3.2 GB of address space but uses ~0.8 GB of private data
# memory, nst + the VGG19 ~1.0 GB; 3000 MB of RLIMIT_DATA leaves ~2 GB for the student's tensors.
MEMORY_MB = 3000
TOKEN_VAR = "NST_GRADE_TOKEN"
STATUS_TAMPERED = "tampered"


class InputError(Exception):
    """Bad command-line input, reported as one sentence."""


@dataclass
class Submission:
    """One student's submission: id, notebook files, and what grading found."""

    student: str
    files: list[Path]
    scores: dict[str, float] = field(default_factory=dict)
    status: str = "graded"
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Reference:
    """The assignment as generated once: course files in memory, release notebooks, maxima."""

    assignment: str
    files: dict[str, bytes]
    notebooks: list[str]
    release: dict[str, nbformat.NotebookNode]
    source: dict[str, nbformat.NotebookNode]
    cells: list[tuple[str, str, float]]  # (notebook, grade_id, max points), in notebook order

    def column(self, notebook: str, grade_id: str) -> str:
        """The CSV column of a graded cell: its grade id, prefixed by the notebook if several."""
        return grade_id if len(self.notebooks) == 1 else f"{notebook}:{grade_id}"


# --- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description="Grade a folder of submitted notebooks with nbgrader, each in a throwaway copy."
    )
    p.add_argument("assignment", help="assignment name under COURSE/source (A1) or its folder")
    p.add_argument("submissions", type=Path, help="folder of <student>.ipynb or <student>/*.ipynb")
    p.add_argument("--out", type=Path, required=True, help="folder for grades.csv and feedback/")
    p.add_argument("--course", type=Path, default=DEFAULT_COURSE, help="nbgrader course folder")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    p.add_argument("--wall", type=int, default=WALL_LIMIT_S, help="seconds per submission")
    p.add_argument(
        "--memory-mb", type=int, default=MEMORY_MB, help="RLIMIT_DATA per process, 0: none"
    )
    p.add_argument("--jobs", type=int, default=1, help="submissions graded side by side")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    args = p.parse_args(argv)
    for name in ("timeout", "wall", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1.")
    if args.memory_mb < 0:
        p.error("--memory-mb must be 0 (no limit) or more.")
    return args


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
    """A student id usable as a folder name: letters, digits and ._@- only."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name).strip("._") or "student"


def collect(folder: Path) -> list[Submission]:
    """The submissions in ``folder``: ``<student>.ipynb`` files and ``<student>/`` folders."""
    if not folder.is_dir():
        raise InputError(f"the submissions folder {folder} does not exist.")
    found: dict[str, Submission] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            name = path.name
        elif path.suffix == ".ipynb":
            files, name = [path], path.stem
        else:
            continue
        student, n = safe_id(name), 2
        while student in found:
            student, n = f"{safe_id(name)}_{n}", n + 1
        found[student] = Submission(student, files)
    if not found:
        raise InputError(f"no .ipynb submissions in {folder}.")
    return list(found.values())


# --- the reference course, generated once --------------------------------------------------


def course_config(course: Path, timeout: int) -> str:
    """nbgrader_config.py for a throwaway course: the course's own, then our overrides."""
    own = course / "nbgrader_config.py"
    text = own.read_text(encoding="utf-8") if own.is_file() else "c = get_config()  # noqa\n"
    return text + (
        "\n# --- added by tools/grade.py for a throwaway grading copy ---\n"
        "import os as _os\n"
        "c.CourseDirectory.root = _os.path.dirname(_os.path.abspath(__file__))\n"
        "c.CourseDirectory.db_url = 'sqlite:///' + _os.path.join(c.CourseDirectory.root, "
        "'gradebook.db')\n"
        f"c.Execute.timeout = {int(timeout)}\n"
        "c.Execute.interrupt_on_timeout = True\n"
        "c.Execute.raise_on_iopub_timeout = False\n"
        "c.OverwriteCells.add_missing_cells = False\n"
    )


def build_reference(source: Path, assignment: str, course: Path, timeout: int, work: Path):
    """Run generate_assignment once in ``work``; return the course's files in memory."""
    work.mkdir(parents=True)
    shutil.copytree(source, work / "source" / assignment)
    (work / "nbgrader_config.py").write_text(course_config(course, timeout), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", "generate", assignment],
        cwd=work,
        capture_output=True,
        text=True,
        env=worker_env(work, "reference", memory_mb=0, jobs=1),
    )
    result_file = work / "result.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if not result.get("success"):
        detail = (result.get("log", "") + result.get("error", "") + run.stderr).strip()
        raise InputError(
            f"nbgrader could not generate assignment {assignment} from {source}:\n{detail}"
        )
    result_file.unlink()
    files = {
        str(p.relative_to(work)): p.read_bytes()
        for p in sorted(work.rglob("*"))
        if p.is_file() and ".ipynb_checkpoints" not in p.parts
    }
    release_dir = work / "release" / assignment
    notebooks = sorted(p.stem for p in release_dir.glob("*.ipynb"))
    release = {nb: nbformat.read(release_dir / f"{nb}.ipynb", as_version=4) for nb in notebooks}
    source_nbs = {
        nb: nbformat.read(work / "source" / assignment / f"{nb}.ipynb", as_version=4)
        for nb in notebooks
    }
    cells = []
    for nb in notebooks:
        for cell in source_nbs[nb].cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade"):
                cells.append((nb, meta["grade_id"], float(meta.get("points", 0))))
    return Reference(assignment, files, notebooks, release, source_nbs, cells)


# --- repairing a submission's cells --------------------------------------------------------


def nb_meta(cell) -> dict:
    """A cell's nbgrader metadata, or {}."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


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
            kept[gid], current = cell, gid
            ref = ref_cells[gid]
            if nb_meta(ref).get("locked") and cell.get("source") not in (
                ref.source,
                originals.get(gid),
            ):
                edited.append(gid)
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
    fixed.cells = cells
    return fixed, notes


def read_submission(sub: Submission, ref: Reference) -> dict[str, nbformat.NotebookNode] | None:
    """The submission's notebooks by assignment notebook name, repaired; None if unreadable."""
    if not sub.files:
        sub.notes.append("no .ipynb file was submitted; 0 points")
        return None
    chosen: dict[str, Path] = {}
    if len(ref.notebooks) == 1:
        (name,) = ref.notebooks
        exact = [p for p in sub.files if p.stem == name]
        chosen[name] = exact[0] if exact else max(sub.files, key=lambda p: p.stat().st_mtime)
        if len(sub.files) > 1:
            sub.notes.append(f"several notebooks submitted; graded {chosen[name].name}")
    else:
        for name in ref.notebooks:
            match = [p for p in sub.files if p.stem == name]
            if match:
                chosen[name] = match[0]
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
        notebooks[name], notes = repair(nb, ref.release[name], ref.source[name], name)
        sub.notes.extend(notes)
    return notebooks or None


# --- running nbgrader in a limited child process -------------------------------------------


def worker_env(course: Path, token: str, memory_mb: int, jobs: int) -> dict[str, str]:
    """The environment of the worker and its kernel: private HOME and tmp, CPU only, a token."""
    env = dict(os.environ)
    tmp = course / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env.update(
        {
            TOKEN_VAR: token,
            "NST_GRADE_MEMORY_MB": str(memory_mb),
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "IPYTHONDIR": str(tmp / "ipython"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "MPLBACKEND": "Agg",
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    # nbgrader runs the `alembic` command of its own environment, which may not be on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("JPY_PARENT_PID", None)
    return env


def kill_token(token: str) -> int:
    """SIGKILL every process whose environment carries ``token``; how many were killed."""
    needle = f"{TOKEN_VAR}={token}".encode()
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
        except (OSError, ProcessLookupError):
            pass
    return killed


def run_worker(course: Path, ref: Reference, student: str, args) -> tuple[dict, str]:
    """Autograde one prepared course in a child process; its result dict and a failure note."""
    token = uuid.uuid4().hex
    env = worker_env(course, token, args.memory_mb, args.jobs)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "grade", ref.assignment]
    cmd.append(student)
    with open(course / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        note = ""
        try:
            proc.wait(timeout=args.wall)
        except subprocess.TimeoutExpired:
            note = f"stopped after the {args.wall} s limit for a whole submission; 0 points"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            kill_token(token)
            proc.wait()
    result_file = course / "result.json"
    try:
        result = json.loads(result_file.read_text()) if not note else {}
    except (OSError, ValueError):
        result = {}
    if not note and not result:
        tail = (course / "worker.log").read_text(errors="replace").strip().splitlines()[-3:]
        note = "grading stopped without a result (" + " | ".join(tail)[-200:] + "); 0 points"
    return result, note


def set_memory_limit() -> None:
    """Apply NST_GRADE_MEMORY_MB as RLIMIT_DATA to this process and its children."""
    mb = int(os.environ.get("NST_GRADE_MEMORY_MB", "0"))
    if mb > 0:
        limit = mb * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def worker(argv: list[str]) -> int:
    """Child-process side: generate the assignment, or autograde one student; write result.json."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    set_memory_limit()
    course = Path.cwd()
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    api = NbGraderAPI(CourseDirectory(config=cfg), config=cfg)
    mode, assignment = argv[0], argv[1]
    if mode == "generate":
        result = api.generate_assignment(assignment, force=True, create=True)
    else:
        student = argv[2]
        result = api.autograde(assignment, student, force=True, create=True)
        if result.get("success"):
            result["feedback"] = api.generate_feedback(assignment, student, force=True)
            with Gradebook(api.coursedir.db_url) as gb:
                sub = gb.find_submission(assignment, student)
                result["grades"] = [
                    {
                        "notebook": nb.name,
                        "name": g.name,
                        "score": g.score,
                        "max": g.max_score,
                        "manual": bool(g.needs_manual_grade),
                    }
                    for nb in sub.notebooks
                    for g in nb.grades
                ]
    (course / "result.json").write_text(json.dumps(result))
    return 0


# --- grading one submission ----------------------------------------------------------------


def cell_problems(autograded: Path, ref: Reference, notebook: str) -> list[str]:
    """One line per failing graded cell (its error), plus timeouts and memory errors anywhere."""
    try:
        nb = nbformat.read(autograded, as_version=4)
    except Exception:
        return [f"{notebook}: the graded notebook could not be read back"]
    graded = {gid for nbk, gid, _ in ref.cells if nbk == notebook}
    lines, seen = [], set()
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            continue
        ename = errors[0].get("ename", "Error")
        evalue = str(errors[0].get("evalue", "")).strip().splitlines()
        if ename in ("CellTimeoutError", "KeyboardInterrupt") and "timeout" not in seen:
            seen.add("timeout")
            lines.append("a cell ran past the time limit and was interrupted")
        if ename == "MemoryError" and "memory" not in seen:
            seen.add("memory")
            lines.append("a cell ran out of memory (the limit per process was reached)")
        if ename == "DeadKernelError" and "dead" not in seen:
            seen.add("dead")
            lines.append("the kernel died while running a cell")
        gid = nb_meta(cell).get("grade_id") or cell.get("metadata", {}).get("nbgrader", {})
        gid = gid if isinstance(gid, str) else None
        if gid in graded:
            msg = f"{ename}: {evalue[0]}" if evalue else ename
            lines.append(f"{ref.column(notebook, gid)} failed ({msg[:120]})")
    return lines


def grade_one(sub: Submission, ref: Reference, args, work: Path) -> Submission:
    """Grade one submission in its own course under ``work``; fill in scores, status, notes."""
    start = time.monotonic()
    notebooks = read_submission(sub, ref)
    if notebooks is None:
        sub.status = "invalid"
        sub.seconds = time.monotonic() - start
        return sub
    course = work / sub.student
    for rel, data in ref.files.items():
        dest = course / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    submitted = course / "submitted" / sub.student / ref.assignment
    submitted.mkdir(parents=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, submitted / f"{name}.ipynb")
    result, note = run_worker(course, ref, sub.student, args)
    sub.seconds = time.monotonic() - start
    if note:
        sub.status, sub.notes = ("timeout" if "limit" in note else "failed"), sub.notes + [note]
        return sub
    if not result.get("success"):
        sub.status = "failed"
        err = (result.get("log", "") + result.get("error", "")).strip().splitlines()
        last = next((x for x in reversed(err) if x.strip()), "unknown error")
        sub.notes.append(f"nbgrader could not grade it ({last.strip()[:160]}); 0 points")
        return sub
    maxima = {(nb, gid): pts for nb, gid, pts in ref.cells}
    for g in result.get("grades", []):
        key = (g["notebook"], g["name"])
        if key in maxima:
            score = min(float(g["score"] or 0.0), maxima[key])
            sub.scores[ref.column(*key)] = max(score, 0.0)
            if g["manual"]:
                sub.notes.append(f"{ref.column(*key)} needs manual grading")
    for name in notebooks:
        sub.notes.extend(
            cell_problems(
                course / "autograded" / sub.student / ref.assignment / f"{name}.ipynb", ref, name
            )
        )
    if not (result.get("feedback") or {}).get("success"):
        sub.notes.append("nbgrader could not write the feedback file")
    return sub


# --- checksums -----------------------------------------------------------------------------


def snapshot(paths: list[Path]) -> dict[Path, bytes]:
    """The bytes of each file, to compare and restore later."""
    return {p: p.read_bytes() for p in paths if p.is_file()}


def sha(data: bytes) -> str:
    """SHA-256 hex digest."""
    return hashlib.sha256(data).hexdigest()


def verify(saved: dict[Path, str], backup: dict[Path, bytes]) -> list[str]:
    """Files whose SHA-256 changed or that vanished; each is restored from ``backup``."""
    changed = []
    for path, digest in saved.items():
        try:
            now = sha(path.read_bytes())
        except OSError:
            now = None
        if now != digest:
            changed.append(str(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(backup[path])
    return changed


# --- outputs -------------------------------------------------------------------------------


def write_outputs(sub: Submission, ref: Reference, work: Path, out: Path) -> list[Path]:
    """Copy the student's feedback and autograded notebook to ``out``; the files written."""
    written = []
    course = work / sub.student
    for name in ref.notebooks:
        suffix = "" if len(ref.notebooks) == 1 else f"/{name}"
        html_src = course / "feedback" / sub.student / ref.assignment / f"{name}.html"
        nb_src = course / "autograded" / sub.student / ref.assignment / f"{name}.ipynb"
        html_dst = out / "feedback" / f"{sub.student}{suffix}.html"
        nb_dst = out / "autograded" / f"{sub.student}{suffix}.ipynb"
        html_dst.parent.mkdir(parents=True, exist_ok=True)
        if html_src.is_file() and sub.status != "timeout":
            shutil.copyfile(html_src, html_dst)
            if sub.notes:
                page = html_dst.read_text(encoding="utf-8")
                notes = "".join(f"<li>{html.escape(n)}</li>" for n in sub.notes)
                box = f'<div style="border:1px solid #c00;padding:8px"><ul>{notes}</ul></div>'
                html_dst.write_text(page.replace("<body>", "<body>" + box, 1), encoding="utf-8")
        else:
            html_dst.write_text(feedback_page(sub, ref), encoding="utf-8")
        written.append(html_dst)
        if nb_src.is_file():
            nb_dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(nb_src, nb_dst)
            written.append(nb_dst)
    return written


def feedback_page(sub: Submission, ref: Reference) -> str:
    """A minimal feedback page for a submission nbgrader could not grade."""
    total = sum(p for _, _, p in ref.cells)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in sub.notes)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{ref.assignment} feedback</title>"
        f"</head><body><h1>{ref.assignment}: {html.escape(sub.student)}</h1>"
        f"<p>Score: {sum(sub.scores.values()):g} / {total:g}</p><ul>{items}</ul></body></html>\n"
    )


def write_csv(subs: list[Submission], ref: Reference, path: Path) -> None:
    """grades.csv: student, total, max, one column per graded cell, status, note."""
    columns = [ref.column(nb, gid) for nb, gid, _ in ref.cells]
    total_max = sum(p for _, _, p in ref.cells)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "total", "max", *columns, "status", "note"])
        for s in sorted(subs, key=lambda s: s.student):
            scores = [s.scores.get(c, 0.0) for c in columns]
            w.writerow(
                [s.student, f"{sum(scores):g}", f"{total_max:g}"]
                + [f"{x:g}" for x in scores]
                + [s.status, "; ".join(s.notes)]
            )


# --- main ----------------------------------------------------------------------------------


def grade_all(args) -> int:
    """Grade every submission; write the outputs; the exit status."""
    source, assignment = find_source(args.assignment, args.course.resolve())
    subs = collect(args.submissions)
    course_root = source.parent.parent
    references = sorted(p for p in (source.rglob("*")) if p.is_file())
    release_dir = course_root / "release" / assignment
    if release_dir.is_dir():
        references += sorted(p for p in release_dir.rglob("*") if p.is_file())
    references += [f for s in subs for f in s.files]
    backup = snapshot(references)
    saved = {p: sha(b) for p, b in backup.items()}
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    tampered: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nst-grade-") as tmp:
        work = Path(tmp)
        log(f"{assignment}: generating the reference from {source}")
        ref = build_reference(source, assignment, args.course.resolve(), args.timeout, work / "ref")
        shutil.rmtree(work / "ref")
        log(f"{assignment}: grading {len(subs)} submissions ({args.jobs} at a time)")
        since_check: set[str] = set()
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(grade_one, s, ref, args, work): s for s in subs}
            for s in subs:
                since_check.add(s.student)
            for fut in concurrent.futures.as_completed(futures):
                sub = futures[fut]
                try:
                    fut.result()
                except Exception as err:  # a bug of ours must not stop the batch
                    sub.status = "failed"
                    sub.notes.append(f"the grader failed on it ({type(err).__name__}: {err})")
                for path in write_outputs(sub, ref, work, out):
                    backup[path] = path.read_bytes()
                    saved[path] = sha(backup[path])
                changed = verify(saved, backup)
                running = {s.student for f, s in futures.items() if not f.done()} | {sub.student}
                if changed:
                    tampered += changed
                    for other in subs:
                        if other.student in running:
                            other.status = STATUS_TAMPERED
                            other.notes.append(
                                "files outside the grading copy changed while this was graded "
                                f"(restored): {', '.join(changed)}"
                            )
                shutil.rmtree(work / sub.student, ignore_errors=True)
                total = sum(sub.scores.values())
                log(
                    f"  {sub.student:<24} {total:6g} / {sum(p for *_, p in ref.cells):g}"
                    f"  {sub.status:<8} {sub.seconds:6.1f} s  {'; '.join(sub.notes)[:150]}"
                )
    write_csv(subs, ref, out / "grades.csv")
    tampered += verify(saved, backup)
    elapsed = time.monotonic() - t0
    print(
        f"{assignment}: {len(subs)} submissions graded in {elapsed:.1f} s -> {out / 'grades.csv'}"
    )
    if tampered:
        lines = [
            "!" * 78,
            "WARNING: files outside the grading copies changed during grading; each was restored",
            "from the copy taken before grading (see the tampered rows of grades.csv):",
            *(f"  {path}" for path in sorted(set(tampered))),
            "!" * 78,
        ]
        print("\n".join(lines), file=sys.stderr)
        return 3
    print(f"checksums: {len(saved)} reference, submission and result files unchanged")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    args = parse_args(argv)
    try:
        return grade_all(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
