"""Speed-ups for the recipe that change how fast it runs, not what it computes.

- ``autocast_dtype``: run the network in bf16 (CPU) or fp16 (CUDA) while the losses stay fp32.
- ``GramLossByHand`` / ``gram_loss_by_hand``: the Gram loss of one layer with its gradient
  written by hand, swapped into ``make_loss_fn(style_layer_loss=...)``.
- ``release_free_memory``: hand the C heap's free pages back to the system after each step.

``nst.stylize`` uses all three; each can be switched off or compared on its own.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import torch
from torch.autograd.function import FunctionCtx

from nst.errors import NSTError
from nst.losses import gram_matrix

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    if precision not in PRECISIONS:
        raise NSTError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    if precision == "auto":  # what was measured to win: bf16 on CPUs, fp16 on CUDA
        precision = {"cpu": "bf16", "cuda": "fp16"}.get(device.type, "fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class GramLossByHand(torch.autograd.Function):
    """One layer's style loss mean((G - A)²) / mean(A²), as ``gram_loss``, gradient by hand.

    Autograd's own gradient of G = F Fᵀ / M keeps an fp32 copy of the features (under autocast
    they are bf16/fp16) and adds two (C,M) products, one of them transposed, which is slow on
    CPUs. By hand, since G - A is symmetric and the mean runs over B·C² entries:
    dL/dF = 4 (G - A) F / (B C² M mean(A²)): one product, from the features as they are.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) features of any float dtype, (B,C,C) target -> scalar, in fp32 or wider."""
        wide = feats.to(torch.promote_types(feats.dtype, torch.float32))  # bf16/fp16 -> fp32
        diff = gram_matrix(wide) - target  # (B,C,C); ``wide`` is freed on return, not kept
        scale = 1.0 / (target**2).mean().clamp_min(1e-12)
        ctx.save_for_backward(feats, diff, scale)
        return (diff**2).mean() * scale

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        """dL/dF (B,C,H,W) in the features' dtype; none for the target (a constant)."""
        feats, diff, scale = ctx.saved_tensors
        b, c, h, w = feats.shape
        # dL/dF = 4 (G - A) F / (B C² M mean(A²)): coef is the factor before F; diff.numel() = B·C²
        coef = diff * (4 * grad_out * scale / (diff.numel() * h * w))  # (B,C,C), symmetric
        # fp16's small range could overflow in this product: compute it in fp32 there
        dtype = torch.float32 if feats.dtype == torch.float16 else feats.dtype
        flat = feats.reshape(b, c, h * w).to(dtype)  # (B,C,M)
        grad = coef.to(dtype) @ flat  # (B,C,C) @ (B,C,M) -> (B,C,M)
        return grad.to(feats.dtype).reshape(feats.shape), None  # (B,C,H,W) like feats


def gram_loss_by_hand(gen_feats: torch.Tensor, style_gram: torch.Tensor) -> torch.Tensor:
    """``gram_loss`` through ``GramLossByHand``: the same value, a faster gradient."""
    return GramLossByHand.apply(gen_feats, style_gram)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is another (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (Linux with glibc; elsewhere nothing).

    glibc keeps the memory of freed tensors in its heap, scattered between live blocks, so a run's
    resident memory creeps up although its tensors do not; calling this after every step keeps
    the peak lower (``make bench`` measures it) at no measured cost.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
