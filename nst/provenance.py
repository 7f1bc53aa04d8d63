"""What a committed result was made from: a hash over the files (and code) that made it.

Every committed output (a lesson's stored outputs, the README's images, the benchmark's figures)
carries a record ``{"sha256": ..., "files": [...]}``: the ``nst`` modules the run had imported,
the bundled data files it named, and for a notebook its code cells. When any of them changes,
the record no longer matches (``is_current``) and the tests name the command that re-makes it.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (nst is installed editable)
PACKAGE = Path(__file__).resolve().parent


def imported_nst_files() -> list[str]:
    """The ``nst`` modules this process has imported, as paths relative to the repository."""
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and PACKAGE in Path(path).resolve().parents:  # nst/*.py and its subpackages
            files.add(Path(path).resolve().relative_to(ROOT).as_posix())
    return sorted(files)


def digest(files: Iterable[str], texts: Iterable[str] = ()) -> str:
    """sha256 over each file's name and bytes (paths relative to the repository), then ``texts``."""
    h = hashlib.sha256()
    for name in sorted(files):
        path = ROOT / name
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes() if path.is_file() else b"(missing)")
        h.update(b"\0")
    for text in texts:
        h.update(text.encode() + b"\0")
    return h.hexdigest()


def record(files: Iterable[str], texts: Iterable[str] = ()) -> dict[str, object]:
    """``{"sha256": digest(files, texts), "files": sorted(files)}``, stored beside a result."""
    files = sorted(set(files))
    return {"sha256": digest(files, texts), "files": files}


def run_record(used: Iterable[Path]) -> dict[str, object]:
    """The record of a run in this process: the ``nst`` modules it imported, the ``used`` files."""
    return record(imported_nst_files() + [Path(p).relative_to(ROOT).as_posix() for p in used])


def is_current(rec: object, texts: Iterable[str] = ()) -> bool:
    """True if ``rec`` (a ``record``) still matches its files and ``texts`` as they are now."""
    if not isinstance(rec, dict) or not isinstance(rec.get("files"), list):
        return False
    return rec.get("sha256") == digest(rec["files"], texts)


def data_files() -> list[str]:
    """The files under ``data/`` (paths relative to the repository), ``CREDITS.md`` excluded."""
    folder = ROOT / "data"
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "CREDITS.md" and not p.name.startswith(".")
    )


def notebook_code(nb: dict) -> list[str]:
    """The sources of a notebook's code cells, its Colab set-up cell excluded."""
    return [
        "".join(cell["source"])
        for cell in nb["cells"]
        if cell["cell_type"] == "code" and "colab-setup" not in cell["metadata"].get("tags", [])
    ]


def named_data_files(code: Iterable[str]) -> list[str]:
    """The data files that ``code`` names in a string: ``"chelsea"``, ``"bench.csv"``, ..."""
    strings = set()
    for text in code:
        strings.update(a or b for a, b in re.findall(r'"([^"\n]*)"|\'([^\'\n]*)\'', text))
    return [
        name
        for name in data_files()
        if {Path(name).name, Path(name).stem, Path(name).relative_to("data").as_posix()} & strings
    ]
