"""Committed results show what today's code does.

- every stored source listing (``show_source(obj)``) equals ``obj``'s source now;
- every top-level call of a figure helper stored exactly one image (cells tagged ``exercise``,
  whose calls run only once a learner has filled them in, are exempt);
- every lesson records what it was executed from (``metadata.nst.executed_from``, written by
  ``tools/run_notebooks.py``), and the record still matches its code, ``nst`` and data;
- progress lines end as text (no frozen ``0%|`` bar) and no warning was stored;
- the README's images (``make heroes``), ``data/bench`` (``make bench``) and
  ``data/fast/bench.json`` (``make bench-fast``) carry the same record;
- in a real kernel, a figure helper followed by a ``print`` stores one image, and a progress
  line is stored as its final text.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import nbformat
import pytest

from nst import provenance

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HEROES = sorted((ROOT / "docs" / "heroes").glob("*.json"))
BENCH_SUMMARY = ROOT / "data" / "bench" / "bench_summary.json"
FAST_BENCH = ROOT / "data" / "fast" / "bench.json"
REFRESH = "run `make notebooks STALE=1` to re-execute them"


def _code_cells(path: Path) -> list[tuple[int, dict]]:
    nb = nbformat.read(path, as_version=4)
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _namespace(path: Path) -> dict:
    """The names a notebook imports (``import nst``, ``from nst.recipe import stylize``, ...)."""
    ns: dict = {}
    for _, cell in _code_cells(path):
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), str(path), "exec"), ns)
    return ns


def _plain_text(outputs: list) -> str:
    return "".join(o.get("data", {}).get("text/plain", "") for o in outputs)


def _is_figure_call(node: ast.AST) -> bool:
    """A call of nst.plot's show_* / plot_* helpers (show_source shows code, not a figure)."""
    if not isinstance(node, ast.Call):
        return False
    name = (_dotted(node.func) or "").rsplit(".", 1)[-1]
    return name.startswith(("show_", "plot_")) and name != "show_source"


def _figure_calls(source: str) -> tuple[int, int]:
    """(calls in the cell's top-level statements, calls nested in loops, branches or defs)."""
    tree = ast.parse(source)
    statements = [s for s in tree.body if isinstance(s, (ast.Expr, ast.Assign))]
    top = sum(_is_figure_call(s.value) for s in statements)
    every = sum(_is_figure_call(node) for node in ast.walk(tree))
    return top, every - top


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_shown_sources_are_todays_code(path: Path) -> None:
    ns = _namespace(path)
    wrong = []
    for index, cell in _code_cells(path):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and (_dotted(node.func) or "").endswith("show_source"):
                expr = _dotted(node.args[0])
                obj = eval(expr, ns)  # a name the lesson imported: it must resolve
                if _plain_text(cell.outputs).rstrip("\n") != inspect.getsource(obj).rstrip("\n"):
                    wrong.append(f"cell {index} shows an old or wrong source of {expr}")
    assert not wrong, f"{path.name}: " + "; ".join(wrong) + f"; {REFRESH}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_figure_call_stored_one_image(path: Path) -> None:
    wrong = []
    for index, cell in _code_cells(path):
        if "exercise" in cell.metadata.get("tags", []):
            continue
        top, nested = _figure_calls(cell.source)
        images = sum("image/png" in o.get("data", {}) for o in cell.outputs)
        if (nested == 0 and images != top) or images < top:
            wrong.append(f"cell {index}: {top} figure call(s), {images} image(s) stored")
    assert not wrong, f"{path.name}: " + "; ".join(wrong)


def test_every_lesson_is_a_run_of_todays_code() -> None:
    stale = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        record = nb.metadata.get("nst", {}).get("executed_from")
        if not provenance.is_current(record, provenance.notebook_code(nb)):
            why = "no record of its run" if record is None else "its code, nst or data changed"
            stale.append(f"{path.name} ({why})")
    assert not stale, f"stale lessons: {', '.join(stale)}; {REFRESH}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_frozen_progress_bar_or_warning_stored(path: Path) -> None:
    wrong = []
    for index, cell in _code_cells(path):
        for out in cell.outputs:
            text = out.get("text", "") + _plain_text([out])
            if "0%|" in text or "it/s]" in text:
                wrong.append(f"cell {index} stored a progress bar that never ends")
            if out.get("name") == "stderr":
                wrong.append(f"cell {index} stored a warning or stderr: {text.strip()[:80]!r}")
    assert not wrong, f"{path.name}: " + "; ".join(wrong)


def test_bench_and_readme_images_are_from_todays_code() -> None:
    assert HEROES, "docs/heroes/ holds no results: run `make heroes`"
    stale = []
    results = [(BENCH_SUMMARY, "make bench"), (FAST_BENCH, "make bench-fast")]
    for path, cmd in results + [(p, "make heroes") for p in HEROES]:
        record = json.loads(path.read_text()).get("executed_from")
        if not provenance.is_current(record):
            stale.append(f"{path.relative_to(ROOT)} (run `{cmd}`)")
    assert not stale, "made by an older nst: " + ", ".join(stale)


# --- in a real kernel -----------------------------------------------------------------------


def _run_in_kernel(cells: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Execute ``cells`` in a fresh python3 kernel as nbclient (make notebooks) does."""
    from nbclient import NotebookClient

    # A learner's kernel draws with matplotlib's inline backend; CI exports MPLBACKEND=Agg, which
    # the kernel would inherit (and then show no figure at all).
    monkeypatch.delenv("MPLBACKEND", raising=False)

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources).execute()
    return nb.cells


@pytest.mark.slow
def test_figure_helpers_show_once_wherever_called(tmp_path: Path, monkeypatch) -> None:
    setup = "import torch, nst\nimg = torch.rand(1, 3, 8, 8)"
    cells = [
        setup,
        "nst.plot.show_images([img])\nprint(1)",  # a print after the call
        "fig = nst.plot.show_images([img])\nfig",  # the figure is also the cell's value
        "nst.plot.show_images([img])",  # the call is the cell's value
        "nst.plot.show_images([img]);",  # the value is hidden with ;
        "for _ in range(2):\n    nst.plot.show_bars({'a': 1.0})",  # two figures
        "x = 1",  # no figure: nothing left over from before
    ]
    cells = _run_in_kernel(cells, tmp_path, monkeypatch)
    images = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in cells]
    assert images == [0, 1, 1, 1, 1, 2, 0]
    assert "1" in cells[1].outputs[0].get("text", "")


@pytest.mark.slow
def test_progress_is_stored_as_its_final_text_line(tmp_path: Path, monkeypatch) -> None:
    code = (
        "import torch, nst\n"
        "loss_fn = lambda img: {'total': (img ** 2).mean()}\n"
        "img, history = nst.optimize(torch.rand(1, 3, 8, 8), loss_fn, steps=5)"
    )
    cells = _run_in_kernel([code], tmp_path, monkeypatch)
    texts = [_plain_text([o]) + o.get("text", "") for o in cells[0].outputs]
    assert len(texts) == 1 and texts[0].startswith("lbfgs: 5/5 steps, "), texts
    assert "loss" in texts[0] and "0%|" not in texts[0]
