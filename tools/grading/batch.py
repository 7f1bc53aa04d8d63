"""Every submission graded, a few side by side, while the course's and nst's files are guarded."""

from __future__ import annotations

import concurrent.futures
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nst.grading import seed_for
from tools.common import ROOT
from tools.grading.collect import collect
from tools.grading.model import Batch, GradingLimits, Reference, Status, Submission
from tools.grading.reference import (
    build_reference,
    cells_without_verdict,
    course_secret,
    find_source,
)
from tools.grading.repair import read_submission
from tools.grading.report import feedback_notebook, write_csv, write_feedback
from tools.grading.score import score
from tools.grading.worker import UNSAFE, run_notebook, sandbox_mode

Log = Callable[[str], None]


def say(text: str) -> None:
    """Print one line of the batch's progress at once."""
    print(text, flush=True)


def grade_one(sub: Submission, batch: Batch) -> Submission:
    """Grade one submission: run each notebook in a sandbox, score from verdicts, write feedback."""
    start, ref = time.monotonic(), batch.ref
    notebooks = read_submission(sub, ref)
    if notebooks is None:
        sub.status = Status.INVALID
    seed = seed_for(batch.secret, sub.student)
    feedback = {}
    for name, nb in (notebooks or {}).items():
        folder = batch.work / sub.student / name
        run = run_notebook(nb, folder, batch, seed)
        if run.status is Status.TIMEOUT:
            sub.status = Status.TIMEOUT
        sub.notes.extend(f"{name}: {n}" if len(ref.notebooks) > 1 else n for n in run.notes)
        verdicts = score(sub, ref, name, folder, run.executed, seed)
        if run.executed is not None:
            feedback[name] = feedback_notebook(run.executed, ref, name, sub, verdicts)
    for column in ref.columns:  # notebooks not submitted or unreadable: 0
        sub.scores.setdefault(column, 0.0)
    sub.seconds = time.monotonic() - start
    write_feedback(sub, ref, feedback, batch.work, batch.out)
    shutil.rmtree(batch.work / sub.student, ignore_errors=True)
    return sub


def guarded_files(source: Path, assignment: str, subs: list[Submission]) -> list[Path]:
    """The files no submission may change: the assignment, the submissions, nst's code."""
    release = source.parent.parent / "release" / assignment
    folders = [source, release] if release.is_dir() else [source]
    files = [p for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()]
    return files + [f for sub in subs for f in sub.files] + sorted((ROOT / "nst").rglob("*.py"))


def restore_changed(backup: dict[Path, bytes]) -> list[str]:
    """Put back every file of ``backup`` whose bytes changed or that vanished; which they were."""
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


def _finish(future: concurrent.futures.Future, sub: Submission) -> None:
    """Wait for ``sub``'s grading; a bug of ours fails that submission, not the batch."""
    try:
        future.result()
    except Exception as err:
        sub.status = Status.FAILED
        sub.notes.append(f"the grader failed on it ({type(err).__name__}: {err})")


def grade_batch(
    batch: Batch, subs: list[Submission], backup: dict[Path, bytes], log: Log
) -> list[str]:
    """Grade the submissions ``limits.jobs`` at a time; the guarded files that changed."""
    jobs, ref = batch.limits.jobs, batch.ref
    todo = [sub for sub in subs if sub.status is not Status.SKIPPED]
    where = "WITHOUT a sandbox (--unsafe)" if batch.how == UNSAFE else "in a sandbox"
    log(f"{ref.assignment}: grading {len(todo)} submissions {where} ({jobs} at a time)")
    tampered: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(grade_one, sub, batch): sub for sub in todo}
        for future in concurrent.futures.as_completed(futures):
            sub = futures[future]
            _finish(future, sub)
            changed = restore_changed(backup)
            tampered += changed
            if changed and jobs == 1:  # only this one ran: it did it
                sub.status = Status.TAMPERED
                sub.notes.append(
                    "changed files outside its grading copy (restored): " + ", ".join(changed)
                )
            log(
                f"  {sub.student:<24} {sub.total:6g} / {ref.max_points:g}"
                f"  {sub.status.value:<8} {sub.seconds:6.1f} s  {'; '.join(sub.notes)[:150]}"
            )
    return tampered


def _reference(source: Path, assignment: str, course: Path, work: Path, log: Log) -> Reference:
    """The reference generated in ``work``; a warning for graded cells without a verdict."""
    log(f"{assignment}: generating the reference from {source}")
    ref = build_reference(source, assignment, course, work / "ref")
    shutil.rmtree(work / "ref")
    unverified = cells_without_verdict(ref)
    if unverified:
        log(f"warning: no verdict in hidden_tests.py for {', '.join(unverified)}: they score 0")
    return ref


def _summary(
    ref: Reference, subs: list[Submission], seconds: float, out: Path, tampered: list[str]
) -> int:
    """Print how grading went; the exit status: 0, or 3 if guarded files had changed."""
    csv_path = out / "grades.csv"
    print(f"{ref.assignment}: {len(subs)} submissions graded in {seconds:.1f} s -> {csv_path}")
    if not tampered:
        return 0
    lines = [
        "!" * 78,
        "WARNING: files outside the grading copies changed during grading; each was restored",
        "from the copy taken before grading:",
        *(f"  {path}" for path in sorted(set(tampered))),
        "!" * 78,
    ]
    print("\n".join(lines), file=sys.stderr)
    return 3


def grade_all(
    assignment: str,
    submissions: Path,
    out: Path,
    course: Path,
    limits: GradingLimits,
    *,
    unsafe: bool = False,
    log: Log = say,
) -> int:
    """Grade every submission and write grades.csv and the feedback; the exit status."""
    course = course.resolve()
    source, assignment = find_source(assignment, course)
    how = sandbox_mode(unsafe)
    subs = collect(submissions)
    secret = course_secret()
    backup = {p: p.read_bytes() for p in guarded_files(source, assignment, subs)}
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nst-grade-") as tmp:
        ref = _reference(source, assignment, course, Path(tmp), log)
        batch = Batch(ref, limits, how, secret, Path(tmp), out)
        tampered = grade_batch(batch, subs, backup, log)
    for sub in subs:
        if sub.status is Status.SKIPPED:
            log(f"  {sub.student:<24} skipped: {'; '.join(sub.notes)}")
    write_csv(subs, ref, out / "grades.csv")
    tampered += restore_changed(backup)
    code = _summary(ref, subs, time.monotonic() - start, out, tampered)
    if code == 0:
        print(f"checksums: {len(backup)} course, package and submission files unchanged")
    return code
