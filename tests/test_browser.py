"""Lesson 07's playground in a real browser: JupyterLab on loopback, headless Chromium, Playwright.

The test copies notebooks/ to a temporary folder (the committed notebook is never saved over),
makes the lesson's settings cell smaller, starts ``jupyter lab`` on 127.0.0.1 with a random token,
opens the lesson, waits for the kernel, runs every cell, chooses each style statistic (sliced
Wasserstein with a blend: one sentence; Gram, the default, last), moves the steps slider with the
keyboard, clicks Run, checks that the preview's bytes change during the run and that a result
appears, then starts a long run, clicks Stop and checks that it stopped before its budget, and last
uploads a broken file (one sentence) and a photo (selected) through the real upload button. The
widgets are found by the CSS classes ``nst.controls`` gives them (``nst-run``, ``nst-steps``, ...;
see ``Panel``). Screenshots go to the test's tmp_path and to build/browser/ (NST_BROWSER_FIGURE=1
also rewrites notebooks/figures/07_playground.png).

Without Chromium or Playwright it skips, except under CI=true, where it fails. DEVELOPERS.md has the
details, the Chromium flags and how to install both.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "07_playground.ipynb"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: apt-get install -y chromium
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = ROOT / "build" / "browser"  # a copy of the screenshots, for a person to look at
FIGURE = ROOT / "notebooks" / "figures" / "07_playground.png"
# The style statistic menu's labels in the order the test chooses them; the last one runs.
STAT_LABELS = ("sliced Wasserstein", "mean and std (AdaIN)", "Gram matrix")  # Gram last: runs
BLEND_REFUSED = "sliced_wasserstein matches one painting's whole feature distribution"
# The browser's run: small, so it takes seconds but still lasts long enough to see the preview move.
TEST_SIZE, TEST_STEPS = 128, 40
SERVER_START_S = 90
RUN_ALL_S = 150
RUN_S = 90


def _require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` unless ``condition``; under CI=true fail instead: CI must run it."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so the browser test must run (see DEVELOPERS.md)")
    pytest.skip(reason)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _small_settings(path: Path) -> None:
    """Rewrite the lesson copy's settings cell to TEST_SIZE and TEST_STEPS."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    cells = [c for c in code if re.search(r"^SIZE = ", c.source, re.M)]
    assert len(cells) == 1, "the lesson needs one settings cell with SIZE = ... and STEPS = ..."
    source = re.sub(r"^SIZE = \d+", f"SIZE = {TEST_SIZE}", cells[0].source, flags=re.M)
    cells[0].source = re.sub(r"^STEPS = \d+", f"STEPS = {TEST_STEPS}", source, flags=re.M)
    nbformat.write(nb, path)


def _lab_settings(folder: Path) -> None:
    """JupyterLab user settings: no news or update checks, and every cell kept in the page."""
    settings = {
        "apputils-extension/notification": '{"fetchNews": "false", "checkForUpdates": false}',
        # JupyterLab 4 removes cells far off screen from the page; the test needs the widgets there.
        "notebook-extension/tracker": '{"windowingMode": "none"}',
    }
    for name, text in settings.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def start_playwright() -> Callable[[], Any]:
    """Playwright's ``sync_playwright``; skips (fails under CI=true) without it or Chromium."""
    _require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "Playwright is not installed (pip install playwright)")
    return sync_playwright


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A JupyterLab server on 127.0.0.1 serving a copy of notebooks/; terminated afterwards."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if os.environ.get("NST_BROWSER_FIGURE") != "1":  # the figure shows the lesson's own settings
        _small_settings(root / NOTEBOOK)
    port, token = _free_port(), uuid.uuid4().hex
    log_path = tmp_path / "jupyter.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            _lab_command(root, port, token),
            cwd=root,
            env=_lab_env(tmp_path / "jupyter"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_server(server, port, token, log_path)
        url = f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}"
        yield {"url": url, "log": str(log_path)}
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _lab_env(home: Path) -> dict[str, str]:
    """The server's environment: this interpreter first, and Jupyter's folders under ``home``."""
    _lab_settings(home / "settings")
    env = dict(os.environ)
    env.update(
        MPLBACKEND="Agg",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    return env


def _lab_command(root: Path, port: int, token: str) -> list[str]:
    """``jupyter lab`` on loopback, without a browser, news or update checks."""
    command = [
        *(sys.executable, "-m", "jupyter", "lab", "--no-browser"),
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: commands and kernel status
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


def _wait_for_server(server: subprocess.Popen, port: int, token: str, log_path: Path) -> None:
    """Poll the server's /api/status until it answers; fail with its log if it exits or hangs."""
    deadline = time.monotonic() + SERVER_START_S
    while not _answers(port, f"/api/status?token={token}"):
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited ({server.returncode}):\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s:\n{_tail(log_path)}")
        time.sleep(0.5)


def _answers(port: int, path: str) -> bool:
    """True if the server on 127.0.0.1:port answers GET path with 200 OK."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# JavaScript run in the page. window.jupyterapp exists because of --LabApp.expose_app_in_browser.
KERNEL_STATUS = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return kernel ? kernel.status : null;
}"""
CELLS_STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.widgets.filter(cell => cell.model.type === "code");
    const errors = [];
    cells.forEach((cell, i) => {
        for (const out of cell.model.outputs.toJSON()) {
            if (out.output_type === "error") errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
        }
    });
    return {
        pending: cells.filter(c => c.model.executionCount === null
                                   || c.model.executionState === "running").length,
        errors,
    };
}"""
PREVIEW_HASH = """async () => {
    const img = document.querySelector("img.nst-preview");
    if (!img || !img.src) return null;
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, "0")).join("");
}"""


def _wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Shots:
    """Screenshots numbered in order, in tmp_path and copied to build/browser/."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0
        shutil.rmtree(SHOTS, ignore_errors=True)
        SHOTS.mkdir(parents=True, exist_ok=True)

    def taken(self, name: str) -> bool:
        """True if a screenshot called ``name`` was saved."""
        return any(self.folder.glob(f"[0-9][0-9]_{name}.png"))

    def __call__(self, name: str) -> Path:
        """Save the visible page as NN_name.png; return its path in tmp_path."""
        self.n += 1
        path = self.folder / f"{self.n:02d}_{name}.png"
        self.page.screenshot(path=str(path))
        shutil.copy2(path, SHOTS / path.name)
        return path


@pytest.mark.slow
def test_playground_in_chromium(
    start_playwright: Callable[[], Any],
    lab: dict[str, str],
    tmp_path: Path,
) -> None:
    with start_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        shot = Shots(page, tmp_path)
        try:
            _drive(page, shot, lab)
        except BaseException:
            try:
                shot("failed")  # what the page showed when it went wrong, next to the others
            except Exception as err:  # a crashed page: the log below still helps
                print(f"no screenshot of the failure: {err}")
            print(f"screenshots in {tmp_path} and {SHOTS}; jupyter lab's log ends:")
            print(_tail(Path(lab["log"])))
            raise
        finally:
            browser.close()


def _drive(page: Page, shot: Shots, lab: dict[str, str]) -> None:
    """Open the lesson, run all, then Run, instant and Refine, Stop and upload in the playground."""
    page.goto(lab["url"])
    _run_all_cells(page, shot)
    panel = Panel(page)
    panel.run.scroll_into_view_if_needed()
    # The lesson's last cells stop a run and refuse a text file: its sentence is on show.
    _wait("the status line's sentence", lambda: "Cannot load 'notes.txt'" in panel.text(), 30)
    shot("ran_all_cells")
    _choose_style_statistics(panel, shot)
    _run_to_the_end(page, panel, shot)
    _instant_and_refine(page, panel, shot)
    _stop_a_long_run(panel, shot)
    _upload_files(page, panel, shot)


class Panel:
    """The playground's widgets in the page, found by the CSS classes nst.controls gives them."""

    def __init__(self, page: Page) -> None:
        self.run = page.locator("button.nst-run")
        self.stop = page.locator("button.nst-stop")
        self.status = page.locator(".nst-status")
        self.status_kind = page.locator(".nst-status [data-kind]")  # info, busy, done or error
        self.steps_readout = page.locator(".nst-steps .widget-readout")
        self.steps_handle = page.locator(".nst-steps .noUi-handle")
        self.content_upload = page.locator("button.nst-content-upload")
        self.content_menu = page.locator(".nst-content select")
        self.stat_menu = page.locator(".nst-style-stat select")
        self.blend = page.locator(".nst-blend input[type=checkbox]")
        self.style_menu = page.locator(".nst-style select")
        self.instant = page.locator(".nst-instant input[type=checkbox]")
        self.instant_note = page.locator(".nst-instant-note")
        self.refine = page.locator("button.nst-refine")
        self.download = page.locator(".nst-download a[download]")
        self.whole = page.locator(".nst-playground")

    def text(self) -> str:
        """The status line's sentence."""
        return self.status.inner_text().strip()

    def kind(self) -> str | None:
        """The status line's kind: info, busy, done or error."""
        return self.status_kind.get_attribute("data-kind")

    def ended(self) -> bool:
        """True once the status line says how a run ended."""
        return self.kind() in ("done", "error")

    def steps(self) -> int:
        """The steps slider's value, as its readout shows it."""
        return int(self.steps_readout.inner_text().strip())

    def press_on_steps(self, *keys: str) -> None:
        """Move the steps slider with the keyboard, as a person can."""
        self.steps_handle.focus()
        for key in keys:
            self.steps_handle.press(key)

    def click_run(self, what: str) -> None:
        """Click Run and wait until the status line says the run is busy."""
        self.run.click()
        _wait(what, lambda: self.kind() == "busy", 30, 0.05)


def _run_all_cells(page: Page, shot: Shots) -> None:
    """Wait for the kernel, run every cell, and fail on any cell's error; then find the panel."""
    _wait("the notebook's kernel to be idle", lambda: page.evaluate(KERNEL_STATUS) == "idle", 120)
    shot("opened")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def all_done() -> bool:
        state = page.evaluate(CELLS_STATE)
        assert not state["errors"], "cells failed in the browser: " + "; ".join(state["errors"])
        return state["pending"] == 0 and page.evaluate(KERNEL_STATUS) == "idle"

    _wait("every cell to run", all_done, RUN_ALL_S, interval=0.5)
    _wait("the playground's widgets", lambda: page.locator("button.nst-run").count() == 1, 30)


def _choose_style_statistics(panel: Panel, shot: Shots) -> None:
    """Choose each style statistic; Run with sliced Wasserstein and a blend says one sentence."""
    assert panel.stat_menu.input_value() == "Gram matrix", "the style statistic starts at Gram"
    for label in STAT_LABELS:
        panel.stat_menu.select_option(label=label)
        assert panel.stat_menu.input_value() == label
        if label == "sliced Wasserstein":  # one painting's distribution: a blend is refused
            panel.blend.check()
            panel.run.click()
            _wait("the blend's sentence", lambda: BLEND_REFUSED in panel.text(), RUN_S, 0.1)
            sentence = panel.text()
            assert panel.kind() == "error" and "Traceback" not in sentence, sentence
            assert len(sentence.splitlines()) == 1 and sentence.endswith("."), sentence
            _wait("Run enabled again", panel.run.is_enabled, 10, 0.1)
            shot("sliced_wasserstein_blend")
            panel.blend.uncheck()


def _run_to_the_end(page: Page, panel: Panel, shot: Shots) -> None:
    """Two presses of → on the steps slider, Run: the preview moves, then a result and a link."""
    steps = panel.steps() + 10  # the lesson's STEPS (TEST_STEPS here) and two steps of 5
    panel.press_on_steps("ArrowRight", "ArrowRight")
    _wait(f"the steps slider at {steps}", lambda: panel.steps() == steps, 10)
    before = page.evaluate(PREVIEW_HASH)
    assert before, "the preview shows no image before the run"
    panel.click_run("the run to start")
    previews, texts = _watch_previews(page, panel, shot, before, steps)
    assert panel.text().startswith(f"Done: {steps} steps"), (
        f"the run did not finish its {steps} steps: {panel.text()!r} (statuses seen: {texts[-5:]})"
    )
    assert len(previews) >= 2, (
        f"the preview showed {len(previews)} different images during the run; expected it "
        f"to change at least once (statuses seen: {sorted(set(texts))[:8]})"
    )
    final = page.evaluate(PREVIEW_HASH)
    assert final and final != before, "no final image in the preview"
    assert panel.download.count() == 1, "no download link after the run"
    assert (panel.download.get_attribute("href") or "").startswith("data:image/png;base64,")
    assert panel.stop.is_disabled() and panel.run.is_enabled()
    panel.whole.scroll_into_view_if_needed()
    shot("finished")
    if os.environ.get("NST_BROWSER_FIGURE") == "1":  # the README's and the lesson's figure
        panel.whole.screenshot(path=str(FIGURE))


def _watch_previews(
    page: Page, panel: Panel, shot: Shots, before: str, steps: int
) -> tuple[set[str], list[str]]:
    """Until the run ends: the preview's hashes seen while Running, and every status text."""
    previews: set[str] = set()
    texts: list[str] = []

    def run_finished() -> bool:
        text = panel.text()
        texts.append(text)
        if text.startswith("Running"):
            digest = page.evaluate(PREVIEW_HASH)
            if digest and digest != before:
                previews.add(digest)
            if _step(text) >= steps // 2 and not shot.taken("running"):
                shot("running")
        return panel.ended()

    _wait("the run to finish", run_finished, RUN_S, interval=0.1)
    return previews, texts


def _instant_and_refine(page: Page, panel: Panel, shot: Shots) -> None:
    """No network for Kandinsky: instant greyed out with its sentence; for Van Gogh: tick it, the
    fast network paints at once; Refine runs stylize from that result to the end."""
    panel.style_menu.select_option("composition_viii")
    _wait("instant greyed out", panel.instant.is_disabled, 10, 0.1)
    assert "No fast network for composition_viii" in panel.instant_note.inner_text()
    shot("instant_refused")
    panel.style_menu.select_option("starry_night")
    _wait("instant enabled again", panel.instant.is_enabled, 10, 0.1)
    assert panel.instant_note.inner_text().strip() == ""
    before = page.evaluate(PREVIEW_HASH)
    panel.instant.check()
    _wait("the instant painting", lambda: panel.text().startswith("Painted by the fast"), 30, 0.1)
    assert panel.kind() == "done" and page.evaluate(PREVIEW_HASH) != before
    _wait("Refine enabled", panel.refine.is_enabled, 10, 0.1)
    shot("instant")
    steps = panel.steps()
    panel.refine.click()
    _wait("the refinement to finish", lambda: panel.text().startswith("Done:"), RUN_S, 0.1)
    assert panel.text().startswith(f"Done: {steps} steps"), panel.text()
    assert panel.refine.is_disabled() and panel.run.is_enabled()
    shot("refined")
    panel.instant.uncheck()


def _stop_a_long_run(panel: Panel, shot: Shots) -> None:
    """Run for the slider's maximum of steps and click Stop after step 3: it stops early."""
    steps = panel.steps()
    panel.press_on_steps("End")
    _wait("the steps slider to move", lambda: panel.steps() != steps, 10)
    maximum = panel.steps()
    assert maximum >= 100, f"the steps slider's maximum is {maximum}"
    panel.click_run("the second run to start")
    _wait("the second run to pass step 3", lambda: _step(panel.text()) >= 3, RUN_S, 0.1)
    assert panel.stop.is_enabled(), "Stop is disabled during a run"
    shot("before_stop")
    panel.stop.click()
    _wait("the run to stop", panel.ended, 60, 0.1)
    stopped = re.match(r"Stopped after (\d+) of (\d+) steps", panel.text())
    assert stopped, panel.text()
    done, budget = map(int, stopped.groups())
    assert budget == maximum and 3 <= done < budget, panel.text()
    assert panel.run.is_enabled() and panel.stop.is_disabled()
    time.sleep(1.0)  # nothing moves after a stop
    assert panel.text().startswith("Stopped"), panel.text()
    shot("stopped")


def _upload_files(page: Page, panel: Panel, shot: Shots) -> None:
    """Through the real upload button: a broken file gets one sentence, a photo is selected."""

    def upload(name: str, file_bytes: bytes) -> None:
        with page.expect_file_chooser() as chooser:  # the button opens the browser's file dialog
            panel.content_upload.click()
        chooser.value.set_files(
            files=[{"name": name, "mimeType": "image/png", "buffer": file_bytes}]
        )

    upload("broken.png", b"\x89PNG\r\n\x1a\nbad")
    _wait("the upload's sentence", lambda: "Cannot load 'broken.png'" in panel.text(), 30)
    sentence = panel.text()
    assert panel.kind() == "error" and "Traceback" not in sentence, sentence
    assert len(sentence.splitlines()) == 1 and sentence.endswith("."), sentence
    upload("tiny.png", _png(48, 32))
    _wait("the uploaded photo", lambda: "Loaded tiny.png (48×32)" in panel.text(), 30)
    assert panel.content_menu.input_value() != "chelsea", "the upload was not selected"
    shot("uploaded")


def _png(width: int, height: int) -> bytes:
    """The bytes of a small PNG file: a grey gradient."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _step(text: str) -> int:
    """The step number in a 'Running: step N of M, ...' status, else 0."""
    found = re.match(r"Running: step (\d+)", text)
    return int(found.group(1)) if found else 0
