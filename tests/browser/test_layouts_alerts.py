"""The layouts with alerts firing (issue 18): on a phone the firing alerts come right after the status
line, before the navigation; a wall (1080p and 4K) with eight alerts firing still fits one screen
with no overlapping text; the axe audit of the dashboard and /alerts with alerts on screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Stack, _ensure_frontend_built
from tests.browser.test_a11y import audit
from tests.support.servers import scaled

pytestmark = pytest.mark.browser

CHECKS = (Path(__file__).parent / "layout_checks.js").read_text()
COMPONENTS = ["postgres", "influxdb", "mqtt", "keycloak", "ingest", "evaluator", "dispatcher", "delivery"]


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The test fleet with a rule that fires for every healthy component within a second (7 or
    more alerts) and one for the degraded keycloak: a worst case for the banner and the wall."""
    _ensure_frontend_built()
    s = Stack(tmp_path_factory.mktemp("layout-alerts"))
    s.env["OPSDASH_ALERTS__RULES"] = (
        '[{name = "healthy_test", metric = "health.components.*.status", op = "==", value = "healthy",'
        ' for_s = 1, severity = "warning", summary = "{component} answers, and this test rule fires for it"},'
        ' {name = "component_degraded", for_s = 1}]')
    try:
        s.opsdash("aggregator", "aggregator")
        s.start_gateway()
        s.spawn("fleet", ["-m", "tests.browser.fleet", s.broker.url, "fleet"])
        s.spawn("dispatcher", ["-m", "tests.browser.fleet", s.broker.url, "dispatcher"])
        s.wait_view(predicate=lambda h: (h.get("components", {}).get("dispatcher") or {}).get("status") == "healthy")
        yield s
    finally:
        s.close()


def open_with_alerts(browser: Any, stack: Stack, path: str, width: int, height: int) -> tuple[Any, Any]:
    ctx = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    page = ctx.new_page()
    page.goto(stack.base + path)
    page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
    wall = "wall=1" in path
    sel = '[data-testid="alert-wall-item"]' if wall else '[data-testid="alert-banner"]'
    page.wait_for_function(
        "([sel, wall]) => wall ? document.querySelectorAll(sel).length >= 6"
        " : Number(document.querySelector(sel)?.dataset.count ?? 0) >= 7",
        arg=[sel, wall], timeout=scaled(20) * 1000)
    page.wait_for_timeout(500)
    return ctx, page


@pytest.mark.parametrize(("width", "height"), [(390, 844), (360, 740)])
def test_phone_alerts_first(alert_stack: Stack, browser: Any, width: int, height: int) -> None:
    ctx, page = open_with_alerts(browser, alert_stack, "/", width, height)
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"layout-alerts-phone-{width}x{height}.png"), full_page=True)
        order = page.evaluate("""() => ['header.top', '[data-testid="alert-banner"]', 'nav.nav', 'main']
          .map((s) => document.querySelector(s).getBoundingClientRect().top)""")
        assert order == sorted(order), f"status line, alerts, nav, page: tops {order}"
        r = page.evaluate(CHECKS, COMPONENTS)
        assert r["scrollWidth"] <= width and not r["wide"], r["wide"]
        assert not r["clipped"], r["clipped"]
        assert not r["overlaps"], r["overlaps"]
    finally:
        ctx.close()


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (3840, 2160)])
def test_wall_with_alerts_fits(alert_stack: Stack, browser: Any, width: int, height: int) -> None:
    ctx, page = open_with_alerts(browser, alert_stack, "/?wall=1", width, height)
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"layout-alerts-wall-{width}x{height}.png"))
        r = page.evaluate(CHECKS, COMPONENTS)
        assert r["scrollHeight"] <= height and r["scrollWidth"] <= width, (r["scrollHeight"], r["wide"])
        assert not r["clipped"], r["clipped"]
        assert not r["overlaps"], r["overlaps"]
        assert not r["cut"], f"text cut across: {r['cut']}"
        # the last tiles are still on the screen, whole
        bottom = page.evaluate(
            "() => Math.max(...[...document.querySelectorAll('.tile')].map((t) => t.getBoundingClientRect().bottom))")
        assert bottom <= height, bottom
    finally:
        ctx.close()


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1366, 768)])
def test_axe_with_alerts(alert_stack: Stack, browser: Any, width: int, height: int) -> None:
    ctx, page = open_with_alerts(browser, alert_stack, "/", width, height)
    try:
        bad = []
        for path in ("/", "/alerts"):
            if path != "/":
                page.goto(alert_stack.base + path)
                page.wait_for_selector('[data-testid="alerts-firing"] tbody tr', timeout=scaled(10) * 1000)
            bad += [(path, v) for v in audit(page) if v["impact"] in ("serious", "critical", "moderate")]
        assert not bad, bad
        if width < 600:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "layout-alerts-page-phone.png"), full_page=True)
    finally:
        ctx.close()
