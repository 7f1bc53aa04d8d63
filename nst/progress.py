"""A one-line progress report for a run of steps, which a saved notebook keeps as plain text.

In IPython (JupyterLab, Colab, a notebook executed by nbclient) the line is one text output,
updated in place while the run goes on and left as its final state, e.g.
``lbfgs: 150/150 steps, 12.0 s, loss 0.0020``: a notebook read on GitHub shows how the run
ended, never a frozen bar at 0 %. Elsewhere the final line goes to stderr (live on a terminal).
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Report ``done`` of ``total`` steps as one line; ``close()`` leaves the final line."""

    def __init__(self, total: int, desc: str, enabled: bool = True, every: float = 0.5) -> None:
        self.total, self.desc, self.enabled, self.every = total, desc, enabled, every
        self.done, self.loss = 0, float("nan")
        self.start = self._last = time.perf_counter()
        self._handle: Any = None
        if enabled:
            self._handle = _display_handle(self.line())

    def line(self) -> str:
        """E.g. ``lbfgs: 37/150 steps, 3.1 s, loss 2.345``."""
        seconds = time.perf_counter() - self.start
        loss = "" if self.loss != self.loss else f", loss {self.loss:.4g}"  # NaN: none yet
        return f"{self.desc}: {self.done}/{self.total} steps, {seconds:.1f} s{loss}"

    def update(self, done: int, loss: float | None = None) -> None:
        """Record ``done`` steps (and the latest loss); redraw at most every ``every`` s."""
        self.done = done
        self.loss = self.loss if loss is None else loss
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every:
            self._last = now
            self._show(final=False)

    def close(self) -> None:
        """Leave the final line: in the notebook's output, or on stderr outside IPython."""
        if self.enabled:
            self._show(final=True)
            self.enabled = False

    def _show(self, final: bool) -> None:
        """Draw the line: in place in IPython; on stderr elsewhere (live only on a terminal)."""
        if self._handle is not None:
            from IPython.display import Pretty

            self._handle.update(Pretty(self.line()))
        elif final:
            print("\r" + self.line(), file=sys.stderr, flush=True)
        elif sys.stderr.isatty():
            print("\r" + self.line(), end="", file=sys.stderr, flush=True)


def _display_handle(text: str) -> Any:
    """A display handle showing ``text`` in the running IPython, or None outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import Pretty, display
    except ImportError:
        return None
    if get_ipython() is None:
        return None
    return display(Pretty(text), display_id=True)
