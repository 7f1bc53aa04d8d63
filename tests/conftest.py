"""Shared fixtures: one frozen Oxford VGG19 on the CPU and small bundled images for the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nst
from nst.data import content_path, style_path
from nst.images import load_image

ROOT = Path(__file__).resolve().parent.parent

# The tests use 8-96 px images, which gain nothing from intra-op threads; on a shared CPU two
# processes spinning two OpenMP threads each made a 15-step run 20x slower (1 s -> 23 s).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model() -> nst.vgg.VGG19Features:
    """The default model (Oxford weights, cut after relu5_1) on the CPU; never modify it."""
    return nst.load_vgg19(device="cpu")


@pytest.fixture(scope="session")
def content64() -> torch.Tensor:
    """The bundled photo 'chelsea' with a long side of 64 px, (1, 3, H, 64)."""
    return load_image(content_path("chelsea"), long_side=64)


@pytest.fixture(scope="session")
def style64() -> torch.Tensor:
    """The bundled painting 'starry_night' with a long side of 64 px, (1, 3, H, W)."""
    return load_image(style_path("starry_night"), long_side=64)


@pytest.fixture(scope="session")
def run_python():
    """``run(code, cwd, **env)``: ``python -c code`` in a fresh interpreter importing this nst."""

    def run(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")])
        environ.update(env)
        return subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True
        )

    return run
