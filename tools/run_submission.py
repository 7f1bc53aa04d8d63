"""Run one submitted notebook cell by cell: what the grading sandbox runs (tools/grade.py).

    python run_submission.py run.ipynb executed.ipynb 300     # 300 s per cell

Errors do not stop the run (the next cell runs); a cell past the time limit is interrupted; a dead
kernel ends it. The executed notebook, with how the run ended in its metadata (``nst_grading``),
is saved even then. Only nbformat and nbclient are imported, not torch: this starts in a moment.
This process makes itself non-dumpable, so the kernel it starts cannot ptrace it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError


def not_traceable() -> None:
    """Make this process non-dumpable: its children cannot ptrace it or read its memory."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):  # not Linux
        pass


def execute(src: str, dst: str, timeout: int) -> str:
    """Run notebook ``src`` cell by cell, errors included, and save it as ``dst``; how it ended."""
    not_traceable()
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,  # per cell: interrupted, then the next cell runs
        interrupt_on_timeout=True,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(src).parent)}},
    )
    ended = "complete"
    try:
        client.execute()
    except DeadKernelError:
        ended = "the kernel died"
    except Exception as err:  # the kernel would not start, or nbclient gave up
        ended = f"the run stopped ({type(err).__name__}: {str(err)[:200]})"
    nb.metadata["nst_grading"] = {"ended": ended}
    nbformat.write(nb, dst)
    return ended


if __name__ == "__main__":
    print(execute(sys.argv[1], sys.argv[2], int(sys.argv[3])))
