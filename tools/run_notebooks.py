"""Execute the lesson notebooks in place, time them, and update README's lessons table.

For each ``notebooks/NN_*.ipynb``, in order: stamp its Colab badge and setup cell
(tools/colab_cells.py), run it top to bottom in a fresh ``python3`` kernel with the notebook's
folder as working directory, and save it with its outputs and figures. The wall times go to
notebooks/timings.json, and README.md's table between ``<!-- lessons-table:start -->`` and
``<!-- lessons-table:end -->`` is rewritten from them.

    python -m tools.run_notebooks                  # all of them (what `make notebooks` runs)
    python -m tools.run_notebooks notebooks/01_vgg19_activations.ipynb   # only these;
                                                   # the others keep their recorded times
    python -m tools.run_notebooks --stale          # only those whose record is out of date
    python -m tools.run_notebooks --table-only     # only rewrite README's table

After a successful run whose code cells ran once each, in order, the notebook's metadata gets
``nst.executed_from`` (``nst.provenance.record``): a hash over the ``nst`` modules the kernel had
imported when the run ended, the code cells (the Colab set-up cell excluded) and the data files
the cells name. tests/test_freshness.py fails for a notebook whose record no longer matches.

The table takes, from each notebook, its title (the first ``# ...`` heading after the badge
cell) and its one-line summary (a markdown line starting with ``**In one line:**``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import nbformat

from nst import provenance
from tools.colab_cells import NOTEBOOK_GLOB, is_badge_cell, stamp
from tools.common import (
    NOTEBOOKS,
    README,
    machine_description,
    relative_to_root,
    write_notebook,
)

TIMINGS = NOTEBOOKS / "timings.json"
TABLE_START = "<!-- lessons-table:start -->"
TABLE_END = "<!-- lessons-table:end -->"
ONE_LINE = "**In one line:**"
TIMEOUT_S = 600  # per cell
# Run in the kernel after the lesson (then removed): which modules had it imported?
IMPORTED = "from nst.provenance import imported_nst_files as _f; print(*_f(), sep='\\n')"


class NotebookFailed(Exception):
    pass


def _failure(path: Path, nb: nbformat.NotebookNode, index: int | None, error: Exception) -> str:
    """Which cell of ``path`` failed (its first lines) and why, counting cells from 0."""
    cell = nb.cells[index] if index is not None else {}
    label = f"cell {index} (In [{cell.get('execution_count') or ' '}])"
    preview = "\n".join("    " + line for line in cell.get("source", "").splitlines()[:8])
    if hasattr(error, "ename"):  # nbconvert's CellExecutionError: the cell raised
        what = f"{error.ename}: {error.evalue}"
    elif isinstance(error, TimeoutError):  # nbclient's CellTimeoutError is one
        what = f"ran past {TIMEOUT_S} s"
    else:
        what = f"the kernel died ({error})"
    where = f"{relative_to_root(path)} failed in {label}, counting cells from 0 (the badge)"
    return f"{where}:\n{preview}\n{what}"


def _run_cells(nb: nbformat.NotebookNode, path: Path) -> float:
    """Run every cell of ``nb`` in a fresh kernel in ``path``'s folder; the wall time in seconds."""
    from nbclient.exceptions import DeadKernelError
    from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

    runner = ExecutePreprocessor(timeout=TIMEOUT_S, kernel_name="python3", record_timing=False)
    running = {"index": None}  # the cell being run, for the message if it fails

    def on_cell_start(cell: nbformat.NotebookNode, cell_index: int, **_: object) -> None:
        running["index"] = cell_index

    runner.on_cell_start = on_cell_start
    start = time.perf_counter()
    try:
        runner.preprocess(nb, {"metadata": {"path": str(path.parent)}})
    except (CellExecutionError, TimeoutError, DeadKernelError) as error:
        raise NotebookFailed(_failure(path, nb, running["index"], error)) from None
    return time.perf_counter() - start


def _record_run(nb: nbformat.NotebookNode, path: Path) -> None:
    """Store in ``nb``'s metadata what it ran from; NotebookFailed unless its cells ran in order.

    The last cell is the IMPORTED query, which execute() added: it is taken out again.
    """
    query = nb.cells.pop()
    nst_files = "".join(o.get("text", "") for o in query.outputs).split()
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    if counts != list(range(1, len(code) + 1)) or not nst_files:
        raise NotebookFailed(
            f"{relative_to_root(path)}: cells did not run once each, in order: {counts}"
        )
    code_texts = provenance.notebook_code(nb)
    files = nst_files + provenance.named_data_files(code_texts)
    nb.metadata.setdefault("nst", {})["executed_from"] = provenance.record(files, code_texts)


def execute(path: Path) -> float:
    """Run notebook ``path`` in place; its wall time in seconds. NotebookFailed if a cell fails."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # the kernel stores the widgets of this run, if it makes any
    nb.cells.append(nbformat.v4.new_code_cell(IMPORTED))
    seconds = _run_cells(nb, path)
    _record_run(nb, path)
    write_notebook(nb, path)
    return seconds


def is_stale(path: Path) -> bool:
    """True if ``path`` has no record of its run, or its code, modules or data have changed."""
    nb = nbformat.read(path, as_version=4)
    rec = nb.metadata.get("nst", {}).get("executed_from")
    return not provenance.is_current(rec, provenance.notebook_code(nb))


def load_timings() -> dict:
    if TIMINGS.exists():
        return json.loads(TIMINGS.read_text(encoding="utf-8"))
    return {}


def save_timings(timings: dict) -> None:
    TIMINGS.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def lesson_title(nb, filename: str) -> str:
    """The first '# ...' heading after the badge cell, numbered like the file ('01 ...')."""
    number = filename[:2]
    for cell in nb.cells:
        if cell.cell_type != "markdown" or is_badge_cell(cell):
            continue
        for line in cell.source.splitlines():
            if line.startswith("# "):
                title = line[2:].strip().rstrip("#").strip()
                return title if title.startswith(number) else f"{number} {title}"
    return Path(filename).stem.replace("_", " ")


def one_line_summary(nb) -> str:
    """The text after '**In one line:**' in the notebook's markdown, or ''."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            line = line.strip().lstrip(">").strip()
            if line.startswith(ONE_LINE):
                return line[len(ONE_LINE) :].strip()
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def lessons_table(timings: dict) -> str:
    rows = [
        "| lesson | what you learn | minutes here |",
        "| --- | --- | ---: |",
    ]
    for path in sorted(NOTEBOOKS.glob(NOTEBOOK_GLOB)):
        nb = nbformat.read(path, as_version=4)
        seconds = timings.get(path.name)
        minutes = f"{seconds / 60:.1f}" if isinstance(seconds, (int, float)) else "–"
        link = f"[{_cell(lesson_title(nb, path.name))}](notebooks/{path.name})"
        rows.append(f"| {link} | {_cell(one_line_summary(nb))} | {minutes} |")
    machine = timings.get("_machine") or machine_description()
    date = timings.get("_date", "(not yet measured)")
    footer = f"Measured by `make notebooks` on {date}, {machine}."
    return "\n".join(rows) + "\n\n" + footer


def rewrite_readme(table: str) -> bool:
    """Put ``table`` between README's markers; False (with a warning) if they are missing."""
    if not README.exists():
        print(f"warning: {README.name} not found; lessons table not written", file=sys.stderr)
        return False
    text = README.read_text(encoding="utf-8")
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        print(
            f"warning: {README.name} lacks {TABLE_START} ... {TABLE_END}; table not written",
            file=sys.stderr,
        )
        return False
    new = text[: start + len(TABLE_START)] + "\n\n" + table + "\n\n" + text[end:]
    if new != text:
        README.write_text(new, encoding="utf-8")
    return True


def _parser() -> argparse.ArgumentParser:
    """The command line's arguments and options."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.run_notebooks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all lessons)")
    parser.add_argument(
        "--table-only", action="store_true", help="run nothing; rewrite README's table"
    )
    parser.add_argument(
        "--stale", action="store_true", help="run only the notebooks whose record is out of date"
    )
    return parser


def chosen_notebooks(names: list[str], stale: bool) -> list[Path]:
    """The notebooks named (else every lesson), only the stale ones if ``stale``."""
    paths = sorted(Path(name).resolve() for name in names) or sorted(NOTEBOOKS.glob(NOTEBOOK_GLOB))
    if stale:
        paths = [p for p in paths if is_stale(p)]
        print(f"stale: {', '.join(p.name for p in paths) or 'none'}")
    return paths


def run_all(paths: list[Path], timings: dict) -> bool:
    """Stamp and run each notebook, recording its time in ``timings``; False if one fails."""
    machine = machine_description()
    for path in paths:
        if stamp(path):
            print(f"stamped Colab cells in {path.name}")
        print(f"running {path.name} ...", flush=True)
        try:
            seconds = execute(path)
        except NotebookFailed as failure:
            print(f"\nFAILED: {failure}", file=sys.stderr)
            print("The notebook was left as it was; fix it and run again.", file=sys.stderr)
            return False
        print(f"  {seconds:.1f} s ({seconds / 60:.1f} min)", flush=True)
        timings[path.name] = round(seconds, 1)
        timings["_machine"] = machine
        timings["_date"] = datetime.date.today().isoformat()
        save_timings(timings)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in args.notebooks:
        if not Path(name).is_file():
            parser.error(f"no such notebook: {Path(name).resolve()}")
    paths = chosen_notebooks(args.notebooks, args.stale)
    timings = load_timings()
    if not args.table_only:
        if not paths and not args.stale:
            print(f"no notebooks matching {NOTEBOOK_GLOB} in {NOTEBOOKS}")
        if not run_all(paths, timings):
            return 1
    if rewrite_readme(lessons_table(timings)):
        print(f"updated the lessons table in {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
