"""A3's hidden test (instructors only: tools/make_assignments.py leaves this file out).

``outputs`` runs beside the student's code and records the schedule it returns for a budget and
a size made from the seed; ``verdict`` runs in the grader, outside the student's code: it checks
the schedule's rules, runs it and one size for the same cost, and compares lesson 06's distances
(nst.checks.schedule_checks, the visible check's own sentences). See nst.grading.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

import nst
import nst.checks.schedule_checks as checks
from nst.grading import VISIBLE_SEED, Exercise, generator

SIZES = (64, 80, 96)


@functools.lru_cache(maxsize=1)
def _model() -> nst.vgg.VGG19Features:
    return nst.load_vgg19(device="cpu")


def _budget_and_size(seed: int) -> tuple[int, int]:
    """The visible check's (24, 64), or a budget of 20 to 32 steps at 64, 80 or 96 px."""
    if seed == VISIBLE_SEED:
        return checks.PUBLIC_BUDGET, checks.PUBLIC_SIZE
    g = generator(seed)
    return int(torch.randint(20, 33, (), generator=g)), SIZES[
        int(torch.randint(0, 3, (), generator=g))
    ]


def schedule_outputs(fn, seed):
    budget, size = _budget_and_size(seed)
    got = fn(budget, size)
    try:
        rows = np.array([[float(v) for v in row] for row in got], dtype=float)
    except (TypeError, ValueError):
        rows = np.zeros((0, 3))  # not a list of pairs: the verdict says so
    return {"schedule": rows, "repr": repr(got)[:200]}


def schedule_verdict(seed, out, hidden):
    budget, size = _budget_and_size(seed)
    rows = out["schedule"]
    got = (
        [tuple(row) for row in rows] if rows.ndim == 2 and rows.shape[1] == 2 else str(out["repr"])
    )
    schedule = checks.judge_schedule_rules(got, budget, size)
    content_img, style_img = checks.photo_and_painting(size, torch.device("cpu"))
    distances = checks.equal_cost_distances(content_img, style_img, _model(), schedule, budget)
    checks.judge_against_one_size(distances, budget, size)


EXERCISES = {
    "my_schedule": Exercise(
        schedule_outputs,
        schedule_verdict,
        (  # stylize's own schedule, and the runs that would tune one on the test itself
            "nst.recipe.split_steps",
            "nst.recipe.scale_sizes",
            "nst.recipe.make_plan",
            "nst.checks.schedule_checks.run_schedule",
            "nst.checks.schedule_checks.equal_cost_distances",
            "nst.optim.optimize",
            "nst.losses.make_loss_fn",
            "nst.recipe.stylize",
        ),
    )
}


def run(name, fn):
    """The instructor's preview, in the source notebook: this hidden test on a fixed seed."""
    nst.grading.preview(EXERCISES, name, fn)
