"""nst: the helpers that the neural-style-transfer lessons build, one small module per idea.

Vocabulary used everywhere: ``content_img`` (the photo), ``style_img`` (the painting), ``gen_img``
(the image being optimised), all tensors (1, 3, H, W) RGB in [0, 1]; ``content_layer``,
``style_layers``, ``content_weight``, ``style_weight``, ``tv_weight``; a *step* is one
loss-and-gradient evaluation.
"""

from importlib.metadata import PackageNotFoundError, version

from nst import (
    checks,
    color,
    data,
    errors,
    images,
    losses,
    metrics,
    optim,
    plot,
    recipe,
    speedups,
    vgg,
)
from nst.errors import ImageError, NSTError
from nst.images import load_image, save_image
from nst.losses import content_loss, gram_matrix, make_loss_fn, style_loss, tv_loss
from nst.optim import optimize
from nst.recipe import stylize
from nst.vgg import CONTENT_LAYER, STYLE_LAYERS, extract_features, load_vgg19

try:  # the version pyproject.toml sets, as pip installed it
    __version__ = version("nst")
except PackageNotFoundError:  # a source tree on sys.path without `pip install -e .`
    __version__ = "unknown"

__all__ = [
    "CONTENT_LAYER",
    "STYLE_LAYERS",
    "ImageError",
    "NSTError",
    "checks",
    "color",
    "content_loss",
    "data",
    "errors",
    "extract_features",
    "gram_matrix",
    "images",
    "load_image",
    "load_vgg19",
    "losses",
    "make_loss_fn",
    "metrics",
    "optim",
    "optimize",
    "plot",
    "recipe",
    "save_image",
    "speedups",
    "style_loss",
    "stylize",
    "tv_loss",
    "vgg",
]
