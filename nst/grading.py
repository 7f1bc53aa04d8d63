"""Hidden tests whose verdicts are computed outside the student's code (the grader: tools/grading/).

A hidden test is split in two halves, defined once per exercise in the assignment's
``hidden_tests.py`` (beside its source notebook) as an :class:`Exercise`:

- ``outputs(fn, seed)`` runs where the student's code runs (in the grading sandbox): it makes the
  inputs from ``seed``, calls the student's ``fn`` on them and returns plain arrays;
- ``verdict(seed, out, hidden)`` runs in the grader after the sandbox is gone: it makes the same
  inputs, computes the reference with ``nst`` and raises ``AssertionError`` (one sentence) if the
  arrays are wrong. ``hidden=False`` checks what the notebook's visible check checks.

:func:`record` saves the outputs as ``.npz`` (never pickle); :func:`read_regular_file` reads a
file a sandbox left (no symlink, no device, a size limit) and :func:`load_outputs` parses it as data
only. While the student's function runs, the ``nst`` functions it must write itself
(``Exercise.references``) raise, however they are reached: under another name, through a module
alias, ``getattr``, ``importlib``, a second copy of the module, or their source run again.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib
import io
import os
import stat
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

VISIBLE_SEED = 0  # the visible check's inputs are public
PREVIEW_SEED = 12345  # what the instructor's source notebook runs
MAX_OUTPUT_BYTES = 64 * 2**20  # an .npz read back from a sandbox is refused above this


@dataclass(frozen=True)
class Exercise:
    """One exercise's hidden test: outputs made beside the student's code, a verdict outside it."""

    outputs: Callable[[Callable[..., Any], int], dict[str, Any]]
    verdict: Callable[[int, dict[str, np.ndarray], bool], None]
    references: tuple[str, ...]  # "nst.losses.gram_matrix": what the student must not call


def seed_for(secret: bytes, student: str) -> int:
    """The student's hidden-test seed: HMAC-SHA256(course secret, student id), as a 31-bit int."""
    digest = hmac.new(secret, student.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def generator(seed: int) -> torch.Generator:
    """A CPU random generator seeded with ``seed`` (same inputs in the sandbox and the grader)."""
    return torch.Generator().manual_seed(seed)


def as_array(value: Any) -> np.ndarray:
    """A tensor, number, bool or string as a numpy array (detached, on the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# --- the student's side: outputs with the references blocked --------------------------------


def _resolve(dotted: str) -> tuple[Any, str]:
    """``"nst.losses.gram_matrix"`` -> (the owner object, "gram_matrix")."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:-1]:
            owner = getattr(owner, attr)
        return owner, parts[-1]
    raise ValueError(f"cannot find {dotted}")


def _signature(code: Any) -> tuple[bytes, str, tuple[str, ...]]:
    """What identifies a function's code, whatever copy of it runs: bytecode, constants, names."""
    return code.co_code, repr(code.co_consts), code.co_names


def _qualname(code: Any) -> str:
    """A code object's qualified name ("VGG19Features.forward"; the name before Python 3.11)."""
    return getattr(code, "co_qualname", code.co_name)


def _own_file(dotted: str) -> tuple[str, str]:
    """The file of nst's that defines ``dotted`` (``nst.checks.x.f`` too) and the qualname in it.

    The path comes from this file's folder, not from a module object, which the student's code
    could have changed.
    """
    parts = dotted.split(".")[1:]  # without "nst"
    package = Path(os.path.realpath(__file__)).parent
    for i in range(len(parts) - 1, 0, -1):  # the longest module path first: nst/checks/x.py
        module = package.joinpath(*parts[:i])
        for path in (module.with_suffix(".py"), module / "__init__.py"):
            if path.is_file():
                return os.path.realpath(path), ".".join(parts[i:])
    raise ValueError(f"no file of nst defines {dotted}")


def _code_on_disk(dotted: str) -> Any:
    """The code object of ``dotted`` (an nst function or method) compiled afresh from its file."""
    path, qualname = _own_file(dotted)
    todo = [compile(Path(path).read_text(encoding="utf-8"), path, "exec")]
    while todo:
        code = todo.pop()
        if _qualname(code) == qualname:
            return code
        todo += [c for c in code.co_consts if hasattr(c, "co_code")]
    raise ValueError(f"no {qualname} in {path}")


def _live_function(dotted: str) -> Any:
    """The function object ``dotted`` names now (a method's underlying function)."""
    owner, attr = _resolve(dotted)
    func = getattr(owner, attr)
    return getattr(func, "__func__", func)


def _reference_code(dotted: str) -> Any:
    """The code to recognise for ``dotted``: compiled from its file, not taken from memory."""
    try:
        return _code_on_disk(dotted)
    except ValueError:  # a method before Python 3.11 (no co_qualname): the live code
        return _live_function(dotted).__code__


class ReferenceCalled(AssertionError):
    """The student's function ran one of nst's reference functions."""


RAISE = "__import__('nst.grading', fromlist=['_']).ReferenceCalled"  # from any module's code


def _message(dotted: str, student: str) -> str:
    """The sentence a blocked call raises with."""
    return f"{student} calls nst's {dotted.removeprefix('nst.')}: write it yourself."


def _tracer(codes: dict[str, Any], student: str) -> Callable[..., None]:
    """A trace function that stops any frame running one of ``codes``, under any file or copy."""
    signatures = {_signature(c): dotted for dotted, c in codes.items()}
    places = {(c.co_filename, _qualname(c)): dotted for dotted, c in codes.items()}
    realpath = functools.lru_cache(maxsize=None)(os.path.realpath)

    def tracer(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        hit = signatures.get(_signature(code))
        if hit is None:  # the same source compiled again may differ in its constants' repr
            hit = places.get((realpath(code.co_filename), _qualname(code)))
        if hit is not None:
            raise ReferenceCalled(_message(hit, student))

    return tracer


@contextmanager
def _raising_code(names: tuple[str, ...], student: str) -> Iterator[None]:
    """While inside, the function objects ``names`` have a ``__code__`` that raises."""
    funcs = {dotted: _live_function(dotted) for dotted in names}
    codes = {dotted: func.__code__ for dotted, func in funcs.items()}
    try:
        for dotted, func in funcs.items():
            namespace: dict[str, Any] = {}  # the code runs in nst's module: builtins only
            exec(f"def f(*a, **k):\n    raise {RAISE}({_message(dotted, student)!r})", namespace)
            func.__code__ = namespace["f"].__code__  # every alias of the function sees this
        yield
    finally:
        for dotted, func in funcs.items():
            func.__code__ = codes[dotted]


@contextmanager
def references_blocked(names: tuple[str, ...], student: str) -> Iterator[None]:
    """While inside, the functions ``names`` raise ReferenceCalled, however they are reached.

    The function objects get a raising ``__code__`` (every alias sees it), and a trace function
    stops any frame running their code: a second copy of the module, or their source run again.
    """
    tracer = _tracer({dotted: _reference_code(dotted) for dotted in names}, student)
    previous = sys.gettrace()
    with _raising_code(names, student):
        try:
            sys.settrace(tracer)
            yield
            if sys.gettrace() is not tracer:
                raise ReferenceCalled(
                    f"{student} switched off the hidden test's checks (sys.settrace)."
                )
        finally:
            sys.settrace(previous)


def outputs_of(exercise: Exercise, name: str, fn: Callable[..., Any], seed: int) -> dict[str, Any]:
    """``exercise.outputs(fn, seed)`` with the references blocked; a failure as {"error": text}."""
    if fn is None:
        return {"error": f"{name} is not defined: its cell failed, or it has another name."}
    if not callable(fn):
        return {"error": f"{name} is a {type(fn).__name__}, not a function."}
    try:
        with references_blocked(exercise.references, name):
            out = exercise.outputs(fn, seed)
        return {key: as_array(value) for key, value in out.items()}
    except ReferenceCalled as err:
        return {"error": str(err)}
    except NotImplementedError:
        return {"error": f"{name} is not written yet: replace the `raise NotImplementedError`."}
    except Exception as err:  # the student's bug: one line
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        return {"error": f"{name} raised {type(err).__name__}: {first}".rstrip(": ")}


def record(
    exercises: dict[str, Exercise], name: str, fn: Any, seeds: dict[str, int], folder: str
) -> None:
    """Save ``fn``'s outputs for each {part: seed} as ``folder/<name>.npz``, keys ``part.key``."""
    arrays = {}
    for part, seed in seeds.items():
        for key, value in outputs_of(exercises[name], name, fn, seed).items():
            arrays[f"{part}.{key}"] = value
    Path(folder).mkdir(parents=True, exist_ok=True)
    np.savez(Path(folder) / f"{name}.npz", **arrays)
    print(f"{name}: outputs recorded for the hidden tests")


# --- the grader's side ---------------------------------------------------------------------


def read_regular_file(path: Path | str, limit: int) -> bytes:
    """A file a sandbox wrote, refused unless it is a regular file of at most ``limit`` bytes.

    OSError for a symlink (never followed: it could point at any file of the grader's) or a
    missing file, ValueError for anything else that is not a regular file, or a larger one.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block us
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise ValueError(f"not a regular file of at most {limit / 2**20:g} MB")
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew after fstat
        raise ValueError(f"not a regular file of at most {limit / 2**20:g} MB")
    return data


def load_outputs(data: bytes) -> dict[str, dict[str, np.ndarray]]:
    """An .npz's bytes read as data only (no pickle): {part: {key: array}}; else ValueError."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:  # a zip bomb would unpack in the grader
            if sum(i.file_size for i in archive.infolist()) > 4 * MAX_OUTPUT_BYTES:
                raise ValueError("its arrays would take more than 256 MB")
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            flat = {key: arrays[key] for key in arrays.files}
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"not an .npz file ({err})") from None
    parts: dict[str, dict[str, np.ndarray]] = {}
    for key, value in flat.items():
        part, _, rest = key.partition(".")
        parts.setdefault(part, {})[rest] = value
    return parts


def judge(
    exercise: Exercise, name: str, seed: int, out: dict[str, np.ndarray] | None, hidden: bool
) -> str | None:
    """None if ``out`` passes the verdict, else one sentence saying why not."""
    if out is None:
        return f"{name}: no outputs were recorded (the notebook stopped before its hidden test)."
    if "error" in out:
        return str(out["error"])
    try:
        exercise.verdict(seed, out, hidden)
    except AssertionError as err:
        return str(err) or f"{name} gives a wrong result."
    except Exception as err:  # arrays of the wrong kind, whatever a sandbox wrote
        return f"{name}'s outputs have the wrong shape or type ({type(err).__name__}: {err})."
    return None


def preview(exercises: dict[str, Exercise], name: str, fn: Any, seed: int = PREVIEW_SEED) -> None:
    """The instructor's view of a hidden test: outputs and verdict in this process."""
    arrays = outputs_of(exercises[name], name, fn, seed)
    problem = judge(exercises[name], name, seed, arrays, hidden=True)
    if problem:
        raise AssertionError(problem)
    print("hidden tests passed")
