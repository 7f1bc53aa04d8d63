"""Self-checks for exercises: compare a learner's function with nst's reference on random tensors.

Each ``check_*`` returns None and prints one line when the function matches the reference; otherwise
it raises ``CheckError`` with one sentence naming the most likely mistake (a missing normalisation,
a transposed or batch-mixing Gram matrix, a wrong shape, an input changed in place, a ``.detach()``
or ``.item()`` that cuts the gradient, a Python loop where one tensor operation does, NaN).
Expected values come from ``nst`` itself, so the checks hold on CPU, CUDA and Colab alike.

``lessons`` holds the lessons' checks, ``assignments`` the assignments', ``_core`` what both share.
"""

from nst.checks._core import ATOL, RTOL, CheckError
from nst.checks.assignments import (
    LOAD_TOLERANCE,
    check_closure,
    check_extract_features,
    check_load,
)
from nst.checks.lessons import (
    check_content_loss,
    check_gram_matrix,
    check_masked_gram,
    check_mean_std_loss,
    check_style_loss,
    check_tv_loss,
)

__all__ = [
    "ATOL",
    "LOAD_TOLERANCE",
    "RTOL",
    "CheckError",
    "check_closure",
    "check_content_loss",
    "check_extract_features",
    "check_gram_matrix",
    "check_load",
    "check_masked_gram",
    "check_mean_std_loss",
    "check_style_loss",
    "check_tv_loss",
]
