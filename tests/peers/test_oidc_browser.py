"""The dashboard's OIDC login in headless Chromium against a real OpenID Provider (node-oidc-provider,
configured like deploy/keycloak/opsdash-realm.json: oidc/provider.mjs), through a real gateway.

Access tokens live 10 s and the gateway's leeway is 2 s, so a socket whose token were not renewed
would be closed after 12 s: the wall-screen test watches one socket for four lifetimes.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.peers.conftest import OidcStack
from tests.peers.test_oidc_gateway import client_token
from tests.support.servers import scaled

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class Sockets:
    """Every WebSocket a page opens, with the frames it sent and received and when it closed."""

    def __init__(self) -> None:
        self.opened: list[Any] = []
        self.closed: list[str] = []
        self.received: list[str] = []
        self.sent: list[str] = []

    def on_socket(self, ws: Any) -> None:
        self.opened.append(ws)
        ws.on("framereceived", lambda p: self.received.append(p if isinstance(p, str) else ""))
        ws.on("framesent", lambda p: self.sent.append(p if isinstance(p, str) else ""))
        ws.on("close", lambda w: self.closed.append(w.url))

    def received_types(self) -> list[str]:
        out = []
        for f in self.received:
            try:
                out.append(json.loads(f).get("type", "?"))
            except ValueError:
                out.append("?")
        return out


@pytest.fixture
def session(browser: Any, oidc_stack: OidcStack) -> Iterator[Any]:
    contexts: list[Any] = []

    def _open() -> tuple[Any, Sockets]:
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
        contexts.append(ctx)
        page = ctx.new_page()
        socks = Sockets()
        page.on("websocket", socks.on_socket)
        return page, socks

    yield _open
    for ctx in contexts:
        ctx.close()


def _login(page: Any, st: OidcStack, user: str, query: str = "") -> None:
    page.goto(st.stack.base + "/" + query)
    page.click('[data-testid="login-oidc"]', timeout=scaled(15) * 1000)
    # the provider's login page (its development interaction: any password)
    page.wait_for_selector('input[name="login"]', timeout=scaled(15) * 1000)
    assert page.url.startswith(st.op.base)
    page.fill('input[name="login"]', user)
    page.fill('input[name="password"]', "any")
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile("^" + re.escape(st.stack.base)), timeout=scaled(15) * 1000)


def _gateway_clients(st: OidcStack) -> int:
    """Live WebSocket clients of the gateway, from its /metrics (read with a service-account token)."""
    token = client_token(st.op, "opsdash-prometheus", "test-opsdash-prometheus")
    req = urllib.request.Request(st.stack.base + "/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(r"^opsdash_gateway_clients (\d+)$", text, re.M)
    assert m, text[:500]
    return int(m.group(1))


def _phase(page: Any) -> str:
    return str(page.get_attribute('[data-testid="app"]', "data-phase"))


def _wait_live(page: Any) -> None:
    page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(20) * 1000)


def _stored_access_token(page: Any) -> dict[str, Any]:
    raw = page.evaluate("""() => {
        for (let i = 0; i < sessionStorage.length; i++) {
            const k = sessionStorage.key(i);
            if (k.startsWith('oidc.user:')) return sessionStorage.getItem(k);
        }
        return null; }""")
    assert raw, "no OIDC user in session storage"
    token = json.loads(raw)["access_token"]
    header, claims = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
                      for part in token.split(".")[:2])
    return {"header": header, "claims": claims}


def test_login_through_the_dashboard_button_gives_the_live_view(session: Any, oidc_stack: OidcStack) -> None:
    page, socks = session()
    _login(page, oidc_stack, "operator")
    _wait_live(page)
    page.wait_for_function("() => document.querySelector('[data-testid=app]').dataset.seq !== ''")
    assert "snapshot" in socks.received_types()
    # the token is the provider's: RS256 JWT, the realm's audience and role, the provider's key
    tok = _stored_access_token(page)
    assert tok["header"]["alg"] == "RS256" and tok["header"]["kid"] in oidc_stack.op.stats()["kids"]
    assert tok["claims"]["iss"] == oidc_stack.op.issuer
    assert tok["claims"]["aud"] == "opsdash-gateway"
    assert "operator" in tok["claims"]["realm_access"]["roles"]
    # the code flow used PKCE, and no token ever appears in a URL the page opened
    assert oidc_stack.op.stats()["grants"].get("authorization_code", 0) >= 1
    assert all("token=" not in ws.url and "eyJ" not in ws.url for ws in socks.opened)


def test_a_user_without_the_role_gets_a_not_allowed_page_and_no_data(session: Any,
                                                                      oidc_stack: OidcStack) -> None:
    page, socks = session()
    _login(page, oidc_stack, "viewer")
    page.wait_for_selector('[data-testid="not-allowed"]', timeout=scaled(15) * 1000)
    assert _phase(page) == "forbidden"
    text = page.inner_text('[data-testid="not-allowed"]')
    assert "Not allowed" in text and "operator" in text
    assert "lacks the realm role 'operator'" in text  # what the gateway said
    assert page.get_attribute('[data-testid="app"]', "data-seq") == ""
    types = socks.received_types()
    assert "snapshot" not in types and "patch" not in types, types
    # no retry loop against the gateway: the refused socket stays closed and no other one opens
    n = len(socks.opened)
    time.sleep(3)
    assert len(socks.opened) == n and len(socks.closed) == n


def test_a_wall_screen_stays_live_through_token_renewals_and_key_rotation(session: Any,
                                                                           oidc_stack: OidcStack) -> None:
    st = oidc_stack
    page, socks = session()
    _login(page, st, "operator", "?wall=1")
    _wait_live(page)
    before = len(socks.opened) - 1  # the socket of the page before the login was refused
    assert socks.closed == [s.url for s in socks.opened[:before]]
    assert page.url.endswith("?wall=1")  # the wall parameter came back through the login redirect
    first = _stored_access_token(page)
    refreshes0 = st.op.stats()["grants"].get("refresh_token", 0)
    seq0 = int(page.get_attribute('[data-testid="app"]', "data-seq") or 0)

    def watch(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert _phase(page) == "live", (_phase(page), socks.received[-3:])
            time.sleep(0.5)

    # four lifetimes of the access token (each would close the socket after 10 + 2 s)
    watch(4 * st.access_ttl + 2)
    refreshes = st.op.stats()["grants"].get("refresh_token", 0) - refreshes0
    assert refreshes >= 3, refreshes
    assert len(socks.opened) == before + 1 and len(socks.closed) == before, \
        "the socket was dropped for a renewal"
    hellos = [f for f in socks.sent if '"hello"' in f]
    assert len(hellos) >= 1 + 3  # each renewal went to the gateway on the same socket
    assert not any("token_expired" in f for f in socks.received)
    now = _stored_access_token(page)
    assert now["claims"]["exp"] > first["claims"]["exp"] + 3 * st.access_ttl - 5
    assert int(page.get_attribute('[data-testid="app"]', "data-seq") or 0) > seq0 + 20

    # the provider rotates its signing key (the old one stays published, as Keycloak's passive keys)
    kids = st.op.rotate()
    new_kid = kids[0]
    assert new_kid != first["header"]["kid"]
    page.wait_for_function(
        """kid => { for (let i = 0; i < sessionStorage.length; i++) { const k = sessionStorage.key(i);
             if (k.startsWith('oidc.user:')) { const t = JSON.parse(sessionStorage.getItem(k)).access_token;
               return JSON.parse(atob(t.split('.')[0].replace(/-/g,'+').replace(/_/g,'/'))).kid === kid; } }
           return false; }""", arg=new_kid, timeout=scaled(3 * st.access_ttl) * 1000)
    watch(st.access_ttl + 2)  # the gateway verified the new key's tokens (it fetched the new JWKS)
    # ... and once the old key is gone from the provider too
    newest = st.op.rotate(drop_old=True)[0]
    page.wait_for_function(
        """kid => { for (let i = 0; i < sessionStorage.length; i++) { const k = sessionStorage.key(i);
             if (k.startsWith('oidc.user:')) { const t = JSON.parse(sessionStorage.getItem(k)).access_token;
               return JSON.parse(atob(t.split('.')[0].replace(/-/g,'+').replace(/_/g,'/'))).kid === kid; } }
           return false; }""", arg=newest, timeout=scaled(3 * st.access_ttl) * 1000)
    watch(st.access_ttl + 2)
    assert len(socks.opened) == before + 1 and len(socks.closed) == before
    assert not st.op.stats()["errors"], st.op.stats()["errors"]


def test_a_wall_screen_comes_back_by_itself_after_the_provider_was_unreachable(
        session: Any, oidc_stack: OidcStack) -> None:
    """The token endpoint is unreachable until the access token runs out (a provider outage, a laptop
    asleep): the gateway closes the socket (4401), and once the provider answers again the page renews
    with its refresh token and reconnects, with nobody at the keyboard."""
    st = oidc_stack
    page, socks = session()
    _login(page, st, "operator", "?wall=1")
    _wait_live(page)
    token_url = f"{st.op.issuer}/protocol/openid-connect/token"
    page.route(token_url, lambda route: route.abort())
    page.wait_for_selector('[data-testid="app"][data-phase="unauthorized"]',
                           timeout=scaled(3 * st.access_ttl) * 1000)
    assert any("token_expired" in f for f in socks.received)
    opened = len(socks.opened)
    page.unroute(token_url)
    _wait_live(page)
    assert len(socks.opened) == opened + 1  # one new connection, no storm
    assert page.url.endswith("?wall=1")


def test_logout_ends_the_socket_and_the_provider_session(session: Any, oidc_stack: OidcStack) -> None:
    st = oidc_stack
    page, _socks = session()
    _login(page, st, "operator")
    _wait_live(page)
    ends0 = st.op.stats()["end_sessions"]
    refresh_token = json.loads(page.evaluate("""() => { for (let i = 0; i < sessionStorage.length; i++) {
        const k = sessionStorage.key(i); if (k.startsWith('oidc.user:')) return sessionStorage.getItem(k); } }"""
                                             ))["refresh_token"]
    assert refresh_token
    live_before = _gateway_clients(st)
    assert live_before >= 1
    page.click("button:has-text('Log out')")
    # the gateway no longer serves this browser: its live connection ended (counted by the gateway
    # itself; the page's new socket carries no token and is refused)
    deadline = time.monotonic() + scaled(10)
    while _gateway_clients(st) != live_before - 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gateway_clients(st) == live_before - 1
    # the provider ended the session and sent the browser back to the dashboard, logged out
    page.wait_for_selector('[data-testid="login-oidc"]', timeout=scaled(15) * 1000)
    assert page.url.startswith(st.stack.base)
    assert st.op.stats()["end_sessions"] == ends0 + 1
    assert _phase(page) == "unauthorized"
    assert page.evaluate("() => Object.keys(sessionStorage).filter(k => k.startsWith('oidc.user:')).length") == 0
    # the refresh token died at the provider (revoked): a copied one cannot bring the session back
    req = urllib.request.Request(
        f"{st.op.issuer}/protocol/openid-connect/token", method="POST",
        data=urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token,
                                     "client_id": st.op.realm["client_id"]}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400 and json.loads(err.value.read())["error"] == "invalid_grant"
    # logging in again asks for the credentials: the provider's session is gone (no silent SSO)
    page.click('[data-testid="login-oidc"]')
    page.wait_for_selector('input[name="login"]', timeout=scaled(15) * 1000)
