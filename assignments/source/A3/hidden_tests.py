"""A3's hidden test (instructors only: tools/make_assignments.py leaves this file out of the release).

``outputs`` runs beside the student's code on inputs made from a seed; ``verdict`` runs in the
grader, outside the student's code, and raises AssertionError (one sentence). ``hidden=False``:
a tiny quadratic problem, as the visible check; ``hidden=True``: real VGG19 losses. See nst.grading.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

import nst
from nst.grading import VISIBLE_SEED, Exercise, generator

STEPS = 8  # L-BFGS max_iter in the hidden test


@functools.lru_cache(maxsize=1)
def _model() -> nst.vgg.VGG19Features:
    return nst.load_vgg19(device="cpu")


def _problem(seed: int, hidden: bool):
    """(gen_img to start from, loss_fn): real losses at 32 px, or a quadratic over (1, 3, 4, 4)."""
    g = generator(seed)
    if hidden:
        content = nst.load_image(nst.data.content_path("chelsea"), long_side=32)
        style = nst.load_image(nst.data.style_path("starry_night"), long_side=32)
        loss_fn = nst.make_loss_fn(_model(), content, style, tv_weight=1.0)
        scale = 1.3 + 0.2 * torch.rand((), generator=g)
        return (content * scale - 0.2).detach(), loss_fn  # some pixels outside [0, 1]
    target = torch.rand(1, 3, 4, 4, generator=g)
    start = torch.rand(1, 3, 4, 4, generator=g) * 2 - 0.5  # values in [-0.5, 1.5)

    def loss_fn(img):
        content = ((img - target) ** 2).mean()
        style = (img.mean() - 0.3) ** 2
        tv = nst.tv_loss(img)
        return {"total": content + style + 0.1 * tv, "content": content, "style": style, "tv": tv}

    return start, loss_fn


def _reference(seed: int, hidden: bool):
    """The reference: the starting image's losses and gradient."""
    start, loss_fn = _problem(seed, hidden)
    img = start.clone().requires_grad_(True)
    losses = loss_fn(img)
    losses["total"].backward()
    return {k: v.detach() for k, v in losses.items()}, img.grad


def closure_outputs(fn, seed):
    hidden = seed != VISIBLE_SEED
    start, loss_fn = _problem(seed, hidden)
    gen_img = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([gen_img], lr=1.0, max_iter=STEPS)
    history, calls = [], []

    def counted(img):
        calls.append(1)
        return loss_fn(img)

    closure = fn(optimizer, gen_img, counted, history)
    assert callable(closure), (
        f"make_closure returned a {type(closure).__name__}; return the closure itself"
    )
    out = {"rows_before": len(history), "first": closure()}
    out["unchanged"] = torch.equal(gen_img.detach(), start)
    out["grad_1"] = gen_img.grad.clone() if gen_img.grad is not None else torch.zeros(0)
    closure()
    out["grad_2"] = gen_img.grad.clone() if gen_img.grad is not None else torch.zeros(0)
    optimizer.step(closure)
    out["calls"] = len(calls)
    rows = [row if isinstance(row, dict) else {} for row in history]
    out["steps"] = np.array([row.get("step", -1) for row in rows], dtype=float)
    out["floats"] = all(isinstance(v, float) for row in rows for k, v in row.items() if k != "step")
    for key in ("total", "content", "style", "tv"):
        out[f"row_{key}"] = np.array([float(row.get(key, np.nan)) for row in rows])
    return out


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal up to float rounding: the network's sums run in another order with another
    number of threads (the submission's sandbox has its own), so the tolerance scales with
    the gradient's largest value."""
    return np.allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


def closure_verdict(seed, out, hidden):
    losses, grad = _reference(seed, hidden)
    assert out["rows_before"] == 0, (
        "make_closure evaluated the loss already; only define and return the closure"
    )
    first = out["first"]
    assert first.shape == (), (
        "the closure must return the scalar losses['total'], not a number or a list"
    )
    assert np.isclose(first, losses["total"].item(), rtol=1e-4), (
        "the closure must return losses['total']"
    )
    assert bool(out["unchanged"]), (
        "the closure changed gen_img (a clamp?): only the optimiser may move the pixels"
    )
    assert out["grad_1"].shape == tuple(grad.shape), (
        "the closure left no gradient in gen_img.grad: call .backward()"
    )
    assert _close(out["grad_1"], grad.numpy()), "gen_img.grad is not the loss's gradient"
    assert not _close(out["grad_2"], 2 * grad.numpy()), (
        "gradients pile up from call to call: call optimizer.zero_grad() before backward()"
    )
    steps, calls = out["steps"], int(out["calls"])
    assert len(steps) == calls, (
        f"the loss was evaluated {calls} times but history has {len(steps)} rows: one per call"
    )
    assert list(steps) == list(range(1, calls + 1)), "number the history's steps 1, 2, 3, ..."
    assert bool(out["floats"]), "store the losses in history as floats (float(value)), not tensors"
    for key in ("total", "content", "style", "tv"):
        want = losses[key].item()
        assert np.isclose(out[f"row_{key}"][0], want, rtol=1e-4), (
            f"history's first {key!r} is not the loss's {key}"
        )
    totals = out["row_total"]
    assert totals[-1] < totals[0] * (1 if hidden else 0.5), "the loss did not fall under L-BFGS"


EXERCISES = {
    "make_closure": Exercise(
        closure_outputs, closure_verdict, ("nst.optim.optimize", "nst.optim.make_closure")
    )
}


def run(name, fn):
    """The instructor's preview, in the source notebook: this hidden test on a fixed seed."""
    nst.grading.preview(EXERCISES, name, fn)
