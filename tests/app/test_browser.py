"""The upload demo in a real browser: headless Chromium (Debian's) driven by Playwright, against ``make demo``'s
Voilà server and against JupyterLab, both on 127.0.0.1 with tiny real models made here in seconds.

Every step leaves a screenshot in ``.cache/test-artifacts/browser/``. Skipped, with the reason, only where
Chromium or the demo's packages are missing (``make test`` installs both).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / ".cache" / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XRAY = "kermany-mini/NORMAL/a-IM-0001-0001.jpg"
MB = 1_000_000
CULL_SECONDS = 5  # `make demo` culls after serve.CULL_IDLE_SECONDS; short here (a connected page is never culled)

if not CHROMIUM.exists():
    pytest.skip(f"Chromium not found at {CHROMIUM}: `make test` installs it (apt-get install chromium, as root); "
                "set CHROMIUM to another binary", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'")
pytest.importorskip("voila", reason="voila is missing: pip install -e '.[demo]'")

from tiny_models import save_tiny_cnn, save_tiny_hybrid  # noqa: E402

from helpers.app import serve  # noqa: E402
from helpers.app.demo import MODEL_VARIABLE  # noqa: E402


@pytest.fixture(scope="module")
def course(tmp_path_factory, shared_data):
    """A fresh output folder holding a tiny CNN and a tiny VGG16 + XGBoost hybrid, and the environment for servers."""
    data, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_DATA_DIR", str(data))
        patch.setenv("COURSE_OUTPUT_DIR", str(out))
        save_tiny_cnn()
        save_tiny_hybrid()
    env = {**os.environ, "COURSE_DATA_DIR": str(data), "COURSE_OUTPUT_DIR": str(out), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "JUPYTER_RUNTIME_DIR": str(tmp_path_factory.mktemp("runtime"))}
    env[MODEL_VARIABLE] = str(out / "synthetic" / "cnn")  # what `make demo MODEL=...` sets
    for variable in ("JUPYTERLAB_WORKSPACES_DIR", "JUPYTERLAB_SETTINGS_DIR"):
        env[variable] = str(tmp_path_factory.mktemp(variable.lower()))
    files = tmp_path_factory.mktemp("uploads")
    bad = {"report.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", "empty.png": b"",
           "notes.png": b"Patient 12: cough and fever for three days.\n", "huge.png": bytes(21 * MB)}
    for name, content in bad.items():
        (files / name).write_bytes(content)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return {"env": env, "out": out, "xray": shared_data / XRAY, "files": files}


def start(command: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    """Start a server and wait until it accepts connections on 127.0.0.1:``port`` (at most 60 s)."""
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped: {log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.3)
    stop(process)
    raise RuntimeError(f"the server never listened on port {port}: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Demo:
    """One page holding the upload app: upload through the real button, read the cards, keep screenshots."""

    def __init__(self, page, name: str):
        self.page, self.name, self.step = page, name, 0
        self.app = page.locator(".upload-demo").first

    def shot(self, what: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{self.step:02d}-{what}.png"), full_page=True)

    def status(self) -> str:
        return self.app.locator(".demo-status").inner_text()

    def upload(self, *files: Path) -> list[str]:
        """Choose ``files`` through the upload button; returns the cards' text once the app has answered."""
        before = self.status()
        with self.page.expect_file_chooser() as chooser:
            self.app.locator("button.widget-upload").click()
        chooser.value.set_files([str(f) for f in files])
        self.wait_status_change(before)
        return self.cards()

    def wait_status_change(self, before: str) -> None:
        self.page.wait_for_function(
            "([before]) => { const s = document.querySelector('.upload-demo .demo-status');"
            " return s && s.innerText !== before && !s.innerText.includes('Working'); }", arg=[before], timeout=60_000)

    def cards(self) -> list[str]:
        return self.app.locator(".demo-results .demo-card").all_inner_texts()


def assert_label_not_cut(demo: Demo) -> None:
    button = demo.app.locator("button.widget-upload")
    assert "(0)" in button.inner_text() and button.evaluate("b => b.scrollWidth <= b.clientWidth"), \
        "the upload button's label (with its file count) is cut"


def check_xray_card(demo: Demo, course, model: str) -> str:
    [card] = demo.upload(course["xray"])
    assert "the model" in card and model in card and "probability of COVID" in card and "threshold" in card, card
    assert "SYNTHETIC MODEL" in card
    figure = demo.app.locator(".demo-results img.demo-figure").first
    assert figure.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert figure.evaluate("img => img.complete && img.naturalWidth > 100")
    return card


BAD_FILES = {"report.pdf": "looks like a PDF", "empty.png": "empty (0 bytes)", "notes.png": "looks like text",
             "huge.png": "above the limit of 20 MB"}  # huge.png, 21 MB, is above Jupyter's default 10 MiB message too


def check_bad_files_and_recovery(demo: Demo, course, names=tuple(BAD_FILES)) -> None:
    files = course["files"]
    for name, message in [(name, BAD_FILES[name]) for name in names]:
        [card] = demo.upload(files / name)
        assert "could not use this file" in card and message in card, card
        demo.shot(f"refused-{name.replace('.', '-')}")
    check_xray_card(demo, course, "synthetic / cnn")  # the app still works afterwards
    demo.shot("works-after-bad-files")


def test_voila_demo_in_chromium(course, browser, tmp_path):
    port = serve.free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start(serve.voila_command(port, cull_seconds=CULL_SECONDS), course["env"], port, tmp_path / "voila.log")
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url, timeout=90_000)
        page.wait_for_selector(".upload-demo button.widget-upload", timeout=90_000)
        demo = Demo(page, "voila")
        demo.shot("opened")
        text = page.locator("body").inner_text()
        assert "not a diagnostic device" in text and "SYNTHETIC MODEL" in text
        assert demo.cards() == []  # no card left over from the notebook's other cells
        assert_label_not_cut(demo)

        first = check_xray_card(demo, course, "synthetic / cnn")
        demo.shot("xray-cnn")
        demo.app.screenshot(path=str(ARTIFACTS / "voila-app.png"))  # the README's docs/demo.png
        again = demo.status()
        demo.upload(course["xray"])  # the same file again is predicted again
        assert demo.status() != again
        before = demo.status()
        demo.app.locator("select").select_option(label="synthetic / vgg16-xgboost (VGG16 features hybrid) (SYNTHETIC)")
        demo.wait_status_change(before)
        [switched] = demo.cards()
        assert "vgg16-xgboost" in switched and "occlusion sensitivity" in switched.lower() and switched != first
        assert demo.app.locator(".demo-results img.demo-figure").count() == 1
        demo.shot("xray-hybrid")
        before = demo.status()
        demo.app.locator("select").select_option(label="synthetic / cnn (SYNTHETIC)")
        demo.wait_status_change(before)
        check_bad_files_and_recovery(demo, course)
        assert kernels(server) == 1
        page.close(run_before_unload=True)
        deadline = time.monotonic() + 4 * CULL_SECONDS  # shut down on unload, else culled once idle and unconnected
        while kernels(server) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert kernels(server) == 0, "the closed tab's kernel is still running"
    finally:
        stop(server)


def kernels(server: subprocess.Popen) -> int:
    """How many kernels the server runs (its ipykernel child processes)."""
    import psutil

    count = 0
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            count += child.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(child.cmdline())
        except psutil.Error:  # it exited meanwhile
            pass
    return count


def accept_dialogs(page) -> None:
    """Accept what a fresh Lab profile may ask first (a kernel to choose, a notice): its default button."""
    dialogs = page.locator(".jp-Dialog")
    for _ in range(3):
        if not dialogs.count():
            return
        print("JupyterLab asked:", dialogs.first.inner_text().replace("\n", " | ")[:300])
        dialogs.first.locator(".jp-mod-accept").first.click()
        page.wait_for_timeout(500)


def run_all_cells(page) -> None:
    """Run > Run All Cells, again once if no cell has started after 30 s (a menu clicked while Lab still loads)."""
    started = "() => [...document.querySelectorAll('.jp-InputPrompt')].some(p => /\\[[0-9*]+\\]/.test(p.innerText))"
    for attempt in range(2):
        accept_dialogs(page)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function(started, timeout=30_000)
            return
        except playwright.TimeoutError:
            if attempt:
                raise
            page.keyboard.press("Escape")


def test_jupyterlab_runs_the_notebook_and_the_app_works(course, browser, tmp_path):
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(ROOT / serve.NOTEBOOK, root / "demo.ipynb")  # Lab saves what it runs: never the course's copy
    port = serve.free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start(serve.lab_command(port, root), course["env"], port, tmp_path / "lab.log")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "lab/tree/demo.ipynb", timeout=90_000)
        page.wait_for_selector(".jp-Notebook", timeout=90_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
        demo = Demo(page, "lab")
        run_all_cells(page)
        demo.shot("run-all")
        page.wait_for_selector(".upload-demo button.widget-upload", timeout=120_000)
        demo.app.scroll_into_view_if_needed()
        demo.shot("opened")
        assert demo.cards() == []
        assert_label_not_cut(demo)
        check_xray_card(demo, course, "synthetic / cnn")
        demo.shot("xray-cnn")
        check_bad_files_and_recovery(demo, course, names=("huge.png",))  # the other kinds: in the Voila test
        page.close()
    finally:
        stop(server)
