"""A3's visible check: a coarse-to-fine schedule of the learner's own, judged at equal cost.

A schedule is a list ``[(long side, steps), ...]``, smallest size first, ending at the result's
size. Its *cost* counts a step at a smaller size as the share of pixels it handles:
Σ steps · (side / size)², in steps at the full size (lesson 05: a step at half the side works on a
quarter of the pixels). No clock is read: a schedule is judged by lesson 06's distances of its
result against one size run for the same cost, on the same machine.
``judge_*`` hold what the check decides, so that A3's hidden tests judge with the same sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from nst.checks._core import CheckError, call_reporting_errors, function_name
from nst.data import content_path, style_path
from nst.images import load_image, resize
from nst.losses import make_loss_fn
from nst.metrics import content_distance, style_distance
from nst.optim import optimize
from nst.vgg import VGG19Features

Schedule = list[tuple[int, int]]  # [(long side, steps), ...], smallest first
PUBLIC_BUDGET, PUBLIC_SIZE = 24, 64  # what the visible check runs
TV_WEIGHT = 10.0  # stylize's default; style weight 10, content weight 1: make_loss_fn's


MARGIN = 0.01  # one size must win by more than this on both distances: rounding on a GPU or
# with other thread counts moves a distance by less


def schedule_cost(schedule: Schedule, size: int) -> float:
    """Σ steps · (side / size)²: the schedule's cost in steps at the full size."""
    return sum(steps * (side / size) ** 2 for side, steps in schedule)


def _pairs(schedule: Any) -> Schedule:
    """``schedule`` as a list of (int, int), or CheckError if it is not a list of two-int pairs."""
    try:
        rows = [tuple(float(v) for v in row) for row in schedule]
    except (TypeError, ValueError):
        rows = []
    if not rows or any(len(row) != 2 or any(v != int(v) for v in row) for row in rows):
        raise CheckError(
            f"my_schedule returned {schedule!r}; return a list of (long_side, steps) pairs "
            "of whole numbers, e.g. [(32, 20), (64, 19)]."
        )
    return [(int(side), int(steps)) for side, steps in rows]


def judge_schedule_rules(got: Any, budget: int, size: int) -> Schedule:
    """The schedule as [(side, steps)], or CheckError naming the first rule it breaks."""
    schedule, case = _pairs(got), f"budget {budget} at {size} px"
    sides = [side for side, _ in schedule]
    cost = schedule_cost(schedule, size)
    rules = [
        (len(schedule) >= 2, "use at least two sizes: it is a coarse-to-fine schedule"),
        (sides == sorted(set(sides)), f"the sides {sides} must grow, smallest first"),
        (sides[0] >= 16, f"the smallest side is {sides[0]} px; start at 16 px or more"),
        (sides[-1] == size, f"the last side is {sides[-1]} px; end at the result's {size} px"),
        (all(n >= 1 for _, n in schedule), "give every size at least one step"),
        (cost <= budget + 1e-9, f"it costs {cost:.2f} full-size steps, over the budget {budget}"),
    ]
    for ok, sentence in rules:
        if not ok:
            raise CheckError(f"my_schedule({budget}, {size}) broke a rule ({case}): {sentence}.")
    return schedule


def run_schedule(
    content_img: torch.Tensor, style_img: torch.Tensor, model: VGG19Features, schedule: Schedule
) -> torch.Tensor:
    """The (1,3,H,W) result of L-BFGS at each (side, steps), each size from the last upsampled."""
    img = None
    for side, steps in schedule:
        photo, painting = resize(content_img, side), resize(style_img, side)  # (1,3,h,w) each
        if img is None:
            img = photo  # start from the photo at the smallest size
        else:
            img = F.interpolate(img, size=photo.shape[-2:], mode="bilinear")
        loss_fn = make_loss_fn(model, photo, painting, tv_weight=TV_WEIGHT)
        img, _ = optimize(img, loss_fn, steps, progress=False)
    return img


def equal_cost_distances(
    content_img: torch.Tensor,
    style_img: torch.Tensor,
    model: VGG19Features,
    schedule: Schedule,
    budget: int,
) -> dict[str, dict[str, float]]:
    """Lesson 06's distances of the schedule's result and of one size run for ``budget`` steps."""
    size = max(content_img.shape[-2:])
    out = {}
    for name, plan in (("your schedule", schedule), ("one size", [(size, budget)])):
        img = run_schedule(content_img, style_img, model, plan)
        out[name] = {
            "content": content_distance(img, content_img, model),
            "style": style_distance(img, style_img, model),
        }
    return out


def judge_against_one_size(distances: dict[str, dict[str, float]], budget: int, size: int) -> None:
    """CheckError if one size, for the same cost, is better on both distances by over MARGIN."""
    yours, one = distances["your schedule"], distances["one size"]
    if all(one[k] < (1 - MARGIN) * yours[k] for k in ("content", "style")):
        raise CheckError(
            f"for the same cost ({budget} steps at {size} px), one size beats your schedule by "
            f"over {MARGIN:.0%} on both distances (content {one['content']:.3f} against "
            f"{yours['content']:.3f}, style {one['style']:.3f} against {yours['style']:.3f}): "
            "the full size needs more steps, or the small sizes are too small to help."
        )


def photo_and_painting(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Chelsea and The Starry Night at long side ``size``, (1,3,H,W) each."""
    photo = load_image(content_path("chelsea"), long_side=size).to(device)
    return photo, load_image(style_path("starry_night"), long_side=size).to(device)


def check_schedule(fn: Callable[[int, int], Schedule], model: VGG19Features) -> None:
    """Check my_schedule's rules, then its result against one size at equal cost (64 px, 24)."""
    name, budget, size = function_name(fn), PUBLIC_BUDGET, PUBLIC_SIZE
    schedule = judge_schedule_rules(call_reporting_errors(fn, name, budget, size), budget, size)
    content_img, style_img = photo_and_painting(size, next(model.parameters()).device)
    distances = equal_cost_distances(content_img, style_img, model, schedule, budget)
    judge_against_one_size(distances, budget, size)
    yours = distances["your schedule"]
    print(
        f"✓ {name}({budget}, {size}) = {schedule} costs {schedule_cost(schedule, size):.2f} "
        f"steps and one size does not beat it (content {yours['content']:.3f}, style "
        f"{yours['style']:.3f}; one size {distances['one size']['content']:.3f}, "
        f"{distances['one size']['style']:.3f})"
    )
