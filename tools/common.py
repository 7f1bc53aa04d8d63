"""What several tools share: the repository's paths, the machine's name, notebook and file I/O."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NOTEBOOKS = ROOT / "notebooks"


def cpu_count() -> int:
    """How many CPU cores this process may use (what `nproc` says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU's model name where the system tells it (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description() -> str:
    """The cores, CPU, GPU and torch version, e.g. '2-core CPU (...), no GPU, torch 2.4.1'."""
    try:
        import torch

        gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
        version = torch.__version__
    except ImportError:
        gpu, version = "no GPU", "not installed"
    return f"{cpu_count()}-core CPU ({cpu_name()}), {gpu}, torch {version}"


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The notebook as Jupyter writes it: JSON indented by 1, sorted keys, a trailing newline."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write notebook ``nb`` to ``path`` as Jupyter does (see notebook_text)."""
    Path(path).write_text(notebook_text(nb), encoding="utf-8")


def files_under(folder: Path) -> dict[str, bytes]:
    """The files of ``folder`` and its subfolders as {relative posix path: bytes}; {} if none.

    Jupyter's .ipynb_checkpoints copies are left out: they are not part of any tree we compare.
    """
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".ipynb_checkpoints" not in p.parts
    }


def relative_to_root(path: Path) -> str:
    """``path`` relative to the repository root where it lies inside it, else as given."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)
