"""Lesson 09's checks: instance normalisation by hand, and a transposed convolution's overlaps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from nst.checks._core import (
    CheckError,
    call_on_copies,
    function_name,
    passed,
    random_tensor,
    require_gradient,
    require_result,
)

EPS = 1e-5  # nn.InstanceNorm2d's default
TOLERANCE = 1e-4  # outputs are about 1 in size; float32 sums of 30 values differ by ~1e-6


def check_instance_norm(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check instance normalisation (B,C,H,W) -> (B,C,H,W): per image and channel, mean 0, std 1."""
    name = function_name(fn)
    b, c, h, w = 3, 4, 5, 6
    x = 2.0 + 3.0 * random_tensor(b, c, h, w, seed=11)
    x[0, 1] = 0.7  # one constant channel: 0 / sqrt(0 + eps), not a division by zero
    got = call_on_copies(fn, name, x)
    if isinstance(got, torch.Tensor) and got.shape == x.shape and not torch.isfinite(got).all():
        raise CheckError(f"{name} divides by zero on a constant channel: add eps = {EPS:g}.")
    _reject_wrong_statistics(name, got, x)
    want = F.instance_norm(x.double(), eps=EPS).float()  # (B,C,H,W), computed in float64
    require_result(name, got, want)
    if not torch.allclose(got.float(), want, rtol=0, atol=TOLERANCE):
        error = (got.float() - want).abs().max().item()
        raise CheckError(f"{name} differs from nn.InstanceNorm2d by up to {error:.3g}.")
    require_gradient(name, fn, x)
    cases = f"a batch of shape {(b, c, h, w)}, one channel constant"
    passed(name, cases, "nn.InstanceNorm2d", f"atol {TOLERANCE:g}")


def _reject_wrong_statistics(name: str, got: Any, x: torch.Tensor) -> None:
    """Raise CheckError if ``got`` normalised over the wrong positions or with the unbiased std."""
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        return
    wrong = {
        "normalises over the whole batch (batch normalisation): use each image alone, dim=(2, 3)": (
            F.batch_norm(x, None, None, training=True, eps=EPS)
        ),
        "normalises over all channels together (layer normalisation): one channel at a time": (
            F.layer_norm(x, x.shape[1:], eps=EPS)
        ),
        "subtracts the mean but does not divide by the standard deviation": (
            x - x.mean((2, 3), keepdim=True)
        ),
        "uses the unbiased variance: use correction=0 (divide by H*W)": (
            (x - x.mean((2, 3), keepdim=True))
            / (x.var((2, 3), keepdim=True, correction=1) + EPS).sqrt()
        ),
    }
    for sentence, value in wrong.items():
        if torch.allclose(got.float(), value, atol=1e-4):
            raise CheckError(f"{name} {sentence}.")


def transposed_overlaps(length: int, kernel: int, stride: int) -> torch.Tensor:
    """How many kernel taps of a 1-D transposed convolution land on each output position."""
    ones = torch.ones(1, 1, length)  # (1,1,L): the input
    taps = torch.ones(1, 1, kernel)  # (1,1,K): every tap counts 1
    return F.conv_transpose1d(ones, taps, stride=stride)[0, 0]  # ((L-1)·stride + K,)


def check_overlap_counts(fn: Callable[[int, int, int], torch.Tensor]) -> None:
    """Check a function (length, kernel, stride) -> the taps landing on each output position."""
    name = function_name(fn)
    for length, kernel, stride in [(6, 3, 2), (5, 4, 2), (4, 3, 1), (3, 5, 3)]:
        want = transposed_overlaps(length, kernel, stride)
        got = call_on_copies(fn, name, length, kernel, stride)
        got = torch.as_tensor(got, dtype=torch.float32) if isinstance(got, (list, tuple)) else got
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or not got.eq(want).all():
            shown = got.tolist() if isinstance(got, torch.Tensor) else got
            raise CheckError(
                f"{name}({length}, {kernel}, {stride}) returned {shown}, expected "
                f"{want.int().tolist()}: input i covers outputs i*stride to i*stride + kernel - 1."
            )
    passed(name, "four (length, kernel, stride) cases", "F.conv_transpose1d", "exact")
