"""The Gram matrix and the three losses of Gatys et al., with ONE normalisation used everywhere.

F is a layer's feature map with C channels at M = H*W positions; P and A are the targets' feature
map and Gram matrix:

- ``gram_matrix``: G = F Fᵀ / M: each entry is the *average* product of two channels over the
  image, so it does not grow with the image size.
- ``content_loss``: mean((F - P)²) / mean(P²), a relative squared error.
- ``style_loss``: per layer mean((G - A)²) / mean(A²), then a weighted sum over layers (weights
  default to 1/len(layers), so adding layers does not inflate the loss).
- ``tv_loss``: mean squared difference between neighbouring pixels (pixels in [0, 1]).
- ``masked_style_loss`` (lesson 08): the style loss per region of the photo, each region's masked
  Gram (``nst.masks.masked_gram``) matched to its own painting.

Every term is relative to its target, so it is 0 for a perfect match and around 1 for an image that
shares nothing with it (noise scores 1 to 3, depending on the layer), and each style layer counts
about equally, whatever the size of its Gram entries. Like the published conventions, the losses
do not grow with the image size. How they relate to others (the Gram lesson converts weights):
Gatys et al. write E_l = Σ(G_raw - A_raw)² / (4 C² M²) with G_raw = F Fᵀ, so ours per layer is
4·E_l / mean(A²); the PyTorch tutorial divides the Gram by C*M and takes the plain MSE, so ours is
its per-layer loss divided by the mean square of its target Gram.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from nst.errors import NSTError
from nst.masks import check_masks, mask_at, masked_gram
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, VGG19Features, extract_features

LossFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]
# One layer's style loss: the result's features (B,C,H,W) and the layer's target -> a scalar.
LayerLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# One region's style loss: result features (B,C,h,w), the region's (1,1,h,w) mask, the target.
RegionLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _check_features(feats: torch.Tensor, name: str, what: str = "a feature map") -> None:
    """Raise NSTError unless ``feats`` is a 4-D tensor (B,C,H,W)."""
    if not isinstance(feats, torch.Tensor) or feats.dim() != 4:
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise NSTError(f"{name} must be {what} of shape (B, C, H, W), got {shape}.")


def gram_matrix(feats: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) feature maps -> (B,C,C) Gram matrices, divided by the number of positions H*W."""
    _check_features(feats, "feats")  # a wrong shape gets one sentence, not a reshape error
    b, c, h, w = feats.shape
    flat = feats.reshape(b, c, h * w)  # (B,C,M): one row per channel
    return flat @ flat.transpose(1, 2) / (h * w)  # (B,C,M) @ (B,M,C) -> (B,C,C)


def relative_squared_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean((x - target)²) / mean(target²) of two tensors of one shape -> scalar: 0 is a match."""
    return ((x - target) ** 2).mean() / (target**2).mean().clamp_min(1e-12)  # no 0/0 for a 0 target


def relative_error(x: torch.Tensor, target: torch.Tensor) -> float:
    """‖x - target‖ / ‖target‖ as a number: the square root of ``relative_squared_error``."""
    return float(relative_squared_error(x.detach().float(), target.detach().float()).sqrt())


def _check_same_shape(gen_feats: torch.Tensor, content_feats: torch.Tensor) -> None:
    """Raise NSTError unless the two feature maps have one shape (B,C,H,W)."""
    _check_features(gen_feats, "gen_feats")
    if gen_feats.shape != content_feats.shape:
        raise NSTError(
            f"content_loss needs feature maps of one shape, got {tuple(gen_feats.shape)} and "
            f"{tuple(content_feats.shape)}; give gen_img the content image's size."
        )


def content_loss(gen_feats: torch.Tensor, content_feats: torch.Tensor) -> torch.Tensor:
    """Relative squared error mean((F - P)²) / mean(P²) of two (B,C,H,W) feature maps -> scalar."""
    _check_same_shape(gen_feats, content_feats)
    return relative_squared_error(gen_feats, content_feats)


def gram_loss(gen_feats: torch.Tensor, style_gram: torch.Tensor) -> torch.Tensor:
    """One layer's style loss mean((G - A)²) / mean(A²): (B,C,H,W) features, (B,C,C) target."""
    # .float(): under autocast the features arrive in bf16/fp16; the loss is computed in fp32
    return relative_squared_error(gram_matrix(gen_feats.float()), style_gram)


def layer_weights_for(
    style_layers: Sequence[str], layer_weights: Mapping[str, float] | None
) -> dict[str, float]:
    """{layer: w_l} for ``style_layers``: 1/L each by default, else as given (0 if left out)."""
    if not style_layers:
        raise NSTError("The style loss needs at least one style layer.")
    if layer_weights is None:
        return {layer: 1.0 / len(style_layers) for layer in style_layers}
    unknown = set(layer_weights) - set(style_layers)
    if unknown:
        raise NSTError(
            f"layer_weights names {sorted(unknown)}, not in style_layers {list(style_layers)}."
        )
    return {layer: float(layer_weights.get(layer, 0.0)) for layer in style_layers}


def style_loss(
    gen_feats: Mapping[str, torch.Tensor],
    style_grams: Mapping[str, torch.Tensor],
    layer_weights: Mapping[str, float] | None = None,
    layer_loss: LayerLoss = gram_loss,
) -> torch.Tensor:
    """Σ_l w_l · mean((G_l - A_l)²) / mean(A_l²) over the layers l of ``style_grams`` -> scalar.

    ``gen_feats``: {layer: (B,C,H,W)}; ``style_grams``: {layer: (B,C,C)} targets; ``layer_weights``:
    {layer: w_l}, default 1/L for each of the L layers (a layer it leaves out gets weight 0);
    ``layer_loss``: how one layer is compared, ``gram_loss`` unless another is swapped in.
    """
    weights = layer_weights_for(list(style_grams), layer_weights)
    losses = [w * layer_loss(gen_feats[layer], style_grams[layer]) for layer, w in weights.items()]
    return torch.stack(losses).sum()


def masked_gram_loss(
    gen_feats: torch.Tensor, mask: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """One region's Gram loss: mean((G_r - A)²) / mean(A²), G_r the (B,C,C) masked Gram."""
    return relative_squared_error(masked_gram(gen_feats.float(), mask), target)


def masked_style_loss(
    gen_feats: Mapping[str, torch.Tensor],
    region_targets: Sequence[Mapping[str, torch.Tensor]],
    masks: Sequence[torch.Tensor],
    layer_weights: Mapping[str, float],
    region_loss: RegionLoss = masked_gram_loss,
) -> torch.Tensor:
    """Σ_l w_l Σ_r a_r · loss(region r at layer l, painting r's target) -> scalar.

    ``region_targets[r]``: {layer: target} of painting r, its whole image; ``masks[r]``: region r,
    (1,1,H,W) at any size (pooled to each layer); a_r: the region's share of the layer's positions,
    so the regions' losses add up like one loss over the whole image.
    """
    total = torch.zeros((), device=next(iter(gen_feats.values())).device)
    for layer, w in layer_weights.items():
        feats = gen_feats[layer]  # (B,C,h,w)
        for mask, targets in zip(masks, region_targets):
            mask_l = mask_at(mask.to(feats.device), feats)  # (1,1,h,w)
            total = total + w * mask_l.mean() * region_loss(feats, mask_l, targets[layer])
    return total


def tv_loss(img: torch.Tensor) -> torch.Tensor:
    """Total variation of (B,3,H,W) images: mean squared vertical + horizontal differences."""
    _check_features(img, "img", "an image batch")  # one sentence for a wrong shape
    dy = img[:, :, 1:, :] - img[:, :, :-1, :]  # (B,3,H-1,W) vertical neighbours
    dx = img[:, :, :, 1:] - img[:, :, :, :-1]  # (B,3,H,W-1) horizontal neighbours
    return _mean_square(dy) + _mean_square(dx)


def _mean_square(diffs: torch.Tensor) -> torch.Tensor:
    """mean(d²), or 0 for an image one pixel high or wide, which has no such neighbours."""
    return (diffs**2).mean() if diffs.numel() else diffs.new_zeros(())


def style_list(style_img: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One painting (1,3,H,W) or several -> a list of them; an empty list gets one sentence."""
    styles = [style_img] if isinstance(style_img, torch.Tensor) else list(style_img)
    if not styles:
        raise NSTError("Give at least one style image.")
    return styles


def style_targets(
    model: VGG19Features,
    style_img: torch.Tensor | Sequence[torch.Tensor],
    style_layers: Sequence[str] = STYLE_LAYERS,
    style_blend: Sequence[float] | None = None,
    summary: Callable[[torch.Tensor], torch.Tensor] = gram_matrix,
) -> dict[str, torch.Tensor]:
    """Target Gram matrices {layer: (1,C,C)} of one painting, or the blend Σ_k w_k·A_k of several.

    ``style_blend``: one weight per painting (default equal); they are scaled to sum to 1.
    ``summary``: what is taken of each layer's features, the Gram matrix unless swapped.
    """
    if not style_layers:  # no style term: nothing to compute
        return {}
    styles = style_list(style_img)
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
                target = summary(f.float()) * (w / sum(blend))  # a Gram: (1,C,C)
                targets[layer] = targets[layer] + target if layer in targets else target
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
    style_layer_loss: LayerLoss = gram_loss,
    style_summary: Callable[[torch.Tensor], torch.Tensor] = gram_matrix,
    masks: Sequence[torch.Tensor] | None = None,
    style_region_loss: RegionLoss = masked_gram_loss,
) -> LossFn:
    """A function gen_img (1,3,H,W) -> {"total", "content", "style", "tv"}, targets computed once.

    total = content_weight·content + style_weight·style + tv_weight·tv. Leave out ``content_img``
    (or ``style_img``) to reconstruct only style (or only content), as in Gatys et al.'s Fig. 1.
    ``style_img`` may be a list of paintings mixed by ``style_blend`` (see ``style_targets``).
    ``autocast_dtype`` (e.g. torch.bfloat16) runs the network in lower precision; the losses are
    computed in fp32. ``style_layer_loss(gen_feats, target)`` compares one layer with the target
    that ``style_summary`` takes of the painting's features (default: ``gram_loss``, Grams).
    ``masks``: one per painting, (H,W) at any size with the photo's shape; each region is compared
    with its own painting by ``style_region_loss`` (``masked_style_loss``), instead of a blend.
    """
    if content_img is None and style_img is None:
        raise NSTError("make_loss_fn needs a content_img, a style_img, or both.")
    weights = _nonzero_weights(style_img, style_layers, layer_weights)
    stat = (style_summary, style_layer_loss, style_region_loss)
    style_term = _style_term(model, style_img, weights, style_blend, stat, masks)
    content_target = _content_target(model, content_img, content_layer)
    has_content = content_target is not None
    layers = [content_layer] * has_content + list(weights)
    device = next(model.parameters()).device

    def loss_fn(gen_img: torch.Tensor) -> dict[str, torch.Tensor]:
        gen_img = gen_img.to(device)  # differentiable: gradients flow back to the caller's tensor
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            feats = extract_features(model, gen_img, layers)
        zero = torch.zeros((), device=device)
        c = content_loss(feats[content_layer].float(), content_target) if has_content else zero
        s = style_term(feats) if style_term else zero
        t = tv_loss(gen_img) if tv_weight else zero
        total = content_weight * c + style_weight * s + tv_weight * t
        return {"total": total, "content": c, "style": s, "tv": t}

    return loss_fn


def _style_term(
    model: VGG19Features,
    style_img: torch.Tensor | Sequence[torch.Tensor] | None,
    weights: dict[str, float],
    style_blend: Sequence[float] | None,
    stat: tuple[Callable[[torch.Tensor], torch.Tensor], LayerLoss, RegionLoss],
    masks: Sequence[torch.Tensor] | None,
) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None:
    """The style loss of a feature dict: whole-image (blended targets) or region by region.

    ``stat``: the summary of a painting's features, the layer loss, the region loss.
    """
    summary, layer_loss, region_loss = stat
    if not weights or style_img is None:
        return None
    if masks is None:
        targets = style_targets(model, style_img, list(weights), style_blend, summary)
        return lambda feats: style_loss(feats, targets, weights, layer_loss)
    styles = style_list(style_img)
    if style_blend is not None:
        raise NSTError(
            "style_blend mixes paintings over the whole image, but with masks each region takes "
            "its own painting: leave style_blend out."
        )
    device = next(model.parameters()).device
    masks = [m.to(device) for m in check_masks(masks, len(styles))]
    per_region = [style_targets(model, img, list(weights), None, summary) for img in styles]
    return lambda feats: masked_style_loss(feats, per_region, masks, weights, region_loss)


def _nonzero_weights(
    style_img: object, style_layers: Sequence[str], layer_weights: Mapping[str, float] | None
) -> dict[str, float]:
    """The style layers' weights, without those of weight 0 (they cost time and change nothing)."""
    if style_img is None:
        return {}
    weights = layer_weights_for(style_layers, layer_weights)
    return {layer: w for layer, w in weights.items() if w}


def _content_target(
    model: VGG19Features, content_img: torch.Tensor | None, content_layer: str
) -> torch.Tensor | None:
    """The photo's features (1,C,H,W) at ``content_layer``, or None without a photo."""
    if content_img is None:
        return None
    with torch.no_grad():  # a constant: no graph needed
        return extract_features(model, content_img, [content_layer])[content_layer].float()
