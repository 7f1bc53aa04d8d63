"""Paths of the images bundled in the repository's ``data/`` folder, by name."""

from __future__ import annotations

from pathlib import Path

from nst.errors import NSTError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CONTENT_IMAGES = ("astronaut", "chelsea", "coffee", "grace_hopper")
STYLE_IMAGES = ("starry_night", "great_wave", "composition_viii", "village_street_auvers")
MASK_IMAGES = ("astronaut",)  # hand-made region labels for the photo of the same name


def _bundled(kind: str, name: str, names: tuple[str, ...], suffix: str = ".jpg") -> Path:
    """Path of ``data/<kind>/<name><suffix>``; one sentence listing the choices if unknown."""
    if name not in names:
        raise NSTError(f"No bundled {kind} image {name!r}; choose one of {', '.join(names)}.")
    path = DATA_DIR / kind / f"{name}{suffix}"
    if not path.is_file():
        raise NSTError(f"{path} is missing; install nst from a clone with `pip install -e .`.")
    return path


def content_path(name: str) -> Path:
    """Path of a bundled photo, e.g. ``content_path("chelsea")``."""
    return _bundled("content", name, CONTENT_IMAGES)


def style_path(name: str) -> Path:
    """Path of a bundled painting, e.g. ``style_path("starry_night")``."""
    return _bundled("style", name, STYLE_IMAGES)


def mask_path(name: str) -> Path:
    """Path of a photo's hand-made region labels (grey PNG), e.g. ``mask_path("astronaut")``."""
    return _bundled("masks", name, MASK_IMAGES, ".png")
