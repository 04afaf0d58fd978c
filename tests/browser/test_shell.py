"""The app shell in headless Chromium: path-based routes that survive a reload, navigation without a
page load or a new WebSocket, back/forward, the one <h1> per page, and a not-found page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Stack
from tests.support.servers import scaled

pytestmark = pytest.mark.browser

PAGES = {"/": "System status", "/history": "History", "/logs": "Logs", "/graph": "Dependency graph",
         "/alerts": "Alerts", "/component/ingest": "ingest"}


def at_path(page: Any, path: str) -> None:
    # a function, not an expression string: the gateway's CSP has no 'unsafe-eval'
    page.wait_for_function("(p) => location.pathname === p", arg=path)


def title(page: Any) -> str:
    return str(page.locator('[data-testid="page-title"]').inner_text())


def test_every_route_survives_a_reload_and_has_one_h1(stack: Stack, open_page: Any) -> None:
    page, console = open_page()
    for path, heading in PAGES.items():
        page.goto(stack.base + path)
        page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
        assert title(page) == heading, path
        assert page.locator("h1").count() == 1, path
        assert page.evaluate("location.pathname") == path
        assert heading in page.title(), (path, page.title())
    # a path outside the table (the gateway answers 404 for these on a load; in the app it says so)
    page.evaluate("history.pushState(null, '', '/no/such/page'); dispatchEvent(new PopStateEvent('popstate'))")
    page.wait_for_selector('[data-testid="not-found"]')
    console.check()


def test_navigation_keeps_the_socket_and_the_history(stack: Stack, open_page: Any) -> None:
    page, console = open_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.evaluate("window.__sameDocument = 1")
    nav = page.locator('[data-testid="nav"]')
    for label, path in (("Logs", "/logs"), ("Alerts", "/alerts"), ("History", "/history"),
                        ("Graph", "/graph"), ("Status", "/")):
        nav.get_by_role("link", name=label).click()
        at_path(page, path)
        assert nav.get_by_role("link", name=label).get_attribute("aria-current") == "page"
        assert page.locator('[data-testid="app"]').get_attribute("data-route") == path
    assert page.evaluate("window.__sameDocument") == 1, "a nav click reloaded the page"
    page.wait_for_selector('[data-testid="comp-ingest"]')
    page.go_back()
    at_path(page, "/graph")
    assert title(page) == "Dependency graph"
    page.go_forward()
    at_path(page, "/")
    assert page.evaluate("window.__sameDocument") == 1
    assert sockets == [], f"switching pages opened new WebSockets: {sockets}"
    assert page.locator('[data-testid="app"]').get_attribute("data-phase") == "live"
    console.check()


def test_a_component_card_is_the_link_to_its_page(open_page: Any) -> None:
    page, console = open_page(width=390, height=844)
    page.wait_for_selector('[data-testid="comp-postgres-figure"]')
    page.evaluate("window.__sameDocument = 1")
    # a tap on the figure, not on the name (force: the card's link lies over it, on purpose)
    page.locator('[data-testid="comp-postgres-figure"]').click(force=True)
    at_path(page, "/component/postgres")
    assert title(page) == "postgres"
    assert page.evaluate("window.__sameDocument") == 1
    console.check()
