"""Optimise the pixels of an image with L-BFGS or Adam, counting every loss-and-gradient evaluation.

A *step* is one evaluation of the loss and its gradient. L-BFGS may evaluate several times inside
one ``optimizer.step()`` call (its line search), so budgets, histories and comparisons count
evaluations, never ``step()`` calls.

Pixels must end in [0, 1]. Clamping them inside the L-BFGS closure (as the PyTorch tutorial did)
moves the image behind the optimiser's back, so its curvature memory describes steps that never
happened (pytorch/tutorials#143 reports the loss exploding late in a run). Instead the objective
gets a smooth penalty, range_weight * mean((x - clamp(x, 0, 1))²), which is 0 inside the range and
which L-BFGS can model like any other term; Adam's iterate is also projected (clamped) after each
update, outside any closure; the returned image is clamped once at the end.
"""

from __future__ import annotations

import enum
import time
import warnings
from collections.abc import Callable

import torch

from nst.errors import NSTError
from nst.images import check_image
from nst.losses import LossFn
from nst.progress import Progress

Callback = Callable[[dict[str, float], torch.Tensor], "bool | None"]
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.05}


class StopReason(enum.Enum):
    """Why a run ended before ``optimizer.step`` returned by itself."""

    BUDGET = "the step budget is spent"
    ASKED = "the callback asked to stop"
    NOT_FINITE = "the loss or its gradient is not finite"


class Stop(Exception):
    """Raised inside the closure to end the run, with a typed reason and a sentence."""

    def __init__(self, reason: StopReason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason


def check_steps(steps: int, least: int = 1, why: str = "") -> None:
    """Raise NSTError unless ``steps`` is a whole number of at least ``least``, saying ``why``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < least:
        raise NSTError(f"steps must be a whole number of at least {least}{why}, not {steps!r}.")


def make_optimizer(
    img: torch.Tensor,
    optimizer: str,
    lr: float | None = None,
    line_search: bool = False,
    history_size: int = 50,
) -> torch.optim.Optimizer:
    """An L-BFGS or Adam optimiser over the single tensor ``img`` (1,3,H,W)."""
    if optimizer not in DEFAULT_LR:
        raise NSTError(f"optimizer must be 'lbfgs' or 'adam', not {optimizer!r}.")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    if optimizer == "adam":
        return torch.optim.Adam([img], lr=lr)
    return torch.optim.LBFGS(
        [img],
        lr=lr,
        max_iter=1_000_000,
        max_eval=1_000_000,  # our budget stops it, not these
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=history_size,
        line_search_fn="strong_wolfe" if line_search else None,
    )


def make_closure(
    optimizer: torch.optim.Optimizer,
    gen_img: torch.Tensor,
    loss_fn: LossFn,
    history: list[dict[str, float]],
    *,
    steps: int | None = None,
    range_weight: float = 1e3,
    on_step: Callback | None = None,
) -> Callable[[], torch.Tensor]:
    """The closure ``optimizer.step`` calls: one loss-and-gradient evaluation, one history row."""
    start = time.perf_counter()

    def closure() -> torch.Tensor:
        step = len(history) + 1
        if steps is not None and step > steps:
            raise Stop(StopReason.BUDGET)  # L-BFGS would go on evaluating inside one step
        optimizer.zero_grad()
        terms = loss_fn(gen_img)  # {"total", "content", "style", "tv"}
        out_of_range = ((gen_img - gen_img.clamp(0.0, 1.0)) ** 2).mean()  # 0 inside [0, 1]
        objective = terms["total"] + range_weight * out_of_range
        objective.backward()
        _stop_if_not_finite(objective, gen_img.grad, step)
        row = {"step": step, "seconds": time.perf_counter() - start}
        row.update({name: float(value.detach()) for name, value in terms.items()})
        row["range"] = float(out_of_range.detach())  # reported apart: not part of "total"
        history.append(row)
        if on_step is not None and on_step(row, gen_img.detach()):
            raise Stop(StopReason.ASKED)
        return objective

    return closure


def _stop_if_not_finite(objective: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
    """Raise Stop(NOT_FINITE) with the step's number if the loss or its gradient is inf or NaN."""
    if not torch.isfinite(objective):
        raise Stop(
            StopReason.NOT_FINITE, f"the loss became {float(objective.detach())} at step {step}"
        )
    if grad is not None and not torch.isfinite(grad).all():
        raise Stop(StopReason.NOT_FINITE, f"the gradient became non-finite at step {step}")


def optimize(
    gen_img: torch.Tensor,
    loss_fn: LossFn,
    steps: int,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    *,
    line_search: bool = False,
    history_size: int = 50,
    range_weight: float = 1e3,
    callback: Callback | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Minimise ``loss_fn`` over the pixels of ``gen_img`` (1,3,H,W) for ``steps`` evaluations.

    Returns the image (1,3,H,W) in [0, 1] whose losses the last history row reports, and the
    history: one dict per evaluation with step, seconds, the losses of ``loss_fn`` (total,
    content, style, tv) and range, the out-of-range penalty (not part of total).
    ``callback(row, img)`` runs after every evaluation (``img`` is live: clone it to keep it);
    returning True stops the run there. A non-finite loss or gradient stops the run with a
    warning and returns the last good image; the original ``gen_img`` is never changed.
    """
    check_image(gen_img, "gen_img")
    check_steps(steps)
    img = gen_img.detach().clone().requires_grad_(True)
    opt = make_optimizer(img, optimizer, lr, line_search, history_size)
    last_good = img.detach().clone()  # the image the last history row describes
    bar = Progress(steps, optimizer, enabled=progress)  # one line: steps, seconds, loss
    on_step = _keep_and_report(last_good, bar, callback)
    history: list[dict[str, float]] = []
    closure = make_closure(
        opt, img, loss_fn, history, steps=steps, range_weight=range_weight, on_step=on_step
    )
    try:
        while len(history) < steps:
            opt.step(closure)
            if optimizer == "adam":
                with torch.no_grad():
                    img.clamp_(0.0, 1.0)  # a projection after the update, outside any closure
    except Stop as stop:
        if stop.reason is StopReason.NOT_FINITE:
            _warn_stopped(stop)
    finally:
        bar.close()
    return last_good.clamp_(0.0, 1.0), history


def _keep_and_report(last_good: torch.Tensor, bar: Progress, callback: Callback | None) -> Callback:
    """After each evaluation: keep the image as the last good one, update the bar, ask callback."""

    def on_step(row: dict[str, float], img: torch.Tensor) -> bool:
        last_good.copy_(img)
        bar.update(row["step"], row["total"])
        return callback is not None and bool(callback(row, img))

    return on_step


def _warn_stopped(stop: Stop) -> None:
    """Warn that a non-finite loss ended the run early, and what to try."""
    warnings.warn(
        f"Stopped early: {stop}; returning the last good image "
        "(try a smaller lr or smaller weights).",
        RuntimeWarning,
        stacklevel=3,
    )
