"""The browser suite: the demo deployment in `dagster dev` and `cbm docs`, looked at in the
system Chromium (Debian's package `chromium`) through Playwright, as a verifier would.

Run by ``make browser`` (``.ci/run`` installs Chromium when it is missing); not part of
``make test``. Every page is opened with the network closed to the outside: a request to
any host but 127.0.0.1 is refused and fails the test, as does a console error. Screenshots go
to ``$CBM_SHOTS`` (default ``.cbm/browser-shots``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CBM_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("CBM_SHOTS", ROOT / ".cbm" / "browser-shots"))
# the flags a closed network needs: no background calls home, no sandbox as root
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL = {"127.0.0.1", "localhost"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f}s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class Deployment:
    """The demo as `make demo` leaves it, served as `make ui` serves it."""

    def __init__(self, base: Path, ui: str, docs: str):
        self.base, self.ui, self.docs = base, ui, docs
        self.workdir = base / "work"

    def query(self, sql: str, params=None) -> list[tuple]:
        import duckdb

        con = duckdb.connect(str(self.workdir / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()


PLANTED_PARTY, PLANTED_FILE = "CIVNET", "incidents_[Verify your account](login).csv"
PLANTED_LINK = "[Verify your account](login)"


def plant_party_text(inbox: Path) -> None:
    """A party's file of Markdown and TLP:RED canaries, handed in beside the demo's: what the
    UI shows of it must render as text, and nothing of its RED rows may show at all."""
    from tests.conftest import incident, write_csv

    write_csv(
        inbox / PLANTED_PARTY / PLANTED_FILE,
        [
            incident("PLANT1", region=PLANTED_LINK, alleged_party="DELTA"),  # quarantined
            incident(
                "PLANT2",
                summary="![b](//beacon.invalid/x.png) [Verify your account](//phish.invalid/login)",
                alleged_party="DELTA",
            ),
            incident("REDCANARY1", tlp="RED", region="REDCANARYREGION", alleged_party="DELTA"),
            incident("REDCANARY2", tlp="RED", summary="REDCANARYSUMMARY", alleged_party="DELTA"),
        ],
    )


@pytest.fixture(scope="session")
def deployment(tmp_path_factory) -> Deployment:
    base = tmp_path_factory.mktemp("ui") / "demo"
    ui_port, docs_port = _free_port(), _free_port()
    docs = f"http://127.0.0.1:{docs_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CBM_", "DAGSTER_HOME"))} | {
        "CBM_DOCS_URL": docs
    }
    cbm = [sys.executable, "-m", "pipelines.cli"]
    plant_party_text(base / "inbox")  # the demo's generator leaves it there
    demo = subprocess.run(
        [*cbm, "demo", "--dir", str(base)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    env |= {
        "DAGSTER_HOME": str(base / "dagster_home"),
        "CBM_INBOX": str(base / "inbox"),
        "CBM_REGISTRY": str(base / "registry"),
        "CBM_WORKDIR": str(base / "work"),
        "CBM_PUBLISH": str(base / "publish"),
        "CBM_KEY_FILE": str(base / "secrets" / "pseudonym.key"),
        # the demo's registry names its publisher's key: a release cut in the UI is signed
        "CBM_SIGNING_KEY_FILE": str(base / "secrets" / "secretariat.key"),
    }
    logs = base.parent
    servers = []
    try:
        for name, argv, url in (
            (
                "docs",
                [
                    *cbm,
                    "docs",
                    "--workdir",
                    str(base / "work"),
                    "--publish",
                    str(base / "publish"),
                    "--port",
                    str(docs_port),
                ],
                f"{docs}/index.html",
            ),
            (
                "dagster",
                [
                    str(Path(sys.executable).with_name("dagster")),
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-p",
                    str(ui_port),
                ],
                f"http://127.0.0.1:{ui_port}/server_info",
            ),
        ):
            log = logs / f"{name}.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            servers.append(process)
            _wait_http(url, process, log, 180)
        yield Deployment(base, f"http://127.0.0.1:{ui_port}", docs)
    finally:
        for process in reversed(servers):
            _stop(process)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium) "
            "or set CBM_CHROMIUM; the browser suite never downloads a browser"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors and requests to outside hosts are recorded (and refused)."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def page(browser, deployment):
    yield from _watched_page(browser)


@pytest.fixture
def dark_page(browser, deployment):
    """The same, with the system in dark mode: style sheets for it load what they need too."""
    yield from _watched_page(browser, color_scheme="dark")


def _watched_page(browser, **context_options):
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, **context_options)
    page = context.new_page()
    watched = Watched(page)

    def refuse_outside(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:", "file:")) or host in LOCAL:
            route.continue_()
        else:
            watched.outside.append(route.request.url)
            route.abort()

    context.route("**/*", refuse_outside)
    yield watched
    context.close()
    assert not watched.outside, f"requests to outside hosts: {watched.outside[:5]}"
    assert not watched.errors, f"console errors: {watched.errors[:5]}"


@pytest.fixture(scope="session", autouse=True)
def _fresh_shots():
    shutil.rmtree(SHOTS, ignore_errors=True)
    yield
