"""The dependency graph and a component's drill-down page in real Chromium, on the real stack
(tests/browser/conftest.py: private mosquitto, aggregator, gateway, the known fleet of fleet.py)."""

from __future__ import annotations

import re
import time
from typing import Any

from tests.browser.conftest import Stack, screenshot
from tests.support.servers import scaled

SEED = ("postgres", "influxdb", "mqtt", "keycloak", "ingest", "evaluator", "dispatcher", "delivery")
# history is off on this stack: /healthz says so and the component page shows it without asking
HISTORY_OFF: tuple[str, ...] = ()  # /healthz says history is off: the page does not ask (no 404)


def test_graph_page_renders_the_platform_with_colours(stack: Stack, open_page: Any) -> None:
    page, console = open_page("graph")
    page.wait_for_selector('[data-testid="graph-page"][data-state="ready"]')
    for c in SEED:
        page.wait_for_selector(f'[data-testid="gnode-{c}"]')
    # the fleet's keycloak probe reports degraded: it is the root cause, the others are healthy
    page.wait_for_selector('[data-testid="gnode-keycloak"][data-status="degraded"]', timeout=scaled(10) * 1000)
    nodes = {c: page.locator(f'[data-testid="gnode-{c}"]') for c in SEED}
    assert nodes["keycloak"].get_attribute("data-root") == "true"
    assert nodes["postgres"].get_attribute("data-status") == "healthy"
    # icon + word, not colour alone
    assert "▲" in nodes["keycloak"].text_content() and "Keycloak" in nodes["keycloak"].text_content()
    assert "✔" in nodes["postgres"].text_content() and "PostgreSQL" in nodes["postgres"].text_content()
    stroke = {c: page.eval_on_selector(f'[data-testid="gnode-{c}"] rect', "e => getComputedStyle(e).stroke")
              for c in ("keycloak", "postgres")}
    assert stroke["keycloak"] != stroke["postgres"], stroke  # the theme picks the colours; they differ
    # the default edges, dependents above their dependencies
    for a, b in (("ingest", "mqtt"), ("ingest", "influxdb"), ("evaluator", "postgres"), ("delivery", "postgres")):
        assert page.locator(f'[data-testid="edge-{a}-{b}"]').count() == 1
        ya = nodes[a].bounding_box()["y"]  # type: ignore[index]
        yb = nodes[b].bounding_box()["y"]  # type: ignore[index]
        assert ya < yb, (a, b)
    assert page.locator('[data-impact="true"]').count() == 0  # keycloak impacts nothing
    assert "Keycloak degraded" in page.locator('[data-testid="graph-summary"]').inner_text()
    assert "Keycloak degraded" in page.locator('[data-testid="root-cause"]').inner_text()  # the status line
    screenshot(page, "graph-page")
    console.check()


def _row(page: Any, inst: str) -> str:
    return str(page.locator(f'[data-testid="inst-{inst}"]').inner_text())


def test_click_opens_the_drill_down_which_updates_live_and_survives_reload(stack: Stack, open_page: Any) -> None:
    page, console = open_page("graph")
    page.wait_for_selector('[data-testid="gnode-ingest"]')
    page.click('[data-testid="gnode-ingest"]')
    page.wait_for_url(re.compile(r"/component/ingest$"))
    page.wait_for_selector('[data-testid="component-page"][data-component="ingest"]')
    page.wait_for_selector('[data-testid="inst-ingest-1"]', timeout=scaled(10) * 1000)
    assert page.locator('[data-testid="instances"] tbody tr').count() == 2
    assert page.locator('[data-testid="page-title"]').inner_text() == "ingest"
    row = _row(page, "ingest-1")
    assert "Healthy" in row and "queue_depth 3" in row, row
    assert "Healthy" in _row(page, "ingest-2") and "queue_depth 4" in _row(page, "ingest-2")
    # live: the received-intervals count in the row moves on every heartbeat
    # (polled from here: the gateway's CSP forbids the eval that wait_for_function uses)
    before = _row(page, "ingest-1")
    deadline = time.monotonic() + scaled(10)
    while _row(page, "ingest-1") == before:
        assert time.monotonic() < deadline, f"the row did not change: {before!r}"
        page.wait_for_timeout(200)
    # sort by uptime, ascending: the URL keeps it
    page.click('[data-testid="sort-uptime"]')
    page.wait_for_url(re.compile(r"/component/ingest\?sort=uptime$"))
    page.reload()
    page.wait_for_selector('[data-testid="app"][data-phase="live"]')
    page.wait_for_selector('[data-testid="inst-ingest-1"]', timeout=scaled(10) * 1000)
    assert page.locator('[data-testid="instances"]').get_attribute("data-sort") == "uptime"
    assert page.locator('[data-testid="component-page"]').get_attribute("data-component") == "ingest"
    assert page.locator('[data-testid="comp-state"]').get_attribute("data-status") == "healthy"
    assert page.locator('[data-testid="history-off"]').count() == 1
    screenshot(page, "component-ingest")
    console.check(allow=HISTORY_OFF)


def test_probe_page_and_an_unknown_component(stack: Stack, open_page: Any) -> None:
    page, console = open_page("component/keycloak")
    page.wait_for_selector('[data-testid="component-page"][data-component="keycloak"]')
    page.wait_for_selector('[data-testid="comp-state"][data-status="degraded"]', timeout=scaled(10) * 1000)
    assert "Root cause" in page.locator('[data-testid="comp-root"]').inner_text()
    assert page.locator('[data-testid="instances"]').count() == 0  # a probe has no instances
    page.goto(stack.base + "/component/no-such-thing")
    page.wait_for_selector('[data-testid="component-page"][data-state="unknown"]', timeout=scaled(10) * 1000)
    console.check(allow=HISTORY_OFF)
