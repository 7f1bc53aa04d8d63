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


class _Stop(Exception):
    """Raised inside the closure to end the run: budget spent or a non-finite loss."""


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
    history: one dict per evaluation with step, seconds, the losses of ``loss_fn`` (total, content,
    style, tv) and range, the out-of-range penalty (not part of total).
    ``callback(row, img)`` runs after every evaluation; ``img`` is the live tensor, so
    ``img.clone()`` it to keep a snapshot; if it returns True the run stops there (a Stop button
    does this). A non-finite loss or gradient stops the
    run with a warning and returns the last good image; the original ``gen_img`` is never changed.
    """
    check_image(gen_img, "gen_img")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise NSTError(f"steps must be a positive whole number, not {steps!r}.")
    img = gen_img.detach().clone().requires_grad_(True)  # the tensor we optimise
    opt = make_optimizer(img, optimizer, lr, line_search, history_size)
    last_good = img.detach().clone()
    history: list[dict[str, float]] = []
    bar = Progress(steps, optimizer, enabled=progress)  # one line: steps, seconds, loss
    start = time.perf_counter()

    def closure() -> torch.Tensor:
        if len(history) >= steps:
            raise _Stop("budget")
        opt.zero_grad()
        losses = loss_fn(img)
        out_of_range = ((img - img.clamp(0.0, 1.0)) ** 2).mean()  # 0 while every pixel is in [0, 1]
        objective = losses["total"] + range_weight * out_of_range
        if not torch.isfinite(objective):
            raise _Stop(f"the loss became {float(objective.detach())} at step {len(history) + 1}")
        objective.backward()
        if not torch.isfinite(img.grad).all():
            raise _Stop(f"the gradient became non-finite at step {len(history) + 1}")
        last_good.copy_(img.detach())
        row = {"step": len(history) + 1, "seconds": time.perf_counter() - start}
        row.update({name: float(value.detach()) for name, value in losses.items()})
        row["range"] = float(out_of_range.detach())
        history.append(row)
        bar.update(len(history), row["total"])
        if callback is not None and callback(row, img.detach()):
            raise _Stop("budget")  # the caller asked to stop: a normal end, no warning
        return objective

    try:
        while len(history) < steps:
            opt.step(closure)
            if optimizer == "adam":
                with torch.no_grad():
                    img.clamp_(0.0, 1.0)  # a projection after the update, outside any closure
    except _Stop as stop:
        if str(stop) != "budget":
            warnings.warn(
                f"Stopped early: {stop}; returning the last good image "
                "(try a smaller lr or smaller weights).",
                RuntimeWarning,
                stacklevel=2,
            )
    finally:
        bar.close()
    return last_good.clamp_(0.0, 1.0), history
