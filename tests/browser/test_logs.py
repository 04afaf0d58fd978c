"""The log page in headless Chromium, on the real stack (mosquitto, aggregator, recorder into a real
PostgreSQL, gateway serving the built frontend): a search finds a known event, a chart marker leads to
it, and the live tail shows a new event within 2 s."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.browser.conftest import CHROMIUM_ARGS, Stack, _ensure_frontend_built, screenshot
from tests.support.servers import scaled

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lstack(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str) -> Iterator[Stack]:
    _ensure_frontend_built()
    name = f"opsdash_logs_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        c = await asyncpg.connect(pg_admin_dsn)
        try:
            await c.execute(sql)
        finally:
            await c.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    s = Stack(tmp_path_factory.mktemp("lstack"))
    s.env["OPSDASH_HISTORY_URL"] = f"{pg_admin_dsn.rsplit('/', 1)[0]}/{name}"
    try:
        s.opsdash("aggregator", "aggregator")
        s.opsdash("recorder", "recorder")
        s.start_gateway()
        s.spawn("fleet", ["-m", "tests.browser.fleet", s.broker.url, "fleet"])
        s.wait_view()
        yield s
    finally:
        s.close()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_seq = iter(range(1, 10_000))


def publish_event(s: Stack, message: str, severity: str = "error", service: str = "delivery",
                  instance: str = "delivery-9", kind: str = "webhook_timeout") -> float:
    """One event on the bus with mosquitto_pub, as any service would send it; returns its ts."""
    ts = round(time.time(), 3)
    body = {"boot": "browser-test", "seq": next(_seq), "ts": ts, "kind": kind, "severity": severity,
            "message": message, "attrs": {"tenant": "zebracorp"}}
    subprocess.run(["mosquitto_pub", "-h", s.broker.host, "-p", str(s.broker.port), "-q", "1",
                    "-t", f"$ops/v1/svc/{service}/{instance}/events", "-m", json.dumps(body)],
                   check=True, timeout=10)
    return ts


def wait_stored(s: Stack, q: str, n: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + scaled(20)
    last: Any = None
    while time.monotonic() < deadline:
        status, _h, body = s.get(f"/operator/system/events?q={q}")
        last = (status, body)
        if status == 200 and len(body["events"]) >= n:
            return body["events"]  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"event {q!r} not stored: {last}; recorder log:\n{s.log('recorder')[-2000:]}")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1600, "height": 1000})
    p = ctx.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    ctx.close()
    assert not errors, errors


def test_search_in_the_log_view_finds_a_known_event(lstack: Stack, page: Any) -> None:
    publish_event(lstack, "POST https://hooks.zebracorp.example/alerts timed out after 10 s")
    publish_event(lstack, "POST https://hooks.zebracorp.example/alerts returned 502", kind="webhook_failed")
    publish_event(lstack, "something else entirely", severity="warning")
    wait_stored(lstack, "zebracorp", 2)
    page.goto(lstack.base + "/logs?tail=off")
    page.wait_for_selector('[data-testid="logs-page"]')
    page.fill('[data-testid="logs-q"]', "ZEBRACORP, timed-out")
    page.click('[data-testid="logs-search"]')
    page.wait_for_function(
        """() => { const rows = document.querySelectorAll('[data-testid="event-row"]');
                   return rows.length === 1 && rows[0].textContent.includes('hooks.zebracorp.example'); }""",
        timeout=scaled(10) * 1000)
    row = page.locator('[data-testid="event-row"]').first
    assert "timed out after 10 s" in row.inner_text()
    assert "error" in row.locator('[data-testid="event-severity"]').inner_text()  # the word, not colour
    assert "q=ZEBRACORP" in page.url  # the search is in the URL: shareable, survives a reload
    page.reload()
    page.wait_for_selector('[data-testid="event-row"]', timeout=scaled(10) * 1000)
    assert page.locator('[data-testid="event-row"]').count() == 1
    screenshot(page, "logs-search")


def test_a_chart_marker_leads_to_the_events_around_it(lstack: Stack, page: Any) -> None:
    message = "POST https://hooks.markercorp.example/alerts timed out after 10 s"
    ts = publish_event(lstack, message)
    wait_stored(lstack, "markercorp")
    page.goto(lstack.base + "/")
    marker = page.locator('[data-testid="chart-delivery"] [data-testid="chart-marker"]').last
    marker.wait_for(timeout=scaled(15) * 1000)
    href = marker.get_attribute("href")
    assert href is not None and href.startswith("/logs?") and "service=delivery" in href
    marker.click()
    page.wait_for_url("**/logs?**", timeout=scaled(10) * 1000)
    page.wait_for_selector('[data-testid="event-row"]', timeout=scaled(10) * 1000)
    rows = page.locator('[data-testid="event-row"]')
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert any("markercorp" in t for t in texts), texts
    # only the service's events, within a minute of it
    for i in range(rows.count()):
        assert abs(float(rows.nth(i).get_attribute("data-ts")) - ts) <= 61
        assert rows.nth(i).inner_text().count("delivery") >= 1
    assert page.locator(".ev-at").count() >= 1  # the event it came from is highlighted


def test_the_live_tail_shows_a_new_event_within_2_s(lstack: Stack, page: Any) -> None:
    page.goto(lstack.base + "/logs?service=ingest")
    page.wait_for_selector('[data-testid="tail-state"]:has-text("tailing")', timeout=scaled(15) * 1000)
    page.wait_for_selector('[data-testid="logs-page"] [data-testid="logs-summary"]')
    time.sleep(0.5)  # the page's first search and its tail request are under way
    word = f"tailword{uuid.uuid4().hex[:8]}"
    publish_event(lstack, f"a new {word} arrived", service="delivery")  # another service: not shown
    t0 = time.monotonic()
    publish_event(lstack, f"queue stalled: {word}", service="ingest", instance="ingest-1", kind="log",
                  severity="critical")
    page.wait_for_function(
        f"""() => [...document.querySelectorAll('[data-testid="event-row"]')]
                  .some(r => r.textContent.includes('{word}'))""", timeout=2000)
    latency = time.monotonic() - t0
    rows = [r for r in page.locator('[data-testid="event-row"]').all_inner_texts() if word in r]
    assert len(rows) == 1 and "queue stalled" in rows[0] and "critical" in rows[0], rows
    print(f"\nlive tail: event on the page {latency * 1000:.0f} ms after mosquitto_pub returned")
    assert latency < 2.0
