"""A component's page with history on: charts and the state timeline from the history API, events
from the events API (a real PostgreSQL with a simulated past, the recorder, the real stack)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Stack, screenshot
from tests.browser.test_history import hbrowser, hstack  # noqa: F401  (the history stack's fixtures)
from tests.support.servers import scaled

pytestmark = pytest.mark.browser


def test_component_page_reads_history_and_events(hstack: Stack, hbrowser: Any) -> None:  # noqa: F811
    ctx = hbrowser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(hstack.base + "/component/influxdb?range=6h")
        page.wait_for_selector('[data-testid="comp-history"][data-phase="ready"]', timeout=scaled(20) * 1000)
        # the simulated past has an influxdb outage: a down segment on the state timeline
        tl = page.wait_for_selector('[data-testid="state-timeline"]', timeout=scaled(10) * 1000)
        assert tl.query_selector(".tl-seg.st-down") is not None
        page.goto(hstack.base + "/component/ingest?range=1h")
        page.wait_for_selector('[data-testid="comp-history"][data-phase="ready"]', timeout=scaled(20) * 1000)
        chart = page.wait_for_selector('[data-testid="hchart-rate:ingest:messages_received"]',
                                       timeout=scaled(10) * 1000)
        assert int(chart.get_attribute("data-points") or 0) > 30
        # delivery's webhook timeouts (one every 5 s from the fleet) come from the events API
        page.goto(hstack.base + "/component/delivery")
        page.wait_for_selector('[data-testid="component-events"][data-source="history"]', timeout=scaled(20) * 1000)
        assert "webhook_timeout" in page.locator('[data-testid="component-events"]').inner_text()
        screenshot(page, "component-delivery-history")
        assert not errors, errors
    finally:
        ctx.close()
