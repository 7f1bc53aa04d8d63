"""The submissions folder -> one Submission per entry, each with a distinct, safe student id."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from tools.grading.model import InputError, Status, Submission

COPY = re.compile(r"^(?:Copy of )?(?P<stem>.*?)(?: \((?P<n>\d+)\))?$")  # "A1 (2)", "Copy of A1"
CHECKPOINTS = ".ipynb_checkpoints"


def stem_of(path: Path) -> str:
    """The notebook a downloaded file is a copy of: "Copy of A1 (2).ipynb" -> "A1"."""
    return COPY.match(path.stem).group("stem")


def safe_id(name: str) -> str:
    """A distinct, traceable id: the name in ASCII-safe letters, "-", 6 hex of its SHA-256."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9_.@-]+", "_", ascii_name).strip("._-")[:40] or "student"
    return f"{base}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:6]}"


def _download_number(path: Path) -> int:
    """The n of a browser's "A1 (n).ipynb", 0 for none."""
    n = COPY.match(path.stem).group("n")
    return int(n) if n else 0


def latest_download(files: list[Path]) -> tuple[Path, str]:
    """Of several downloads the highest " (n)", then the newest; and why, if there was a choice."""

    def key(p: Path) -> tuple[int, float]:
        return (_download_number(p), p.stat().st_mtime)

    best = max(files, key=key)
    if len(files) == 1:
        return best, ""
    n = _download_number(best)
    others = ", ".join(sorted(p.name for p in files if p != best))
    why = f"the highest download number ({n})" if n else "the newest"
    if n and sum(1 for p in files if _download_number(p) == n) > 1:
        why += ", then the newest"
    return best, f"graded {best.name}, {why}, of {len(files)} notebooks (also: {others})"


def _folder_submission(path: Path) -> Submission:
    """A student's folder: every notebook in it (Jupyter's checkpoint copies left out)."""
    files = sorted(p for p in path.rglob("*.ipynb") if CHECKPOINTS not in p.parts)
    return Submission(safe_id(path.name), path.name, files)


def _skipped(path: Path) -> Submission:
    """A row for an entry that is not a notebook: it is listed, not graded."""
    sub = Submission(safe_id(path.name), path.name, [], status=Status.SKIPPED)
    sub.notes.append(f"{path.name} is not a notebook (.ipynb): not graded")
    return sub


def _make_ids_distinct(subs: list[Submission]) -> None:
    """Suffix repeated ids: a file alice.ipynb beside a folder alice/ gets a row each."""
    seen: dict[str, int] = {}
    for sub in subs:
        seen[sub.student] = seen.get(sub.student, 0) + 1
        if seen[sub.student] > 1:
            sub.student += f"-{seen[sub.student]}"


def collect(folder: Path) -> list[Submission]:
    """Every entry of ``folder``: <student>.ipynb files and <student>/ folders; others skipped."""
    if not folder.is_dir():
        raise InputError(f"the submissions folder {folder} does not exist.")
    downloads: dict[str, list[Path]] = {}  # "A1" -> A1.ipynb, A1 (1).ipynb, Copy of A1.ipynb
    subs = []
    for path in sorted(folder.iterdir()):
        if path.name == CHECKPOINTS:
            continue
        if path.is_dir():
            subs.append(_folder_submission(path))
        elif path.is_file() and path.suffix == ".ipynb":
            downloads.setdefault(stem_of(path), []).append(path)
        else:
            subs.append(_skipped(path))
    subs += [Submission(safe_id(name), name, files) for name, files in downloads.items()]
    _make_ids_distinct(subs)
    if not any(sub.files for sub in subs):
        raise InputError(f"no .ipynb submissions in {folder}.")
    return sorted(subs, key=lambda sub: sub.student)


def choose_notebooks(sub: Submission, notebooks: list[str]) -> dict[str, Path]:
    """The file to grade for each of the assignment's notebooks; notes on choices and gaps."""
    if len(notebooks) == 1:  # one notebook: whatever the student named it
        groups = {notebooks[0]: sub.files}
    else:
        groups = {name: [p for p in sub.files if stem_of(p) == name] for name in notebooks}
    chosen = {}
    for name, files in groups.items():
        if not files:
            sub.notes.append(f"{name}.ipynb was not submitted; its cells get 0 points")
            continue
        chosen[name], why = latest_download(files)
        if why:
            sub.notes.append(why)
    return chosen
