"""Real-browser test harness: the app in its own Streamlit server, driven by Chromium.

Every browser test suite (Dataset, Train, Classify, end to end) uses these:

- ``streamlit_app`` (function scope) is a factory. Each call starts
  ``python -m streamlit run app.py`` on a free loopback port and returns a
  running :class:`AppServer` (``.url``, ``.home``, ``.log()``). Servers stop
  when the test ends. The server's ``PAWLAB_HOME`` is the test's own
  ``pawlab_home`` (see tests/conftest.py) unless ``home=`` says otherwise, so
  a test can prepare state in-process with ``core`` first and the server
  sees it. A new browser session opens the most recently used dataset that
  it may open: one under PAWLAB_HOME/datasets, or (only with
  ``env={"PAWLAB_ALLOW_LOCAL_PATHS": "1"}``) a folder passed to
  ``core.data.workspace.remember_use``.
- ``app_page`` (function scope) is a fresh Chromium tab (1280x800) wrapped
  in :class:`AppPage`: ``.page`` is the Playwright page, plus ``open``,
  ``wait_for_app``, ``assert_no_errors`` and ``screenshot``. Browser console
  errors are collected from the start. A failing test saves a screenshot.
- ``warm_scan_cache`` (session scope): ``warm_scan_cache(root, home)`` copies
  the scan of a dataset (which photos decode) into a PAWLAB_HOME, scanning
  each dataset once per test session.
- ``chromium`` (module scope) is the Playwright browser. Without
  /usr/bin/chromium or Playwright the tests are skipped, or fail when CI=true.

The module-level functions ``wait_for_app(page)``, ``assert_no_errors(page,
console_errors)`` and ``screenshot(page, name)`` do the work and can be used
with any Playwright page: ``from browser.conftest import wait_for_app`` (tests/browser
is a package, so this module is ``browser.conftest`` and never shadows
tests/conftest.py). Screenshots go to $PAWLAB_SCREENSHOTS (default: a
``pawlab-screenshots`` folder in the system temp folder).

Example::

    pytestmark = pytest.mark.browser

    def test_dataset_page(streamlit_app, app_page):
        server = streamlit_app(env={"PAWLAB_ALLOW_LOCAL_PATHS": "1"})
        app_page.open(server, "dataset")
        expect(app_page.page.get_by_text("cats").first).to_be_visible()
        app_page.assert_no_errors()
        app_page.screenshot("dataset")
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
IN_CI = os.environ.get("CI", "").lower() == "true"
# Console errors Streamlit itself causes, not the app: opened on a page URL
# such as /dataset, its frontend first probes /dataset/_stcore/health and
# /dataset/_stcore/host-config (404), then finds the server at the root.
STREAMLIT_NOISE = (r"status of 404 .*/_stcore/(health|host-config)\)$",)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: runs the app in a real Streamlit server and Chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets app_page know whether the test failed, to keep a screenshot of it.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _unavailable(message: str):
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# --- The Streamlit server ---------------------------------------------------


@dataclass
class AppServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    home: Path  # the server's PAWLAB_HOME
    process: subprocess.Popen
    log_path: Path

    def log(self, last_chars: int = 4000) -> str:
        """The end of the server's stdout and stderr (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-last_chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        # The server runs in its own process group: this also ends the
        # training processes it started, and nothing else.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __str__(self) -> str:
        return self.url


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_env(home: Path, extra: dict[str, str] | None) -> dict[str, str]:
    # Start from this environment minus PawLab settings, so a developer's
    # PAWLAB_ALLOW_LOCAL_PATHS=1 cannot change what a test sees.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAWLAB_")}
    env.update(PAWLAB_HOME=str(home), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra or {})
    return env


def _wait_until_healthy(server: AppServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"Streamlit exited with code {server.process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"Streamlit did not answer /_stcore/health within {timeout:.0f} s:\n{server.log()}")


def start_app_server(
    home: Path, log_dir: Path, env: dict[str, str] | None = None, *, timeout: float = 60.0
) -> AppServer:
    """``streamlit run app.py`` on a free loopback port, healthy when returned.

    Its output goes to ``log_dir/streamlit-<port>.log``; the caller stops it.
    """
    port = free_port()
    log_path = log_dir / f"streamlit-{port}.log"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=_server_env(home, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = AppServer(f"http://127.0.0.1:{port}", home, process, log_path)
    try:
        _wait_until_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def streamlit_app(pawlab_home, tmp_path) -> Callable[..., AppServer]:
    """Factory: ``streamlit_app(env=None, *, home=None, timeout=60.0) -> AppServer``.

    ``env`` adds environment variables (e.g. PAWLAB_ALLOW_LOCAL_PATHS,
    KERAS_HOME); ``home`` replaces the test's ``pawlab_home``.
    """
    servers: list[AppServer] = []

    def start(env: dict[str, str] | None = None, *, home: Path | None = None, timeout: float = 60.0) -> AppServer:
        server = start_app_server(Path(home or pawlab_home), tmp_path, env, timeout=timeout)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def warm_scan_cache(tmp_path_factory) -> Callable[..., None]:
    """``warm_scan_cache(dataset_root, home)``: put the scan results of a dataset
    into ``home``'s cache, so the server does not decode every photo again.

    The first call per dataset scans it (8 s for the 3,000 real photos on two
    cores); later calls, in any test of the session, copy the result.
    """
    from core.data.dataset import scan_dataset

    scanned: dict[Path, Path] = {}

    def warm(root: Path, home: Path) -> None:
        root = Path(root).resolve()
        if root not in scanned:
            scan_home = tmp_path_factory.mktemp("scan_cache")
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("PAWLAB_HOME", str(scan_home))
                scan_dataset(root)
            scanned[root] = scan_home / "cache" / "scans"
        shutil.copytree(scanned[root], Path(home) / "cache" / "scans", dirs_exist_ok=True)

    return warm


# --- The browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium driven by Playwright (never `playwright install`).

    One per test module, not per session: Playwright's sync API runs an event
    loop while it is open, and another module (the web export's check) starts
    its own Playwright, which it cannot inside a running loop.
    """
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found; browser tests need Debian's chromium package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def wait_for_app(page, timeout: float = 60_000) -> None:
    """Wait until the app is connected and no script or fragment run is in progress.

    Call it after anything that makes Streamlit rerun (navigation, a click, a
    key press). A short pause first lets a just-triggered rerun begin.
    """
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-connection-state="CONNECTED"]', state="attached", timeout=timeout
    )
    page.wait_for_timeout(200)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.dataset.testScriptState === 'notRunning'
                && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]');
        }""",
        timeout=timeout,
    )


def assert_no_errors(page, console_errors: Iterable[str], ignore: Iterable[str] = ()) -> None:
    """Fail on a Streamlit exception box, a traceback on the page, or a console error.

    ``ignore``: regular expressions for console messages a test expects.
    """
    exceptions = page.locator('[data-testid="stException"]')
    if exceptions.count():
        pytest.fail(f"The page shows an exception:\n{exceptions.first.inner_text()}")
    body = page.locator("body").inner_text()
    if "Traceback (most recent call last)" in body:
        pytest.fail(f"The page shows a traceback:\n{body[-3000:]}")
    broken = page.evaluate(BROKEN_IMAGES_JS)
    assert not broken, f"Images on the page that did not load: {broken}"
    shown = set(page.evaluate("() => [...document.images].map(i => i.src)"))
    patterns = (*STREAMLIT_NOISE, *ignore)
    errors = [
        e for e in console_errors if not any(re.search(p, e) for p in patterns) and not is_superseded_media(e, shown)
    ]
    assert not errors, f"Browser console errors: {errors}"


# Images on the page that finished loading without pixels (a 404 or a bad file).
BROKEN_IMAGES_JS = "() => [...document.images].filter(i => i.src.includes('/media/') && i.complete && i.naturalWidth === 0).map(i => i.src)"
MEDIA_URL = re.compile(r"https?://[^\s()]+/media/[0-9a-f]+\.\w+")


def is_superseded_media(console_error: str, shown: set[str]) -> bool:
    """A media file of an earlier run that the page no longer shows, and Streamlit has dropped.

    Streamlit deletes a session's media files when its next script run ends; when
    widget changes come faster than the browser fetches the images they produce
    (five quick arrow presses on a slider), the superseded images 404. That is
    harmless as long as every image still on the page loaded (checked above).
    """
    urls = MEDIA_URL.findall(console_error)
    return bool(urls) and not shown.intersection(urls)


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("PAWLAB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "pawlab-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, name: str, *, full_page: bool = False, locator=None) -> Path:
    """Save ``<name>.png`` (of ``locator`` when given, else the viewport); print its path."""
    path = screenshot_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    if locator is not None:
        locator.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


@dataclass
class AppPage:
    """A browser tab on the app, with the errors its console reported."""

    page: object  # playwright.sync_api.Page
    console_errors: list[str] = field(default_factory=list)

    def open(self, server: AppServer | str, url_path: str = "", timeout: float = 60_000) -> None:
        """Open the app, then go to a page (``url_path`` as in st.Page, e.g. "dataset")
        with the sidebar, as a person would, and wait for it.

        Why not load ``/dataset`` directly: a fresh Streamlit server treats an
        app with a ``pages/`` folder as an old-style multipage app until the
        main script has run ``st.navigation`` once, so a first visit to a
        page URL would skip app.py.
        """
        self.page.goto(str(server).rstrip("/") + "/", timeout=timeout)
        self.wait_for_app(timeout)
        if url_path.strip("/"):
            self.page.locator(f'[data-testid="stSidebarNavLink"][href$="/{url_path.strip("/")}"]').click(
                timeout=timeout
            )
            self.wait_for_app(timeout)

    def wait_for_app(self, timeout: float = 60_000) -> None:
        wait_for_app(self.page, timeout)

    def assert_no_errors(self, ignore: Iterable[str] = ()) -> None:
        assert_no_errors(self.page, self.console_errors, ignore)

    def screenshot(self, name: str, **kwargs) -> Path:
        return screenshot(self.page, name, **kwargs)


@pytest.fixture
def app_page(chromium, request):
    """A fresh 1280x800 tab; console errors and page errors are collected."""
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    app = AppPage(page)
    page.on(
        "console",
        lambda message: (
            message.type == "error" and app.console_errors.append(f"{message.text} ({message.location.get('url', '')})")
        ),
    )
    page.on("pageerror", lambda error: app.console_errors.append(f"page error: {error}"))
    yield app
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        try:
            screenshot(page, f"FAILED-{request.node.name}", full_page=True)
        except Exception as error:  # the page may be gone; the test already failed
            print(f"no failure screenshot: {error}")
    context.close()
