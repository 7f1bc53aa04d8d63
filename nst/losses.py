"""The Gram matrix and the three losses of Gatys et al., with ONE normalisation used everywhere.

F is a layer's feature map with C channels at M = H*W positions; P and A are the targets' feature
map and Gram matrix:

- ``gram_matrix``: G = F Fᵀ / M: each entry is the *average* product of two channels over the
  image, so it does not grow with the image size.
- ``content_loss``: mean((F - P)²) / mean(P²), a relative squared error.
- ``style_loss``: per layer mean((G - A)²) / mean(A²), then a weighted sum over layers (weights
  default to 1/len(layers), so adding layers does not inflate the loss).
- ``tv_loss``: mean squared difference between neighbouring pixels (pixels in [0, 1]).

Every term is relative to its target, so it is 0 for a perfect match and around 1 for an image that
shares nothing with it (noise scores 1 to 3, depending on the layer), and each style layer counts
about equally, whatever the size of its Gram entries. Like the published conventions, the losses
do not grow with the image size. How they relate to others (lesson 02 converts the weights):
Gatys et al. write E_l = Σ(G_raw - A_raw)² / (4 C² M²) with G_raw = F Fᵀ, so ours per layer is
4·E_l / mean(A²); the PyTorch tutorial divides the Gram by C*M and takes the plain MSE, so ours is
its per-layer loss divided by the mean square of its target Gram.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch.autograd.function import FunctionCtx

from nst.errors import NSTError
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, VGG19Features, extract_features

LossFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def _check_features(feats: torch.Tensor, name: str) -> None:
    """Raise NSTError unless ``feats`` is a 4-D tensor (B,C,H,W)."""
    if not isinstance(feats, torch.Tensor) or feats.dim() != 4:
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise NSTError(f"{name} must be a feature map of shape (B, C, H, W), got {shape}.")


def gram_matrix(feats: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) feature maps -> (B,C,C) Gram matrices, divided by the number of positions H*W."""
    _check_features(feats, "feats")
    b, c, h, w = feats.shape
    flat = feats.reshape(b, c, h * w)  # (B,C,M): one row per channel
    return flat @ flat.transpose(1, 2) / (h * w)  # (B,C,M) @ (B,M,C) -> (B,C,C)


def content_loss(gen_feats: torch.Tensor, content_feats: torch.Tensor) -> torch.Tensor:
    """Relative squared error mean((F - P)²) / mean(P²) of two (B,C,H,W) feature maps -> scalar."""
    _check_features(gen_feats, "gen_feats")
    if gen_feats.shape != content_feats.shape:
        raise NSTError(
            f"content_loss needs feature maps of one shape, got {tuple(gen_feats.shape)} and "
            f"{tuple(content_feats.shape)}; give gen_img the content image's size."
        )
    return ((gen_feats - content_feats) ** 2).mean() / (content_feats**2).mean().clamp_min(1e-12)


class StyleLayerLoss(torch.autograd.Function):
    """One layer's style loss mean((G - A)²) / mean(A²), as in ``style_loss``, gradient by hand.

    Lesson 05's last speed-up. Autograd's own gradient of G = F Fᵀ / M keeps an fp32 copy of the
    features (under autocast they are bf16/fp16) and adds two (C,M) products, one of them
    transposed, which is slow on CPUs. By hand, since G - A is symmetric:
    dL/dF = 4 (G - A) F / (C² M mean(A²)): one product, from the features as they are.
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
        # fp16's small range could overflow in this product: compute it in fp32 there
        dtype = torch.float32 if feats.dtype == torch.float16 else feats.dtype
        d_gram = diff * (4 * grad_out * scale / (diff.numel() * h * w))  # (B,C,C), symmetric
        flat = feats.reshape(b, c, h * w).to(dtype)  # (B,C,M)
        return (d_gram.to(dtype) @ flat).to(feats.dtype).reshape(feats.shape), None


def style_loss(
    gen_feats: Mapping[str, torch.Tensor],
    style_grams: Mapping[str, torch.Tensor],
    layer_weights: Mapping[str, float] | None = None,
    hand_gradient: bool = False,
) -> torch.Tensor:
    """Σ_l w_l · mean((G_l - A_l)²) / mean(A_l²) over the layers l of ``style_grams`` -> scalar.

    ``gen_feats``: {layer: (B,C,H,W)}; ``style_grams``: {layer: (B,C,C)} targets; ``layer_weights``:
    {layer: w_l}, default 1/L for each of the L layers (a layer it leaves out gets weight 0);
    ``hand_gradient``: the same value through ``StyleLayerLoss`` (lesson 05), a faster gradient.
    """
    if not style_grams:
        raise NSTError("style_loss needs at least one style layer.")
    if layer_weights is None:
        layer_weights = {layer: 1.0 / len(style_grams) for layer in style_grams}
    unknown = set(layer_weights) - set(style_grams)
    if unknown:
        raise NSTError(f"layer_weights names {sorted(unknown)}, which are not style layers.")
    loss = torch.zeros((), device=next(iter(style_grams.values())).device)
    for layer, target in style_grams.items():
        if hand_gradient:
            relative = StyleLayerLoss.apply(gen_feats[layer], target)
        else:
            gram = gram_matrix(gen_feats[layer])  # (B,C,C), like target
            relative = ((gram - target) ** 2).mean() / (target**2).mean().clamp_min(1e-12)
        loss = loss + layer_weights.get(layer, 0.0) * relative
    return loss


def tv_loss(img: torch.Tensor) -> torch.Tensor:
    """Total variation of (B,3,H,W) images: mean squared neighbour difference -> scalar."""
    _check_features(img, "img")
    dy = img[:, :, 1:, :] - img[:, :, :-1, :]  # (B,3,H-1,W) vertical neighbours
    dx = img[:, :, :, 1:] - img[:, :, :, :-1]  # (B,3,H,W-1) horizontal neighbours
    # An image one pixel high (or wide) has no vertical (horizontal) neighbours: that term is 0.
    return sum(((d**2).mean() for d in (dy, dx) if d.numel()), img.new_zeros(()))


def relative_error(gen_feats: torch.Tensor, target_feats: torch.Tensor) -> float:
    """‖gen - target‖ / ‖target‖ for two tensors of one shape: 0 is a perfect match."""
    return float((gen_feats - target_feats).norm() / target_feats.norm().clamp_min(1e-12))


def style_targets(
    model: VGG19Features,
    style_img: torch.Tensor | Sequence[torch.Tensor],
    style_layers: Sequence[str] = STYLE_LAYERS,
    style_blend: Sequence[float] | None = None,
) -> dict[str, torch.Tensor]:
    """Target Gram matrices {layer: (1,C,C)} of one painting, or the blend Σ_k w_k·A_k of several.

    ``style_blend``: one weight per painting (default equal); they are scaled to sum to 1.
    """
    styles = [style_img] if isinstance(style_img, torch.Tensor) else list(style_img)
    if not styles:
        raise NSTError("Give at least one style image.")
    blend = [1.0] * len(styles) if style_blend is None else [float(w) for w in style_blend]
    if len(blend) != len(styles) or min(blend) < 0 or sum(blend) <= 0:
        raise NSTError(
            f"style_blend needs one weight >= 0 per style image ({len(styles)}), "
            f"not all zero; got {list(blend)}."
        )
    targets: dict[str, torch.Tensor] = {}
    with torch.no_grad():  # targets are constants: no graph needed
        for img, w in zip(styles, blend):
            for layer, f in extract_features(model, img, list(style_layers)).items():
                gram = gram_matrix(f.float()) * (w / sum(blend))  # (1,C,C)
                targets[layer] = targets[layer] + gram if layer in targets else gram
    return targets


def make_loss_fn(
    model: VGG19Features,
    content_img: torch.Tensor | None = None,
    style_img: torch.Tensor | Sequence[torch.Tensor] | None = None,
    *,
    content_layer: str = CONTENT_LAYER,
    style_layers: Sequence[str] = STYLE_LAYERS,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    tv_weight: float = 0.0,
    layer_weights: Mapping[str, float] | None = None,
    style_blend: Sequence[float] | None = None,
    autocast_dtype: torch.dtype | None = None,
    hand_gradient: bool = False,
) -> LossFn:
    """A function gen_img (1,3,H,W) -> {"total", "content", "style", "tv"}, targets computed once.

    total = content_weight·content + style_weight·style + tv_weight·tv. Leave out ``content_img``
    (or ``style_img``) to reconstruct only style (or only content), as in Gatys et al.'s Fig. 1.
    ``style_img`` may be a list of paintings mixed by ``style_blend`` (see ``style_targets``).
    ``autocast_dtype`` (e.g. torch.bfloat16) runs the network in lower precision (lesson 05);
    the losses themselves are always computed in fp32. ``hand_gradient``: the style loss through
    ``StyleLayerLoss`` (lesson 05): the same values, a faster gradient, and no fp32 copies kept.
    """
    if content_img is None and style_img is None:
        raise NSTError("make_loss_fn needs a content_img, a style_img, or both.")
    style_layers = list(style_layers) if style_img is not None else []
    content_layers = [content_layer] if content_img is not None else []
    if layer_weights is not None and set(layer_weights) - set(style_layers):
        raise NSTError(f"layer_weights names layers not in style_layers {style_layers}.")
    if layer_weights is not None:  # a layer with weight 0 costs time and changes nothing
        style_layers = [layer for layer in style_layers if layer_weights.get(layer, 0.0)]
        layer_weights = {layer: layer_weights[layer] for layer in style_layers}
    with torch.no_grad():  # targets are constants: no graph needed
        content_target = (
            extract_features(model, content_img, content_layers)[content_layer]
            if content_layers
            else None
        )
    style_grams = (
        style_targets(model, style_img, style_layers, style_blend)
        if style_img is not None and style_layers
        else {}
    )

    device = next(model.parameters()).device

    def loss_fn(gen_img: torch.Tensor) -> dict[str, torch.Tensor]:
        gen_img = gen_img.to(device)  # differentiable: gradients flow back to the caller's tensor
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            feats = extract_features(model, gen_img, content_layers + list(style_grams))
        if not hand_gradient:  # StyleLayerLoss casts each layer to fp32 itself, and keeps no copy
            feats = {k: v.float() for k, v in feats.items()}  # the losses in fp32, always
        zero = torch.zeros((), device=device)
        c = content_loss(feats[content_layer].float(), content_target) if content_layers else zero
        s = style_loss(feats, style_grams, layer_weights, hand_gradient) if style_grams else zero
        t = tv_loss(gen_img) if tv_weight else zero
        total = content_weight * c + style_weight * s + tv_weight * t
        return {"total": total, "content": c, "style": s, "tv": t}

    return loss_fn
