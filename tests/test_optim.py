"""Tests for nst.optim.optimize: budgets, histories, the NaN guard and argument checks."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

from nst.errors import NSTError
from nst.losses import make_loss_fn
from nst.optim import optimize

KEYS = {"step", "seconds", "total", "content", "style", "tv", "range"}


@pytest.fixture(scope="module")
def loss_fn(model, content64, style64):
    """The full Gatys loss (content relu4_2, five style layers) for the 64 px pair."""
    return make_loss_fn(model, content64, style64)


def _check_history(history: list[dict[str, float]], steps: int) -> None:
    assert len(history) == steps
    assert [row["step"] for row in history] == list(range(1, steps + 1))
    for row in history:
        assert set(row) == KEYS
        assert all(isinstance(value, (int, float)) for value in row.values())
    seconds = [row["seconds"] for row in history]
    assert seconds[0] >= 0
    assert all(a <= b for a, b in zip(seconds, seconds[1:]))


def _check_result(img: torch.Tensor, start: torch.Tensor) -> None:
    assert img.shape == start.shape
    assert img.dtype == start.dtype
    assert not img.requires_grad
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert (img - start).abs().max() > 0.01  # the pixels moved


# ---------------------------------------------------------------------------
# Real runs at 64 px
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer, steps, line_search",
    [("lbfgs", 15, False), ("adam", 10, False), ("lbfgs", 15, True)],
    ids=["lbfgs", "adam", "lbfgs-line-search"],
)
def test_optimize_lowers_the_loss(
    loss_fn, content64: torch.Tensor, optimizer: str, steps: int, line_search: bool
) -> None:
    start = content64.clone()
    img, history = optimize(
        content64, loss_fn, steps, optimizer, line_search=line_search, progress=False
    )
    assert torch.equal(content64, start)  # the caller's image is never changed
    _check_history(history, steps)  # the budget counts evaluations, line search included
    _check_result(img, content64)
    assert history[0]["content"] == 0  # step 1 evaluates the content image itself
    assert history[-1]["total"] < 0.8 * history[0]["total"]
    assert history[-1]["style"] < history[0]["style"]
    for row in history:
        assert row["total"] == pytest.approx(row["content"] + 10.0 * row["style"], rel=1e-5)


def test_adam_returns_the_image_of_the_last_row(loss_fn, content64: torch.Tensor) -> None:
    img, history = optimize(content64, loss_fn, 4, "adam", progress=False)
    assert float(loss_fn(img)["total"]) == pytest.approx(history[-1]["total"], rel=1e-5)


def test_callback_once_per_step(loss_fn, content64: torch.Tensor) -> None:
    calls: list[tuple[dict[str, float], torch.Tensor]] = []
    img, history = optimize(
        content64,
        loss_fn,
        5,
        callback=lambda row, im: calls.append((row, im.clone())),
        progress=False,
    )
    assert [row for row, _ in calls] == history
    for _, im in calls:
        assert im.shape == content64.shape
        assert not im.requires_grad
    torch.testing.assert_close(calls[0][1], content64)  # step 1 is the starting image
    torch.testing.assert_close(calls[-1][1].clamp(0, 1), img)  # the last step's image


def test_progress_bar_goes_to_stderr_only_when_asked(capsys, loss_fn, content64) -> None:
    optimize(content64, loss_fn, 2, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    optimize(content64, loss_fn, 2, progress=True)  # control: the bar is captured when shown
    assert "lbfgs" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# The NaN guard, with faults injected after 3 good evaluations
# ---------------------------------------------------------------------------


class _InfGrad(torch.autograd.Function):
    """Zero in the forward pass, an infinite gradient in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return (x * 0).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.full(ctx.shape, float("inf"))


FAULTS = {
    "nan_loss": lambda img: torch.tensor(float("nan")),
    "inf_loss": lambda img: torch.tensor(float("inf")),
    "nan_grad": lambda img: (img * 0).sum().sqrt(),  # value 0, gradient 0 * inf = nan
    "inf_grad": _InfGrad.apply,
}


class _FaultyLoss:
    """A smooth loss whose 4th and later evaluations add ``fault``; remembers the 3rd image."""

    def __init__(self, fault) -> None:
        self.fault, self.calls, self.third = fault, 0, None

    def __call__(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.calls == 3:
            self.third = img.detach().clone()
        total = ((img - 0.5) ** 2).mean()
        if self.calls > 3:
            total = total + self.fault(img)
        zero = torch.zeros(())
        return {"total": total, "content": total.detach(), "style": zero, "tv": zero}


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_nan_guard(optimizer: str, fault: str) -> None:
    start = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    loss = _FaultyLoss(FAULTS[fault])
    with pytest.warns(RuntimeWarning, match="Stopped early") as record:
        img, history = optimize(start, loss, 10, optimizer, progress=False)
    stops = [w for w in record if issubclass(w.category, RuntimeWarning)]
    assert len(stops) == 1
    message = str(stops[0].message)
    assert "step 4" in message and "\n" not in message
    assert ("gradient" in message) == fault.endswith("_grad")
    assert loss.calls == 4
    _check_history(history, 3)
    assert not torch.isnan(img).any()
    assert 0.0 <= loss.third.min() and loss.third.max() <= 1.0  # so clamping cannot hide a bug
    assert torch.equal(img, loss.third)
    assert not torch.equal(img, start)


def test_nan_guard_warns_only_once(tmp_path, run_python) -> None:
    # PyTorch gives that UserWarning once per process, so it is checked in a fresh one.
    code = (
        "import warnings, torch\n"
        "from nst.optim import optimize\n"
        "def loss_fn(img):\n"
        "    total = (img * float('nan')).sum()\n"
        "    return {'total': total, 'content': total, 'style': total, 'tv': total}\n"
        "with warnings.catch_warnings(record=True) as record:\n"
        "    warnings.simplefilter('always')\n"
        "    optimize(torch.rand(1, 3, 8, 8), loss_fn, 3, progress=False)\n"
        "for w in record:\n"
        "    print(w.category.__name__, str(w.message).splitlines()[0])\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("RuntimeWarning Stopped early"), lines


def test_no_warning_when_all_is_well() -> None:
    start = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    loss = _FaultyLoss(lambda img: torch.zeros(()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img, history = optimize(start, loss, 6, progress=False)
    _check_history(history, 6)
    assert loss.calls == 6
    assert (img - 0.5).abs().max() < (start - 0.5).abs().max()


# ---------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"optimizer": "sgd"}, "'lbfgs' or 'adam'"),
        ({"gen_img": torch.rand(3, 8, 8)}, "(1, 3, H, W)"),
        ({"gen_img": torch.full((1, 3, 8, 8), float("nan"))}, "NaN"),
    ],
    ids=["steps0", "negative", "float", "sgd", "3d", "nan"],
)
def test_bad_arguments(kwargs: dict, words: str) -> None:
    def never_called(img: torch.Tensor) -> dict[str, torch.Tensor]:
        raise AssertionError("the loss must not be evaluated")

    args = {"gen_img": torch.rand(1, 3, 8, 8), "loss_fn": never_called, "steps": 3}
    args.update(kwargs)
    with pytest.raises(NSTError) as err:
        optimize(**args, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert words in message


def test_steps_must_be_a_whole_number_not_a_bool(model, content64) -> None:
    loss_fn = make_loss_fn(model, content_img=content64)
    for steps in (True, 2.5, -1):
        with pytest.raises(NSTError, match="steps"):
            optimize(content64, loss_fn, steps, progress=False)


def test_pixels_kept_in_range_without_clamping_in_the_closure(loss_fn, content64) -> None:
    """The range penalty keeps L-BFGS's pixels near [0, 1]; without it they stray further."""
    worst: dict[float, float] = {}
    for range_weight in (0.0, 1e3):

        def track(row: dict[str, float], img: torch.Tensor, rw: float = range_weight) -> None:
            worst[rw] = float((img - img.clamp(0, 1)).abs().max())  # at the latest step

        gen, history = optimize(
            content64, loss_fn, 40, range_weight=range_weight, callback=track, progress=False
        )
        assert 0.0 <= float(gen.min()) and float(gen.max()) <= 1.0  # returned clamped
        assert history[-1]["range"] >= 0.0
    assert worst[0.0] > 0.05  # unconstrained, some pixels leave [0, 1] by a visible amount
    assert worst[1e3] < worst[0.0] / 4  # at the end, the penalty holds them much closer


def test_nst_make_closure_passes_the_assignments_closure_check(capsys) -> None:
    from nst.checks import check_closure
    from nst.optim import make_closure

    # Without the out-of-range penalty (the check's image starts partly outside [0, 1]) it is the
    # closure assignment A3 asks students for: its other options are keywords.
    check_closure(functools.partial(make_closure, range_weight=0.0))
    assert "builds a correct closure" in capsys.readouterr().out


def test_closure_stops_with_a_typed_reason(loss_fn, content64: torch.Tensor) -> None:
    from nst.optim import Stop, StopReason, make_closure, make_optimizer

    img = content64.clone().requires_grad_(True)
    history: list[dict[str, float]] = []
    opt = make_optimizer(img, "lbfgs")
    asked = make_closure(opt, img, loss_fn, history, steps=5, on_step=lambda row, _: True)
    with pytest.raises(Stop) as stop:
        asked()
    assert stop.value.reason is StopReason.ASKED and len(history) == 1
    spent = make_closure(opt, img, loss_fn, history, steps=1)
    with pytest.raises(Stop) as stop:
        spent()
    assert stop.value.reason is StopReason.BUDGET and len(history) == 1
