"""A4's hidden tests (instructors only: tools/make_assignments.py keeps this file out of release/).

``outputs`` runs beside the student's code on inputs made from a seed; ``verdict`` runs in the
grader, outside the student's code, and raises AssertionError (one sentence). See nst.grading.

- ``make_extractor``, ``gram``, ``losses``: compared with nst on random inputs from the seed, by the
  visible checks' own comparisons (nst.checks.capstone), on other inputs.
- ``transfer``: three runs at 128 px of HIDDEN_STEPS steps each on a photo and a painting the seed
  picks; each result's content and style distances (lesson 06) must be within 10 % of the
  reference solution's on the same images. The reference solution is this folder's source
  notebook, run here in the grader (never in the sandbox, where the notebook is absent).
  ``hidden=False``: the visible check's pair and steps, against capstone.VISIBLE_DISTANCES.

The grader runs the submission with the settings cell replaced (GRADING_CELLS), so that the
notebook's experiments take seconds.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
from pathlib import Path

import torch

import nst
import nst.checks.capstone as capstone
from nst.grading import VISIBLE_SEED, Exercise, generator

HIDDEN_STEPS = 60  # per run: three runs at capstone.CHECK_SIZE (128 px)
PHOTOS = ("chelsea", "astronaut", "coffee", "grace_hopper")
PAINTINGS = ("starry_night", "great_wave", "composition_viii", "village_street_auvers")
GRADING_CELLS = {
    "a4_settings": "SIZE, STEPS = 128, 60  # the grader's settings: the experiments need only run"
}
# The cells of the source notebook that make the reference solution: constants, then the answers.
REFERENCE_CELLS = ("a4_constants", "make_extractor", "gram", "losses", "transfer")


def _functions_of(*modules: str) -> tuple[str, ...]:
    """Every function (and method) a module of nst defines, as dotted names."""
    names = []
    for module in modules:
        mod = __import__(module, fromlist=["_"])
        for name, obj in vars(mod).items():
            if inspect.isfunction(obj) and obj.__module__ == module:
                names.append(f"{module}.{name}")
            elif inspect.isclass(obj) and obj.__module__ == module and "forward" in vars(obj):
                names.append(f"{module}.{name}.forward")  # an nn.Module's or autograd Function's
    return tuple(names)


VGG = (
    "nst.vgg.load_vgg19",
    "nst.vgg.extract_features",
    "nst.vgg.vgg19_features",
    "nst.vgg.layer_index",
    "nst.vgg.VGG19Features.forward",
    "nst.vgg.CaffePreprocess.forward",
)
LOSSES = _functions_of("nst.losses", "nst.speedups", "nst.style_stats")
WHOLE = ("nst.recipe.stylize", "nst.fast.stylize", "nst.images.resize", "nst.images.resize_to")
OPTIM = _functions_of("nst.optim")


# --- exercises 1-3: against nst, on random inputs ----------------------------------------------


def extractor_outputs(fn, seed):
    return capstone.run_extractor(fn, *capstone.extractor_case(seed))


def extractor_verdict(seed, out, hidden):
    capstone.compare_extractor("make_extractor", out, *capstone.extractor_case(seed))


def gram_outputs(fn, seed):
    return capstone.run_gram(fn, capstone.gram_case(seed))


def gram_verdict(seed, out, hidden):
    capstone.compare_gram("gram", out, capstone.gram_case(seed))


def losses_outputs(fn, seed):
    return capstone.run_losses(fn, capstone.losses_case(seed))


def losses_verdict(seed, out, hidden):
    capstone.compare_losses("losses", out, capstone.losses_case(seed))


# --- exercise 4: the whole method, judged by distances ------------------------------------------


def _pair(seed: int) -> tuple[str, str]:
    """(photo, painting): the visible check's for VISIBLE_SEED, else picked by the seed."""
    if seed == VISIBLE_SEED:
        return capstone.VISIBLE_PAIR
    i, j = torch.randint(0, 4, (2,), generator=generator(seed)).tolist()
    return PHOTOS[i], PAINTINGS[j]


def _images(pair: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """A (photo, painting) pair's images at full size, (1,3,H,W) each."""
    photo, painting = pair
    content_img = nst.load_image(nst.data.content_path(photo))
    return content_img, nst.load_image(nst.data.style_path(painting))


def transfer_outputs(fn, seed):
    steps = capstone.VISIBLE_STEPS if seed == VISIBLE_SEED else HIDDEN_STEPS
    return capstone.run_transfer(fn, *_images(_pair(seed)), steps)


# What the notebook's imports cell brings in, without its print: the answers' namespace starts so.
PREAMBLE = (
    "import torch\nimport torch.nn.functional as F\nimport torchvision\n"
    "from torchvision.models.feature_extraction import create_feature_extractor\nimport nst\n"
)


def solution_namespace(**edits: str) -> dict:
    """The source notebook's answers (REFERENCE_CELLS) run in one namespace; ``edits`` replace
    cells by grade id (tests/test_capstone.py makes wrong answers so)."""
    import nbformat  # the grader's: only the verdict and the tests need it

    (path,) = Path(__file__).parent.glob("A4_*.ipynb")
    cells = {
        c.metadata.get("nbgrader", {}).get("grade_id"): c.source
        for c in nbformat.read(path, as_version=4).cells
    }
    cells.update(edits)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(PREAMBLE + "\n\n".join(cells[gid] for gid in REFERENCE_CELLS), namespace)
    return namespace


@functools.lru_cache(maxsize=1)
def _reference_solution():
    """The source notebook's transfer (with its extractor, gram and losses), defined here."""
    return solution_namespace()["transfer"]


@functools.lru_cache(maxsize=16)  # a grading run meets each of the 16 pairs at most once
def _reference_distances(pair: tuple[str, str], steps: int) -> dict[str, tuple[float, float]]:
    """The reference solution's (content, style) distances for each run on a pair."""
    transfer = _reference_solution()
    content_img, style_img = _images(pair)
    got = capstone.run_transfer(transfer, content_img, style_img, steps)
    photo, painting = (nst.images.resize(x, capstone.CHECK_SIZE) for x in (content_img, style_img))
    return {run: capstone.measure(got[f"{run}_img"], photo, painting) for run in capstone.RUNS}


def transfer_verdict(seed, out, hidden):
    if hidden:
        steps, want = HIDDEN_STEPS, _reference_distances(_pair(seed), HIDDEN_STEPS)
    else:
        steps, want = capstone.VISIBLE_STEPS, capstone.VISIBLE_DISTANCES
    capstone.compare_transfer("transfer", out, _images(_pair(seed)), steps, want)


EXERCISES = {
    "make_extractor": Exercise(extractor_outputs, extractor_verdict, VGG),
    "gram": Exercise(gram_outputs, gram_verdict, LOSSES),
    "losses": Exercise(losses_outputs, losses_verdict, LOSSES),
    "transfer": Exercise(transfer_outputs, transfer_verdict, VGG + LOSSES + OPTIM + WHOLE),
}


# A correct answer written another way (create_feature_extractor, a bmm Gram matrix), for
# tests/test_capstone.py: it lives with the instructors' files, since the students' repository must
# not hold a correct answer.
CORRECT_ANOTHER_WAY = {
    "make_extractor": '''
def make_extractor(names):
    """create_feature_extractor instead of forward hooks."""
    features = torchvision.models.vgg19(weights=None).features
    features.load_state_dict(nst.vgg.load_oxford_state_dict())
    features.requires_grad_(False).eval()
    nodes, block, conv = {}, 1, 0
    for index, layer in enumerate(features):
        if isinstance(layer, torch.nn.ReLU):
            layer.inplace = False
            nodes[f"relu{block}_{conv}"] = str(index)
        elif isinstance(layer, torch.nn.Conv2d):
            conv += 1
            nodes[f"conv{block}_{conv}"] = str(index)
        else:
            nodes[f"pool{block}"] = str(index)
            block, conv = block + 1, 0
    taps = create_feature_extractor(features, return_nodes={nodes[n]: n for n in names})
    mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)

    def extractor(img):
        taps.to(img.device)
        return taps(img.flip(1) * 255 - mean.to(img.device))

    return extractor
''',
    "gram": """
def gram(feats):
    b, c, h, w = feats.shape
    flat = feats.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)
""",
}


def run(name, fn):
    """The instructor's preview, in the source notebook: this hidden test on a fixed seed."""
    nst.grading.preview(EXERCISES, name, fn)
