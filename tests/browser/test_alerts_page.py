"""Alerts in headless Chromium over the real stack (aggregator, gateway, reporters): a killed reporter
fires an alert that the banner counts, its tile marks and the /alerts page lists with since/for/value;
Ack and Silence from the page reach the aggregator and show on the alert; wall mode shows it large."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import Console, Stack, _ensure_frontend_built, screenshot
from tests.support.servers import scaled

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _ensure_frontend_built()
    s = Stack(tmp_path_factory.mktemp("alert-stack"))
    s.env["OPSDASH_ALERTS__RULES"] = (
        '[{name = "instance_down", metric = "services.*.instances.*.status", op = "==", value = "down",'
        ' for_s = 1, keep_firing_s = 5, severity = "critical", summary = "{service}/{instance} is down"}]')
    try:
        s.opsdash("aggregator", "aggregator")
        s.start_gateway()
        s.spawn("fleet", ["-m", "tests.browser.fleet", s.broker.url, "fleet"])
        s.spawn("dispatcher", ["-m", "tests.browser.fleet", s.broker.url, "dispatcher"])
        s.wait_view(predicate=lambda h: (h.get("components", {}).get("dispatcher") or {}).get("status") == "healthy")
        yield s
    finally:
        s.close()


def open_at(browser: Any, stack: Stack, path: str) -> tuple[Any, Any, Console]:
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = ctx.new_page()
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"pageerror: {e}"))
    page.goto(stack.base + path)
    page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
    return ctx, page, console


def test_alert_banner_marks_page_ack_and_silence(alert_stack: Stack, browser: Any) -> None:
    ctx, page, console = open_at(browser, alert_stack, "/")
    try:
        assert page.locator('[data-testid="alert-banner"]').count() == 0
        alert_stack.stop("dispatcher", signal.SIGKILL)
        try:
            banner = page.wait_for_selector('[data-testid="alert-banner"]', timeout=scaled(10) * 1000)
        except Exception:
            raise AssertionError(f"no banner; REST alerts: {alert_stack.get('/operator/system/alerts')}; "
                                 f"console: {console.errors}; aggregator log: "
                                 f"{alert_stack.log('aggregator')[-1500:]}") from None
        assert banner.get_attribute("data-count") == "1" and banner.get_attribute("data-severity") == "critical"
        assert "dispatcher/" in banner.inner_text()
        mark = page.wait_for_selector('[data-testid="alert-mark-dispatcher"]', timeout=scaled(5) * 1000)
        assert "1" in mark.inner_text()
        screenshot(page, "alerts-banner")
        # the alerts page, through the navigation
        page.click('a[href="/alerts"] >> nth=0')
        row = page.wait_for_selector('[data-testid="alerts-firing"] tr[data-status="firing"]', timeout=scaled(5) * 1000)
        text = row.inner_text()
        assert "instance_down" in text and "is down" in text and "down" in text
        _s, _h, body = alert_stack.get("/operator/system/alerts")
        [alert] = [a for a in body["alerts"] if a["labels"]["alertname"] == "instance_down"]
        assert alert["labels"]["service"] == "dispatcher"
        # Ack from the page: the aggregator shows it on the alert
        row.query_selector('[data-testid="ack"]').click()
        page.wait_for_selector(f'[data-testid="alert-{alert["fingerprint"]}"] [data-testid="acked"]',
                               timeout=scaled(8) * 1000)
        # Silence from the page
        page.click(f'[data-testid="alert-{alert["fingerprint"]}"] [data-testid="silence"]')
        page.wait_for_selector('[data-testid="alerts-silences"] li', timeout=scaled(8) * 1000)
        page.wait_for_selector(f'[data-testid="alert-{alert["fingerprint"]}"] [data-testid="quiet"]',
                               timeout=scaled(8) * 1000)
        _s, _h, body = alert_stack.get("/operator/system/alerts")
        [mine] = [a for a in body["alerts"] if a["fingerprint"] == alert["fingerprint"]]
        assert mine["acked_by"] == "anonymous" and mine["silenced_until"] is not None
        assert body["silences"][0]["matchers"] == {k: v for k, v in alert["labels"].items() if k != "severity"}
        screenshot(page, "alerts-page")
        console.check()
    finally:
        ctx.close()
    # wall mode: firing alerts large
    ctx, page, console = open_at(browser, alert_stack, "/?wall=1")
    try:
        item = page.wait_for_selector('[data-testid="alert-wall-item"]', timeout=scaled(5) * 1000)
        assert "dispatcher/" in item.inner_text()
        size = page.evaluate("(el) => parseFloat(getComputedStyle(el).fontSize)", item)
        base = page.evaluate("() => parseFloat(getComputedStyle(document.documentElement).fontSize)")
        assert size >= 1.25 * base  # larger than the page's text (h18 fits six alerts in two columns)
        screenshot(page, "alerts-wall")
        console.check()
    finally:
        ctx.close()
