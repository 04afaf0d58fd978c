"""History in headless Chromium: switch the range to 6 h and see past data (from the history API, the
simulated past of history/generate.py in a real PostgreSQL), and the status timeline with its outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from history import generate
from history.schema import migrate
from history.store import roll_range
from tests.browser.conftest import CHROMIUM_ARGS, Stack, _ensure_frontend_built, fresh_database, screenshot
from tests.support.servers import scaled

pytestmark = pytest.mark.browser


async def _past(dsn: str, now: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        m = generate.demo_model(now)
        start = now - 8 * 3600
        await generate.seconds(conn, m, start, now - 60)
        await roll_range(conn, int(start) // 60 * 60, int(now - 60) // 60 * 60)
        await generate.states(conn, m, start, now)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def hstack(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str) -> Iterator[Stack]:
    _ensure_frontend_built()
    with fresh_database(pg_admin_dsn, "opsdash_hist") as dsn:
        asyncio.run(_past(dsn, time.time()))
        s = Stack(tmp_path_factory.mktemp("hstack"))
        s.env["OPSDASH_HISTORY_URL"] = dsn
        try:
            s.opsdash("aggregator", "aggregator")
            s.opsdash("recorder", "recorder")
            s.start_gateway()
            s.spawn("fleet", ["-m", "tests.browser.fleet", s.broker.url, "fleet"])
            s.wait_view()
            yield s
        finally:
            s.close()


@pytest.fixture(scope="module")
def hbrowser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_switch_to_6h_shows_past_data_and_a_status_timeline(hstack: Stack, hbrowser: Any) -> None:
    ctx = hbrowser.new_context(viewport={"width": 1600, "height": 1000},
                               bypass_csp=True)  # wait_for_function strings need eval (conftest.py)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(hstack.base + "/")
        page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
        # the dashboard's throughput tile: live first, then 6 h from history
        assert page.locator('[data-testid="range-live"][aria-pressed="true"]').count() == 1
        page.click('[data-testid="range-6h"]')
        chart = page.wait_for_selector('[data-testid="history-chart-ingest"]', timeout=scaled(15) * 1000)
        points = int(chart.get_attribute("data-points") or 0)
        # 6 h at the default step (30 s): ~720 points, all of the simulated past but the last minute
        assert points > 600, points
        charts = page.locator('[data-testid="history-charts"]')
        span = float(charts.get_attribute("data-to") or 0) - float(charts.get_attribute("data-from") or 0)
        assert 6 * 3600 - 60 <= span <= 6 * 3600 + 60
        lat = int(page.locator('[data-testid="history-chart-latency"]').get_attribute("data-points") or 0)
        assert lat > 3 * 600  # three quantile lines
        # hovering a past point shows its time and value in the chart's legend
        box = chart.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        legend = page.locator('[data-testid="history-chart-ingest"] .u-legend').inner_text()
        assert "msg/s" in legend and ":" in legend, legend
        # drag to zoom: a narrower past range
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=5)
        page.mouse.up()
        page.wait_for_selector('[data-testid="range-zoom"]', timeout=scaled(10) * 1000)
        page.wait_for_selector('[data-testid="history-chart-ingest"]', timeout=scaled(10) * 1000)
        charts = page.locator('[data-testid="history-charts"]')
        zspan = float(charts.get_attribute("data-to") or 0) - float(charts.get_attribute("data-from") or 0)
        assert zspan < 0.4 * 6 * 3600, zspan
        screenshot(page, "history-6h-zoom")
        # the history page: status timeline with the simulated outage of influxdb
        page.click('a[href="/history"]')
        row = page.wait_for_selector('[data-testid="timeline-row-influxdb"]', timeout=scaled(15) * 1000)
        assert row.query_selector('[data-status="down"]') is not None
        a24 = page.locator('[data-testid="avail-24h-influxdb"]').inner_text()
        assert a24.endswith("%") and float(a24.split()[0]) < 100
        assert page.locator('[data-testid="avail-24h-postgres"]').inner_text() == "100 %"
        seg = row.query_selector('[data-status="down"]')
        assert "simulated outage" in (seg.get_attribute("title") or "")
        screenshot(page, "history-page")
        assert not errors, errors
    finally:
        ctx.close()
