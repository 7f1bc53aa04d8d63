"""A2's hidden tests (instructors only: tools/make_assignments.py leaves this file out).

Each exercise's ``outputs`` runs beside the student's code on inputs made from a seed; its
``verdict`` runs in the grader, outside the student's code, and raises AssertionError (one
sentence). ``hidden=False``: only what the visible check in the notebook tests. See nst.grading.
The sentences are the visible checks' own (nst.checks.assignment_checks.judge_*).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import torch

import nst
import nst.checks.assignment_checks as checks
from nst.grading import VISIBLE_SEED, Exercise, generator


@functools.lru_cache(maxsize=1)
def _model() -> nst.vgg.VGG19Features:
    return nst.load_vgg19(device="cpu")


# --- Exercise 1: balanced_layer_weights ------------------------------------------------------

PAINTINGS = ("starry_night", "great_wave", "composition_viii")


def _balance_inputs(seed: int):
    """(img, style_grams): the visible check's random images, or a photo and a painting."""
    if seed == VISIBLE_SEED:
        img = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(3))
        painting = torch.rand(1, 3, 40, 32, generator=torch.Generator().manual_seed(4))
        layers = ["relu1_1", "relu3_1", "relu5_1"]
    else:
        g = generator(seed)
        side = int(torch.randint(40, 65, (), generator=g))
        img = nst.load_image(nst.data.content_path("chelsea"), long_side=side)
        name = PAINTINGS[int(torch.randint(0, len(PAINTINGS), (), generator=g))]
        painting = nst.load_image(nst.data.style_path(name), long_side=side)
        count = int(torch.randint(3, 6, (), generator=g))
        layers = [nst.STYLE_LAYERS[i] for i in torch.randperm(5, generator=g)[:count]]
    return img, checks.balance_inputs(_model(), img, painting, layers)


def balance_outputs(fn, seed):
    img, grams = _balance_inputs(seed)
    before = img.clone()
    got = fn(_model(), img, {k: v.clone() for k, v in grams.items()})
    names = list(got) if isinstance(got, Mapping) else []  # as the visible check: any mapping
    return {
        "names": np.array([str(n) for n in names], dtype=str),
        "weights": np.array([float(got[n]) for n in names], dtype=float),
        "type": "dict" if isinstance(got, Mapping) else type(got).__name__,
        "unchanged": torch.equal(img, before),
    }


def balance_verdict(seed, out, hidden):
    img, grams = _balance_inputs(seed)
    assert str(out["type"]) == "dict", (
        f"balanced_layer_weights returned a {out['type']}; return a dict {{layer: weight}}"
    )
    got = dict(zip((str(n) for n in out["names"]), (float(w) for w in out["weights"])))
    norms, losses = (
        checks.gradient_norms(_model(), img, grams),
        checks.layer_losses(_model(), img, grams),
    )
    case = "a random image" if seed == VISIBLE_SEED else f"{len(grams)} layers of a real photo"
    checks.judge_layer_weights(got, norms, losses, case)
    assert bool(out["unchanged"]), "balanced_layer_weights changed img; work on a copy"


# --- Exercise 2: pareto_front ------------------------------------------------------------------


def _front_inputs(seed: int) -> list[dict[str, dict[str, float]]]:
    """The visible check's results, or nine results on a coarse grid (ties and equal sides)."""
    if seed == VISIBLE_SEED:
        return [checks.PUBLIC_RESULTS, {"only": {"content": 1.0, "style": 1.0}}]
    g = generator(seed)
    values = torch.randint(1, 8, (9, 2), generator=g).tolist()
    values[8] = values[int(torch.randint(0, 8, (), generator=g))]  # a tie
    results = {f"run{i}": {"content": c / 10, "style": s / 20} for i, (c, s) in enumerate(values)}
    return [results, {"only": {"content": 1.0, "style": 1.0}}]


def front_outputs(fn, seed):
    out = {}
    for i, results in enumerate(_front_inputs(seed)):
        got = fn({k: dict(v) for k, v in results.items()})
        ok = isinstance(got, (list, tuple))
        out[f"front_{i}"] = np.array([str(n) for n in got] if ok else [], dtype=str)
        out[f"type_{i}"] = type(got).__name__
    return out


def front_verdict(seed, out, hidden):
    cases = ("six results with ties", "a single result")
    if seed != VISIBLE_SEED:
        cases = ("nine results with a tie", "a single result")
    for i, results in enumerate(_front_inputs(seed)):
        kind = str(out[f"type_{i}"])
        assert kind in ("list", "tuple"), f"pareto_front returned a {kind}; return a list of names"
        checks.judge_front([str(n) for n in out[f"front_{i}"]], results, cases[i])


EXERCISES = {
    "balanced_layer_weights": Exercise(
        balance_outputs,
        balance_verdict,
        (
            "nst.checks.assignment_checks.balanced_weights_of",
            "nst.checks.assignment_checks.gradient_norms",
        ),
    ),
    "pareto_front": Exercise(
        front_outputs,
        front_verdict,
        ("nst.checks.assignment_checks.pareto_names", "nst.checks.assignment_checks._beats"),
    ),
}


def run(name, fn):
    """The instructor's preview, in the source notebook: this hidden test on a fixed seed."""
    nst.grading.preview(EXERCISES, name, fn)
