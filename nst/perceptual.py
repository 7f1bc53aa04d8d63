"""Training a ``nst.fast.TransformerNet`` with perceptual losses (Johnson et al., 2016).

The losses are the ones the lessons built: ``content_loss`` between the network's output and its
input photo at relu4_2, ``style_loss`` between the output's Gram matrices and the painting's, and
``tv_loss``. What changes is what is optimised: not one image but the network's weights, on
batches of random crops of many photos, so that it learns to paint photos it has never seen.

``training_photos()`` lists the bundled photos (``data/train/``: public domain, CC0 or CC-BY,
credited in ``data/CREDITS.md``); ``random_crops`` draws a batch; ``PerceptualLoss`` scores one;
``train_step`` is one update; ``train`` runs many and reports each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from nst.data import DATA_DIR
from nst.errors import NSTError
from nst.fast import TransformerNet
from nst.images import load_image, resize
from nst.losses import content_loss, style_loss, style_targets, tv_loss
from nst.progress import Progress
from nst.speedups import autocast_dtype, gram_loss_by_hand
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, VGG19Features

TRAIN_DIR = DATA_DIR / "train"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
# One training report: step, seconds so far, and the loss terms of that step's batch.
Row = dict[str, float]


@dataclass(frozen=True)
class TrainOptions:
    """How a network is trained; ``make train``'s defaults are these."""

    steps: int = 1600  # weight updates; each sees ``batch`` crops
    batch: int = 4  # crops per update
    crop: int = 224  # crop side, px, taken from photos scaled to ``photo_side`` or a bit less
    photo_side: int = 512  # the photos' long side: the scale the network learns to paint at
    lr: float = 2e-3  # Adam's learning rate, decayed to a tenth along a cosine
    content_weight: float = 1.0
    style_weight: float = 5.0  # half stylize's: at 10 the results keep less of the photo
    tv_weight: float = 10.0
    seed: int = 0

    def record(self) -> dict:
        """The settings as a plain dict, for the JSON beside a network."""
        return asdict(self)


def training_photos(folder: Path = TRAIN_DIR) -> list[Path]:
    """The photos in ``folder`` (default ``data/train/``), sorted by name."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise NSTError(f"No .jpg or .png photos in {folder}; give a folder of photos.")
    return paths


def load_photos(paths: Sequence[Path], long_side: int = 512) -> list[torch.Tensor]:
    """Each photo as (1,3,H,W) with its long side ``long_side`` px (CPU, float32)."""
    return [resize(load_image(p), long_side) for p in paths]


def random_crops(
    photos: Sequence[torch.Tensor], crop: int, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch`` random square crops (B,3,crop,crop): a random photo, scale and place, maybe
    mirrored; each photo shrunk by up to a third first, so the network sees several scales."""

    def draw(high: int) -> int:  # a whole number in [0, high)
        return int(torch.randint(high, (1,), generator=generator))

    crops = []
    for _ in range(batch):
        photo = photos[draw(len(photos))]  # (1,3,H,W)
        h, w = photo.shape[-2:]
        scale = 1.0 - draw(34) / 100  # 1.0 down to 0.67
        side = max(crop, round(max(h, w) * scale))
        photo = resize(photo, side) if side != max(h, w) else photo
        h, w = photo.shape[-2:]
        if min(h, w) < crop:  # a thin photo: grow it until a crop fits
            photo = resize(photo, round(max(h, w) * crop / min(h, w)) + 1)
            h, w = photo.shape[-2:]
        top, left = draw(h - crop + 1), draw(w - crop + 1)
        piece = photo[..., top : top + crop, left : left + crop]  # (1,3,crop,crop)
        crops.append(piece.flip(-1) if draw(2) else piece)
    return torch.cat(crops)  # (B,3,crop,crop)


class PerceptualLoss:
    """A batch's losses: each result against its own crop (content) and the painting (style)."""

    def __init__(
        self,
        model: VGG19Features,
        style_img: torch.Tensor,
        options: TrainOptions = TrainOptions(),
        style_layers: Sequence[str] = STYLE_LAYERS,
        content_layer: str = CONTENT_LAYER,
    ) -> None:
        self.model, self.options, self.content_layer = model, options, content_layer
        self.style_layers = list(style_layers)
        self.style_grams = style_targets(model, style_img, self.style_layers)  # {layer: (1,C,C)}
        self.dtype = autocast_dtype("auto", next(model.parameters()).device)  # as stylize

    def __call__(self, gen_imgs: torch.Tensor, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B,3,H,W) results for (B,3,H,W) crops -> {"total", "content", "style", "tv"}.

        The content loss compares each result with its own crop; like ``content_loss``, it is
        one relative error over the whole batch, so crops with stronger features weigh more.
        """
        opts, device = self.options, gen_imgs.device
        low = self.dtype is not None  # VGG19 in bf16 (CPU) or fp16 (CUDA), as stylize
        with torch.autocast(device.type, dtype=self.dtype, enabled=low):
            with torch.no_grad():  # the crops' features are the targets: constants
                target = self.model(crops, [self.content_layer])[self.content_layer]
            feats = self.model(gen_imgs, [self.content_layer, *self.style_layers])
        c = content_loss(feats[self.content_layer].float(), target.float())  # (B,C,h,w) each
        s = style_loss(feats, self.style_grams, layer_loss=gram_loss_by_hand)  # (1,C,C) targets
        t = tv_loss(gen_imgs)
        total = opts.content_weight * c + opts.style_weight * s + opts.tv_weight * t
        return {"total": total, "content": c, "style": s, "tv": t}


def train_step(
    net: TransformerNet,
    loss_fn: PerceptualLoss,
    crops: torch.Tensor,
    optimizer: torch.optim.Optimizer,
) -> Row:
    """One update of the network's weights on a batch of crops (B,3,H,W) -> the losses."""
    gen_imgs = net(crops)  # (B,3,H,W): the batch, painted
    losses = loss_fn(gen_imgs, crops)
    optimizer.zero_grad()
    losses["total"].backward()  # through the frozen VGG19 and the network, to its weights
    optimizer.step()
    return {name: value.item() for name, value in losses.items()}


# After each step: callback(row, net) may look at the network (e.g. paint a held-out photo);
# returning True stops the training.
TrainCallback = Callable[[Row, TransformerNet], bool | None]


def train(
    net: TransformerNet,
    photos: Sequence[torch.Tensor],
    loss_fn: PerceptualLoss,
    options: TrainOptions = TrainOptions(),
    callback: TrainCallback | None = None,
    progress: bool = True,
) -> list[Row]:
    """Train ``net`` on random crops of ``photos`` for ``options.steps`` steps -> one row each."""
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(options.seed)  # the same crops on every run
    optimizer = torch.optim.Adam(net.parameters(), lr=options.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, options.steps, options.lr / 10)
    bar, history, start = Progress(options.steps, "train", progress), [], time.perf_counter()
    net.train()
    for step in range(1, options.steps + 1):
        batch = random_crops(photos, options.crop, options.batch, generator).to(device)
        row = {"step": step, **train_step(net, loss_fn, batch, optimizer)}
        schedule.step()
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        bar.update(step, row["total"])
        if callback is not None and callback(row, net):
            break
    bar.close()
    return history
