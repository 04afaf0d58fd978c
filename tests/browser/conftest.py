"""The real stack for the browser tests: private mosquitto, aggregator, gateway (serving the built
frontend) and reporters with known traffic (tests/browser/fleet.py), each a real process, plus
headless Chromium (Debian's /usr/bin/chromium driven by Python Playwright; never `playwright install`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import Mosquitto, free_port, scaled, wait_port

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
DIST = FRONTEND / "dist"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("OPSDASH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@contextlib.contextmanager
def fresh_database(admin_dsn: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one stack's history (its DSN); dropped afterwards."""
    import asyncio
    import uuid

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        c = await asyncpg.connect(admin_dsn)
        try:
            await c.execute(sql)
        finally:
            await c.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _ensure_frontend_built() -> None:
    if (DIST / "index.html").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("frontend/dist is missing and npm is not installed: run ./run test")
    if not (FRONTEND / "node_modules").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
    subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True)


class Stack:
    """Processes of the stack, each with its log file; the gateway can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker = Mosquitto(workdir / "mosquitto").start()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPSDASH_")}
        self.env.update({
            "OPSDASH_MQTT_URL": self.broker.url,
            "OPSDASH_LISTEN": f"127.0.0.1:{self.port}",
            "OPSDASH_AUTH": "none",
            "OPSDASH_GATEWAY__STATIC_DIR": str(DIST),
            "PYTHONUNBUFFERED": "1",
        })
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def opsdash(self, name: str, command: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, ["-c", "import sys; from opsdash.cli import main; sys.exit(main())", command])

    def start_gateway(self) -> None:
        self.opsdash("gateway", "gateway")
        try:
            wait_port("127.0.0.1", self.port, timeout=15)
        except TimeoutError:
            raise RuntimeError(f"gateway did not start: {self.log('gateway')[-3000:]}") from None

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(scaled(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def get(self, path: str) -> tuple[int, dict[str, str], Any]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), None

    def wait_view(self, timeout: float = 30.0, predicate: Any = None) -> dict[str, Any]:
        """Wait until the gateway serves a view (and ``predicate(health)`` holds); return /health."""
        deadline = time.monotonic() + scaled(timeout)
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, _h, body = self.get("/operator/system/health")
                last = (status, body)
                if status == 200 and (predicate is None or predicate(body)):
                    return body  # type: ignore[no-any-return]
            time.sleep(0.2)
        raise AssertionError(
            f"no view after {timeout} s (last answer {last}); gateway log:\n"
            f"{self.log('gateway')[-2000:]}\naggregator log:\n{self.log('aggregator')[-2000:]}")

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.broker.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _ensure_frontend_built()
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        s.opsdash("aggregator", "aggregator")
        s.start_gateway()
        s.spawn("fleet", ["-m", "tests.browser.fleet", s.broker.url, "fleet"])
        s.spawn("dispatcher", ["-m", "tests.browser.fleet", s.broker.url, "dispatcher"])
        s.wait_view(predicate=lambda h: all(
            (h.get("components", {}).get(c) or {}).get("status") == "healthy"
            for c in ("ingest", "evaluator", "dispatcher", "delivery", "postgres")))
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (./run test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield _CspBypassing(b)
        b.close()


class _CspBypassing:
    """The browser, whose contexts bypass the page's Content-Security-Policy unless told otherwise:
    tests inject tools (axe-core by ``add_script_tag``) and wait on string predicates (evaluated with
    ``new Function``), both of which the gateway's strict CSP forbids, as it should.
    tests/browser/test_security.py checks the policy itself with ``bypass_csp=False``."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def new_context(self, **kwargs: Any) -> Any:
        kwargs.setdefault("bypass_csp", True)
        return self._browser.new_context(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


class Console:
    """Console errors and uncaught page errors seen by a page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def allowed(self, text: str) -> bool:
        return False

    def check(self, allow: tuple[str, ...] = ()) -> None:
        bad = [e for e in self.errors if not any(a in e for a in allow)]
        assert not bad, f"console errors: {bad}"


@pytest.fixture
def open_page(browser: Any, stack: Stack) -> Iterator[Any]:
    """``open_page(query="", width=1920, height=1080)`` → (page, console); closed after the test."""
    contexts: list[Any] = []

    def _open(query: str = "", width: int = 1920, height: int = 1080) -> tuple[Any, Console]:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        console = Console()
        page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.errors.append(f"pageerror: {e}"))
        page.goto(stack.base + "/" + query)
        page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
        return page, console

    yield _open
    for ctx in contexts:
        ctx.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
