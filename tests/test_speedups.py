"""Tests for nst.speedups: autocast's dtype, the Gram loss's gradient by hand, malloc_trim."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from nst.errors import NSTError
from nst.images import noise_like
from nst.losses import gram_loss, gram_matrix, make_loss_fn, style_loss
from nst.speedups import (
    GramLossByHand,
    _malloc_trim,
    autocast_dtype,
    gram_loss_by_hand,
    release_free_memory,
)


def test_autocast_dtype_defaults():
    assert autocast_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert autocast_dtype("auto", torch.device("cuda")) == torch.float16
    assert autocast_dtype("fp32", torch.device("cpu")) is None
    with pytest.raises(NSTError, match="precision"):
        autocast_dtype("int8", torch.device("cpu"))


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_make_loss_fn_with_the_hand_gradient_matches(model, content64, style64, amp) -> None:
    grads, outs = [], []
    for hand in (False, True):
        layer_loss = gram_loss_by_hand if hand else gram_loss
        loss_fn = make_loss_fn(
            model,
            content64,
            style64,
            tv_weight=1.0,
            autocast_dtype=amp,
            style_layer_loss=layer_loss,
        )
        gen = noise_like(content64, seed=5).requires_grad_(True)
        out = loss_fn(gen)
        out["total"].backward()
        outs.append({k: float(v.detach()) for k, v in out.items()})
        grads.append(gen.grad)
    assert outs[1] == pytest.approx(outs[0], rel=1e-5)  # the same fp32 losses
    cosine = F.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cosine > (0.99999 if amp is None else 0.999), float(cosine)


def test_hand_gradient_passes_gradcheck() -> None:
    feats = torch.rand(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    target = gram_matrix(torch.rand(1, 3, 4, 5, dtype=torch.float64))  # (1,3,3), symmetric
    assert torch.autograd.gradcheck(lambda f: GramLossByHand.apply(f, target), (feats,))


def test_hand_gradient_same_value_and_gradient_as_autograd() -> None:
    gen = {"a": torch.rand(1, 4, 6, 6), "b": torch.rand(1, 8, 3, 3)}
    targets = {name: gram_matrix(torch.rand_like(f)) for name, f in gen.items()}
    results = []
    for hand in (False, True):
        feats = {name: f.clone().requires_grad_(True) for name, f in gen.items()}
        layer_loss = gram_loss_by_hand if hand else gram_loss
        loss = style_loss(feats, targets, {"a": 0.3, "b": 2.0}, layer_loss)
        loss.backward()
        results.append((loss.detach(), {name: f.grad for name, f in feats.items()}))
    (loss_auto, grads_auto), (loss_hand, grads_hand) = results
    torch.testing.assert_close(loss_hand, loss_auto)
    for name in gen:
        torch.testing.assert_close(grads_hand[name], grads_auto[name])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_hand_gradient_in_low_precision_keeps_dtype_and_direction(dtype) -> None:
    torch.manual_seed(0)
    feats32 = torch.rand(1, 16, 32, 32)
    target = gram_matrix(torch.rand(1, 16, 32, 32))
    auto = feats32.clone().requires_grad_(True)
    style_loss({"a": auto}, {"a": target}).backward()
    low = feats32.to(dtype).requires_grad_(True)
    loss = style_loss({"a": low}, {"a": target}, layer_loss=gram_loss_by_hand)
    loss.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == dtype
    cosine = F.cosine_similarity(low.grad.float().flatten(), auto.grad.flatten(), dim=0)
    assert cosine > 0.999, float(cosine)


def _rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(_malloc_trim() is None, reason="needs Linux with glibc (malloc_trim)")
def test_release_free_memory_gives_a_fragmented_heap_back():
    # 100 kB blocks (below glibc's mmap threshold: on the heap); every other one is freed, so each
    # freed block lies between two live ones: free() cannot give it back, only malloc_trim can.
    blocks = [bytearray(100_000) for _ in range(4000)]
    del blocks[::2]  # 200 MB freed in 2000 holes
    before = _rss_mb()
    release_free_memory()
    assert before - _rss_mb() > 100, (before, _rss_mb())  # without the trim: about 0
    assert len(blocks) == 2000
