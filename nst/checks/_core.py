"""What every check shares: random inputs, calling the learner's function, comparing, reporting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nst.errors import NSTError

RTOL, ATOL = 1e-4, 1e-6  # stated tolerances: relative and absolute, as in torch.allclose
TOLERANCE = f"rtol {RTOL:g}, atol {ATOL:g}"


class CheckError(NSTError, AssertionError):
    """A learner's function disagrees with the reference; the message says the likely mistake."""


def random_tensor(*shape: int, seed: int) -> torch.Tensor:
    """Reproducible uniform noise in [0, 1) on the CPU."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def function_name(fn: Callable[..., Any]) -> str:
    """The name a message uses for the learner's function."""
    return getattr(fn, "__name__", "your function")


def changed_in_place(name: str) -> CheckError:
    """The error for a function that overwrites its input instead of computing a new tensor."""
    return CheckError(f"{name} changes its input in place; compute a new tensor.")


def call_reporting_errors(fn: Callable[..., Any], name: str, *args: Any) -> Any:
    """Call ``fn(*args)``, turning any exception it raises into a one-sentence CheckError."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckError(
            f"{name} is not written yet: replace the `raise NotImplementedError`."
        ) from None
    except Exception as err:  # the learner's bug, reported in one line
        if "in-place operation" in str(err):
            raise changed_in_place(name) from None
        raise CheckError(f"{name} raised {type(err).__name__}: {err}") from None


def call_on_copies(fn: Callable[..., Any], name: str, *args: Any) -> Any:
    """Call ``fn`` on copies of ``args``, raising CheckError if it changed them in place."""
    copies = [_copy(a) for a in args]
    out = call_reporting_errors(fn, name, *copies)
    if any(not _same(before, after) for before, after in zip(args, copies)):
        raise changed_in_place(name)
    return out


def _copy(arg: Any) -> Any:
    """A copy of a tensor or of a {name: tensor} dict, so the learner cannot change ours."""
    if isinstance(arg, dict):
        return {k: _copy(v) for k, v in arg.items()}
    return arg.clone() if isinstance(arg, torch.Tensor) else arg


def _same(before: Any, after: Any) -> bool:
    """Whether a tensor (or a dict of them) still equals its copy."""
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_same(before[k], after[k]) for k in before)
    return not isinstance(before, torch.Tensor) or torch.equal(before, after)


def require_result(name: str, got: Any, want: torch.Tensor) -> None:
    """Raise CheckError unless ``got`` is a finite tensor of ``want``'s shape."""
    if not isinstance(got, torch.Tensor):
        raise CheckError(f"{name} returned a {type(got).__name__}; return a torch tensor.")
    if got.shape != want.shape:
        raise CheckError(f"{name} returned shape {tuple(got.shape)}, expected {tuple(want.shape)}.")
    if not torch.isfinite(got).all():
        raise CheckError(f"{name} returned NaN or infinity; look for a division by zero.")


def require_close(name: str, got: Any, want: torch.Tensor, factors: dict[str, float]) -> None:
    """Raise CheckError unless ``got`` is a tensor close to ``want``, explaining the difference."""
    require_result(name, got, want)
    if not torch.allclose(got.float(), want, rtol=RTOL, atol=ATOL):
        hint = _factor_hint(got.float(), want, factors) or "check the formula"
        error = (got.float() - want).abs().max().item()
        raise CheckError(f"{name} differs from the reference by up to {error:.3g}; {hint}.")


def _factor_hint(got: torch.Tensor, want: torch.Tensor, factors: dict[str, float]) -> str:
    """A hint if ``got`` is ``want`` times a constant, naming the constant if it is a known size."""
    ratio = (got / want).flatten()  # (N,): one ratio per element
    ratio = ratio[torch.isfinite(ratio)]
    if ratio.numel() == 0 or not torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-3):
        return ""
    r = ratio[0].item()
    for label, value in factors.items():
        for k, word in ((value, "too large"), (1 / value, "too small")):
            if abs(r / k - 1) < 1e-3:
                return f"it is {word} by a factor of {label} = {value:g}: check the normalisation"
    return f"it is {r:.4g} times the expected value: check the normalisation"


def require_gradient(name: str, fn: Callable[..., Any], *args: torch.Tensor) -> None:
    """Raise CheckError unless ``fn``'s output carries gradients back to its first input."""
    x = args[0].clone().requires_grad_(True)
    out = call_on_copies(fn, name, x, *args[1:])
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise CheckError(
            f"{name}'s result carries no gradient: remove any .detach(), .item(), .numpy() "
            "or torch.tensor(...) re-wrapping on the way."
        )


def passed(
    name: str, cases: str, reference: str = "nst's reference", tolerance: str = TOLERANCE
) -> None:
    """Print the one line a learner sees when ``name`` matches ``reference`` on every case."""
    print(f"✓ {name} matches {reference} ({cases}; {tolerance})")
