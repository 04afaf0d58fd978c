"""Real peers for the tests in this folder: Debian's Prometheus (prom.py), node-oidc-provider
(oidc/provider.mjs, installed with ``npm ci`` from oidc/package-lock.json), headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, Stack, _ensure_frontend_built
from tests.support.servers import free_port, scaled, wait_port

OIDC_DIR = Path(__file__).parent / "oidc"
REALM_FILE = Path(__file__).resolve().parents[2] / "deploy/keycloak/opsdash-realm.json"


def realm_settings() -> dict[str, str]:
    """What the provider takes from the realm file (oidc/provider.mjs reads the same file)."""
    realm = json.loads(REALM_FILE.read_text())
    login = next(c for c in realm["clients"] if c.get("publicClient") and c.get("standardFlowEnabled"))
    mapper = next(m for sc in realm["clientScopes"] if sc["name"] in login["defaultClientScopes"]
                  for m in sc.get("protocolMappers", []) if m["protocolMapper"] == "oidc-audience-mapper")
    return {"realm": realm["realm"], "client_id": login["clientId"],
            "audience": mapper["config"]["included.client.audience"]}


def _ensure_oidc_provider() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node/npm missing: ./run test installs them")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=OIDC_DIR, check=True)
    return node


class OpenIdProvider:
    """node-oidc-provider on a free port, with the realm ``opsdash`` (see oidc/provider.mjs)."""

    def __init__(self, workdir: Path, redirect: str, access_ttl: int) -> None:
        self.node = _ensure_oidc_provider()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.realm = realm_settings()
        self.issuer = f"{self.base}/realms/{self.realm['realm']}"
        self.log_path = workdir / "oidc-provider.log"
        self.args = ["--port", str(self.port), "--redirect", redirect, "--access-ttl", str(access_ttl)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OpenIdProvider:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([self.node, str(OIDC_DIR / "provider.mjs"), *self.args], cwd=OIDC_DIR,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        try:
            wait_port("127.0.0.1", self.port, timeout=scaled(20))
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"oidc-provider did not start: {self.log()[-2000:]}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/__test/stats", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def rotate(self, drop_old: bool = False) -> list[str]:
        req = urllib.request.Request(f"{self.base}/__test/rotate{'?drop_old=1' if drop_old else ''}",
                                     method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())["kids"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class OidcStack:
    def __init__(self, stack: Stack, op: OpenIdProvider, access_ttl: int, leeway: int) -> None:
        self.stack = stack
        self.op = op
        self.access_ttl = access_ttl
        self.leeway = leeway


ACCESS_TTL = 10  # seconds: a wall screen outlives several tokens within a short test
LEEWAY = 2


@pytest.fixture(scope="module")
def oidc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcStack]:
    _ensure_frontend_built()
    work = tmp_path_factory.mktemp("oidcstack")
    stack = Stack(work)
    op: OpenIdProvider | None = None
    try:
        op = OpenIdProvider(work, f"{stack.base}/", ACCESS_TTL).start()
        stack.env.update({
            "OPSDASH_AUTH": "oidc",
            "OPSDASH_OIDC_ISSUER": op.issuer,
            "OPSDASH_OIDC_AUDIENCE": op.realm["audience"],
            "OPSDASH_GATEWAY__OIDC_CLIENT_ID": op.realm["client_id"],
            # the gateway's default JWKS URL (issuer + Keycloak's /protocol/openid-connect/certs) is used
            "OPSDASH_GATEWAY__OIDC_LEEWAY_S": str(LEEWAY),
            "OPSDASH_GATEWAY__JWKS_MIN_REFRESH_S": "1",
        })
        stack.opsdash("aggregator", "aggregator")
        stack.start_gateway()
        stack.spawn("fleet", ["-m", "tests.browser.fleet", stack.broker.url, "fleet"])
        yield OidcStack(stack, op, ACCESS_TTL, LEEWAY)
    finally:
        stack.close()
        if op is not None:
            op.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (./run test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
