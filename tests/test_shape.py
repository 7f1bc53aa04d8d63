"""The promise that every function is short enough to read, checked (AST, nothing imported).

- no function or method in ``nst/`` or ``tools/`` over 40 lines, from its ``def`` (decorators not
  counted) to its last line, blank lines counted, its docstring not counted;
- no class over 250 lines, no file over 400;
- every object a lesson shows with ``show_source(...)`` at most 35 lines, docstring included
  (what the learner reads is the whole listing);
- no ``noqa`` for ruff's complexity (C901) and statement (PLR0915) limits, and no ``# fmt: skip``
  or ``# fmt: off`` anywhere (``make lint`` checks ``ruff format``).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "nst").rglob("*.py"), *(ROOT / "tools").rglob("*.py")])
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_FUNCTION, MAX_CLASS, MAX_FILE, MAX_SHOWN = 40, 250, 400, 35


def _docstring_lines(node: ast.AST) -> int:
    """How many lines a def's or class's docstring takes (0 without one)."""
    body = getattr(node, "body", [])
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno - first.lineno + 1
    return 0


def _defs(path: Path) -> list[tuple[str, ast.AST]]:
    """Every function, method and class in a file, with a dotted name."""
    found: list[tuple[str, ast.AST]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                found.append((name, child))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text()), "")
    return found


def _lines(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def _where(path: Path, name: str) -> str:
    return f"{path.relative_to(ROOT)}:{name}"


def test_no_function_over_40_lines() -> None:
    long = [
        f"{_where(p, name)} ({_lines(n) - _docstring_lines(n)} lines)"
        for p in SOURCES
        for name, n in _defs(p)
        if not isinstance(n, ast.ClassDef) and _lines(n) - _docstring_lines(n) > MAX_FUNCTION
    ]
    assert not long, f"functions over {MAX_FUNCTION} lines: " + ", ".join(long)


def test_no_class_over_250_lines_no_file_over_400() -> None:
    long = [
        f"{_where(p, name)} ({_lines(n)} lines)"
        for p in SOURCES
        for name, n in _defs(p)
        if isinstance(n, ast.ClassDef) and _lines(n) > MAX_CLASS
    ]
    long += [
        f"{p.relative_to(ROOT)} ({len(p.read_text().splitlines())} lines)"
        for p in SOURCES
        if len(p.read_text().splitlines()) > MAX_FILE
    ]
    assert not long, f"classes over {MAX_CLASS} or files over {MAX_FILE} lines: " + ", ".join(long)


def _shown(path: Path) -> list[tuple[str, object]]:
    """(expression, object) for each ``show_source(X)`` in a lesson, X resolved by its imports."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    namespace: dict = {}
    for source in cells:
        for node in ast.parse(source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    found = []
    for source in cells:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("show_source"):
                expr = ast.unparse(node.args[0])
                found.append((expr, eval(expr, namespace)))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_shown_objects_are_at_most_35_lines(path: Path) -> None:
    long = [
        f"{expr} ({len(inspect.getsource(obj).splitlines())} lines)"
        for expr, obj in _shown(path)
        if len(inspect.getsource(obj).splitlines()) > MAX_SHOWN
    ]
    assert not long, f"{path.name} shows listings over {MAX_SHOWN} lines: " + ", ".join(long)


@pytest.mark.parametrize("marker", ["noqa: C901", "noqa: PLR0915"])
def test_no_complexity_escape(marker: str) -> None:
    found = [str(p.relative_to(ROOT)) for p in SOURCES if marker in p.read_text()]
    assert not found, f"{marker!r} in " + ", ".join(found)


@pytest.mark.parametrize("marker", ["# fmt: skip", "# fmt: off"])
def test_the_formatter_formats_everything(marker: str) -> None:
    tests = sorted((ROOT / "tests").glob("*.py"))
    found = [str(p.relative_to(ROOT)) for p in [*SOURCES, *tests] if marker in p.read_text()]
    found.remove("tests/test_shape.py")  # this file names the markers
    assert not found, f"{marker!r} in " + ", ".join(found) + " (make lint runs ruff format --check)"
