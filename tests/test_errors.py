"""In a notebook, nst's own errors show as their one sentence, not as a traceback."""

from __future__ import annotations

import pytest

from nst.errors import ImageError, short_errors

IPython = pytest.importorskip("IPython")


def test_short_errors_print_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        short_errors()
        result = shell.run_cell("import nst\nnst.load_image('no_such_file.jpg')")
        out = capsys.readouterr()
        assert isinstance(result.error_in_exec, ImageError)  # the cell still fails: it stops there
        text = (out.out + out.err).strip()
        assert text.startswith("ImageError: Cannot load 'no_such_file.jpg'"), text
        assert "Traceback" not in text and len(text.splitlines()) == 1, text
        # Other errors keep their full traceback.
        shell.run_cell("1 / 0")
        assert "ZeroDivisionError" in capsys.readouterr().out
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


def test_short_errors_outside_ipython_does_nothing() -> None:
    short_errors()  # no shell running: must not raise


def test_short_errors_still_fail_the_cell_in_a_kernel() -> None:
    """Graders (nbgrader) and nbval need an error output: the sentence must not hide the failure."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import nst\nnst.errors.short_errors()"),
            nbformat.v4.new_code_cell("nst.load_image('no_such_file.jpg')"),
            nbformat.v4.new_code_cell("1 / 0"),
        ]
    )
    nbclient.NotebookClient(nb, allow_errors=True, kernel_name="python3").execute()
    (short,) = nb.cells[1].outputs
    assert short.output_type == "error" and short.ename == "ImageError"
    assert len(short.traceback) == 1 and "no_such_file.jpg" in short.traceback[0]
    (full,) = nb.cells[2].outputs
    assert full.output_type == "error" and len(full.traceback) > 1  # other errors: full traceback
